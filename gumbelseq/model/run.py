"""A trained run, loaded for sampling: ``load_run(dir).sample(100, tau=1.0, seed=0)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..errors import RunError
from ..lang.masks import GrammarMasks, grammar_masks
from ..lang.grammar import load_grammar
from . import rundir
from .constrained import MaskTable, StepMask
from .backend import Backend, Trainer
from .gumbel import check_tau
from .memory import OutOfMemory, is_oom
from .registry import get_backend
from .rundir import TrainConfig, check_seed
from .train import build_trainer, load_trainer_state, masked_training, resolve_device
from .vocab import Vocabulary

CHUNK = 65536


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
            table = self.mask_table(names)
            masks = lambda k: StepMask(table, k)  # noqa: E731
        gen = torch.Generator(device=self.device)
        gen.manual_seed(check_seed(seed))
        return self._chunks(n, tau, gen, masks)

    def constraint(self, automata: Sequence[str] = ()) -> GrammarMasks:
        """The run's grammar as next-character masks over its vocabulary, for prefixes of at
        most ``max_len`` characters, intersected with the named ``automata`` (built once per
        run and set of automata). A backend whose trainer does not apply step masks, a grammar
        the mask engine cannot handle, or an unknown automaton is a one-line error."""
        names = tuple(automata)
        if names in self._constraints:
            return self._constraints[names]
        if names:
            from ..lang.automaton import get_automaton
            from ..lang.intersection import IntersectedMasks

            chosen = [get_automaton(name, self.plugins_dir) for name in names]  # an unknown name fails before any work
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
        """The run's masks as tensors on its device (built once, grown as states occur)."""
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
