"""Backend ``mle-lstm``: the maximum-likelihood LSTM the paper shows "for reference".

Teacher-forced: the input at step t is the one-hot of the true symbol t-1 (``y_0 = 0``), the
initial state is zero, and the cross-entropy covers all ``max_len`` positions including the
pads, so the length distribution is learned. Sampling is ancestral: a Gumbel-max draw from
``softmax(logits / tau)`` per step, its one-hot fed back. The network is
``gumbelseq.model.lstm.FeedbackLSTM``, the same one the GAN's generator uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from gumbelseq.model.backend import Backend, BaseOptions
from gumbelseq.model.constrained import StepMask
from gumbelseq.model.hookspecs import hookimpl
from gumbelseq.model.lstm import FeedbackLSTM, sampling_bytes
from gumbelseq.model.stacked import (
    KERNELS, MATMULS, StackedLSTM, check_kernel, default_kernel, sample_chunk_rows, stacked_parameters,
)
from gumbelseq.model.suite import ModelSpec
from gumbelseq.model.trainer import BaseTrainer

__all__ = ["MLELSTM", "MLEOptions", "MLETrainer", "register_backends"]

_BETA = {"min": 0, "lt": 1}


@dataclass
class MLEOptions(BaseOptions):
    """Options of ``mle-lstm``."""

    iterations: int = 5000
    batch_size: int = 200
    #: LSTM state size. 32 = the generator size of the GAN's ``best`` preset, so the baseline is
    #: never the weaker network (``hidden=10`` is the paper's size; on arith it reaches ~99%
    #: valid samples either way, 32 a little more).
    hidden: int = field(default=32, metadata={"min": 1})
    lr: float = field(default=1e-3, metadata={"gt": 0})
    beta1: float = field(default=0.9, metadata=_BETA)
    beta2: float = field(default=0.999, metadata=_BETA)
    #: ``grammar``: a masked softmax in the loss, over the characters the grammar allows at each
    #: position (and samples are then always constrained).
    mask: str = field(default="none", metadata={"choices": ("none", "grammar")})
    #: LSTM layers (more than 1 needs kernel v2).
    layers: int = field(default=1, metadata={"min": 1, "max": 8})
    #: v1: the one-layer kernels every run made before this option used (their results, bit
    #: for bit); v2: any number of layers, products batched over time (much faster at big
    #: states), other float rounding. Default: v1 unless layers or matmul ask for v2.
    kernel: str = field(default="v1", metadata={"choices": KERNELS})
    #: Precision of v2's matrix products (float32 accumulation either way).
    matmul: str = field(default="float32", metadata={"choices": MATMULS})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_kernel(self.kernel, {"layers": self.layers}, self.matmul)


#: The ``moses`` suite's MLE row: state 256 (MOSES's CharRNN has 3 layers of 768, which does
#: not fit ~25 minutes of one CPU core), one layer, batch 128 (twice the GAN's: per string a
#: product over 128 rows runs faster than over 64). Iterations: about 20 minutes on this
#: project's 2-core machine, one thread, measured on the first 100,000 MOSES training SMILES
#: (2026-12-01, torch 2.13 CPU, the machine shared with two other jobs): 133 ms of CPU per
#: iteration, so 9,000 iterations ~ 20 minutes (1.15 million strings, 11.5 passes over the
#: suite's 100,000), leaving room under 25 for evaluations, checkpoints and a busier machine.
#: Kernel v1 (the default): here oneDNN's fused LSTM, which v2 does not beat for teacher forcing.
#: That machine was an Intel Xeon with AMX; on the 2-core AMD EPYC that replaced it (2026-12-07,
#: idle, 300 iterations timed from the checkpoint's train_seconds) an iteration takes 294 ms with
#: one thread and 183 ms with two: 44 and 27.5 minutes for 9,000.
MOSES_OPTIONS: dict[str, int] = {"hidden": 256, "batch_size": 128, "iterations": 9000}


class MLETrainer(BaseTrainer):
    """Teacher-forced maximum-likelihood training of a ``FeedbackLSTM``."""

    supports_mask = True
    supports_masked_training = True

    options: MLEOptions
    checkpointed = ("net", "opt")

    def build(self) -> None:
        o = self.options
        if o.kernel == "v1":
            self.net: FeedbackLSTM | StackedLSTM = FeedbackLSTM(self.vocab_size, o.hidden).to(self.device)
        else:
            self.net = StackedLSTM(self.vocab_size, o.hidden, o.layers, o.matmul).to(self.device)
            self.sample_chunk = sample_chunk_rows(o.hidden, o.layers)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), fused=True)

    def train_step(self, iteration: int) -> dict[str, float]:
        if self.masks is None:
            loss = self.net.mle_loss(self.minibatch(self.options.batch_size))
        else:
            ids, allowed = self.minibatch_masked(self.options.batch_size)
            loss = self.net.mle_loss(ids, allowed=allowed)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def draw(self, n: int, tau: float, generator: torch.Generator, mask: StepMask | None = None) -> torch.Tensor:
        """Ancestral samples from ``softmax(logits / tau)``."""
        if isinstance(self.net, StackedLSTM):
            state = self.net.zero_state(n)
        else:
            zeros = torch.zeros((n, self.options.hidden), device=self.device)
            state = (zeros, zeros)
        return self.net.sample(state, self.max_len, tau, generator, feedback="ancestral", mask=mask)


class MLELSTM(Backend):
    name = "mle-lstm"
    description = "Teacher-forced maximum-likelihood LSTM (the paper's reference baseline)"
    Options = MLEOptions
    trainer_class = MLETrainer
    progress_metrics = ("loss",)
    reproduce_suite = (
        ModelSpec("mle", "MLE LSTM", {}, "teacher-forced LSTM, the paper's reference", order=0),
        ModelSpec("mle-constrained", "MLE LSTM, constrained sampling", {}, "the MLE run, sampled inside the grammar's masks",
                  order=10, sample_of="mle", constrained=True),
        ModelSpec("mle-masked", "MLE LSTM, masked training", {"mask": "grammar"},
                  "masked softmax in the loss (samples are masked too)", order=11),
        # MOSES: see MOSES_OPTIONS for the sizes and the measurement behind the iterations.
        ModelSpec("mle-moses", "MLE LSTM (state 256)", MOSES_OPTIONS,
                  f"teacher-forced LSTM, state 256, batch 128; {MOSES_OPTIONS['iterations']:,} iterations,"
                  " ~20 min on one core of an Intel Xeon with AMX (133 ms/it), 27.5 min on two cores"
                  " of an AMD EPYC (183 ms/it)", order=0, suite="moses"),
        ModelSpec("mle-moses-constrained", "MLE LSTM (state 256), constrained sampling", {},
                  "the MLE run, sampled inside the SMILES grammar's masks", order=10, sample_of="mle-moses",
                  constrained=True, suite="moses"),
    )
    tau_help = (
        "Sampling temperature: each character is drawn from softmax(logits / tau). 1 samples "
        "the model's own distribution; below 1 is greedier, above 1 flatter."
    )

    def defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return {"kernel": default_kernel(given, ("layers",))}

    def memory_estimate(self, options: BaseOptions, *, vocab_size: int, max_len: int) -> int:
        assert isinstance(options, MLEOptions)
        h, layers = options.hidden, options.layers
        params = 4 * stacked_parameters(h, vocab_size, layers)  # weights, gradients, two Adam moments
        acts = options.batch_size * max_len * (6 * h * layers + 3 * vocab_size)  # kept for backward
        chunk = MLETrainer.sample_chunk if options.kernel == "v1" else sample_chunk_rows(h, layers)
        return 4 * (params + 3 * acts) + sampling_bytes(chunk, max_len, vocab_size, h * layers)


@hookimpl
def register_backends(register) -> None:  # noqa: ANN001 - pluggy passes a plain callable
    register(MLELSTM())
