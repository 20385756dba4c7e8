"""Networks and temperature schedules of the Gumbel-softmax LSTM GAN (Kusner & Hernandez-Lobato).

Kept free of training-loop and option logic so the modules can be read (and reused) alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gumbelseq.model.gumbel import gumbel_softmax, uniform
from gumbelseq.model.constrained import StepMask
from gumbelseq.model.lstm import FeedbackLSTM
from gumbelseq.model.stacked import SequenceClassifier, StackedLSTM

__all__ = [
    "Generator",
    "Discriminator",
    "make_discriminator",
    "temperature",
    "SCHEDULES",
    "real_log_probs",
    "real_vectors",
]

SCHEDULES = ("constant", "linear", "exponential", "inverse-linear")


class Generator(nn.Module):
    """LSTM generator: the noise z replaces the initial state, relaxed samples are fed back.

    ``noise="h0c0"`` (paper): ``z = (h0, C0) ~ U(0,1)^H`` drawn per sample (per layer, with
    ``layers > 1``: every layer's initial state is noise).
    ``noise="h0"`` (paper variant d): ``h0 ~ U(0,1)^H``, ``C0`` a learned vector (per layer).

    ``kernel="v1"`` is the one-layer network every run before kernels had a name used
    (``lstm.FeedbackLSTM``; states ``[B, H]``); ``"v2"`` is ``stacked.StackedLSTM`` (any number
    of layers, ``matmul`` precision; states ``[L, B, H]``).
    """

    def __init__(
        self, vocab_size: int, hidden_size: int, noise: str = "h0c0", *,
        layers: int = 1, kernel: str = "v1", matmul: str = "float32",
    ) -> None:
        super().__init__()
        if kernel == "v1":
            self.net: FeedbackLSTM | StackedLSTM = FeedbackLSTM(vocab_size, hidden_size)
        else:
            self.net = StackedLSTM(vocab_size, hidden_size, layers, matmul)
        self.layers = layers
        self.kernel = kernel
        self.noise = noise
        self.c0 = nn.Parameter(torch.zeros(layers * hidden_size)) if noise == "h0" else None

    @property
    def hidden_size(self) -> int:
        return self.net.hidden_size

    def draw_state(
        self, n: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample initial state ``(h0, C0)`` from the noise distribution, one rand call."""
        device = self.net.head.weight.device
        hs = self.hidden_size * self.layers
        if self.c0 is None:
            z = uniform((n, 2 * hs), generator=generator, device=device)
            h0, c0 = z[:, :hs], z[:, hs:]
        else:
            h0 = uniform((n, hs), generator=generator, device=device)
            c0 = self.c0.expand(n, hs)
        if self.kernel == "v1":
            return h0, c0
        # [n, L*H] -> [L, n, H]: layer l's state is columns l*H .. (l+1)*H of the draw.
        shape = (n, self.layers, self.hidden_size)
        return h0.reshape(shape).transpose(0, 1), c0.reshape(shape).transpose(0, 1)

    def forward(
        self,
        state: tuple[torch.Tensor, torch.Tensor],
        noise: torch.Tensor,
        tau: float,
        hard: bool = False,
        mask: StepMask | None = None,
    ) -> torch.Tensor:
        """Relaxed samples ``[T, B, V]`` from ``state`` and Gumbel ``noise [T, B, V]``, kept
        inside the grammar by ``mask`` when given."""
        return self.net.relaxed(state, noise, tau, hard=hard, mask=mask)


class Discriminator(nn.Module):
    """Many-to-one LSTM over ``[T, B, V]`` vectors; linear head on the final hidden state
    (kernel ``v1``: ``nn.LSTM``). Returns one logit per sequence (the sigmoid is implicit:
    losses use softplus)."""

    def __init__(self, vocab_size: int, hidden_size: int, layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(vocab_size, hidden_size, num_layers=layers)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor, *, param_grads: bool = True) -> torch.Tensor:
        # param_grads is a hint v1 ignores: nn.LSTM computes every gradient anyway.
        _, (h, _) = self.lstm(x)
        return self.head(h[-1]).squeeze(-1)


def make_discriminator(
    vocab_size: int, hidden_size: int, *, layers: int = 1, kernel: str = "v1", matmul: str = "float32"
) -> nn.Module:
    """D for ``kernel``: ``Discriminator`` (``v1``, ``nn.LSTM``) or the ``v2`` one."""
    if kernel == "v1":
        return Discriminator(vocab_size, hidden_size, layers)
    return SequenceClassifier(vocab_size, hidden_size, layers, matmul)


def real_log_probs(vocab_size: int, peak: float, device: torch.device) -> torch.Tensor:
    """``[V, V]`` table: row k is the log-distribution with ``peak`` on k, the rest spread evenly.

    ``peak = 1`` gives ``-inf`` off the diagonal, i.e. exact one-hots after Gumbel-softmax.
    """
    off = (1.0 - peak) / (vocab_size - 1) if vocab_size > 1 else 0.0
    table = torch.full((vocab_size, vocab_size), off, dtype=torch.float32, device=device)
    table.fill_diagonal_(peak)
    return table.log()


def temperature(
    schedule: str, iteration: int, start: float, end: float, anneal_iters: int
) -> float:
    """Temperature at 0-based ``iteration``: ``start`` at 0, ``end`` from ``anneal_iters - 1`` on.

    (The paper's "linear from 5 to 1 over iterations 1..10,000" with 1-based iterations.)
    ``inverse-linear`` moves ``1/tau`` linearly (the authors' script: 0.2 -> 1).
    """
    if schedule == "constant":
        return start
    frac = min(max(iteration, 0) / max(anneal_iters - 1, 1), 1.0)
    if schedule == "linear":
        return start + (end - start) * frac
    if schedule == "exponential":
        return start * math.exp(math.log(end / start) * frac)
    if schedule == "inverse-linear":
        return 1.0 / (1.0 / start + (1.0 / end - 1.0 / start) * frac)
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")


def real_vectors(
    ids: torch.Tensor, log_table: torch.Tensor, noise: torch.Tensor, tau: float, hard: bool,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Instance-noised real inputs ``[T, B, V]`` from ids ``[B, T]`` (no gradients needed).

    ``allowed`` ``[B, T, V]`` (masked training): the noise is kept to what the grammar allows at
    each position, as G's masked samples are; otherwise D tells real from fake by the mass the
    real vectors put on characters G can never write."""
    logits = log_table[ids.t()]
    if allowed is not None:
        logits = logits.masked_fill(~allowed.transpose(0, 1), float("-inf"))
    return gumbel_softmax(logits, tau, hard=hard, noise=noise)
