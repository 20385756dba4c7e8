"""``BaseTrainer``: the part of a trainer that is the same for every backend.

A backend's trainer subclasses it and writes three methods: ``build`` (modules and optimisers),
``train_step`` (one iteration) and ``draw`` (one chunk of samples), and lists in
``checkpointed`` the attributes whose ``state_dict()`` a checkpoint holds. The base class owns
the device and the training data, the seeding of the initial weights, the training stream and
its save/restore, the guard against training a trainer made for sampling, and sampling in chunks.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar

import torch

from .backend import BaseOptions, Trainer
from .constrained import MaskTable, StepMask
from .gumbel import check_tau
from .seed import init_seed, restore_generator


class BaseTrainer(Trainer):
    """A trainer over a training set of ids, with one random stream seeded from the run seed."""

    #: Attributes (modules, optimisers) saved in a checkpoint under their own names.
    checkpointed: ClassVar[tuple[str, ...]] = ()
    #: Rows per chunk in ``sample_ids``: big enough to amortise per-op overhead, small enough
    #: for the per-step tensors to stay in cache.
    sample_chunk: int = 16384
    #: True when ``train_step`` honours grammar masks (``-o mask=grammar``): the core then calls
    #: ``use_grammar_masks`` before training, and the backend trains through ``masks`` and
    #: ``minibatch_masked`` (see the built-ins).
    supports_masked_training: ClassVar[bool] = False
    #: Set by ``use_grammar_masks``; None when training without masks.
    masks: MaskTable | None = None

    def __init__(
        self,
        *,
        vocab_size: int,
        max_len: int,
        data: torch.Tensor,
        options: BaseOptions,
        device: torch.device,
        seed: int,
    ) -> None:
        self.options = options
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.device = torch.device(device)
        self.data = data.to(self.device, torch.long)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.steps_done = 0
        # Module initialisers draw from torch's global CPU generator: build runs in a fork of
        # it seeded from the run, so the weights depend on the seed alone and the caller's
        # generator is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed(seed))
            self.build()

    @abc.abstractmethod
    def build(self) -> None:
        """Create the modules (on ``self.device``) and optimisers from ``self.options``."""

    @abc.abstractmethod
    def train_step(self, iteration: int) -> dict[str, float]:
        """One training iteration, drawing only from ``self.generator``; scalar metrics out."""

    @abc.abstractmethod
    def draw(self, n: int, tau: float, generator: torch.Generator, mask: StepMask | None = None) -> torch.Tensor:
        """``n`` sequences ``[n, max_len]`` of ids at the checked temperature ``tau``, drawn
        from ``generator`` only (called without gradients, once per chunk). A backend that sets
        ``supports_mask`` gets a started ``mask`` here (only then) and calls ``mask.apply`` on
        each step's scores before picking ids and ``mask.advance`` after."""

    def minibatch(self, n: int) -> torch.Tensor:
        """``n`` training rows ``[n, max_len]``, uniformly with replacement, from the training stream."""
        return self.data[self._minibatch_index(n)]

    def minibatch_masked(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``minibatch(n)`` (the same draw) and, per row and position, the ids the grammar
        allows there ``[n, max_len, V]`` (after ``use_grammar_masks``)."""
        assert self.masks is not None, "use_grammar_masks was not called"
        idx = self._minibatch_index(n)
        return self.data[idx], self.masks.allowed[self._row_states[idx]]

    def _minibatch_index(self, n: int) -> torch.Tensor:
        if self.data.shape[0] == 0:
            raise RuntimeError("this trainer has no training data (it was created for sampling)")
        return torch.randint(self.data.shape[0], (n,), generator=self.generator, device=self.device)

    def use_grammar_masks(self, table: MaskTable) -> None:
        """Train with the grammar's masks: keep ``table`` and the mask state of every position
        of every training row (a row the grammar does not allow is a one-line error)."""
        self.masks = table
        self._row_states = table.states_of(self.data)

    def step(self, iteration: int) -> dict[str, float]:
        metrics = self.train_step(iteration)
        self.steps_done += 1
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state = {name: getattr(self, name).state_dict() for name in self.checkpointed}
        state["rng"] = self.generator.get_state()
        state["steps_done"] = self.steps_done
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.checkpointed:
            getattr(self, name).load_state_dict(state[name])
        restore_generator(self.generator, state["rng"])
        self.steps_done = int(state.get("steps_done", 0))

    @torch.no_grad()
    def sample_ids(
        self,
        n: int,
        tau: float,
        generator: torch.Generator,
        mask: Callable[[int], StepMask] | None = None,
    ) -> torch.Tensor:
        """``draw`` for successive chunks of at most ``sample_chunk`` rows, concatenated.

        Chunks keep the per-step tensors small however many samples are asked for; every chunk
        draws from ``generator``, so the stream is the same as one big draw split the same way.
        ``mask(k)`` makes the started ``StepMask`` of a chunk of ``k`` rows (constrained
        sampling; only for a trainer whose ``supports_mask`` is set).
        """
        tau = check_tau(tau)
        if mask is not None and not self.supports_mask:
            raise TypeError(f"{type(self).__name__} does not apply step masks (supports_mask is False)")
        chunk = self.sample_chunk
        parts = []
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            parts.append(self.draw(k, tau, generator) if mask is None else self.draw(k, tau, generator, mask=mask(k)))
        if not parts:
            return torch.empty((0, self.max_len), dtype=torch.long, device=self.device)
        return torch.cat(parts)
