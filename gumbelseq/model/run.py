"""A trained run, loaded for sampling: ``load_run(dir).sample(100, tau=1.0, seed=0)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from .backend import Backend, Trainer
from ..errors import RunError
from .registry import get_backend
from .train import TrainConfig, build_trainer, last_run, load_checkpoint, load_config, resolve_device
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
        """Samples in chunks (bounded memory for any ``n``), one random stream for all chunks."""
        if n < 0:
            raise ValueError("n must be >= 0")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        done = 0
        while done < n:
            k = min(CHUNK, n - done)
            yield self.vocab.decode(self.trainer.sample_ids(k, tau, gen))
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
    """Load a run directory (default: the last one trained). Never executes code from it."""
    path = Path(run_dir) if run_dir is not None else last_run()
    if not path.is_dir():
        raise RunError(f"{path}: no such run directory")
    cfg = load_config(path)
    backend = get_backend(cfg.backend, plugins_dir)
    dev = resolve_device(device)
    ckpt = load_checkpoint(path)
    vocab = Vocabulary.from_dict(cfg.vocab)
    empty = torch.zeros((0, cfg.max_len), dtype=torch.long, device=dev)
    trainer = build_trainer(backend, cfg, dev, empty)
    trainer.load_state_dict(ckpt["trainer"])
    return Run(path, cfg, backend, trainer, vocab, dev, int(ckpt["iteration"]))
