"""The generic training loop: any registered backend, a run directory, callbacks, exact resume.

``train(config, out_dir, callbacks=...)`` writes into ``out_dir``:

* ``config.json``  - everything needed to rebuild the model (backend, resolved options, vocab,
  max_len, seed, grammar, data source), written once at the start;
* ``grammar.lark`` - a copy of the grammar, so a run scores its samples even if the file moves;
* ``data.txt``     - the training strings, one per line;
* ``checkpoint.pt``- trainer state (weights, optimisers, RNG states) and the iteration count,
  written atomically every ``checkpoint_every`` iterations, at the end and on a stop request;
  loaded with ``torch.load(weights_only=True)``, so loading never executes code;
* ``metrics.jsonl``- one JSON object per logged iteration, appended at each checkpoint so the
  log never runs ahead of the checkpoint a resume starts from;
* ``samples.txt``  - final samples (``final_samples`` of them, tau 1, the eval stream).

The loop reports through ``Callback`` objects and never imports Rich.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ..atomic import atomic_open, write_text_atomic
from .backend import Backend, Trainer
from ..lang.dataset import draw_dataset, write_lines
from ..errors import GumbelseqError, RunError
from ..lang.grammar import Grammar
from ..inputs import read_lines
from .options import build_options, options_to_dict
from .seed import restore_generator, set_seed
from .vocab import Vocabulary

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SAMPLES = "samples.txt"
DATA = "data.txt"
GRAMMAR = "grammar.lark"


@dataclass
class TrainConfig:
    backend: str
    options: dict[str, Any]
    grammar: str
    vocab: dict[str, Any]
    max_len: int
    seed: int = 0
    device: str = "cpu"
    data_source: str = "grammar"
    log_every: int = 10
    eval_every: int = 500
    eval_samples: int = 200
    checkpoint_every: int = 1000
    final_samples: int = 1000
    version: int = 1


class Callback:
    """Override what you need. ``iteration`` is 1-based (iterations completed)."""

    def on_start(self, run_dir: Path, total: int, start: int, config: TrainConfig) -> None: ...

    def on_step(self, iteration: int, metrics: dict[str, float]) -> None: ...

    def on_eval(self, iteration: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, iteration: int, path: Path) -> None: ...

    def on_end(self, iteration: int, stopped: bool) -> None: ...


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when one is present, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GumbelseqError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise GumbelseqError(f"--device {name}: expected auto, cpu or cuda[:N]")
    return torch.device(name)


def read_data(path: str | Path) -> list[str]:
    """Training strings from a file, one per line, trailing spaces (padding) removed."""
    out = read_lines(path, "data file")
    if not out:
        raise GumbelseqError(f"{path}: no training strings")
    return out


class _StopFlag:
    """Ctrl-C asks the loop to stop after the current iteration (a half-done step would make
    the checkpoint inconsistent); a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    stopped: bool
    trainer: Trainer


def prepare_run(
    *,
    backend: Backend,
    grammar: Grammar,
    out_dir: str | Path,
    options: dict[str, Any] | None = None,
    data: Sequence[str] | None = None,
    data_source: str = "grammar",
    n_data: int = 5000,
    max_len: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    **loop_settings: Any,
) -> TrainConfig:
    """Create ``out_dir`` with config, grammar copy and data; refuse to clobber an existing run."""
    out = Path(out_dir)
    if (out / CONFIG).exists():
        raise RunError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
    resolved = backend.resolve_options(build_options(backend.Options, dict(options or {})))
    if data is None:
        bound = 12 if max_len is None else max_len
        data = draw_dataset(grammar, n_data, max_len=bound, seed=seed)
        max_len = bound
    else:
        if not data:
            raise GumbelseqError(f"{data_source}: no training strings")
        longest = max(len(s) for s in data)
        if max_len is None:
            max_len = longest
        elif longest > max_len:
            raise GumbelseqError(f"{data_source}: a string has length {longest}, more than --max-len {max_len}")
    vocab = Vocabulary.from_strings(data)
    cfg = TrainConfig(
        backend=backend.name,
        options=options_to_dict(resolved),
        grammar=grammar.path,
        vocab=vocab.to_dict(),
        max_len=max_len,
        seed=seed,
        device=device,
        data_source=data_source,
        **loop_settings,
    )
    out.mkdir(parents=True, exist_ok=True)
    write_lines(out / DATA, data)
    write_text_atomic(out / GRAMMAR, grammar.text)
    write_text_atomic(out / CONFIG, json.dumps(asdict(cfg), indent=2) + "\n")
    return cfg


