"""What a backend is: the contract between the generic training loop and a model family.

A backend is registered through the ``register_backends`` plugin hook (see ``hookspecs.py``).
The core only ever talks to these two classes; it never imports a concrete backend.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass
class BaseOptions:
    """Fields every backend's options dataclass has. Backends subclass and add their own.

    ``iterations`` and ``batch_size`` are also settable through ``--iterations`` and
    ``--batch-size``; everything else arrives through ``-o key=value``.
    """

    iterations: int = 1000
    batch_size: int = 200


class Trainer(abc.ABC):
    """A model being trained. Owns its modules, optimisers and random stream.

    All randomness of training must come from ``self.generator`` (a ``torch.Generator`` seeded
    from the run seed) so that ``state_dict()`` / ``load_state_dict()`` make resumption exact.
    """

    #: Set by ``Backend.create``; the generic loop reads them.
    options: BaseOptions
    generator: torch.Generator

    @abc.abstractmethod
    def step(self, iteration: int) -> dict[str, float]:
        """Run training iteration ``iteration`` (0-based) and return scalar metrics for the log."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: weights, optimiser states, RNG state.

        Only tensors, numbers, strings, lists and dicts: it is saved with ``torch.save`` and
        loaded with ``torch.load(weights_only=True)``.
        """

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def sample_ids(self, n: int, tau: float, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` sequences as a LongTensor ``[n, max_len]`` of vocabulary ids (0 is the pad).

        Uses only ``generator`` for randomness and does not touch the training stream.
        """


class Backend(abc.ABC):
    """A model family that can be trained and sampled."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: A dataclass subclassing ``BaseOptions``.
    Options: ClassVar[type[BaseOptions]]
    #: One paragraph on what ``gumbelseq sample --tau`` means here (shown by ``backends --json``).
    tau_help: ClassVar[str] = ""

    def resolve_options(self, options: BaseOptions) -> BaseOptions:
        """Hook for presets: return the options with preset-derived defaults filled in."""
        return options

    def memory_estimate(self, options: BaseOptions, *, vocab_size: int, max_len: int) -> int | None:
        """A rough upper bound, in bytes, of what creating the trainer and running one
        training step and one sampling chunk need; ``None``: unknown (nothing is checked).

        The core refuses a run whose estimate exceeds the device's free memory before it
        allocates anything, so an impossible size is a one-line error, not a crash later.
        """
        return None

    @abc.abstractmethod
    def create(
        self,
        *,
        vocab_size: int,
        max_len: int,
        data: torch.Tensor,
        options: BaseOptions,
        device: torch.device,
        seed: int,
    ) -> Trainer:
        """Build a fresh trainer.

        ``data`` is a LongTensor ``[N, max_len]`` of ids on ``device``, right-padded with 0.
        ``vocab_size`` counts the pad. Loading a saved run calls ``create`` with the same
        arguments (``data`` may then be empty: ``[0, max_len]``) followed by ``load_state_dict``.
        """
