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
from gumbelseq.model.lstm import sampling_bytes
from gumbelseq.model.stacked import KERNELS, MATMULS, check_kernel, default_kernel, sample_chunk_rows, stacked_parameters
from gumbelseq.model.suite import ModelSpec
from gumbelseq.model.trainer import BaseTrainer

from .model import SCHEDULES, Generator, make_discriminator, real_log_probs, real_vectors, temperature

__all__ = ["GumbelLSTMGAN", "GANOptions", "GANTrainer", "PRESETS", "register_backends"]

G_LOSSES = ("kl", "nonsat")
ANNEAL = ("both", "real")
NOISE = ("h0c0", "h0")

#: Iterations of the ``moses`` preset (and its row of the ``moses`` suite): about 21 minutes of
#: training on this project's 2-core machine, one thread, measured with 30 iterations of each
#: phase on the first 100,000 MOSES training SMILES (2026-12-01, torch 2.13 CPU, the machine
#: shared with two other jobs): an MLE-only iteration (before d_start) 69 ms of CPU, a
#: pre-training iteration with D 158 ms, an adversarial one (with its MLE term) 221 ms, i.e.
#: 0.72 x 69 + 0.08 x 158 + 0.2 x 221 = 107 ms per iteration on average: 12,000 iterations ~ 21
#: minutes, leaving room under 25 for evaluations, checkpoints and a busier machine.
#: (`python benchmarks/bench_train.py --preset moses` times the kernels.) That machine was an
#: Intel Xeon with AMX; on the 2-core AMD EPYC that replaced it (2026-12-07, idle, 600 iterations
#: of the preset, which keep its phase mix, timed from the checkpoint's train_seconds) an
#: iteration takes 188 ms with one thread and 156 ms with two: 37.5 and 31 minutes for 12,000.
MOSES_ITERATIONS = 12_000