def load_config(run_dir: str | Path) -> TrainConfig:
    p = Path(run_dir) / CONFIG
    if not p.exists():
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG})")
    try:
        return TrainConfig(**json.loads(p.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise RunError(f"{p}: unreadable config ({e})") from None


def build_trainer(backend: Backend, cfg: TrainConfig, device: torch.device, data: torch.Tensor) -> Trainer:
    options = build_options(backend.Options, cfg.options)
    set_seed(cfg.seed)  # parameter initialisation draws from the global generators
    return backend.create(
        vocab_size=Vocabulary.from_dict(cfg.vocab).size,
        max_len=cfg.max_len,
        data=data,
        options=options,
        device=device,
        seed=cfg.seed,
    )


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The checkpoint's tensors, on the CPU (RNG states must be CPU tensors; modules and
    optimisers move their state to their own device when loading)."""
    p = Path(run_dir) / CHECKPOINT
    if not p.exists():
        raise RunError(f"{run_dir}: no {CHECKPOINT} yet (training never reached a checkpoint)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say so in one line
        raise RunError(f"{p}: cannot load checkpoint ({type(e).__name__}: {e})") from None


def _save_checkpoint(run_dir: Path, iteration: int, trainer: Trainer, eval_gen: torch.Generator) -> Path:
    state = {
        "iteration": iteration,
        "trainer": trainer.state_dict(),
        "eval_generator": eval_gen.get_state(),
    }
    path = run_dir / CHECKPOINT
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    return path


def train(
    run_dir: str | Path,
    backend: Backend,
    grammar: Grammar,
    *,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume) the run in ``run_dir`` prepared by ``prepare_run``.

    Resuming continues from ``checkpoint.pt`` and gives the same weights as an uninterrupted
    run with the same seed on the same device. ``stop_after`` stops (with a checkpoint) after
    that many iterations in total, as Ctrl-C would: for tests and for time-boxed jobs.
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if cfg.backend != backend.name:
        raise RunError(f"{run_dir} was trained with backend {cfg.backend!r}, not {backend.name!r}")
    dev = resolve_device(cfg.device if device is None else str(device))
    vocab = Vocabulary.from_dict(cfg.vocab)
    data = vocab.encode(read_data(run_dir / DATA), cfg.max_len, source=str(run_dir / DATA)).to(dev)
    trainer = build_trainer(backend, cfg, dev, data)
    total = trainer.options.iterations
    eval_gen = torch.Generator(device=dev)
    eval_gen.manual_seed(cfg.seed + 1)
    start = 0
    if (run_dir / CHECKPOINT).exists():
        ckpt = load_checkpoint(run_dir)
        trainer.load_state_dict(ckpt["trainer"])
        restore_generator(eval_gen, ckpt["eval_generator"])
        start = int(ckpt["iteration"])
        _truncate_metrics(run_dir / METRICS, start)
    for cb in callbacks:
        cb.on_start(run_dir, total, start, cfg)

    stop = _StopFlag()
    pending: list[dict[str, Any]] = []
    iteration = start
    with stop.installed():
        while iteration < total:
            metrics = trainer.step(iteration)
            iteration += 1
            for cb in callbacks:
                cb.on_step(iteration, metrics)
            if iteration % cfg.log_every == 0 or iteration == total:
                pending.append({"iteration": iteration, **metrics})
            if cfg.eval_every and (iteration % cfg.eval_every == 0 or iteration == total):
                ev = _evaluate(trainer, vocab, grammar, cfg.eval_samples, eval_gen)
                pending.append({"iteration": iteration, **{f"eval_{k}": v for k, v in ev.items()}})
                for cb in callbacks:
                    cb.on_eval(iteration, ev)
            requested = stop.requested or (stop_after is not None and iteration >= stop_after)
            if iteration % cfg.checkpoint_every == 0 or iteration == total or requested:
                _flush_metrics(run_dir / METRICS, pending)
                path = _save_checkpoint(run_dir, iteration, trainer, eval_gen)
                for cb in callbacks:
                    cb.on_checkpoint(iteration, path)
            if requested and iteration < total:
                break
    stopped = iteration < total
    if not stopped and cfg.final_samples:
        ids = trainer.sample_ids(cfg.final_samples, 1.0, eval_gen)
        write_lines(run_dir / SAMPLES, vocab.decode(ids))
    for cb in callbacks:
        cb.on_end(iteration, stopped)
    return TrainResult(run_dir, iteration, stopped, trainer)


def _evaluate(
    trainer: Trainer, vocab: Vocabulary, grammar: Grammar, n: int, gen: torch.Generator
) -> dict[str, float]:
    samples = vocab.decode(trainer.sample_ids(n, 1.0, gen))
    valid = sum(1 for s in samples if grammar.is_valid(s))
    return {"validity": valid / n, "unique": len(set(samples)) / n}


def _flush_metrics(path: Path, pending: list[dict[str, Any]]) -> None:
    if not pending:
        return
    with open(path, "a", encoding="utf-8") as f:
        for row in pending:
            f.write(json.dumps(row) + "\n")
    pending.clear()


def _truncate_metrics(path: Path, upto: int) -> None:
    """Drop log lines past the checkpoint we resume from (a crash after a flush cannot leave
    any, but a hand-copied checkpoint might), rewriting atomically."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["iteration"] <= upto]
    with atomic_open(path, "w") as f:
        f.write("".join(line + "\n" for line in keep))


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    p = Path(run_dir) / METRICS
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line]


def home_dir() -> Path:
    return Path(os.environ.get("GUMBELSEQ_HOME") or Path.home() / ".gumbelseq")


def remember_last_run(run_dir: str | Path) -> None:
    """Make ``run_dir`` the default for ``gumbelseq sample``."""
    home = home_dir()
    home.mkdir(parents=True, exist_ok=True)
    write_text_atomic(home / "last_run", str(Path(run_dir).resolve()) + "\n")


def last_run() -> Path:
    p = home_dir() / "last_run"
    if not p.exists():
        raise RunError("no trained run yet: train one with `gumbelseq train` or pass --run DIR")
    return Path(p.read_text().strip())
