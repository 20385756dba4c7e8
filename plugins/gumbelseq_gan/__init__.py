"""Backend ``gumbel-lstm-gan``: the Gumbel-softmax LSTM GAN of Kusner & Hernandez-Lobato (2016).

Preset ``paper`` (the default) is the recipe of the paper, point by point:

* G: LSTM, state 10, linear head state -> vocabulary logits. Per sample, the noise
  ``z = (h0, C0) ~ U(0,1)^H`` replaces the initial state; ``y_0 = 0``; at each of the
  ``max_len`` steps ``y_t = softmax((logits_t + g_t) / tau)`` is emitted and fed back.
* D: many-to-one LSTM, state 10, linear head on the final hidden state -> one logit.
* Real strings are instance-noised: character k becomes the log-distribution with 0.9 on k and
  0.1/(V-1) elsewhere, then Gumbel-softmax at the same tau.
* D minimises ``-mean log D(x) - mean log(1 - D(G(z)))``; G minimises
  ``-mean log[D(G(z)) / (1 - D(G(z)))] = -mean logit(G(z))``. Both from logits (softplus).
* Adam, lr 1e-3, beta1 0.5; minibatch 200; 20,000 iterations; one D step then one G step;
  tau linear 5 -> 1 over the first 10,000 iterations, then 1.

Each iteration runs G forward once: the D step sees it detached, then the G step reuses it
against the updated D. G's parameters do not change in between, so this is exactly Algorithm 1
with one z per iteration (and half the generator work of recomputing it).

Presets and options: every preset-controlled option defaults to ``None`` ("not given");
``resolve_options`` fills the ``None`` fields from the preset table, so any value given
explicitly (``-o key=value`` or ``--iterations`` / ``--batch-size``) wins over the preset.
After ``resolve_options`` every field holds a concrete value. Two preset values scale with the
run length, so a shortened run keeps the same shape: ``anneal_iters`` defaults to half of
``iterations`` (10,000 of the paper's 20,000) and ``pretrain_iters`` to a preset-given fraction
of it (0 for ``paper``, 10% for ``best``). ``gen_batch`` defaults to ``batch_size``.

``pretrain_iters`` counts inside ``iterations``: during iterations ``0 .. pretrain_iters-1`` G
minimises the teacher-forced cross-entropy (the ``mle-lstm`` loss, with the initial state drawn
from the noise distribution) instead of the adversarial loss, while D keeps training against G's
samples, so D is warm when the adversarial phase starts. The tau schedule starts counting when
the adversarial phase starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch.nn import functional as F

from gumbelseq.model.backend import Backend, BaseOptions, Trainer
from gumbelseq.errors import OptionError
from gumbelseq.model.gumbel import TAU_MAX, TAU_MIN, check_tau, gumbel_noise
from gumbelseq.model.hookspecs import hookimpl
from gumbelseq.model.lstm import lstm_parameters, sample_in_chunks, sampling_bytes
from gumbelseq.model.seed import restore_generator

from .model import SCHEDULES, Discriminator, Generator, real_log_probs, real_vectors, temperature

__all__ = ["GumbelLSTMGAN", "GANOptions", "GANTrainer", "PRESETS", "register_backends"]

G_LOSSES = ("kl", "nonsat")
ANNEAL = ("both", "real")
NOISE = ("h0c0", "h0")

#: Preset tables. A field missing from a preset keeps the paper's value. ``*_fraction`` keys
#: are fractions of ``iterations`` (not option names); ``gen_batch`` follows ``batch_size``.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        iterations=20_000,
        batch_size=200,
        hidden_g=10,
        hidden_d=10,
        hard=False,
        g_loss="kl",
        schedule="linear",
        tau_start=5.0,
        tau_end=1.0,
        anneal_iters_fraction=0.5,  # 10,000 of 20,000
        anneal="both",
        noise="h0c0",
        d_steps=1,
        pretrain_iters_fraction=0.0,
        lr_g=1e-3,
        lr_d=1e-3,
        beta1=0.5,
        beta2=0.999,
        real_peak=0.9,
    ),
    # First guess, to be tuned: MLE warm start, straight-through one-hot samples (so real
    # strings can be shown as clean one-hots: real_peak 1), bigger states, 2 D steps per G step.
    "best": dict(
        hidden_g=32,
        hidden_d=32,
        hard=True,
        real_peak=1.0,
        pretrain_iters_fraction=0.1,  # 2,000 of 20,000
        d_steps=2,
        schedule="exponential",
        tau_start=2.0,
        tau_end=0.5,
    ),
}
for _name, _table in PRESETS.items():
    if _name != "paper":
        PRESETS[_name] = {**PRESETS["paper"], **_table}


def _bad(name: str, value: object, accepted: str) -> OptionError:
    return OptionError(f"option {name}={value!r} is invalid: expected {accepted}")


@dataclass
class GANOptions(BaseOptions):
    """Options of ``gumbel-lstm-gan``. ``None`` means "take it from the preset".

    ``hard`` is annotated ``bool`` (so ``-o hard=true`` parses as a bool) but defaults to
    ``None`` for the same reason.
    """

    iterations: int | None = None
    batch_size: int | None = None
    #: paper | best. Fills every option left at None.
    preset: str = "paper"
    #: Generated samples per minibatch (paper variant b: 1000). None: same as batch_size.
    gen_batch: int | None = None
    hidden_g: int | None = None
    hidden_d: int | None = None
    #: Straight-through: G emits (and D sees) exact one-hots; gradients go through the soft sample.
    hard: bool = None  # type: ignore[assignment]
    #: kl: -mean logit D(G(z)) (paper); nonsat: -mean log D(G(z)).
    g_loss: str | None = None
    #: constant | linear | exponential | inverse-linear (1/tau linear: the authors' script).
    schedule: str | None = None
    tau_start: float | None = None
    tau_end: float | None = None
    #: Iterations (after pre-training) over which tau goes from tau_start to tau_end
    #: (preset default: half of `iterations`).
    anneal_iters: int | None = None
    #: both: real and generated vectors share the schedule; real: only the real vectors are
    #: annealed and G runs at tau_end (paper variant c).
    anneal: str | None = None
    #: h0c0: z = (h0, C0) ~ U(0,1)^H; h0: noise in h0 only, C0 learned (paper variant d).
    noise: str | None = None
    #: D steps per G step; each draws a fresh real minibatch and fresh z.
    d_steps: int | None = None
    #: Leading iterations (inside `iterations`) where G trains by teacher-forced MLE
    #: (preset default: a fraction of `iterations`: paper 0, best 10%).
    pretrain_iters: int | None = None
    lr_g: float | None = None
    lr_d: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    #: Probability the instance-noised real vector puts on the true character (1: clean one-hots).
    real_peak: float | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise _bad("preset", self.preset, "one of " + ", ".join(PRESETS))
        choices = {
            "g_loss": G_LOSSES,
            "schedule": SCHEDULES,
            "anneal": ANNEAL,
            "noise": NOISE,
        }
        for name, accepted in choices.items():
            value = getattr(self, name)
            if value is not None and value not in accepted:
                raise _bad(name, value, "one of " + ", ".join(accepted))
        ints = {
            "iterations": 1,
            "batch_size": 1,
            "gen_batch": 1,
            "hidden_g": 1,
            "hidden_d": 1,
            "anneal_iters": 1,
            "d_steps": 1,
            "pretrain_iters": 0,
        }
        for name, low in ints.items():
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise _bad(name, value, f"an integer >= {low}")
        if self.hard is not None and not isinstance(self.hard, bool):
            raise _bad("hard", self.hard, "true or false")
        for name in ("tau_start", "tau_end"):
            value = getattr(self, name)
            if value is not None:
                try:
                    check_tau(value)
                except ValueError:
                    raise _bad(name, value, f"a number in [{TAU_MIN:g}, {TAU_MAX:g}]") from None
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            if value is not None and not _finite_positive(value):
                raise _bad(name, value, "a finite number > 0")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and 0.0 <= value < 1.0):
                raise _bad(name, value, "a number in [0, 1)")
        if self.real_peak is not None and not (
            _is_number(self.real_peak) and 0.0 < self.real_peak <= 1.0
        ):
            raise _bad("real_peak", self.real_peak, "a number in (0, 1]")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite_positive(value: object) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0  # type: ignore[arg-type]


def _init_seed(seed: int) -> int:
    # Weights are initialised from a seed derived from (not equal to) the run seed, so the
    # initial weights and the first noise draws of the training stream are not the same numbers.
    return (seed * 6364136223846793005 + 1442695040888963407) % (2**63)


class GANTrainer(Trainer):
    """Trains G and D of ``gumbel-lstm-gan``. All training randomness comes from ``generator``."""

    #: Rows per chunk in ``sample_ids``: big enough to amortise per-op overhead, small enough
    #: for the per-step tensors to stay in cache.
    sample_chunk = 16384

    def __init__(
        self,
        *,
        vocab_size: int,
        max_len: int,
        data: torch.Tensor,
        options: GANOptions,
        device: torch.device,
        seed: int,
    ) -> None:
        self.options = options
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.device = torch.device(device)
        self.data = data.to(self.device, torch.long)
        o = options
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_init_seed(seed))
            self.G = Generator(vocab_size, o.hidden_g, o.noise).to(self.device)
            self.D = Discriminator(vocab_size, o.hidden_d).to(self.device)
        betas = (o.beta1, o.beta2)
        # fused Adam: one kernel for all parameters instead of ~10 small ops per tensor.
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=o.lr_g, betas=betas, fused=True)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=betas, fused=True)
        self._g_params = list(self.G.parameters())
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._real_table = real_log_probs(vocab_size, o.real_peak, self.device)
        self.steps_done = 0

    # -- training -----------------------------------------------------------------------------

    def temperatures(self, iteration: int) -> tuple[float, float]:
        """``(tau of the real vectors, tau of the generator)`` at ``iteration``."""
        o = self.options
        tau = temperature(
            o.schedule, iteration - o.pretrain_iters, o.tau_start, o.tau_end, o.anneal_iters
        )
        return tau, (tau if o.anneal == "both" else o.tau_end)

    def _real_batch(self, n: int) -> torch.Tensor:
        if self.data.shape[0] == 0:
            raise RuntimeError("this trainer has no training data (it was created for sampling)")
        idx = torch.randint(
            self.data.shape[0], (n,), generator=self.generator, device=self.device
        )
        return self.data[idx]

    def step(self, iteration: int) -> dict[str, float]:
        o = self.options
        gen = self.generator
        tau_real, tau_g = self.temperatures(iteration)
        pretrain = iteration < o.pretrain_iters
        b_real, b_fake = o.batch_size, o.gen_batch
        for j in range(o.d_steps):
            last = j == o.d_steps - 1
            real_ids = self._real_batch(b_real)
            # All Gumbel noise of this D step (real and generated vectors, every step) in one
            # call, drawn [T, V, B] (the generator's internal layout) and viewed as [T, B, V].
            noise = gumbel_noise(
                (self.max_len, self.vocab_size, b_real + b_fake), generator=gen, device=self.device
            ).transpose(1, 2)
            state = self.G.draw_state(b_fake, gen)
            with torch.set_grad_enabled(last and not pretrain):
                fake = self.G(state, noise[:, b_real:], tau_g, o.hard)
            real = real_vectors(real_ids, self._real_table, noise[:, :b_real], tau_real, o.hard)
            # One D pass over real and fake together.
            logits = self.D(torch.cat([real, fake.detach()], dim=1))
            d_loss = F.softplus(-logits[:b_real]).mean() + F.softplus(logits[b_real:]).mean()
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()

        # G step, against the updated D, on the same generated batch.
        with torch.set_grad_enabled(not pretrain):
            fake_logits = self.D(fake)
            if o.g_loss == "kl":
                g_loss = -fake_logits.mean()  # -log[D/(1-D)] = -logit
            else:
                g_loss = F.softplus(-fake_logits).mean()  # -log D
        if pretrain:
            mle = self.G.net.mle_loss(real_ids, self.G.draw_state(b_real, gen))
            objective = mle
        else:
            mle = torch.full((), math.nan, device=self.device)
            objective = g_loss
        self.opt_g.zero_grad(set_to_none=True)
        objective.backward(inputs=self._g_params)  # D's parameters get no gradient
        self.opt_g.step()
        self.steps_done += 1

        with torch.no_grad():
            d_real = torch.sigmoid(logits[:b_real]).mean()
            d_fake = torch.sigmoid(logits[b_real:]).mean()
            values = torch.stack([d_loss.detach(), g_loss.detach(), d_real, d_fake, mle.detach()])
        d_loss_v, g_loss_v, d_real_v, d_fake_v, mle_v = values.tolist()  # one device sync
        metrics = {
            "d_loss": d_loss_v,
            "g_loss": g_loss_v,
            "tau": tau_real,
            "tau_g": tau_g,
            "d_real": d_real_v,
            "d_fake": d_fake_v,
        }
        if pretrain:
            metrics["mle_loss"] = mle_v
        return metrics

    # -- checkpointing ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.generator.get_state(),
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        restore_generator(self.generator, state["rng"])
        self.steps_done = int(state.get("steps_done", 0))

    # -- sampling -----------------------------------------------------------------------------

    @torch.no_grad()
    def sample_ids(self, n: int, tau: float, generator: torch.Generator) -> torch.Tensor:
        """``n`` strings ``[n, max_len]``: per step the argmax of the relaxed sample at ``tau``
        (a Gumbel-max draw from softmax(logits)); the relaxed sample is fed back (one-hot when
        the model was trained with ``hard``)."""
        tau = check_tau(tau)
        feedback = "hard" if self.options.hard else "soft"

        def draw(m: int) -> torch.Tensor:
            state = self.G.draw_state(m, generator)
            return self.G.net.sample(state, self.max_len, tau, generator, feedback=feedback)

        return sample_in_chunks(n, self.sample_chunk, self.max_len, self.device, draw)

class GumbelLSTMGAN(Backend):
    name = "gumbel-lstm-gan"
    description = "Gumbel-softmax LSTM GAN of Kusner & Hernandez-Lobato (2016), with variants"
    Options = GANOptions
    tau_help = (
        "Gumbel-softmax temperature of the vectors the generator feeds back to itself while "
        "sampling. Each character is the argmax of the relaxed sample, i.e. an exact draw from "
        "softmax(logits) whatever tau is; tau changes what the LSTM sees as its next input "
        "(training ends at tau_end, 1 in the paper preset; lower is closer to one-hot). "
        "Ignored for models trained with hard=true, which always feed back one-hots."
    )

    def resolve_options(self, options: BaseOptions) -> GANOptions:
        if not isinstance(options, GANOptions):
            options = GANOptions(iterations=options.iterations, batch_size=options.batch_size)
        table = PRESETS[options.preset]
        missing = {
            f.name: table[f.name]
            for f in fields(options)
            if f.name in table and getattr(options, f.name) is None
        }
        resolved = replace(options, **missing)
        derived: dict[str, int] = {}
        if resolved.gen_batch is None:
            derived["gen_batch"] = resolved.batch_size
        if resolved.anneal_iters is None:
            fraction = table["anneal_iters_fraction"]
            derived["anneal_iters"] = max(1, round(resolved.iterations * fraction))
        if resolved.pretrain_iters is None:
            fraction = table["pretrain_iters_fraction"]
            derived["pretrain_iters"] = round(resolved.iterations * fraction)
        resolved = replace(resolved, **derived)
        if resolved.pretrain_iters > resolved.iterations:
            raise OptionError(
                f"option pretrain_iters={resolved.pretrain_iters} is invalid: expected an "
                f"integer <= iterations ({resolved.iterations})"
            )
        return resolved

    def memory_estimate(self, options: BaseOptions, *, vocab_size: int, max_len: int) -> int:
        o = self.resolve_options(options)
        v, hg, hd = vocab_size, o.hidden_g, o.hidden_d
        # Parameters with their gradients and two Adam moments (x4), float32.
        params = 4 * (lstm_parameters(hg, v) + lstm_parameters(hd, v))
        # Per-step tensors kept for the backward pass (gates, states, relaxed samples), with
        # a factor 3 for temporaries; the D pass sees real and generated strings together.
        g_acts = o.gen_batch * max_len * (6 * hg + 3 * v)
        d_acts = (o.batch_size + o.gen_batch) * max_len * (6 * hd + 2 * v)
        return 4 * (params + 3 * (g_acts + d_acts)) + sampling_bytes(GANTrainer.sample_chunk, max_len, v, hg)

    def create(
        self,
        *,
        vocab_size: int,
        max_len: int,
        data: torch.Tensor,
        options: BaseOptions,
        device: torch.device,
        seed: int,
    ) -> GANTrainer:
        return GANTrainer(
            vocab_size=vocab_size,
            max_len=max_len,
            data=data,
            options=self.resolve_options(options),  # idempotent: resolved options pass through
            device=device,
            seed=seed,
        )


@hookimpl
def register_backends(register) -> None:  # noqa: ANN001 - pluggy passes a plain callable
    register(GumbelLSTMGAN())
