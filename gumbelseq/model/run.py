"""A trained run, loaded for sampling: ``load_run(dir).sample(100, tau=1.0, seed=0)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from . import rundir
from .backend import Backend, Trainer
from .gumbel import check_tau
from .memory import OutOfMemory, is_oom
from .registry import get_backend
from .rundir import TrainConfig, check_seed
from .train import build_trainer, load_trainer_state, resolve_device
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

    def sample_iter(self, n: int, *, tau: float = 1.0, seed: int = 0) -> Iterator[list[str]]:
        """Samples in chunks (bounded memory for any ``n``), one random stream for all chunks.

        ``tau`` and ``seed`` are checked here, before the first chunk, so a bad value fails
        before any output is written.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        tau = check_tau(tau)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(check_seed(seed))
        return self._chunks(n, tau, gen)

    def _chunks(self, n: int, tau: float, gen: torch.Generator) -> Iterator[list[str]]:
        done = 0
        while done < n:
            k = min(CHUNK, n - done)
            try:
                ids = self.trainer.sample_ids(k, tau, gen)
            except Exception as e:
                if is_oom(e):
                    raise OutOfMemory(f"{self.run_dir}: out of memory sampling on {self.device}") from None
                raise
            yield self.vocab.decode(ids)
            done += k

    def sample(self, n: int = 100, *, tau: float = 1.0, seed: int = 0) -> list[str]:
        """``n`` strings, padding removed. Same seed, same strings (on the same machine)."""
        return [s for chunk in self.sample_iter(n, tau=tau, seed=seed) for s in chunk]


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
    return Run(path, cfg, backend, trainer, vocab, dev, ckpt["iteration"])
