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

Presets and options: the option fields' defaults are the ``paper`` preset. A preset other
than ``paper`` replaces some of them; any value given explicitly (``-o key=value`` or
``--iterations`` / ``--batch-size``) wins over the preset. ``GumbelLSTMGAN.defaults`` does this
while the core builds the options, so a trainer only ever sees complete, typed options. Two
preset values scale with the run length, so a shortened run keeps the same shape:
``anneal_iters`` defaults to half of ``iterations`` (10,000 of the paper's 20,000) and
``pretrain_iters`` to a preset-given fraction of it (0 for ``paper``, 10% for ``best``).
``gen_batch`` defaults to ``batch_size``.

``pretrain_iters`` counts inside ``iterations``: during iterations ``0 .. pretrain_iters-1`` G
minimises the teacher-forced cross-entropy (the ``mle-lstm`` loss, with the initial state drawn
from the noise distribution) instead of the adversarial loss, while D keeps training against G's
samples, so D is warm when the adversarial phase starts. The tau schedule starts counting when
the adversarial phase starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import torch
from torch.nn import functional as F

from gumbelseq.errors import OptionError
from gumbelseq.model.backend import Backend, BaseOptions
from gumbelseq.model.constrained import StepMask
from gumbelseq.model.gumbel import TAU_MAX, TAU_MIN, gumbel_noise
from gumbelseq.model.hookspecs import hookimpl
from gumbelseq.model.lstm import lstm_parameters, sampling_bytes
from gumbelseq.model.suite import ModelSpec
from gumbelseq.model.trainer import BaseTrainer

from .model import SCHEDULES, Discriminator, Generator, real_log_probs, real_vectors, temperature

__all__ = ["GumbelLSTMGAN", "GANOptions", "GANTrainer", "PRESETS", "register_backends"]

G_LOSSES = ("kl", "nonsat")
ANNEAL = ("both", "real")
NOISE = ("h0c0", "h0")

#: Preset tables: what each preset changes from the option fields' defaults (which are
#: ``paper``). ``*_fraction`` keys are fractions of ``iterations`` (not option names).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        anneal_iters_fraction=0.5,  # 10,000 of 20,000
        pretrain_iters_fraction=0.0,
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

_TAU = {"min": TAU_MIN, "max": TAU_MAX}
_POSITIVE = {"min": 1}
_BETA = {"min": 0, "lt": 1}


@dataclass
class GANOptions(BaseOptions):
    """Options of ``gumbel-lstm-gan``; the defaults are the ``paper`` preset at 20,000 iterations."""

    iterations: int = 20_000
    batch_size: int = 200
    #: paper | best. Sets every option not given (see ``PRESETS``).
    preset: str = field(default="paper", metadata={"choices": tuple(PRESETS)})
    #: Generated samples per minibatch (paper variant b: 1000). Preset default: batch_size.
    gen_batch: int = field(default=200, metadata=_POSITIVE)
    hidden_g: int = field(default=10, metadata=_POSITIVE)
    hidden_d: int = field(default=10, metadata=_POSITIVE)
    #: Straight-through: G emits (and D sees) exact one-hots; gradients go through the soft sample.
    hard: bool = False
    #: kl: -mean logit D(G(z)) (paper); nonsat: -mean log D(G(z)).
    g_loss: str = field(default="kl", metadata={"choices": G_LOSSES})
    #: constant | linear | exponential | inverse-linear (1/tau linear: the authors' script).
    schedule: str = field(default="linear", metadata={"choices": SCHEDULES})
    tau_start: float = field(default=5.0, metadata=_TAU)
    tau_end: float = field(default=1.0, metadata=_TAU)
    #: Iterations (after pre-training) over which tau goes from tau_start to tau_end
    #: (preset default: half of `iterations`).
    anneal_iters: int = field(default=10_000, metadata=_POSITIVE)
    #: both: real and generated vectors share the schedule; real: only the real vectors are
    #: annealed and G runs at tau_end (paper variant c).
    anneal: str = field(default="both", metadata={"choices": ANNEAL})
    #: h0c0: z = (h0, C0) ~ U(0,1)^H; h0: noise in h0 only, C0 learned (paper variant d).
    noise: str = field(default="h0c0", metadata={"choices": NOISE})
    #: D steps per G step; each draws a fresh real minibatch and fresh z.
    d_steps: int = field(default=1, metadata=_POSITIVE)
    #: Leading iterations (inside `iterations`) where G trains by teacher-forced MLE
    #: (preset default: a fraction of `iterations`: paper 0, best 10%).
    pretrain_iters: int = field(default=0, metadata={"min": 0})
    lr_g: float = field(default=1e-3, metadata={"gt": 0})
    lr_d: float = field(default=1e-3, metadata={"gt": 0})
    beta1: float = field(default=0.5, metadata=_BETA)
    beta2: float = field(default=0.999, metadata=_BETA)
    #: Probability the instance-noised real vector puts on the true character (1: clean one-hots).
    real_peak: float = field(default=0.9, metadata={"gt": 0, "max": 1})
    #: ``grammar``: disallowed characters get ``-inf`` logits before the Gumbel-softmax inside
    #: G's feedback loop (and in its MLE pre-training loss), so its relaxed and straight-through
    #: samples never leave the grammar, and the real vectors' instance noise is kept inside the
    #: same masks; samples are then always constrained.
    mask: str = field(default="none", metadata={"choices": ("none", "grammar")})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrain_iters > self.iterations:
            raise OptionError(
                f"option pretrain_iters={self.pretrain_iters} is invalid: expected an "
                f"integer <= iterations ({self.iterations})"
            )


_OPTION_NAMES = frozenset(f.name for f in fields(GANOptions))


class GANTrainer(BaseTrainer):
    supports_mask = True
    supports_masked_training = True
    """Trains G and D of ``gumbel-lstm-gan``. All training randomness comes from ``generator``."""

    options: GANOptions
    checkpointed = ("G", "D", "opt_g", "opt_d")

    def build(self) -> None:
        o = self.options
        self.G = Generator(self.vocab_size, o.hidden_g, o.noise).to(self.device)
        self.D = Discriminator(self.vocab_size, o.hidden_d).to(self.device)
        betas = (o.beta1, o.beta2)
        # fused Adam: one kernel for all parameters instead of ~10 small ops per tensor.
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=o.lr_g, betas=betas, fused=True)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=betas, fused=True)
        self._g_params = list(self.G.parameters())
        self._real_table = real_log_probs(self.vocab_size, o.real_peak, self.device)

    # -- training -----------------------------------------------------------------------------

    def temperatures(self, iteration: int) -> tuple[float, float]:
        """``(tau of the real vectors, tau of the generator)`` at ``iteration``."""
        o = self.options
        tau = temperature(
            o.schedule, iteration - o.pretrain_iters, o.tau_start, o.tau_end, o.anneal_iters
        )
        return tau, (tau if o.anneal == "both" else o.tau_end)

    def train_step(self, iteration: int) -> dict[str, float]:
        o = self.options
        gen = self.generator
        tau_real, tau_g = self.temperatures(iteration)
        pretrain = iteration < o.pretrain_iters
        b_real, b_fake = o.batch_size, o.gen_batch
        for j in range(o.d_steps):
            last = j == o.d_steps - 1
            if self.masks is None:
                real_ids, allowed = self.minibatch(b_real), None
            else:
                real_ids, allowed = self.minibatch_masked(b_real)
            # All Gumbel noise of this D step (real and generated vectors, every step) in one
            # call, drawn [T, V, B] (the generator's internal layout) and viewed as [T, B, V].
            noise = gumbel_noise(
                (self.max_len, self.vocab_size, b_real + b_fake), generator=gen, device=self.device
            ).transpose(1, 2)
            state = self.G.draw_state(b_fake, gen)
            with torch.set_grad_enabled(last and not pretrain):
                mask = None if self.masks is None else StepMask(self.masks, b_fake)
                fake = self.G(state, noise[:, b_real:], tau_g, o.hard, mask)
            real = real_vectors(real_ids, self._real_table, noise[:, :b_real], tau_real, o.hard, allowed)
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
            mle = self.G.net.mle_loss(real_ids, self.G.draw_state(b_real, gen), allowed)
            objective = mle
        else:
            mle = torch.full((), math.nan, device=self.device)
            objective = g_loss
        self.opt_g.zero_grad(set_to_none=True)
        objective.backward(inputs=self._g_params)  # D's parameters get no gradient
        self.opt_g.step()

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

    # -- sampling -----------------------------------------------------------------------------

    def draw(self, n: int, tau: float, generator: torch.Generator, mask: StepMask | None = None) -> torch.Tensor:
        """Per step the argmax of the relaxed sample at ``tau`` (a Gumbel-max draw from
        softmax(logits)); the relaxed sample is fed back (one-hot when the model was trained
        with ``hard``)."""
        feedback = "hard" if self.options.hard else "soft"
        state = self.G.draw_state(n, generator)
        return self.G.net.sample(state, self.max_len, tau, generator, feedback=feedback, mask=mask)


