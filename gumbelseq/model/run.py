"""A trained run, loaded for sampling: ``load_run(dir).sample(100, tau=1.0, seed=0)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from ..errors import RunError
from ..lang.masks import GrammarMasks, grammar_masks
from ..lang.grammar import load_grammar
from . import rundir
from .constrained import MaskTable, StepMask
from .backend import Backend, Trainer
from .gumbel import check_tau
from .memory import OutOfMemory, available_bytes, is_oom
from .registry import get_backend
from .rundir import TrainConfig, check_seed
from .train import build_trainer, load_trainer_state, masked_training, resolve_device
from .vocab import Vocabulary

CHUNK = 65536
#: Memory a state numbered by a run's mask engines (grammar and intersection) takes, with the
#: search verdicts, automaton states and table rows that come with it: ~1.3 KB (measured with
#: ``smiles-valence``: 1,060,000 states in 1.36 GB).
MASK_STATE_BYTES = 1300
#: The share of the memory available when sampling starts that the masks may take.
MASK_MEMORY_SHARE = 0.25


def mask_states_limit() -> int:
    """States past which sampling drops a run's masks between the backend's chunks and builds
    them afresh (``Run.forget_masks``): a quarter of the memory available now, at ~1.3 KB a
    state; at least 100,000. Nearly every sample meets states no other did (a length, a ring or
    valence situation), so without a bound the masks grow with n (10,000 MOSES samples with
    ``smiles-valence`` held 2.3 GB). The masks, so the samples, are the same either way; only
    time is lost, re-deriving states the dropped engines knew."""
    free = available_bytes(torch.device("cpu"))
    if free is None:
        return 1_000_000
    return max(100_000, int(free * MASK_MEMORY_SHARE) // MASK_STATE_BYTES)


@dataclass
class Run:
    run_dir: Path
    config: TrainConfig
    backend: Backend
    trainer: Trainer
    vocab: Vocabulary
    device: torch.device
    iteration: int
    #: Where loose plugin files are (backends, automata), as ``load_run`` was given.
    plugins_dir: str | Path | None = None
    _constraints: dict[tuple[str, ...], GrammarMasks] = field(default_factory=dict, repr=False)
    _mask_tables: dict[tuple[str, ...], MaskTable] = field(default_factory=dict, repr=False)
    #: Search budgets spent by intersections since dropped (``search_gave_up``).
    _gave_up: dict[tuple[str, ...], int] = field(default_factory=dict, repr=False)
    #: Times the masks were dropped and rebuilt while sampling (see ``mask_states_limit``).
    mask_resets: int = 0

    def sample_iter(
        self, n: int, *, tau: float = 1.0, seed: int = 0, constrained: bool = False, automata: Sequence[str] = ()
    ) -> Iterator[list[str]]:
        """Samples in chunks (bounded memory for any ``n``), one random stream for all chunks.

        ``tau``, ``seed`` and whether ``constrained`` sampling is possible are checked here,
        before the first chunk, so a bad value fails before any output is written.
        ``constrained``: every sample is valid and fits ``max_len`` (see ``constraint``).
        ``automata``: names of character automata (``gumbelseq.lang.automaton``) every sample
        must also satisfy; they imply ``constrained``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        tau = check_tau(tau)
        masks = None
        names = tuple(automata)
        if constrained or names or masked_training(self.trainer.options):  # a masked model only makes sense masked
            self.mask_table(names)  # an impossible constraint fails here, before any output
            masks = self._step_masks(names)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(check_seed(seed))
        return self._chunks(n, tau, gen, masks)

    def _step_masks(self, names: tuple[str, ...]) -> Callable[[int], StepMask]:
        """The backend's mask factory, called once per sampling chunk: past
        ``mask_states_limit()`` states the masks are dropped first (no row of the chunk before
        holds a state any more), and rebuilt as the new chunk meets its states."""
        limit = mask_states_limit()

        def make(k: int) -> StepMask:
            if self.mask_states() > limit:
                self.forget_masks()
            return StepMask(self.mask_table(names), k)

        return make

    def mask_states(self) -> int:
        """States numbered so far by this run's mask engines (all sets of automata)."""
        return sum(int(getattr(engine, "states", 0)) for engine in self._constraints.values())

    def forget_masks(self) -> None:
        """Drop every mask engine, table and automaton cache of this run (rebuilt on use)."""
        for names in list(self._constraints):
            self._gave_up[names] = self.search_gave_up(names)
        self._constraints.clear()
        self._mask_tables.clear()
        self.mask_resets += 1

    def search_gave_up(self, automata: Sequence[str] = ()) -> int:
        """Times the search for a completion ran out of its budget while sampling with these
        automata, over this run's life (see ``IntersectedMasks.gave_up``)."""
        names = tuple(automata)
        engine = self._constraints.get(names)
        return self._gave_up.get(names, 0) + int(getattr(engine, "gave_up", 0))

    def constraint(self, automata: Sequence[str] = ()) -> GrammarMasks:
        """The run's grammar as next-character masks over its vocabulary, for prefixes of at
        most ``max_len`` characters, intersected with the named ``automata`` (built once per
        run and set of automata). A backend whose trainer does not apply step masks, a grammar
        the mask engine cannot handle, or an unknown automaton is a one-line error."""
        names = tuple(automata)
        if names in self._constraints:
            return self._constraints[names]
        if names:
            from ..lang.automaton import fresh_automaton, get_automaton
            from ..lang.intersection import IntersectedMasks

            # An unknown name fails before any work; fresh: no cache from an earlier build.
            chosen = [fresh_automaton(get_automaton(name, self.plugins_dir)) for name in names]
            self._constraints[names] = IntersectedMasks(self.constraint(), chosen)
            return self._constraints[names]
        if not getattr(self.trainer, "supports_mask", False):
            raise RunError(
                f"{self.run_dir}: backend {self.config.backend} does not expose its per-step"
                " scores to masks (its trainer's supports_mask is not set), so it cannot sample"
                " constrained"
            )
        grammar = load_grammar(self.run_dir / rundir.GRAMMAR, start=self.config.start)
        self._constraints[()] = grammar_masks(grammar, self.config.max_len, self.vocab.chars)
        return self._constraints[()]

    def mask_table(self, automata: Sequence[str] = ()) -> MaskTable:
        """The run's masks as tensors on its device (built once, grown as states occur;
        sampling drops them past ``mask_states_limit()`` engine states, see ``forget_masks``)."""
        names = tuple(automata)
        if names not in self._mask_tables:
            self._mask_tables[names] = MaskTable(self.constraint(names), self.vocab, self.device)
        return self._mask_tables[names]

    def _chunks(self, n: int, tau: float, gen: torch.Generator, masks) -> Iterator[list[str]]:  # noqa: ANN001
        done = 0
        while done < n:
            k = min(CHUNK, n - done)
            try:
                ids = self.trainer.sample_ids(k, tau, gen) if masks is None else self.trainer.sample_ids(k, tau, gen, mask=masks)
            except Exception as e:
                if is_oom(e):
                    raise OutOfMemory(f"{self.run_dir}: out of memory sampling on {self.device}") from None
                raise
            yield self.vocab.decode(ids)
            done += k

    def sample(
        self, n: int = 100, *, tau: float = 1.0, seed: int = 0, constrained: bool = False, automata: Sequence[str] = ()
    ) -> list[str]:
        """``n`` strings, padding removed. Same seed, same strings (on the same machine).
        ``constrained``: every string valid and at most ``max_len`` long; ``automata``: and
        accepted by each of these character automata (``gumbelseq.lang.automaton``)."""
        chunks = self.sample_iter(n, tau=tau, seed=seed, constrained=constrained, automata=automata)
        return [s for chunk in chunks for s in chunk]


def load_run(
    run_dir: str | Path | None = None,
    *,
    device: str = "auto",
    plugins_dir: str | Path | None = None,
) -> Run:
    """Load a run directory (default: the last one trained). Never executes code from it, and
    never touches the caller's random generators.

    Every file is checked before use; any problem is a one-line ``RunError``.
    """
    path = rundir.require_run_dir(run_dir if run_dir is not None else rundir.last_run())
    cfg = rundir.read_config(path)
    backend = get_backend(cfg.backend, plugins_dir)
    dev = resolve_device(device)
    ckpt = rundir.read_checkpoint(path, cfg)
    vocab = Vocabulary.from_dict(cfg.vocab)
    empty = torch.zeros((0, cfg.max_len), dtype=torch.long, device=dev)
    trainer = build_trainer(backend, cfg, dev, empty, plugins_dir)
    load_trainer_state(trainer, ckpt["trainer"], str(path / rundir.CHECKPOINT))
    return Run(path, cfg, backend, trainer, vocab, dev, ckpt["iteration"], plugins_dir)
