"""Hyper-parameter sweeps on Optuna: ``run_sweep(load_sweep_file(path), out_dir)``.

Optuna does the bookkeeping a sweep needs and that is easy to get wrong by hand: which trials
exist, which are running, complete or failed, their values, and how several processes (or
machines) share them. Its storage is the coordination: a journal file (``JournalFileBackend``:
one machine, or a shared filesystem) or a database URL (``--storage postgresql://...``): the
same command on several machines then joins one sweep. ``GridSampler`` runs a grid, a seeded
``TPESampler`` a search.

A trial is one (options, seed) point trained as an ordinary run directory
``DIR/trials/NNNN-<params>/`` through ``start_training`` (what ``gumbelseq train`` does), then
sampled (``samples`` strings at tau 1 with the trial's seed, written to the run's samples file)
and scored against the grammar and the training set (``gumbelseq.lang.score``); the chosen
metric goes to Optuna and a JSON line to ``DIR/results.jsonl``.

The sweep folder ``DIR``:

- ``sweep.json``: the checked spec and its fingerprint. A folder is a sweep folder when it holds
  one; re-running the same sweep file resumes it, another file (or another storage) is refused.
- ``data.txt``: the training set every trial trains on (drawn once, or copied from the file).
- ``optuna.journal``: the default storage.
- ``results.jsonl``: one line per finished trial (complete, failed or interrupted), appended with
  one ``O_APPEND`` write and an ``fsync`` per line, so lines never interleave across processes.
- ``trials/``: the run directories. ``logs/worker-N.log``: what each worker process said.

Locks: the command holds an exclusive ``flock`` on ``DIR`` for its whole life (a second
``sweep`` on the same folder is refused: stop the first and re-run with more ``--workers``, or
add a machine with ``--storage``), and every worker holds a shared one on ``DIR/.workers.lock``.
So when the command starts and finds that lock free, no worker of this folder on this machine is
alive, and any trial the storage still calls running here was killed: it is failed and retried.
Trials of other machines that stop sending heartbeats for ``STALE_SECONDS`` are retried too.

Ctrl-C: workers finish the current training iteration, checkpoint, mark their trial
interrupted and queue a retry (``enqueue_trial``, Optuna's retry mechanism); the retry resumes
that run directory. Re-running the command then skips complete trials and runs the rest.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import functools
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..cpus import usable_cpus
from ..errors import GumbelseqError, RunError, first_line
from ..inputs import read_text
from ..lang.grammar import Grammar, load_grammar
from ..lang.score import score_samples
from ..outputs import write_lines, write_text_atomic
from . import rundir
from .sweep_file import METRICS, SweepSpec, load_sweep_file

__all__ = ["TrialResult", "run_sweep", "load_sweep_file", "SweepSpec", "read_results", "best_by_params",
           "missing_trials", "sweep_finished"]

SPEC_FILE = "sweep.json"
DATA_FILE = "data.txt"
JOURNAL = "optuna.journal"
RESULTS = "results.jsonl"
TRIALS = "trials"
LOGS = "logs"
_WORKERS_LOCK = ".workers.lock"
_ASK_LOCK = ".ask.lock"
#: Every name this module writes into a sweep folder (what a failed creation removes again).
_OWN_FILES = (SPEC_FILE, DATA_FILE, JOURNAL, JOURNAL + ".lock", RESULTS, _WORKERS_LOCK, _ASK_LOCK)

#: Environment variable that carries the storage URL to worker processes (never argv: a
#: database URL may hold a password, and argv is visible to every user in `ps`).
STORAGE_ENV = "GUMBELSEQ_SWEEP_STORAGE"
#: A running trial records a heartbeat this often ...
HEARTBEAT_SECONDS = 30.0
#: ... and one silent for this long is taken for dead (its machine killed) and retried.
STALE_SECONDS = 600.0
#: Study attribute holding the spec fingerprint: another file with the same name is refused.
_FINGERPRINT_ATTR = "gumbelseq_fingerprint"

# Trial states as this module reports them (Optuna's FAIL is split by why it failed).
WAITING, RUNNING, COMPLETE, FAILED, INTERRUPTED = "waiting", "running", "complete", "failed", "interrupted"
_SURPLUS = "surplus"  # a duplicate started by a race between workers: dropped, never shown


@dataclass
class TrialResult:
    """One Optuna trial of a sweep. ``params`` are the searched backend options (the seed is
    apart); ``run_dir`` is relative to the sweep folder; ``value`` is the chosen metric."""

    number: int
    params: dict[str, Any]
    seed: int | None
    state: str
    value: float | None
    metrics: dict[str, Any]
    run_dir: str | None
    seconds: float | None
    error: str | None = None
    retry_of: int | None = None
    worker: str | None = None
    started: float | None = None  # Unix time the trial's worker took it (for the live table)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- Optuna -------------------------------------------------------------------------------------


def _optuna() -> Any:
    try:
        import optuna
    except ModuleNotFoundError:
        raise GumbelseqError("sweeps run on Optuna, which is not installed: pip install -e '.[sweep]'") from None
    # Optuna logs every trial at INFO and warns about sampler internals on stderr; here the
    # table (or the worker's log) says what happened, once.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", module=r"optuna(\..*)?$")
    return optuna


class _Storage:
    """Where the study lives: ``describe`` is safe to print and to save (no password)."""

    def __init__(self, url: str | None, out: Path) -> None:
        self.url = url
        if url is None:
            self.kind, self.path = "journal", out / JOURNAL
            self.describe = "default"
        elif "://" in url:
            self.kind, self.path = "rdb", None
            self.describe = _hide_password(url)
        else:
            self.kind, self.path = "journal", Path(url).expanduser().absolute()
            self.describe = f"journal:{self.path}"

    def check(self, out: Path) -> None:
        """Refuse, before anything is written, a journal path that is not a journal file."""
        if self.kind != "journal" or self.url is None:
            return
        p = self.path
        assert p is not None
        if p == out.expanduser().absolute():  # the folder does not exist yet: is_dir() misses it
            raise GumbelseqError(f"--storage {self.url}: is the --out folder; give a journal file path (or leave --storage out)")
        if p.is_dir():
            raise GumbelseqError(f"--storage {self.url}: is a directory; give a journal file path or a database URL")
        if not p.parent.is_dir():
            raise GumbelseqError(f"--storage {self.url}: no folder {p.parent}")
        if p.exists():
            if not p.is_file():
                raise GumbelseqError(f"--storage {self.url}: not a regular file")
            with open(p, "rb") as f:
                head = f.readline(1 << 16)
            try:
                ok = not head or (isinstance(json.loads(head), dict) and "op_code" in json.loads(head))
            except ValueError:
                ok = False
            if not ok:
                raise GumbelseqError(f"--storage {self.url}: exists and is not an Optuna journal file; nothing was written to it")

    def open(self) -> Any:
        optuna = _optuna()
        if self.kind == "journal":
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(self.path)))
        try:
            return optuna.storages.RDBStorage(self.url)
        except ModuleNotFoundError as e:
            raise GumbelseqError(f"--storage {self.describe}: the database driver is not installed ({e.name}); pip install it") from None
        except Exception as e:  # a connection or URL problem: SQLAlchemy's first line says which
            raise GumbelseqError(f"--storage {self.describe}: cannot open ({type(e).__name__}: {first_line(e)})") from None


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://..."


def _sampler(spec: SweepSpec) -> Any:
    optuna = _optuna()
    if spec.grid is not None:
        return _grid_sampler_class()({**spec.grid, "seed": spec.seeds}, seed=spec.sampler_seed)
    return optuna.samplers.TPESampler(seed=spec.sampler_seed)


@functools.cache
def _grid_sampler_class() -> type:
    optuna = _optuna()

    class GridSampler(optuna.samplers.GridSampler):
        # Optuna's GridSampler ends `optimize` by calling study.stop() once every point has a
        # finished trial, failed ones included. This module drives trials with ask/tell (where
        # stop() is an error) and ends a grid when every point has a *complete* trial.
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridSampler


def _tpe_for(spec: SweepSpec, number: int) -> Any:
    """A TPE sampler seeded from the sweep's seed and the trial number: trial k draws the same
    start-up point whichever worker or machine runs it (one sampler seeded per process would
    make every worker draw the same first points)."""
    optuna = _optuna()
    digest = hashlib.sha256(f"{spec.sampler_seed}:{number}".encode()).digest()
    return optuna.samplers.TPESampler(seed=int.from_bytes(digest[:4], "big"))


def _open_study(storage: Any, spec: SweepSpec) -> Any:
    optuna = _optuna()
    try:
        study = optuna.create_study(storage=storage, study_name=spec.name, direction=spec.direction,
                                    sampler=_sampler(spec), load_if_exists=True)
    except GumbelseqError:
        raise
    except Exception as e:
        raise GumbelseqError(f"cannot open study {spec.name!r} ({type(e).__name__}: {first_line(e)})") from None
    mark = study.user_attrs.get(_FINGERPRINT_ATTR)
    if mark is None:
        if study.get_trials(deepcopy=False):
            raise GumbelseqError(f"study {spec.name!r} already exists in the storage and was not made by gumbelseq sweep;"
                                 " give the sweep another name")
        study.set_user_attr(_FINGERPRINT_ATTR, spec.fingerprint())
    elif mark != spec.fingerprint():
        raise GumbelseqError(f"study {spec.name!r} in the storage was made from another sweep file (other settings);"
                             " give this one another name")
    return study


# -- the sweep folder ---------------------------------------------------------------------------


def _fail_folder(out: Path, entries: list[str]) -> RunError:
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    return RunError(f"{out}: not empty ({shown}) and not a sweep folder; --out must be a new or empty folder,"
                    " or a sweep folder to resume; nothing in it was touched")


def _claim(out: Path, spec: SweepSpec, storage: _Storage) -> tuple[rundir.DirLock, bool, Path | None]:
    """Lock the sweep folder: a new or empty one (``fresh``), or one holding this same sweep.
    Anything else is refused untouched."""
    if out.is_dir() and (out / SPEC_FILE).exists():
        lock = rundir.DirLock(out, "sweep folder")
        try:
            _check_same_sweep(out, spec, storage)
        except BaseException:
            lock.release()
            raise
        return lock, False, None
    if out.is_dir():
        try:
            entries = sorted(os.listdir(out))
        except OSError as e:
            raise RunError(f"{out}: cannot list the sweep folder ({e.strerror})") from None
        if entries:
            raise _fail_folder(out, entries)
    lock, created = rundir.claim_new_dir(out, "sweep folder")
    return lock, True, created


def _check_same_sweep(out: Path, spec: SweepSpec, storage: _Storage) -> None:
    path = out / SPEC_FILE
    try:
        recorded = json.loads(read_text(path, "sweep file record"))
    except (GumbelseqError, ValueError) as e:
        raise RunError(f"{path}: unreadable ({first_line(e)}); this folder cannot be resumed") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("fingerprint"), str):
        raise RunError(f"{path}: not a gumbelseq sweep record; this folder cannot be resumed")
    if recorded["fingerprint"] != spec.fingerprint():
        raise RunError(f"{out} holds sweep {recorded.get('name')!r} made from another sweep file (other settings);"
                       " use another --out, or the sweep file it was made from")
    if recorded.get("storage") != storage.describe:
        was = recorded.get("storage")
        hint = "leave out --storage" if was == "default" else f"pass --storage {was}"
        raise RunError(f"{out} was swept with storage {was}, not {storage.describe}; {hint}")


def _discard(out: Path, created: Path | None) -> None:
    """Undo a fresh claim that failed before the sweep started: only our own files."""
    for name in _OWN_FILES:
        with contextlib.suppress(OSError):
            (out / name).unlink()
    for sub in (LOGS, TRIALS):
        with contextlib.suppress(OSError):
            (out / sub).rmdir()
    rundir.discard_new_dir(out, created, names=())


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


def _no_live_workers(out: Path) -> bool:
    """Whether no worker process of this folder lives on this machine (they hold the lock
    shared for their whole life; the kernel drops it when a process dies)."""
    fd = os.open(out / _WORKERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# -- results ------------------------------------------------------------------------------------


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line: one ``write`` on an ``O_APPEND`` descriptor (the kernel places it
    at the end atomically, so concurrent writers never interleave), then ``fsync``."""
    data = (json.dumps(row, sort_keys=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # never happens on a local file; keeps the line whole if it does
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def read_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """The lines of ``DIR/results.jsonl`` (a last line cut short by a kill is skipped)."""
    p = Path(out_dir) / RESULTS
    if not p.exists():
        return []
    rows = []
    for line in read_text(p, "sweep results").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _point_key(params: dict[str, Any], seed: Any) -> str:
    return json.dumps({**params, "seed": seed}, sort_keys=True)


def _outcome(t: Any) -> str:
    """This module's state of an Optuna trial."""
    name = t.state.name
    if name == "WAITING":
        return WAITING
    if name == "RUNNING":
        return RUNNING
    if name == "COMPLETE":
        return COMPLETE
    return t.user_attrs.get("outcome", FAILED)


def _to_result(t: Any) -> TrialResult | None:
    state = _outcome(t)
    if state == _SURPLUS:
        return None
    ua = t.user_attrs
    params = ua.get("params")
    if params is None:  # asked but not yet suggested (a moment), or made outside gumbelseq
        params = {k: v for k, v in t.params.items() if k != "seed"}
    seed = ua.get("seed", t.params.get("seed"))
    return TrialResult(
        number=t.number, params=params, seed=seed, state=state,
        value=t.value if state == COMPLETE else None, metrics=ua.get("metrics", {}), run_dir=ua.get("run_dir"),
        seconds=ua.get("seconds"), error=ua.get("error"), retry_of=ua.get("retry_of"), worker=ua.get("worker"),
        started=ua.get("heartbeat_start"),
    )


def _results(study: Any) -> list[TrialResult]:
    out = [_to_result(t) for t in study.get_trials(deepcopy=False)]
    return sorted((r for r in out if r is not None), key=lambda r: r.number)


def missing_trials(spec: SweepSpec, results: Sequence[TrialResult]) -> int:
    """How many trials the sweep still needs: grid points without a complete trial, or
    ``n_trials`` minus the finished (complete or failed) trials of a search."""
    if spec.grid is not None:
        done = {_point_key(r.params, r.seed) for r in results if r.state == COMPLETE}
        return sum(1 for p in spec.grid_points() if _point_key({k: v for k, v in p.items() if k != "seed"}, p["seed"]) not in done)
    finished = sum(1 for r in results if r.state in (COMPLETE, FAILED))
    return max(0, int(spec.n_trials or 0) - finished)


def sweep_finished(spec: SweepSpec, results: Sequence[TrialResult]) -> bool:
    return missing_trials(spec, results) == 0 and not any(r.state in (RUNNING, WAITING) for r in results)


def best_by_params(spec: SweepSpec, results: Sequence[TrialResult]) -> list[dict[str, Any]]:
    """Complete trials grouped by their options (over seeds): mean, min and max of the metric,
    best first."""
    groups: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.state != COMPLETE or r.value is None:
            continue
        key = json.dumps(r.params, sort_keys=True)
        g = groups.setdefault(key, {"params": r.params, "seeds": [], "values": []})
        g["seeds"].append(r.seed)
        g["values"].append(r.value)
    rows = [{"params": g["params"], "seeds": g["seeds"], "mean": sum(g["values"]) / len(g["values"]),
             "min": min(g["values"]), "max": max(g["values"])} for g in groups.values()]
    rows.sort(key=lambda g: g["mean"], reverse=spec.direction == "maximize")
    return rows


# -- one trial ----------------------------------------------------------------------------------


class _Context:
    """What a worker needs, built once per process."""

    def __init__(self, spec: SweepSpec, out: Path, study: Any, grammar: Grammar, data: list[str],
                 plugins_dir: str | Path | None = None) -> None:
        self.spec, self.out, self.study, self.grammar, self.data = spec, out, study, grammar, data
        self.plugins_dir = plugins_dir
        self.host = socket.gethostname()
        self.here = str(out.resolve())
        self.points = [(_point_key({k: v for k, v in p.items() if k != "seed"}, p["seed"]), p)
                       for p in spec.grid_points()] if spec.grid is not None else []


def _short(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    return "".join(c if c.isalnum() or c in "._+-" else "_" for c in text)


def _run_dir_name(number: int, params: dict[str, Any], seed: int) -> str:
    """``NNNN-key=value-...-seed=S``, cut to a length every filesystem takes."""
    parts = [f"{k}={_short(v)}" for k, v in params.items()] + [f"seed={seed}"]
    return f"{number:04d}-" + "-".join(parts)[:100]


def _suggest(ctx: _Context, trial: Any) -> tuple[dict[str, Any], int]:
    """The trial's options and seed: fixed for a retry (``enqueue_trial``), else from the sampler."""
    spec = ctx.spec
    if spec.grid is not None:
        params = {k: trial.suggest_categorical(k, values) for k, values in spec.grid.items()}
        return params, int(trial.suggest_categorical("seed", spec.seeds))
    assert spec.search is not None
    params = {}
    for key, d in spec.search.items():
        if d.kind == "choices":
            params[key] = trial.suggest_categorical(key, list(d.choices))
        elif d.kind == "int":
            params[key] = trial.suggest_int(key, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
        else:
            params[key] = trial.suggest_float(key, float(d.low), float(d.high), step=d.step, log=d.log)
    seed = trial.user_attrs.get("seed")
    if seed is None:
        # A search cycles through the seeds by trial number; TPE takes the spread between
        # seeds as noise. (A grid makes the seed an axis instead.)
        seed = spec.seeds[trial.number % len(spec.seeds)]
    return params, int(seed)


def _surplus(ctx: _Context, number: int, key: str) -> bool:
    """Whether a trial just started duplicates work: the same grid point complete or running
    under a lower number, or a search whose budget is already taken. Only races between
    workers (on several machines) make one; the lower number wins, the other steps back."""
    trials = ctx.study.get_trials(deepcopy=False)
    if ctx.spec.grid is not None:
        for t in trials:
            if t.number == number or t.user_attrs.get("point") != key:
                continue
            if t.state.name == "COMPLETE" or (t.state.name == "RUNNING" and t.number < number):
                return True
        return False
    done = sum(1 for t in trials if _outcome(t) in (COMPLETE, FAILED))
    ahead = sum(1 for t in trials if t.state.name == "RUNNING" and t.number < number)
    return done + ahead >= int(ctx.spec.n_trials or 0)


class _Heartbeat:
    """Records on the trial, every ``HEARTBEAT_SECONDS``, that its worker is alive."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):  # a storage hiccup must not kill the trial
                self.trial.set_user_attr("heartbeat", time.time())

    def __enter__(self) -> "_Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _metrics_of(rep: Any) -> dict[str, Any]:
    keep = list(METRICS) + ["total", "max_len"]
    return {k: getattr(rep, k) for k in keep}


def _train_and_score(ctx: _Context, params: dict[str, Any], seed: int, run_rel: str) -> tuple[bool, dict[str, Any]]:
    """Train (or resume) the trial's run directory, sample and score it. Returns
    ``(stopped, metrics)``; ``stopped`` when Ctrl-C stopped training."""
    from .run import load_run
    from .train import resume_training, start_training

    spec = ctx.spec
    path = ctx.out / run_rel
    if (path / rundir.CONFIG).exists():
        result = resume_training(path, device=spec.device, plugins_dir=ctx.plugins_dir)
    else:
        if path.is_dir() and os.listdir(path):
            # Left by a worker killed while it was creating the run (before its config was
            # written): only run files can be there, in a folder this sweep named.
            rundir.discard_new_dir(path, None)
        result = start_training(grammar=ctx.grammar, backend=spec.backend, out_dir=path,
                                options=spec.trial_options(params), data=ctx.data,
                                data_source=f"sweep {spec.name} training set", max_len=spec.max_len, seed=seed,
                                device=spec.device, eval_every=spec.eval_every,
                                checkpoint_every=spec.checkpoint_every, final_samples=0,
                                plugins_dir=ctx.plugins_dir)
    if result.stopped:
        return True, {}
    run = load_run(path, device=spec.device, plugins_dir=ctx.plugins_dir)
    samples = run.sample(spec.samples, tau=1.0, seed=seed)
    write_lines(path / rundir.SAMPLES, samples)
    rep = score_samples(samples, ctx.grammar, reference=ctx.data, max_len=spec.max_len, show_invalid=0)
    return False, _metrics_of(rep)


def _finish(ctx: _Context, trial: Any, state: str, *, value: float | None = None, metrics: dict | None = None,
            seconds: float | None = None, error: str | None = None) -> None:
    """Record a trial's end in the storage (the truth), then its line in results.jsonl."""
    optuna = _optuna()
    attrs = {"outcome": state, "metrics": metrics or {}, "seconds": seconds, "error": error}
    try:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if state == COMPLETE:
            ctx.study.tell(trial, value)
        else:
            ctx.study.tell(trial, state=optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        # Another worker took this one for dead (no heartbeat for STALE_SECONDS) and queued
        # its retry; that retry counts, this result stays in results.jsonl only.
        state = FAILED if state != COMPLETE else state
        error = error or "finished after another worker had taken it for dead; see its retry"
    else:
        if state == INTERRUPTED:
            _enqueue_retry(ctx.study, trial.number, trial.user_attrs)
    ua = trial.user_attrs
    row = {"sweep": ctx.spec.name, "trial": trial.number, "params": ua.get("params"), "seed": ua.get("seed"),
           "state": state, "metric": ctx.spec.metric, "value": value, "metrics": metrics or {},
           "run_dir": ua.get("run_dir"), "seconds": seconds, "error": error, "retry_of": ua.get("retry_of"),
           "worker": ua.get("worker"), "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    append_result(ctx.out / RESULTS, row)


def _enqueue_retry(study: Any, number: int, ua: dict[str, Any]) -> None:
    """Queue another attempt at the same point (the same run directory, resumed if it has a
    checkpoint): Optuna runs WAITING trials before asking its sampler for new ones."""
    if not ua.get("point"):
        return  # stopped before it had a point: nothing to redo (a grid point stays unstarted)
    params = dict(ua.get("optuna_params") or {})
    study.enqueue_trial(params, user_attrs={"retry_of": number, "run_dir": ua.get("run_dir"), "seed": ua.get("seed"),
                                            "params": ua.get("params"), "point": ua.get("point")})


def _run_trial(ctx: _Context, trial: Any, params: dict[str, Any], seed: int) -> None:
    t0 = time.perf_counter()
    spec = ctx.spec
    run_rel = trial.user_attrs["run_dir"]
    try:
        with _Heartbeat(trial):
            stopped, metrics = _train_and_score(ctx, params, seed, run_rel)
    except KeyboardInterrupt:
        _finish(ctx, trial, INTERRUPTED, seconds=time.perf_counter() - t0, error="interrupted (Ctrl-C)")
        raise
    except GumbelseqError as e:
        _finish(ctx, trial, FAILED, seconds=time.perf_counter() - t0, error=str(e))
        return
    except Exception as e:  # a backend's bug fails its trial, not the whole sweep
        _finish(ctx, trial, FAILED, seconds=time.perf_counter() - t0, error=f"{type(e).__name__}: {first_line(e)}")
        return
    seconds = time.perf_counter() - t0
    if stopped:
        _finish(ctx, trial, INTERRUPTED, seconds=seconds, error="interrupted (Ctrl-C) at a checkpoint, which its retry resumes")
        raise KeyboardInterrupt
    value = metrics.get(spec.metric)
    if value is None:
        _finish(ctx, trial, FAILED, metrics=metrics, seconds=seconds,
                error=f"metric {spec.metric} is undefined for this trial's samples (e.g. novelty without valid samples)")
        return
    _finish(ctx, trial, COMPLETE, value=float(value), metrics=metrics, seconds=seconds)


# -- the worker loop ----------------------------------------------------------------------------


def _stale(ctx: _Context, t: Any, now: float) -> bool:
    beat = t.user_attrs.get("heartbeat")
    if beat is None and t.datetime_start is not None:
        beat = t.datetime_start.timestamp()
    return beat is not None and now - beat > STALE_SECONDS


def _abandon(ctx: _Context, t: Any, why: str) -> None:
    """Fail a trial whose worker is gone and queue its retry."""
    optuna = _optuna()
    # A frozen trial of another process has no setters; these are the storage calls
    # Trial.set_user_attr and Study.tell make.
    storage = ctx.study._storage
    try:
        for k, v in {"outcome": INTERRUPTED, "error": why}.items():
            storage.set_trial_user_attr(t._trial_id, k, v)
        storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    except Exception:
        return  # its worker finished it meanwhile (it was slow, not dead): nothing to redo
    _enqueue_retry(ctx.study, t.number, t.user_attrs)


def _retry_leftovers(ctx: _Context, *, local_dead: bool, private: bool = False) -> None:
    """Fail the trials whose worker is gone (this machine's when ``local_dead``; any
    machine's after ``STALE_SECONDS`` without a heartbeat) and queue what must be redone:
    interrupted trials without a retry and, for a grid, points whose every trial failed.
    ``private``: the storage is the folder's own journal, which only this machine uses, so a
    trial killed before it even recorded its host is this machine's too."""
    trials = ctx.study.get_trials(deepcopy=False)
    now = time.time()
    for t in trials:
        if t.state.name != "RUNNING":
            continue
        host = t.user_attrs.get("host")
        mine = (host == ctx.host and t.user_attrs.get("sweep_dir") == ctx.here) or (private and host is None)
        if (local_dead and mine) or _stale(ctx, t, now):
            _abandon(ctx, t, "its worker stopped (killed?) while it ran" if mine else "no heartbeat from its worker")
    trials = ctx.study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    live_points = {t.user_attrs.get("point") for t in trials if t.state.name in ("COMPLETE", "RUNNING", "WAITING")}
    for t in trials:
        if t.state.name != "FAIL" or t.number in retried or "point" not in t.user_attrs:
            continue
        state = _outcome(t)
        redo = state == INTERRUPTED or (state == FAILED and ctx.spec.grid is not None and local_dead)
        if redo and t.user_attrs["point"] not in live_points:
            _enqueue_retry(ctx.study, t.number, t.user_attrs)
            live_points.add(t.user_attrs["point"])


def _next(ctx: _Context, trials: list[Any]) -> bool:
    """Whether this worker should start (ask for) another trial."""
    if any(t.state.name == "WAITING" for t in trials):
        return not _all_done(ctx, trials)
    if ctx.spec.grid is not None:
        started = {t.user_attrs.get("point") for t in trials}
        return any(key not in started for key, _ in ctx.points)
    done = sum(1 for t in trials if _outcome(t) in (COMPLETE, FAILED))
    running = sum(1 for t in trials if t.state.name == "RUNNING")
    return done + running < int(ctx.spec.n_trials or 0)


def _all_done(ctx: _Context, trials: list[Any]) -> bool:
    if ctx.spec.grid is not None:
        complete = {t.user_attrs.get("point") for t in trials if t.state.name == "COMPLETE"}
        return all(key in complete for key, _ in ctx.points)
    return sum(1 for t in trials if _outcome(t) in (COMPLETE, FAILED)) >= int(ctx.spec.n_trials or 0)


ask_again = object()  # _ask's answer when it dropped a duplicate: ask once more


def _ask(ctx: _Context) -> tuple[Any, dict[str, Any], int] | None:
    """Take the next trial under the folder's ask lock (workers of one machine never race;
    across machines ``_surplus`` settles a race afterwards). None: nothing left to start."""
    with _flock(ctx.out / _ASK_LOCK, fcntl.LOCK_EX):
        _retry_leftovers(ctx, local_dead=False)
        trials = ctx.study.get_trials(deepcopy=False)
        if not _next(ctx, trials):
            return None
        if ctx.spec.search is not None:
            # Trial numbers are handed out in order, so under this lock the new trial's number
            # is the count so far (a queued retry keeps its own, but has fixed params).
            ctx.study.sampler = _tpe_for(ctx.spec, len(trials))
        trial = ctx.study.ask()
        params, seed = _suggest(ctx, trial)
        key = _point_key(params, seed)
        run_rel = trial.user_attrs.get("run_dir") or f"{TRIALS}/{_run_dir_name(trial.number, params, seed)}"
        attrs = {"params": params, "seed": seed, "point": key, "run_dir": run_rel, "host": ctx.host,
                 "sweep_dir": ctx.here, "worker": f"{ctx.host}:{os.getpid()}", "optuna_params": dict(trial.params),
                 "heartbeat": time.time(), "heartbeat_start": time.time()}
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if _surplus(ctx, trial.number, key):
            trial.set_user_attr("outcome", _SURPLUS)
            ctx.study.tell(trial, state=_optuna().trial.TrialState.FAIL)
            return ask_again  # type: ignore[return-value]
    return trial, params, seed


def work(ctx: _Context, *, index: int = 0, limit: int | None = None, parent: int | None = None) -> int:
    """Run trials until none is left to start (or ``limit`` trials started, or the parent
    process is gone). Holds the folder's workers lock shared meanwhile. Returns the number of
    trials run; Ctrl-C propagates as ``KeyboardInterrupt`` after the trial is recorded."""
    fd = os.open(ctx.out / _WORKERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    ran = 0
    try:
        while limit is None or ran < limit:
            if parent is not None and os.getppid() != parent:
                break  # the command was killed: stop taking trials (the one running ended)
            got = _ask(ctx)
            if got is ask_again:
                continue
            if got is None:
                break
            trial, params, seed = got
            ran += 1
            _run_trial(ctx, trial, params, seed)
    finally:
        os.close(fd)
    return ran


def worker_context(out: Path, plugins_dir: str | Path | None = None) -> _Context:
    """A worker process's context, from the sweep folder (its spec and data, never the sweep
    file, which may have been edited since) and the storage the command passed on."""
    try:
        raw = json.loads(read_text(out / SPEC_FILE, "sweep record"))
        spec = SweepSpec.from_dict(raw["spec"])
    except (GumbelseqError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{out / SPEC_FILE}: unreadable ({first_line(e)})") from None
    storage = _Storage(os.environ.get(STORAGE_ENV) or None, out)
    study = _open_study(storage.open(), spec)
    grammar = load_grammar(spec.grammar, start=spec.start)
    from .train import read_data

    return _Context(spec, out, study, grammar, read_data(out / DATA_FILE), plugins_dir)


# -- the command --------------------------------------------------------------------------------


def _spawn(out: Path, index: int, threads: int, storage: _Storage, limit: int | None,
           plugins_dir: str | Path | None) -> subprocess.Popen:
    (out / LOGS).mkdir(exist_ok=True)
    log = open(out / LOGS / f"worker-{index}.log", "ab")
    cmd = [sys.executable, "-m", "gumbelseq.model.sweep_worker", str(out), "--index", str(index),
           "--threads", str(threads), "--parent", str(os.getpid())]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    if plugins_dir is not None:
        cmd += ["--plugins-dir", str(plugins_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.pop(STORAGE_ENV, None)
    if storage.url is not None:
        env[STORAGE_ENV] = storage.url
    # The worker must import this very gumbelseq, installed or not.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        # Its own session: a terminal's Ctrl-C reaches the command only, which passes one
        # SIGINT on (a second one would abort the worker's training step at once).
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    finally:
        log.close()


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    workers: int = 1,
    storage: str | None = None,
    on_update: Callable[[list[TrialResult]], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    trials_per_worker: int | None = None,
    poll_seconds: float = 1.0,
    plugins_dir: str | Path | None = None,
) -> list[TrialResult]:
    """Run (or resume) the sweep ``spec`` in the sweep folder ``out_dir``; returns every trial.

    ``workers`` processes share the storage (1: this process trains). ``storage``: a journal
    file path or a database URL (default ``out_dir/optuna.journal``). ``on_update`` receives
    the trials as the storage has them, every ``poll_seconds``. ``trials_per_worker`` caps the
    trials each worker starts (a partial run, resumed by the next call). Ctrl-C
    (``KeyboardInterrupt``) stops the workers after their current iteration and is re-raised
    once every trial is recorded. Everything that can be refused is refused before anything is
    written.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
        raise GumbelseqError(f"workers must be an integer in [1, 256], got {workers!r}")
    from .train import resolve_device

    _optuna()
    say = on_message or (lambda _m: None)
    out = Path(out_dir)
    resolve_device(spec.device)
    grammar = load_grammar(spec.grammar, start=spec.start)
    if hashlib.sha256(grammar.text.encode()).hexdigest() != spec.grammar_sha256 and spec.grammar_sha256:
        raise GumbelseqError(f"{spec.grammar}: the grammar file changed since the sweep file was read")
    data = spec.training_data(grammar)
    store = _Storage(storage, out)
    store.check(out)
    lock, fresh, created = _claim(out, spec, store)
    try:
        try:
            _repair_tails(out, store)  # a fresh folder has nothing to repair, but a shared journal may
            study = _open_study(store.open(), spec)
            if fresh:
                write_lines(out / DATA_FILE, data)
                (out / TRIALS).mkdir(exist_ok=True)
                record = {"version": 1, "name": spec.name, "fingerprint": spec.fingerprint(), "storage": store.describe,
                          "spec": spec.to_dict()}
                write_text_atomic(out / SPEC_FILE, json.dumps(record, indent=2) + "\n")  # last: marks the folder
        except BaseException:
            if fresh:
                _discard(out, created)
            raise
        if not _no_live_workers(out):
            raise RunError(f"{out}: workers of an earlier sweep command are still finishing their trials; wait for them")
        ctx = _Context(spec, out, study, grammar, data, plugins_dir)
        with _flock(out / _ASK_LOCK, fcntl.LOCK_EX):
            _retry_leftovers(ctx, local_dead=True, private=store.url is None)
        with _interruptible():
            if workers == 1:
                _run_here(ctx, on_update, poll_seconds, trials_per_worker)
            else:
                _run_workers(ctx, store, workers, on_update, say, poll_seconds, trials_per_worker, plugins_dir)
        return _results(study)
    finally:
        lock.release()


def _repair_tails(out: Path, store: _Storage) -> None:
    """A kill (or a full disk) can leave the last line of ``results.jsonl`` or of the journal
    cut short; appending after it glued the next record to it (a results line lost, a journal
    Optuna could no longer read). With the folder's lock held and no workers of an earlier
    command alive, the folder's own files are ours to cut back to their last whole line; a
    journal given with ``--storage`` may be shared with other machines, so it is only refused."""
    if not _no_live_workers(out):
        raise RunError(f"{out}: workers of an earlier sweep command are still finishing their trials; wait for them")
    _drop_partial_line(out / RESULTS)
    if store.kind == "journal" and store.path is not None:
        if store.url is None:
            _drop_partial_line(store.path)
        elif _partial_line_at(store.path) is not None:
            raise GumbelseqError(
                f"--storage {store.url}: its last line is cut short (a killed writer?); if no other sweep is"
                " using it, remove that line and run again"
            )


def _partial_line_at(path: Path) -> int | None:
    """Where the cut-short last line of ``path`` starts, or None if it ends with a newline."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return None
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return None
            start = size
            while start > 0:  # back to the previous newline, a block at a time
                step = min(start, 1 << 16)
                f.seek(start - step)
                block = f.read(step)
                i = block.rfind(b"\n")
                if i >= 0:
                    return start - step + i + 1
                start -= step
            return 0
    except FileNotFoundError:
        return None


def _drop_partial_line(path: Path) -> None:
    cut = _partial_line_at(path)
    if cut is not None:
        os.truncate(path, cut)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt here even when this process was started with SIGINT
    ignored (a shell's background job): a stop request must reach the sweep, as it reaches
    `train`, which installs its own handler for the same reason."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_here(ctx: _Context, on_update: Callable | None, poll: float, limit: int | None) -> None:
    stop = threading.Event()

    def monitor() -> None:
        while True:
            with contextlib.suppress(Exception):  # the display must never break the sweep
                if on_update is not None:
                    on_update(_results(ctx.study))
            if stop.wait(poll):
                return

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    try:
        work(ctx, limit=limit)
    finally:
        stop.set()
        thread.join(timeout=10)
        if on_update is not None:
            with contextlib.suppress(Exception):
                on_update(_results(ctx.study))


def _run_workers(ctx: _Context, store: _Storage, n: int, on_update: Callable | None, say: Callable[[str], None],
                 poll: float, limit: int | None, plugins_dir: str | Path | None) -> None:
    threads = max(1, usable_cpus() // n)
    procs = [_spawn(ctx.out, i + 1, threads, store, limit, plugins_dir) for i in range(n)]
    say(f"{n} workers, {threads} torch thread{'s' if threads > 1 else ''} each; logs in {ctx.out / LOGS}")
    interrupted = False
    try:
        while True:
            if on_update is not None:
                with contextlib.suppress(Exception):
                    on_update(_results(ctx.study))
            if all(p.poll() is not None for p in procs):
                break
            time.sleep(poll)
    except KeyboardInterrupt:
        interrupted = True
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGINT)
        say("stopping: the workers finish their current iteration and save it")
        while any(p.poll() is None for p in procs):
            try:
                for p in procs:
                    p.wait()
            except KeyboardInterrupt:  # a second Ctrl-C: stop the step itself
                for p in procs:
                    if p.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            p.send_signal(signal.SIGINT)
    if on_update is not None:
        with contextlib.suppress(Exception):
            on_update(_results(ctx.study))
    if interrupted:
        raise KeyboardInterrupt
    bad = [(i + 1, p.returncode) for i, p in enumerate(procs) if p.returncode not in (0, 130)]
    if bad:
        i, code = bad[0]
        log = ctx.out / LOGS / f"worker-{i}.log"
        raise GumbelseqError(f"worker {i} failed (exit status {code}): {_last_line(log) or 'no message'}; its log: {log}")