class GumbelLSTMGAN(Backend):
    name = "gumbel-lstm-gan"
    default = True  # the paper's model: what `gumbelseq train` trains when no backend is named
    description = "Gumbel-softmax LSTM GAN of Kusner & Hernandez-Lobato (2016), with variants"
    Options = GANOptions
    trainer_class = GANTrainer
    progress_metrics = ("d_loss", "g_loss", "tau")
    plot_metrics = ("d_loss", "g_loss", "mle_loss")  # the paper's Fig. 2, and pre-training
    # The paper's GAN (a) and its variants (b)-(d), then the preset that beats them; after
    # the MLE reference row (order 0). In --quick mode (batch 50) variant (b) generates 200.
    reproduce_suite = (
        ModelSpec("gan-a", "GAN (a) paper", {"preset": "paper"}, "the paper's recipe, tau 5 -> 1", order=1),
        ModelSpec("gan-b", "GAN (b) 1000 gen", {"preset": "paper", "gen_batch": 1000},
                  "1,000 generated samples per minibatch", order=1, quick_options={"gen_batch": 200}),
        ModelSpec("gan-c", "GAN (c) anneal real", {"preset": "paper", "anneal": "real"},
                  "only the real vectors' tau annealed, G at tau 1", order=1),
        ModelSpec("gan-d", "GAN (d) noise h0", {"preset": "paper", "noise": "h0"}, "noise in h0 only, learned C0", order=1),
        ModelSpec("gan-best", "GAN best", {"preset": "best"}, "this project's preset (see README)", order=1),
        ModelSpec("gan-a-constrained", "GAN (a) paper, constrained sampling", {}, "the paper run, sampled inside the grammar's masks",
                  order=10.1, sample_of="gan-a", constrained=True),
        ModelSpec("gan-best-constrained", "GAN best, constrained sampling", {}, "the best run, sampled inside the grammar's masks",
                  order=10.1, sample_of="gan-best", constrained=True),
        ModelSpec("gan-a-masked", "GAN (a) paper, masked training", {"preset": "paper", "mask": "grammar"},
                  "the paper's recipe with masks inside G's feedback loop", order=11.1),
        ModelSpec("gan-best-masked", "GAN best, masked training", {"preset": "best", "mask": "grammar"},
                  "the best preset with masks inside G's feedback loop", order=11.1),
    )
    tau_help = (
        "Gumbel-softmax temperature of the vectors the generator feeds back to itself while "
        "sampling. Each character is the argmax of the relaxed sample, i.e. an exact draw from "
        "softmax(logits) whatever tau is; tau changes what the LSTM sees as its next input "
        "(training ends at tau_end, 1 in the paper preset; lower is closer to one-hot). "
        "Ignored for models trained with hard=true, which always feed back one-hots."
    )

    def defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        table = PRESETS[given.get("preset", GANOptions.preset)]
        out = {k: v for k, v in table.items() if k in _OPTION_NAMES}
        iterations = given.get("iterations", out.get("iterations", GANOptions.iterations))
        out["gen_batch"] = given.get("batch_size", out.get("batch_size", GANOptions.batch_size))
        out["anneal_iters"] = max(1, round(iterations * table["anneal_iters_fraction"]))
        out["pretrain_iters"] = round(iterations * table["pretrain_iters_fraction"])
        return out

    def memory_estimate(self, options: BaseOptions, *, vocab_size: int, max_len: int) -> int:
        assert isinstance(options, GANOptions)
        o = options
        v, hg, hd = vocab_size, o.hidden_g, o.hidden_d
        # Parameters with their gradients and two Adam moments (x4), float32.
        params = 4 * (lstm_parameters(hg, v) + lstm_parameters(hd, v))
        # Per-step tensors kept for the backward pass (gates, states, relaxed samples), with
        # a factor 3 for temporaries; the D pass sees real and generated strings together.
        g_acts = o.gen_batch * max_len * (6 * hg + 3 * v)
        d_acts = (o.batch_size + o.gen_batch) * max_len * (6 * hd + 2 * v)
        return 4 * (params + 3 * (g_acts + d_acts)) + sampling_bytes(GANTrainer.sample_chunk, max_len, v, hg)


@hookimpl
def register_backends(register) -> None:  # noqa: ANN001 - pluggy passes a plain callable
    register(GumbelLSTMGAN())
