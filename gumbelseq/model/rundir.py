"""The run directory, owned by this module alone: its file names, creating one, opening one,
the lock held while a process writes into it, and the last-run pointer.

A run directory is only ever created in a new or empty folder: anything else is the user's,
and a research tool must not write ``data.txt`` over their ``data.txt``. While a process
trains in a run directory it holds an exclusive ``flock`` on the directory itself (not on a
lock file, so "empty" keeps meaning empty and a killed process leaves nothing to clean up:
the kernel drops the lock with the process). A second process gets a one-line error instead
of interleaving its files with the first one's.

Everything read back from a run directory is checked against a schema before use
(``config.json`` key by key; the checkpoint's shape and the config it was trained with), and
every problem is a one-line ``RunError`` naming the file and the key: a hand-edited or
truncated file must never surface as a ``KeyError`` deep in a backend, nor sample silently with
an alphabet the weights were not trained on.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import re
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import GumbelseqError, InputFileError, RunError, first_line
from ..inputs import read_text
from ..outputs import write_text_atomic

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SAMPLES = "samples.txt"
DATA = "data.txt"
GRAMMAR = "grammar.lark"
#: Every file a run directory may hold (checkpoint temp files start with "." and are removed).
RUN_FILES = (CONFIG, CHECKPOINT, METRICS, SAMPLES, DATA, GRAMMAR)

#: Longest training sequence. The LSTMs unroll one step per character; past this a run is
#: never what anyone meant (a stray multi-megabyte line in a data file), and refusing it up
#: front beats an allocation failure minutes later.
MAX_LEN_LIMIT = 10_000
MAX_SEED = 2**63 - 1
CONFIG_VERSION = 2

LAST_RUN = "last_run"
HOME_ENV = "GUMBELSEQ_HOME"


@dataclass
class TrainConfig:
    """``config.json``: everything needed to rebuild the model and continue training."""

    backend: str
    options: dict[str, Any]
    grammar: str
    vocab: dict[str, Any]
    max_len: int
    start: str = "start"
    seed: int = 0
    device: str = "cpu"
    data_source: str = "grammar"
    log_every: int = 10
    eval_every: int = 500
    eval_samples: int = 200
    checkpoint_every: int = 1000
    final_samples: int = 1000
    version: int = CONFIG_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What the checkpoint must have been trained with (the device may change on resume)."""
        d = self.to_dict()
        d.pop("device")
        return d


