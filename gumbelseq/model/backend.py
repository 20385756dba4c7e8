"""What a backend is: the contract between the generic training loop and a model family.

A backend is registered through the ``register_backends`` plugin hook (see ``hookspecs.py``).
The core only ever talks to these classes; it never imports a concrete backend. Most of a
trainer is the same for every backend; ``trainer.BaseTrainer`` holds that part.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch

from .options import build_options, check_options
from .suite import ModelSpec

if TYPE_CHECKING:
    from .trainer import BaseTrainer


@dataclass
class BaseOptions:
    """Fields every backend's options dataclass has. Backends subclass and add their own, with
    their range checks declared in field metadata (see ``options.py``).

    ``iterations`` and ``batch_size`` are also settable through ``--iterations`` and
    ``--batch-size``; everything else arrives through ``-o key=value``.
    """

    iterations: int = field(default=1000, metadata={"min": 1})
    batch_size: int = field(default=200, metadata={"min": 1})

    def __post_init__(self) -> None:
        # A subclass with checks across fields overrides this and calls it first.
        check_options(self)


class Trainer(abc.ABC):
    """A model being trained. Owns its modules, optimisers and random stream.

    All randomness of training must come from ``self.generator`` (a ``torch.Generator`` seeded
    from the run seed) so that ``state_dict()`` / ``load_state_dict()`` make resumption exact.
    """

    #: Set by ``Backend.create``; the generic loop reads them.
    options: BaseOptions
    generator: torch.Generator
    #: True when ``sample_ids`` takes ``mask=`` (a function of a row count returning a started
    #: ``gumbelseq.model.constrained.StepMask``) and applies it to every step's scores: the
    #: hook constrained sampling (``sample --constrained``) needs. Without it, constrained
    #: sampling is a one-line error naming the backend.
    supports_mask: ClassVar[bool] = False

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

        Uses only ``generator`` for randomness and does not touch the training stream. A trainer
        with ``supports_mask`` also takes ``mask=`` (see there).
        """


class Backend(abc.ABC):
    """A model family that can be trained and sampled."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: A dataclass subclassing ``BaseOptions``.
    Options: ClassVar[type[BaseOptions]]
    #: Metrics ``reproduce`` plots in ``losses.png`` (default: ``progress_metrics``).
    plot_metrics: ClassVar[tuple[str, ...]] = ()
    #: The backend ``train`` uses when none is named (the core names none itself); exactly one
    #: registered backend should set it.
    default: ClassVar[bool] = False
    #: What the default ``create`` builds: usually a ``trainer.BaseTrainer`` subclass.
    trainer_class: ClassVar[type[BaseTrainer]]
    #: One paragraph on what ``gumbelseq sample --tau`` means here (shown by ``backends --json``).
    tau_help: ClassVar[str] = ""
    #: The step metrics a live progress display shows, in this order; empty: all of them.
    progress_metrics: ClassVar[tuple[str, ...]] = ()
    #: This backend's rows of ``gumbelseq reproduce`` (none: it is not in the reproduction).
    reproduce_suite: ClassVar[tuple[ModelSpec, ...]] = ()

    def defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Presets and derived defaults: values for the options missing from ``given``.

        ``given`` holds the options the user set, typed and each within its declared range;
        values returned for keys in ``given`` are ignored (what the user set wins). Options
        missing from both take the dataclass's defaults.
        """
        return {}

    def make_options(self, values: Mapping[str, Any] | None = None) -> BaseOptions:
        """The complete, checked options from ``values`` (``-o`` strings or typed values, as
        given or as saved in a run's config): the only way options are built, once per run."""
        return build_options(self.Options, dict(values or {}), self.defaults)

    def memory_estimate(self, options: BaseOptions, *, vocab_size: int, max_len: int) -> int | None:
        """A rough upper bound, in bytes, of what creating the trainer and running one
        training step and one sampling chunk need; ``None``: unknown (nothing is checked).

        The core refuses a run whose estimate exceeds the device's free memory before it
        allocates anything, so an impossible size is a one-line error, not a crash later.
        """
        return None

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
        """Build a fresh trainer from options made by ``make_options``.

        ``data`` is a LongTensor ``[N, max_len]`` of ids on ``device``, right-padded with 0.
        ``vocab_size`` counts the pad. Loading a saved run calls ``create`` with the same
        arguments (``data`` may then be empty: ``[0, max_len]``) followed by ``load_state_dict``.
        """
        return self.trainer_class(
            vocab_size=vocab_size, max_len=max_len, data=data, options=options, device=device, seed=seed
        )
