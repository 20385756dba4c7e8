"""Backend ``mle-lstm``: the maximum-likelihood LSTM the paper shows "for reference".

Teacher-forced: the input at step t is the one-hot of the true symbol t-1 (``y_0 = 0``), the
initial state is zero, and the cross-entropy covers all ``max_len`` positions including the
pads, so the length distribution is learned. Sampling is ancestral: a Gumbel-max draw from
``softmax(logits / tau)`` per step, its one-hot fed back. The network is
``gumbelseq.model.lstm.FeedbackLSTM``, the same one the GAN's generator uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from gumbelseq.model.backend import Backend, BaseOptions, Trainer
from gumbelseq.errors import OptionError
from gumbelseq.model.gumbel import check_tau
from gumbelseq.model.hookspecs import hookimpl
from gumbelseq.model.seed import restore_generator
from gumbelseq.model.lstm import FeedbackLSTM, lstm_parameters, sample_in_chunks, sampling_bytes

__all__ = ["MLELSTM", "MLEOptions", "MLETrainer", "register_backends"]


@dataclass
class MLEOptions(BaseOptions):
    """Options of ``mle-lstm``."""

    iterations: int = 5000
    batch_size: int = 200
    #: LSTM state size. 32 = the generator size of the GAN's ``best`` preset, so the baseline is
    #: never the weaker network (``hidden=10`` is the paper's size; on arith it reaches ~99%
    #: valid samples either way, 32 a little more).
    hidden: int = 32
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999

    def __post_init__(self) -> None:
        for name, low in (("iterations", 1), ("batch_size", 1), ("hidden", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise OptionError(
                    f"option {name}={value!r} is invalid: expected an integer >= {low}"
                )
        if not (_is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise OptionError(f"option lr={self.lr!r} is invalid: expected a finite number > 0")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (_is_number(value) and 0.0 <= value < 1.0):
                raise OptionError(
                    f"option {name}={value!r} is invalid: expected a number in [0, 1)"
                )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class MLETrainer(Trainer):
    """Teacher-forced maximum-likelihood training of a ``FeedbackLSTM``."""

    sample_chunk = 16384

    def __init__(
        self,
        *,
        vocab_size: int,
        max_len: int,
        data: torch.Tensor,
        options: MLEOptions,
        device: torch.device,
        seed: int,
    ) -> None:
        self.options = options
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.device = torch.device(device)
        self.data = data.to(self.device, torch.long)
        with torch.random.fork_rng(devices=[]):
            # Derived seed: initial weights must not reuse the training stream's first numbers.
            torch.manual_seed((seed * 6364136223846793005 + 1442695040888963407) % (2**63))
            self.net = FeedbackLSTM(vocab_size, options.hidden).to(self.device)
        self.opt = torch.optim.Adam(
            self.net.parameters(), lr=options.lr, betas=(options.beta1, options.beta2), fused=True
        )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.steps_done = 0

    def step(self, iteration: int) -> dict[str, float]:
        if self.data.shape[0] == 0:
            raise RuntimeError("this trainer has no training data (it was created for sampling)")
        idx = torch.randint(
            self.data.shape[0],
            (self.options.batch_size,),
            generator=self.generator,
            device=self.device,
        )
        loss = self.net.mle_loss(self.data[idx])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.steps_done += 1
        return {"loss": loss.item()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "rng": self.generator.get_state(),
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        restore_generator(self.generator, state["rng"])
        self.steps_done = int(state.get("steps_done", 0))

    @torch.no_grad()
    def sample_ids(self, n: int, tau: float, generator: torch.Generator) -> torch.Tensor:
        """Ancestral samples ``[n, max_len]`` from ``softmax(logits / tau)``."""
        tau = check_tau(tau)
        hs = self.options.hidden

        def draw(m: int) -> torch.Tensor:
            zeros = torch.zeros((m, hs), device=self.device)
            return self.net.sample((zeros, zeros), self.max_len, tau, generator, feedback="ancestral")

        return sample_in_chunks(n, self.sample_chunk, self.max_len, self.device, draw)


class MLELSTM(Backend):
    name = "mle-lstm"
    description = "Teacher-forced maximum-likelihood LSTM (the paper's reference baseline)"
    Options = MLEOptions
    tau_help = (
        "Sampling temperature: each character is drawn from softmax(logits / tau). 1 samples "
        "the model's own distribution; below 1 is greedier, above 1 flatter."
    )

    def memory_estimate(self, options: BaseOptions, *, vocab_size: int, max_len: int) -> int:
        h = getattr(options, "hidden", MLEOptions.hidden)
        params = 4 * lstm_parameters(h, vocab_size)  # weights, gradients, two Adam moments
        acts = options.batch_size * max_len * (6 * h + 3 * vocab_size)  # kept for backward
        return 4 * (params + 3 * acts) + sampling_bytes(MLETrainer.sample_chunk, max_len, vocab_size, h)

    def create(
        self,
        *,
        vocab_size: int,
        max_len: int,
        data: torch.Tensor,
        options: BaseOptions,
        device: torch.device,
        seed: int,
    ) -> MLETrainer:
        if not isinstance(options, MLEOptions):
            options = MLEOptions(iterations=options.iterations, batch_size=options.batch_size)
        return MLETrainer(
            vocab_size=vocab_size,
            max_len=max_len,
            data=data,
            options=options,
            device=device,
            seed=seed,
        )


@hookimpl
def register_backends(register) -> None:  # noqa: ANN001 - pluggy passes a plain callable
    register(MLELSTM())
