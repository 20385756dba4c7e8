"""Training: start a run, resume one, and the generic loop that drives any registered backend.

``start_training(grammar=..., backend=..., out_dir=...)`` creates a run directory (a new or
empty folder only; see ``rundir.py``, which owns every file of it) and trains;
``resume_training(run_dir)`` continues a stopped run. Both hold the run directory's lock for
the whole training. Resuming gives the same weights as an uninterrupted run with the same seed
on the same device.

The loop reports through ``Callback`` objects and never imports Rich. Ctrl-C asks it to stop
after the current iteration with a checkpoint.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from ..errors import GumbelseqError, InputFileError, OptionError, RunError, first_line
from ..inputs import line_of, read_lines
from ..lang.masks import grammar_masks
from ..lang.dataset import draw_dataset
from ..lang.grammar import Grammar, load_grammar
from ..outputs import write_lines, write_text_atomic
from . import rundir
from .backend import Backend, Trainer
from .constrained import MaskedDataError, MaskTable, StepMask
from .memory import OutOfMemory, check_fits, is_oom
from .options import options_to_dict
from .registry import get_registry
from .rundir import CHECKPOINT, DATA, GRAMMAR, SAMPLES, TrainConfig, check_seed
from .seed import restore_generator
from .vocab import Vocabulary

#: The paper's training set when no data is given: 5000 strings of length <= 12.
DEFAULT_DATA_SIZE = 5000
DEFAULT_MAX_LEN = 12


class Callback:
    """Override what you need. ``iteration`` is 1-based (iterations completed)."""

    def on_backend(self, backend: Backend) -> None:
        """Called once, before ``on_start``, with the backend being trained."""

    def on_start(self, run_dir: Path, total: int, start: int, config: TrainConfig) -> None: ...

    def on_step(self, iteration: int, metrics: dict[str, float]) -> None: ...

    def on_eval(self, iteration: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, iteration: int, path: Path) -> None: ...

    def on_end(self, iteration: int, stopped: bool) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    stopped: bool
    trainer: Trainer
    #: Seconds spent in the training loop over every session of the run, up to its last
    #: checkpoint (kept in the checkpoint, so a killed session loses only what came after it);
    #: None for a run resumed from a checkpoint written before this was recorded.
    train_seconds: float | None = None
    #: For a stopped run, the signal that stopped it (SIGINT, SIGTERM), if one did.
    stop_signal: int | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when one is present, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GumbelseqError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise GumbelseqError(f"--device {name}: expected auto, cpu or cuda[:N]")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GumbelseqError(f"--device {name}: expected auto, cpu or cuda[:N]") from None


def read_data(path: str | Path) -> list[str]:
    """Training strings from a file, one per line, trailing spaces (padding) removed."""
    out = read_lines(path, "data file")
    check_data(out, str(path))
    return out


def check_data(strings: Sequence[str], source: str) -> None:
    if not strings:
        raise GumbelseqError(f"{source}: no training strings")
    longest = max(len(s) for s in strings)
    if longest == 0:
        raise GumbelseqError(f"{source}: every training string is empty")
    if longest > rundir.MAX_LEN_LIMIT:
        line = line_of(strings, next(i for i, s in enumerate(strings) if len(s) == longest))
        raise GumbelseqError(
            f"{source}:{line}: a string of length {longest}; training sequences are limited to {rundir.MAX_LEN_LIMIT} characters"
        )


def _backend(backend: str | Backend | None, plugins_dir: str | Path | None) -> Backend:
    if backend is None:
        return get_registry(plugins_dir).default()
    return get_registry(plugins_dir).get(backend) if isinstance(backend, str) else backend


def start_training(
    *,
    grammar: Grammar | str = "arith",
    start: str = "start",
    backend: str | Backend | None = None,
    out_dir: str | Path | None = None,
    options: dict[str, Any] | None = None,
    data: Sequence[str] | None = None,
    data_source: str | None = None,
    n_data: int = DEFAULT_DATA_SIZE,
    max_len: int | None = None,
    seed: int = 0,
    device: str = "auto",
    eval_every: int = 500,
    checkpoint_every: int = 1000,
    final_samples: int = 1000,
    log_every: int = 10,
    callbacks: Sequence[Callback] = (),
    stop_after: int | None = None,
    plugins_dir: str | Path | None = None,
    remember: bool = False,
) -> TrainResult:
    """Create a run directory and train in it.

    ``out_dir`` must be a new or empty folder (default ``runs/<backend>-<time>``); anything
    else is refused before anything is written. Without ``data`` the training set is drawn
    from the grammar (``n_data`` strings of length <= ``max_len``, uniform, ``seed``);
    ``start`` names the start rule when ``grammar`` is a name or path. Every
    check that can fail (options, sizes against free memory, the device, the data) runs
    before the folder is made; a failure before the first checkpoint removes what was made.
    ``remember`` makes the run the default of ``gumbelseq sample``.
    """
    seed = check_seed(seed)
    be = _backend(backend, plugins_dir)
    g = load_grammar(grammar, start=start) if isinstance(grammar, str) else grammar
    dev = resolve_device(device)
    if remember:
        rundir.check_home()
    resolved = be.make_options(options)
    if max_len is not None and not 1 <= max_len <= rundir.MAX_LEN_LIMIT:
        raise GumbelseqError(f"max_len must be in [1, {rundir.MAX_LEN_LIMIT}], got {max_len}")
    if data is None:
        max_len = DEFAULT_MAX_LEN if max_len is None else max_len
        data = draw_dataset(g, n_data, max_len=max_len, seed=seed)
        data_source = data_source or f"grammar {g.name}"
        check_data(data, data_source)
    else:
        data = data if isinstance(data, list) else list(data)  # a Samples list keeps its lines
        data_source = data_source or "data"
        check_data(data, data_source)
        longest = max(len(s) for s in data)
        if max_len is None:
            max_len = longest
        elif longest > max_len:
            line = line_of(data, next(i for i, s in enumerate(data) if len(s) > max_len))
            raise GumbelseqError(f"{data_source}:{line}: a string of length {longest}, more than --max-len {max_len}")
    vocab = Vocabulary.from_strings(data)
    if masked_training(resolved):
        _check_masked_training(be, g, vocab, max_len)  # before anything is written
    check_memory(be, resolved, vocab.size, max_len, len(data), dev, given=dict(options or {}))
    cfg = TrainConfig(
        backend=be.name,
        options=options_to_dict(resolved),
        grammar=g.path,
        vocab=vocab.to_dict(),
        max_len=max_len,
        start=g.start,
        seed=seed,
        device=str(dev),
        data_source=data_source,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        final_samples=final_samples,
        log_every=log_every,
    )
    rundir.parse_config(cfg.to_dict(), "settings")  # the same schema a reader will apply
    path = Path(out_dir) if out_dir is not None else rundir.default_run_path(be.name)
    lock, created = rundir.claim_new_dir(path)
    try:
        write_lines(path / DATA, data)
        write_text_atomic(path / GRAMMAR, g.text)
        rundir.write_config(path, cfg)  # last: a folder with config.json is a complete run
        try:
            result = _train_locked(path, be, g, cfg, dev, callbacks, stop_after, plugins_dir)
        except MaskedDataError as e:  # name the line of the user's file, not of the run's copy
            raise InputFileError(f"{data_source}:{line_of(data, e.row)}:{e.column}: {e.reason}") from None
    except BaseException:
        if not (path / CHECKPOINT).exists():
            rundir.discard_new_dir(path, created)
        raise
    finally:
        lock.release()
    if remember:
        rundir.remember_last_run(path)
    return result


def resume_training(
    run_dir: str | Path,
    *,
    device: str | None = None,
    callbacks: Sequence[Callback] = (),
    stop_after: int | None = None,
    plugins_dir: str | Path | None = None,
    remember: bool = False,
    on_notice: Callable[[str], None] | None = None,
) -> TrainResult:
    """Continue the run in ``run_dir`` from its checkpoint (or from the start if it never
    reached one), as it was configured. ``device`` moves it (default: the run's device)."""
    path = rundir.require_run_dir(run_dir)
    if remember:
        rundir.check_home()
    with rundir.DirLock(path, "run directory"):
        cfg = rundir.read_config(path)
        be = _backend(cfg.backend, plugins_dir)
        g = load_grammar(path / GRAMMAR, start=cfg.start, on_notice=on_notice)
        dev = resolve_device(cfg.device if device is None else device)
        result = _train_locked(path, be, g, cfg, dev, callbacks, stop_after, plugins_dir)
    if remember:
        rundir.remember_last_run(path)
    return result


def check_memory(
    backend: Backend, options: Any, vocab_size: int, max_len: int, n_data: int, device: torch.device,
    given: dict[str, Any] | None = None,
) -> None:
    """Refuse, in one line naming the estimate and the free memory, a run whose backend's
    estimate for these options, this vocabulary and this length, plus the encoded training set,
    exceeds what ``device`` has free (``memory.OutOfMemory``). ``given``: the options the user
    set, named in the message (the cause is often one of them)."""
    estimate = backend.memory_estimate(options, vocab_size=vocab_size, max_len=max_len)
    if estimate is not None:
        estimate += 8 * n_data * max_len  # the encoded training set (int64 ids)
    what = f"batch {options.batch_size}, length {max_len}, vocabulary {vocab_size}"
    named = [f"{k}={v}" for k, v in (given or {}).items() if k not in ("batch_size", "iterations")]
    if named:
        what += ", options " + " ".join(named)
    check_fits(estimate, device, f"training {backend.name} ({what})")


def masked_training(options: Any) -> bool:
    """Whether ``options`` ask for training with grammar masks (``-o mask=grammar``)."""
    return getattr(options, "mask", "none") == "grammar"


def _check_masked_training(backend: Backend, grammar: Grammar, vocab: Vocabulary, max_len: int) -> None:
    if not getattr(backend.trainer_class, "supports_masked_training", False):
        raise OptionError(f"option mask=grammar: backend {backend.name} does not train with grammar masks")
    grammar_masks(grammar, max_len, vocab.chars)  # a grammar the masks cannot serve: one line


def build_trainer(
    backend: Backend, cfg: TrainConfig, device: torch.device, data: torch.Tensor,
    plugins_dir: str | Path | None = None,
) -> Trainer:
    """The backend's trainer for ``cfg``. Weight initialisation must not touch the caller's
    global random generators (``BaseTrainer`` forks them)."""
    try:
        options = backend.make_options(cfg.options)
    except OptionError as e:
        raise RunError(f"{rundir.CONFIG}: options: {e}") from None
    try:
        return backend.create(
            vocab_size=Vocabulary.from_dict(cfg.vocab).size,
            max_len=cfg.max_len,
            data=data,
            options=options,
            device=device,
            seed=cfg.seed,
        )
    except GumbelseqError:
        raise
    except Exception as e:  # a third-party backend's bug must not become a traceback
        if is_oom(e):
            raise OutOfMemory(f"backend {backend.name}: out of memory building the model on {device}") from None
        source = get_registry(plugins_dir).source(backend.name) or "unregistered"
        raise RunError(f"backend {backend.name} ({source}): create() failed: {type(e).__name__}: {first_line(e)}") from None


def load_trainer_state(trainer: Trainer, state: dict[str, Any], source: str) -> None:
    """``trainer.load_state_dict`` with any mismatch (another backend's or size's checkpoint)
    reported in one line naming ``source``."""
    try:
        trainer.load_state_dict(state)
    except GumbelseqError:
        raise
    except Exception as e:
        raise RunError(f"{source}: does not fit this run's model ({type(e).__name__}: {first_line(e, 160)})") from None


class _StopFlag:
    """Ctrl-C asks the loop to stop after the current iteration (a half-done step would make
    the checkpoint inconsistent); a second Ctrl-C interrupts at once. SIGTERM (``kill``, a
    scheduler's preemption) stops the same way where it had its default action, which ended
    the process on the spot and lost everything since the last checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None  # the signal that asked for the stop

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                if signum == signal.SIGTERM:
                    raise SystemExit(128 + signal.SIGTERM)
                raise KeyboardInterrupt
            self.requested = True
            self.signal = signum

        previous = signal.signal(signal.SIGINT, handler)
        term = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        if term:
            signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            if term:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _train_locked(
    run_dir: Path,
    backend: Backend,
    grammar: Grammar,
    cfg: TrainConfig,
    dev: torch.device,
    callbacks: Sequence[Callback],
    stop_after: int | None,
    plugins_dir: str | Path | None = None,
) -> TrainResult:
    """The loop, in a run directory whose lock the caller holds."""
    if cfg.backend != backend.name:
        raise RunError(f"{run_dir} was trained with backend {cfg.backend!r}, not {backend.name!r}")
    vocab = Vocabulary.from_dict(cfg.vocab)
    data_path = run_dir / DATA
    strings = read_data(data_path)
    try:
        options = backend.make_options(cfg.options)
    except OptionError as e:
        raise RunError(f"{rundir.CONFIG}: options: {e}") from None
    # Again here for --resume (on another device, or with less memory free than at the start).
    check_memory(backend, options, vocab.size, cfg.max_len, len(strings), dev)
    data = vocab.encode(strings, cfg.max_len, source=str(data_path)).to(dev)
    trainer = build_trainer(backend, cfg, dev, data, plugins_dir)
    if masked_training(trainer.options):
        _check_masked_training(backend, grammar, vocab, cfg.max_len)
        trainer.use_grammar_masks(MaskTable(grammar_masks(grammar, cfg.max_len, vocab.chars), vocab, dev))
    total = trainer.options.iterations
    eval_gen = torch.Generator(device=dev)
    eval_gen.manual_seed(cfg.seed + 1)
    start = 0
    before: float | None = 0.0  # training seconds of earlier sessions
    if (run_dir / CHECKPOINT).exists():
        ckpt = rundir.read_checkpoint(run_dir, cfg)
        load_trainer_state(trainer, ckpt["trainer"], str(run_dir / CHECKPOINT))
        restore_generator(eval_gen, ckpt["eval_generator"])
        start = ckpt["iteration"]
        before = ckpt.get("train_seconds")
        if start > total:
            raise RunError(f"{run_dir / CHECKPOINT}: iteration {start} is past the run's {total} iterations")
        rundir.truncate_metrics(run_dir, start)
    elif (run_dir / rundir.METRICS).exists():
        rundir.truncate_metrics(run_dir, 0)
    for cb in callbacks:
        cb.on_backend(backend)
        cb.on_start(run_dir, total, start, cfg)

    stop = _StopFlag()
    pending: list[dict[str, Any]] = []
    iteration = start
    saved = start
    t0 = time.perf_counter()
    seconds = before
    try:
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
                    rundir.append_metrics(run_dir, pending)
                    pending.clear()
                    seconds = None if before is None else before + time.perf_counter() - t0
                    state = rundir.checkpoint_state(iteration, cfg, trainer.state_dict(), eval_gen.get_state(), seconds)
                    path = rundir.write_checkpoint(run_dir, state)
                    saved = iteration
                    for cb in callbacks:
                        cb.on_checkpoint(iteration, path)
                if requested and iteration < total:
                    break
            stopped = iteration < total
            if not stopped and cfg.final_samples and (iteration > start or not (run_dir / SAMPLES).exists()):
                ids = _sample_ids(trainer, cfg.final_samples, eval_gen)
                write_lines(run_dir / SAMPLES, vocab.decode(ids))
    except Exception as e:
        if is_oom(e):
            raise OutOfMemory(
                f"{run_dir}: out of memory at iteration {iteration + 1} on {dev}; the run is kept at its"
                f" checkpoint (iteration {saved}): resume with `gumbelseq train --resume {run_dir}` on a device with more memory"
            ) from None
        raise
    for cb in callbacks:
        cb.on_end(iteration, stopped)
    return TrainResult(run_dir, iteration, stopped, trainer, seconds, stop.signal if stopped else None)


def _sample_ids(trainer: Trainer, n: int, gen: torch.Generator) -> torch.Tensor:
    """Samples at tau 1 as the run will give them: masked when it trains with grammar masks."""
    table = getattr(trainer, "masks", None)
    if table is None:
        return trainer.sample_ids(n, 1.0, gen)
    return trainer.sample_ids(n, 1.0, gen, mask=lambda k: StepMask(table, k))


def _evaluate(
    trainer: Trainer, vocab: Vocabulary, grammar: Grammar, n: int, gen: torch.Generator
) -> dict[str, float]:
    samples = vocab.decode(_sample_ids(trainer, n, gen))
    valid = sum(1 for s in samples if grammar.is_valid(s))
    return {"validity": valid / n, "unique": len(set(samples)) / n}


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's logged rows (losses every ``log_every`` iterations, evaluations)."""
    return rundir.read_metrics(run_dir, repair_tail=True)