def check_seed(seed: Any) -> int:
    """The one check of a random seed: an integer in [0, 2**63 - 1] (what every generator the
    package seeds accepts, with room for the derived ``seed + 1``)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise GumbelseqError(f"seed must be an integer in [0, 2**63-1], got {seed!r}")
    return seed


# -- config schema ------------------------------------------------------------------------------


def _int_in(low: int, high: int):
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            return f"an integer in [{low}, {high}]"
        return None

    return check


def _str(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "a non-empty string"


def _obj(v: Any) -> str | None:
    return None if isinstance(v, dict) else "a JSON object"


def _vocab(v: Any) -> str | None:
    want = 'an object {"chars": [distinct one-character strings], "pad": one character not in chars}'
    if not isinstance(v, dict) or set(v) != {"chars", "pad"}:
        return want
    chars, pad = v["chars"], v["pad"]
    if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
        return want
    if len(set(chars)) != len(chars) or not isinstance(pad, str) or len(pad) != 1 or pad in chars:
        return want
    return None


_SCHEMA = {
    "backend": _str,
    "options": _obj,
    "grammar": _str,
    "vocab": _vocab,
    "max_len": _int_in(1, MAX_LEN_LIMIT),
    "start": _str,
    "seed": _int_in(0, MAX_SEED),
    "device": _str,
    "data_source": _str,
    "log_every": _int_in(1, 2**31),
    "eval_every": _int_in(0, 2**31),
    "eval_samples": _int_in(1, 1_000_000),
    "checkpoint_every": _int_in(1, 2**31),
    "final_samples": _int_in(0, 100_000_000),
    "version": _int_in(CONFIG_VERSION, CONFIG_VERSION),
}


#: Keys added after version 2 first shipped, with the value a run made without them meant.
_OPTIONAL = {"start": "start"}


def parse_config(raw: Any, source: str) -> TrainConfig:
    """A ``TrainConfig`` from decoded JSON, every key checked; errors name ``source`` and key."""
    if not isinstance(raw, dict):
        raise RunError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    required = {f.name for f in fields(TrainConfig)}
    for key in raw:
        if key not in required:
            raise RunError(f"{source}: unknown key {key!r}")
    raw = {**_OPTIONAL, **raw}
    for key in sorted(required):
        if key not in raw:
            if key == "version":
                raise RunError(f"{source}: no 'version': written by an older gumbelseq; retrain the run")
            raise RunError(f"{source}: missing key {key!r}")
        problem = _SCHEMA[key](raw[key])
        if problem:
            shown = json.dumps(raw[key])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise RunError(f"{source}: key {key!r}: expected {problem}, got {shown}")
    return TrainConfig(**raw)


# -- the lock -----------------------------------------------------------------------------------


class DirLock:
    """An exclusive, non-blocking ``flock`` on a directory, held until ``release``."""

    def __init__(self, path: Path, what: str) -> None:
        import fcntl

        self.path = path
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as e:
            raise RunError(f"{path}: cannot open the {what} ({e.strerror})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise RunError(f"{path}: {what} in use by another gumbelseq process; wait for it to finish") from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "DirLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def claim_new_dir(path: str | Path, what: str = "run directory") -> tuple[DirLock, Path | None]:
    """Make ``path`` (or take an existing empty folder), lock it, and check it is still empty
    under the lock. Returns the lock and the outermost folder created here (``None`` if none).

    Refuses, touching nothing: a path that is not a folder, a folder holding anything (a run
    of ours or the user's files), a folder another process holds.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RunError(f"{p}: exists and is not a folder; --out must be a new or empty folder")
    created: Path | None = None
    if not p.exists():
        top = p.absolute()
        while not top.parent.exists():
            top = top.parent  # the outermost folder this call creates, removed again on discard
        try:
            p.mkdir(parents=True)
            created = top
        except FileExistsError:
            pass  # another process made it first; the lock below decides
        except OSError as e:
            raise RunError(f"{p}: cannot create the {what} ({e.strerror})") from None
    lock = DirLock(p, what)
    try:
        entries = sorted(os.listdir(p))
    except OSError as e:
        lock.release()
        raise RunError(f"{p}: cannot list the {what} ({e.strerror})") from None
    if entries:
        lock.release()
        if CONFIG in entries:
            raise RunError(f"{p}: already holds a run; continue it with `gumbelseq train --resume {p}` or choose another --out")
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise RunError(f"{p}: not empty ({shown}); --out must be a new or empty folder, and nothing in it was touched")
    return lock, created


def discard_new_dir(path: Path, created: Path | None, names: tuple[str, ...] = RUN_FILES) -> None:
    """Undo a creation that failed part-way: remove only the files this module writes (the
    folder was empty when claimed), and the folders made by ``claim_new_dir`` if empty."""
    for name in names:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (path / name).unlink()
    for leftover in path.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()
    if created is not None:
        folder = path.absolute()
        while True:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: someone else's files arrived meanwhile
            if folder == created:
                break
            folder = folder.parent


def default_run_path(backend: str) -> Path:
    base = Path("runs") / f"{backend}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


# -- reading a run ------------------------------------------------------------------------------


def require_run_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise RunError(f"{p}: no such run directory")
    if not p.is_dir():
        raise RunError(f"{p}: not a run directory (not a folder)")
    if not (p / CONFIG).exists():
        raise RunError(f"{p}: not a run directory (no {CONFIG})")
    return p


def read_config(run_dir: str | Path) -> TrainConfig:
    p = require_run_dir(run_dir) / CONFIG
    try:
        text = read_text(p, "run config")
    except InputFileError as e:
        raise RunError(str(e)) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise RunError(f"{p}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
    return parse_config(raw, str(p))


def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    write_text_atomic(run_dir / CONFIG, json.dumps(cfg.to_dict(), indent=2) + "\n")


def read_checkpoint(run_dir: str | Path, cfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint's contents, on the CPU, shape-checked and matched against ``cfg``.

    Loaded with ``weights_only=True``: loading never executes code from the file.
    """
    import torch

    p = Path(run_dir) / CHECKPOINT
    if not p.exists():
        raise RunError(f"{run_dir}: no {CHECKPOINT} yet (training never reached a checkpoint)")
    if not p.is_file():
        raise RunError(f"{p}: not a regular file")
    try:
        # RNG states must be CPU tensors; modules and optimisers move theirs when loading.
        # torch warns about a foreign pickle protocol before it refuses: the refusal says it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message advises loading with weights_only=False: never, for a file that may
        # be hostile. The paragraph that names what it refused (a global, an opcode) is kept.
        parts = [ln.strip() for ln in str(e).split("\n\n") if ln.strip()]
        named = [ln for ln in parts if re.search(r"unsupported|Unsupported|GLOBAL|opcode", ln) and "weights_only" not in ln]
        what = " ".join(named[0].split())[:200] if named else ""
        raise RunError(
            f"{p}: not a checkpoint gumbelseq can load safely: it holds something other than tensors and plain"
            f" data{f' ({what})' if what else ''}; it is not executed"
        ) from None
    except Exception as e:  # truncated, foreign or malicious: one line, never a traceback
        raise RunError(f"{p}: cannot load checkpoint ({type(e).__name__}: {first_line(e)})") from None
    if not isinstance(ckpt, dict):
        raise RunError(f"{p}: not a gumbelseq checkpoint (a {type(ckpt).__name__}, expected a dict)")
    for key in ("iteration", "trainer", "eval_generator", "config"):
        if key not in ckpt:
            raise RunError(f"{p}: not a gumbelseq checkpoint of this version (no {key!r})")
    it = ckpt["iteration"]
    if isinstance(it, bool) or not isinstance(it, int) or it < 0:
        raise RunError(f"{p}: 'iteration' must be an integer >= 0, got {it!r}"[:200])
    secs = ckpt.get("train_seconds")
    if secs is not None and (isinstance(secs, bool) or not isinstance(secs, float) or not math.isfinite(secs) or secs < 0):
        raise RunError(f"{p}: 'train_seconds' must be a number of seconds >= 0, got {secs!r}"[:200])
    if not isinstance(ckpt["trainer"], dict):
        raise RunError(f"{p}: 'trainer' must be a dict of states")
    gen = ckpt["eval_generator"]
    if not isinstance(gen, torch.Tensor) or gen.dtype != torch.uint8:
        raise RunError(f"{p}: 'eval_generator' must be a byte tensor (an RNG state)")
    saved = ckpt["config"]
    if not isinstance(saved, dict):
        raise RunError(f"{p}: 'config' must be a dict")
    saved = {**_OPTIONAL, **saved}
    for key, value in cfg.identity().items():
        if saved.get(key) != value:
            where, was, now = _first_difference(key, saved.get(key), value)
            raise RunError(
                f"{p} was trained with another {where!r} than {CONFIG} says"
                f" ({json.dumps(was)[:60]} in the checkpoint, {json.dumps(now)[:60]} in {CONFIG});"
                " restore the run's config.json or retrain"
            )
    return ckpt


def _first_difference(path: str, a: Any, b: Any) -> tuple[str, Any, Any]:
    """The dotted key where two JSON values first differ (``options.hidden``), with both values
    there: the whole options of two runs, cut to a few dozen characters, looked the same."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            if a.get(k, _MISSING) != b.get(k, _MISSING):
                return _first_difference(f"{path}.{k}", a.get(k), b.get(k))
    return path, a, b


_MISSING = object()


def checkpoint_state(iteration: int, cfg: TrainConfig, trainer_state: dict[str, Any], eval_state: Any,
                     train_seconds: float | None = None) -> dict[str, Any]:
    state = {"iteration": iteration, "config": cfg.identity(), "trainer": trainer_state, "eval_generator": eval_state}
    if train_seconds is not None:
        state["train_seconds"] = float(train_seconds)
    return state


def write_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    import torch

    from ..outputs import atomic_open

    path = run_dir / CHECKPOINT
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    return path


# -- metrics.jsonl ------------------------------------------------------------------------------


def read_metrics(run_dir: str | Path, *, repair_tail: bool = False) -> list[dict[str, Any]]:
    """The logged rows. A last line cut short by a kill (no newline) is dropped when
    ``repair_tail``; any other unreadable line is a ``RunError`` naming it."""
    p = Path(run_dir) / METRICS
    if not p.exists():
        return []
    try:
        text = read_text(p, "metrics log")
    except InputFileError as e:
        raise RunError(str(e)) from None
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ok = isinstance(row, dict) and isinstance(row.get("iteration"), int) and not isinstance(row["iteration"], bool)
        except json.JSONDecodeError:
            ok = False
        if not ok:
            if repair_tail and i == len(lines) and not text.endswith("\n"):
                break  # a half-written last line: the checkpoint it belonged to was never written
            raise RunError(f"{p}:{i}: not a JSON object with an integer 'iteration'")
        rows.append(row)
    return rows


def append_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with open(run_dir / METRICS, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def truncate_metrics(run_dir: Path, upto: int) -> None:
    """Keep only log rows up to the checkpoint a resume starts from (rows flushed after it by a
    run killed mid-checkpoint would otherwise appear twice), rewriting atomically."""
    p = run_dir / METRICS
    if not p.exists():
        return
    keep = [r for r in read_metrics(run_dir, repair_tail=True) if r["iteration"] <= upto]
    write_text_atomic(p, "".join(json.dumps(r) + "\n" for r in keep))


# -- the last-run pointer -----------------------------------------------------------------------


def home_dir() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".gumbelseq")


def check_home() -> Path:
    """The home folder, created if needed; checked before a long training rather than after."""
    home = home_dir()
    if home.exists() and not home.is_dir():
        raise RunError(f"{home}: {HOME_ENV} (or ~/.gumbelseq) must be a folder, not a file")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{home}: cannot create the gumbelseq home folder ({e.strerror}); set {HOME_ENV}") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise RunError(f"{home}: the gumbelseq home folder is not writable; set {HOME_ENV}")
    return home


def remember_last_run(run_dir: str | Path) -> None:
    """Make ``run_dir`` the default for ``gumbelseq sample``."""
    home = check_home()
    write_text_atomic(home / LAST_RUN, str(Path(run_dir).resolve()) + "\n")


def last_run() -> Path:
    home = home_dir()
    p = home / LAST_RUN
    if home.exists() and not home.is_dir():
        raise RunError(f"{home}: {HOME_ENV} (or ~/.gumbelseq) must be a folder, not a file")
    if not p.exists():
        raise RunError("no trained run yet: train one with `gumbelseq train` or pass --run DIR")
    try:
        text = read_text(p, "last-run pointer")
    except InputFileError as e:
        raise RunError(f"{e}; pass --run DIR or train again") from None
    # Only the newline this module writes is removed: a run folder's name may end in a space,
    # or hold a newline. A hand-edited pointer (a space or CRLF after the path) still reads.
    path = text.removesuffix("\n")
    if path.strip() and not Path(path).exists() and Path(path.strip()).exists():
        path = path.strip()
    if not path.strip():
        raise RunError(f"{p}: not a last-run pointer (one path expected); pass --run DIR")
    return Path(path)