#: Preset tables: what each preset changes from the option fields' defaults (which are
#: ``paper``). ``*_fraction`` keys are fractions of ``iterations``, ``d_start_share`` a fraction
#: of ``pretrain_iters`` (not option names).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        anneal_iters_fraction=0.5,  # 10,000 of 20,000
        pretrain_iters_fraction=0.0,
        d_start_share=0.0,
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
    # SMILES at MOSES's length 57 in ~25 minutes of one CPU core (see MOSES_ITERATIONS): the
    # `best` recipe at the biggest states that fit that budget, with the budget spent where it
    # buys most. G: state 256 (what fits; MOSES's CharRNN has 3 x 768). D: state 128, about a
    # quarter of G's cost per step (a GAN iteration costs 2-3 MLE steps). 80% MLE pre-training,
    # and D only in its last 10% (d_start): until then an iteration is a plain MLE step, not a
    # GAN iteration. One D step per G step. The v2 kernels (float32: same numbers on any CPU).
    # The adversarial phase keeps an MLE term (mle_weight 5) and ends at tau 1: in 500-iteration
    # trials after 1,200 of pre-training (seed 0), without the term grammar validity fell from
    # 60% to 0% (every sample "COOO..."), with weight 1 it swung between 0% and 49%, with
    # weight 5 and tau_end 1 it rose from 45% to 65%.
    "moses": dict(
        iterations=MOSES_ITERATIONS,
        kernel="v2",
        hidden_g=256,
        hidden_d=128,
        batch_size=64,
        hard=True,
        real_peak=1.0,
        pretrain_iters_fraction=0.8,
        d_start_share=0.9,
        anneal_iters_fraction=0.1,  # half of the adversarial phase
        d_steps=1,
        schedule="exponential",
        tau_start=2.0,
        tau_end=1.0,
        mle_weight=5.0,
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
    #: paper | best | moses. Sets every option not given (see ``PRESETS``).
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
    #: (preset default: a fraction of `iterations`: paper 0, best 10%, moses 80%).
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
    #: LSTM layers of G and of D (more than 1 needs kernel v2).
    layers_g: int = field(default=1, metadata={"min": 1, "max": 8})
    layers_d: int = field(default=1, metadata={"min": 1, "max": 8})
    #: v1: the one-layer kernels every run made before this option used (their results, bit
    #: for bit); v2: any number of layers, products batched over time (much faster at big
    #: states), other float rounding. Default: v1 unless layers or matmul ask for v2.
    kernel: str = field(default="v1", metadata={"choices": KERNELS})
    #: Precision of v2's matrix products (float32 accumulation either way).
    matmul: str = field(default="float32", metadata={"choices": MATMULS})
    #: The iteration at which D starts training (at most pretrain_iters). Before it G trains
    #: by MLE alone and nothing else runs (no generated batch, no D step), so an iteration costs
    #: one MLE step. Preset default: 0 (D trains from the start), moses: 90% of pretrain_iters.
    d_start: int = field(default=0, metadata={"min": 0})
    #: Weight of G's teacher-forced cross-entropy (on the D step's real minibatch) added to its
    #: adversarial loss after pre-training; 0 (the paper): none.
    mle_weight: float = field(default=0.0, metadata={"min": 0})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrain_iters > self.iterations:
            raise OptionError(
                f"option pretrain_iters={self.pretrain_iters} is invalid: expected an "
                f"integer <= iterations ({self.iterations})"
            )
        if self.d_start > self.pretrain_iters:
            raise OptionError(
                f"option d_start={self.d_start} is invalid: expected an integer <= pretrain_iters"
                f" ({self.pretrain_iters}): D must be trained before the adversarial phase"
            )
        check_kernel(self.kernel, {"layers_g": self.layers_g, "layers_d": self.layers_d}, self.matmul)


_OPTION_NAMES = frozenset(f.name for f in fields(GANOptions))


class GANTrainer(BaseTrainer):
    supports_mask = True
    supports_masked_training = True
    """Trains G and D of ``gumbel-lstm-gan``. All training randomness comes from ``generator``."""

    options: GANOptions
    checkpointed = ("G", "D", "opt_g", "opt_d")

    def build(self) -> None:
        o = self.options
        kernels = dict(kernel=o.kernel, matmul=o.matmul)
        self.G = Generator(self.vocab_size, o.hidden_g, o.noise, layers=o.layers_g, **kernels).to(self.device)
        self.D = make_discriminator(self.vocab_size, o.hidden_d, layers=o.layers_d, **kernels).to(self.device)
        if o.kernel != "v1":
            self.sample_chunk = sample_chunk_rows(o.hidden_g, o.layers_g)
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
        if iteration < o.d_start:
            return self._mle_step(tau_real, tau_g)
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
            fake_logits = self.D(fake, param_grads=False)  # G's step: only d/d fake is needed
            if o.g_loss == "kl":
                g_loss = -fake_logits.mean()  # -log[D/(1-D)] = -logit
            else:
                g_loss = F.softplus(-fake_logits).mean()  # -log D
        if pretrain:
            mle = self.G.net.mle_loss(real_ids, self.G.draw_state(b_real, gen), allowed)
            objective = mle
        elif o.mle_weight:
            # The MLE term anchors G to the data in the adversarial phase (drawn only when
            # asked for, so the default stream is the one every earlier run used).
            mle = self.G.net.mle_loss(real_ids, self.G.draw_state(b_real, gen), allowed)
            objective = g_loss + o.mle_weight * mle
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
        if pretrain or o.mle_weight:
            metrics["mle_loss"] = mle_v
        return metrics

    def _mle_step(self, tau_real: float, tau_g: float) -> dict[str, float]:
        """A pre-training iteration before ``d_start``: G's teacher-forced MLE step alone, from
        noise initial states (as in the pre-training iterations where D trains too)."""
        b_real = self.options.batch_size
        if self.masks is None:
            real_ids, allowed = self.minibatch(b_real), None
        else:
            real_ids, allowed = self.minibatch_masked(b_real)
        mle = self.G.net.mle_loss(real_ids, self.G.draw_state(b_real, self.generator), allowed)
        self.opt_g.zero_grad(set_to_none=True)
        mle.backward()
        self.opt_g.step()
        return {"mle_loss": mle.item(), "tau": tau_real, "tau_g": tau_g}

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
    progress_metrics = ("d_loss", "g_loss", "mle_loss", "tau")
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
        # MOSES: the preset made for SMILES; its iterations fit ~21 minutes (MOSES_ITERATIONS).
        ModelSpec("gan-moses", "GAN moses", {"preset": "moses", "iterations": MOSES_ITERATIONS},
                  "G state 256, D 128, 80% MLE pre-training (D in its last 10%), then adversarial with an"
                  f" MLE term; {MOSES_ITERATIONS:,} iterations, ~21 min on one core of an Intel Xeon with AMX"
                  " (107 ms/it), 31 min on two cores of an AMD EPYC (156 ms/it)",
                  order=1, suite="moses"),
        ModelSpec("gan-moses-constrained", "GAN moses, constrained sampling", {},
                  "the GAN moses run, sampled inside the SMILES grammar's masks", order=10.1, sample_of="gan-moses",
                  constrained=True, suite="moses"),
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
        pretrain = given.get("pretrain_iters", out["pretrain_iters"])
        out["d_start"] = round(pretrain * table["d_start_share"])
        merged = {**out, **given}
        out["kernel"] = default_kernel(merged, ("layers_g", "layers_d"), table.get("kernel", "v1"))
        return out

    def memory_estimate(self, options: BaseOptions, *, vocab_size: int, max_len: int) -> int:
        assert isinstance(options, GANOptions)
        o = options
        v, hg, hd = vocab_size, o.hidden_g, o.hidden_d
        # Parameters with their gradients and two Adam moments (x4), float32.
        params = 4 * (stacked_parameters(hg, v, o.layers_g) + stacked_parameters(hd, v, o.layers_d, out=1))
        # Per-step tensors kept for the backward pass (gates, states, relaxed samples) of every
        # layer, with a factor 3 for temporaries; the D pass sees real and generated strings
        # together.
        g_acts = o.gen_batch * max_len * (6 * hg * o.layers_g + 3 * v)
        d_acts = (o.batch_size + o.gen_batch) * max_len * (6 * hd * o.layers_d + 2 * v)
        chunk = GANTrainer.sample_chunk if o.kernel == "v1" else sample_chunk_rows(hg, o.layers_g)
        return 4 * (params + 3 * (g_acts + d_acts)) + sampling_bytes(chunk, max_len, v, hg * o.layers_g)


@hookimpl
def register_backends(register) -> None:  # noqa: ANN001 - pluggy passes a plain callable
    register(GumbelLSTMGAN())
