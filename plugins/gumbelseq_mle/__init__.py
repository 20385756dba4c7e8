"""Backend ``mle-lstm``: the maximum-likelihood LSTM the paper shows "for reference".

Teacher-forced: the input at step t is the one-hot of the true symbol t-1 (``y_0 = 0``), the
initial state is zero, and the cross-entropy covers all ``max_len`` positions including the
pads, so the length distribution is learned. Sampling is ancestral: a Gumbel-max draw from
``softmax(logits / tau)`` per step, its one-hot fed back. The network is
``gumbelseq.model.lstm.FeedbackLSTM``, the same one the GAN's generator uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gumbelseq.model.backend import Backend, BaseOptions
from gumbelseq.model.constrained import StepMask
from gumbelseq.model.hookspecs import hookimpl
from gumbelseq.model.lstm import FeedbackLSTM, lstm_parameters, sampling_bytes
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


class MLETrainer(BaseTrainer):
    """Teacher-forced maximum-likelihood training of a ``FeedbackLSTM``."""

    supports_mask = True
    supports_masked_training = True

    options: MLEOptions
    checkpointed = ("net", "opt")

    def build(self) -> None:
        o = self.options
        self.net = FeedbackLSTM(self.vocab_size, o.hidden).to(self.device)
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
        zeros = torch.zeros((n, self.options.hidden), device=self.device)
        return self.net.sample((zeros, zeros), self.max_len, tau, generator, feedback="ancestral", mask=mask)


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
    )
    tau_help = (
        "Sampling temperature: each character is drawn from softmax(logits / tau). 1 samples "
        "the model's own distribution; below 1 is greedier, above 1 flatter."
    )

    def memory_estimate(self, options: BaseOptions, *, vocab_size: int, max_len: int) -> int:
        assert isinstance(options, MLEOptions)
        h = options.hidden
        params = 4 * lstm_parameters(h, vocab_size)  # weights, gradients, two Adam moments
        acts = options.batch_size * max_len * (6 * h + 3 * vocab_size)  # kept for backward
        return 4 * (params + 3 * acts) + sampling_bytes(MLETrainer.sample_chunk, max_len, vocab_size, h)


@hookimpl
def register_backends(register) -> None:  # noqa: ANN001 - pluggy passes a plain callable
    register(MLELSTM())
