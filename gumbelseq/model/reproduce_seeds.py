"""A reproduction over several seeds, and its aggregate: how much the figures move between seeds.

``reproduce_seeds(out, [0, 1, 2])`` makes, for each seed S, the ordinary single-seed
reproduction ``reproduce(out / "seed-S", seed=S)`` (the same folder layout and ``settings.json``
as ``gumbelseq reproduce --seed S --out OUT/seed-S``, so a folder made that way is reused as it
is: finished runs are not retrained), then writes ``out/report.json`` and ``out/report.md``: per
row and column, the mean, the sample standard deviation (n - 1), the minimum, the maximum and
every seed's figure, and per row the worst seed (lowest validity).

``workers > 1`` runs that many seeds at a time, each in its own process
(``python -m gumbelseq reproduce --seed S --out OUT/seed-S ...``) with
``max(1, cpus // workers)`` torch threads, so that they do not fight over the cores. The
children run in their own process group: Ctrl-C reaches this process only, which asks every
child to stop once (each saves a resumable checkpoint, exactly as a single Ctrl-C does to
``gumbelseq reproduce``), waits for them, and re-raises; a second Ctrl-C stops them at once.
Running the same command again resumes everything.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..cpus import usable_cpus
from ..errors import GumbelseqError, InputFileError, RunError
from ..inputs import read_text
from ..outputs import write_text_atomic
from ..parent_death import PARENT_ENV
from . import rundir
from .reproduce import (MAX_LEN, Column, check_folder_settings, columns, format_published, format_value, prepare,
                        reproduce, row_value, _pct, _settings)
from .rundir import check_seed
from .suite import PAPER, ModelSpec, Suite
from .train import Callback

SEED_DIR = "seed-{}"
SEED_DIR_RE = re.compile(r"^seed-(0|[1-9][0-9]*)$")
#: Written in a seeds folder on its first use: what its seed folders were made with.
MARKER = "seeds.json"
REPORTS = ("report.md", "report.json")


class SeedsError(GumbelseqError):
    """Bad ``--seeds``/``--workers`` values, or a seed that failed."""


# -- statistics -----------------------------------------------------------------------------------


def summarize(values: dict[int, float | int | None]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1; ``None`` below two figures), min, max and the
    count of the figures that are not ``None``; ``values`` kept as given (keys as strings)."""
    raw = [v for v in values.values() if v is not None]
    xs = [float(v) for v in raw]
    n = len(xs)
    mean = math.fsum(xs) / n if n else None
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n >= 2 else None  # type: ignore[operator]
    return {"mean": mean, "std": std, "min": min(raw) if raw else None, "max": max(raw) if raw else None, "n": n,
            "values": {str(s): v for s, v in values.items()}}


@dataclass
class AggregateRow:
    key: str
    label: str
    backend: str
    #: Column key -> ``summarize`` of that column over the seeds that have the row.
    metrics: dict[str, dict[str, Any]]
    #: The seed whose validity is lowest (the first such, in the order given), and its validity.
    worst_seed: int | None
    worst_validity: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "backend": self.backend, "worst_seed": self.worst_seed,
                "worst_validity": self.worst_validity, "metrics": self.metrics}


def aggregate(reports: dict[int, dict[str, Any]], cols: Sequence[Column]) -> list[AggregateRow]:
    """Per row (in the first report's order, then any others'), each column summarized over
    the seeds' ``report.json`` contents ``reports`` (seed -> report)."""
    order: dict[str, dict[str, Any]] = {}
    for rep in reports.values():
        for row in rep["rows"]:
            order.setdefault(row["key"], row)
    out = []
    for key, first in order.items():
        per_seed = {s: next((r for r in rep["rows"] if r["key"] == key), None) for s, rep in reports.items()}
        present = {s: r for s, r in per_seed.items() if r is not None}
        metrics = {c.key: summarize({s: row_value(r, c.key) for s, r in present.items()}) for c in cols}
        validities = [(s, r.get("validity")) for s, r in present.items() if r.get("validity") is not None]
        worst = min(validities, key=lambda sv: sv[1]) if validities else (None, None)  # min keeps the first of ties
        out.append(AggregateRow(key, first.get("label", key), first.get("backend", ""), metrics, worst[0], worst[1]))
    return out


# -- the aggregate report -------------------------------------------------------------------------


@dataclass
class SeedsReproduction:
    out_dir: Path
    suite: Suite
    seeds: list[int]
    quick: bool
    n_samples: int | None
    max_len: int
    rows: list[AggregateRow]
    #: Each seed's folder (relative to ``out_dir``).
    folders: dict[int, str]

    def columns(self) -> list[Column]:
        return columns(self.suite, self.max_len)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "suite": self.suite.name,
            "seeds": self.seeds,
            "quick": self.quick,
            "n_samples": self.n_samples,
            "statistics": "mean, sample standard deviation (n - 1), min, max over the seeds; values: each seed's figure",
            "columns": [{"key": c.key, "heading": c.heading, "kind": c.kind} for c in self.columns()],
            "rows": [r.to_dict() for r in self.rows],
            "folders": {str(s): f for s, f in self.folders.items()},
            "published": [p.to_dict() for p in self.suite.published],
        }


def _cell(stat: dict[str, Any], kind: str) -> str:
    if stat["mean"] is None:
        return "-" if kind == "time" else "n/a"
    return format_published(stat["mean"], stat["std"], kind)


def _range(stat: dict[str, Any], kind: str) -> str:
    if stat["mean"] is None:
        return "-" if kind == "time" else "n/a"
    return f"{format_value(stat['min'], kind)} – {format_value(stat['max'], kind)}"


def headings(agg: SeedsReproduction) -> list[str]:
    return ["model", *(c.heading for c in agg.columns()), "worst seed (validity)"]


def table_rows(agg: SeedsReproduction, *, published: bool = False) -> list[list[str]]:
    """The aggregate table's cells: ``mean ± std`` per column, and the worst seed."""
    cols = agg.columns()
    out = []
    for r in agg.rows:
        worst = "n/a" if r.worst_seed is None else f"seed {r.worst_seed}: {_pct(r.worst_validity)}"
        out.append([r.label, *(_cell(r.metrics[c.key], c.kind) for c in cols), worst])
    if published:
        from .reproduce import published_rows

        out += [[*cells, "-"] for cells in published_rows(agg.suite, cols)]
    return out


def render_markdown(agg: SeedsReproduction) -> str:
    cols = agg.columns()
    heads = headings(agg)
    seeds = ", ".join(str(s) for s in agg.seeds)
    lines = [
        f"# {agg.suite.title}: {len(agg.seeds)} seeds",
        "",
        f"Seeds {seeds}; each is an ordinary reproduction in `seed-N/` (its own `report.md` there), with"
        f" {agg.n_samples} samples per model." + (" **Quick mode: tiny budgets, not the paper's.**" if agg.quick else ""),
        "Cells: mean ± sample standard deviation (n - 1) over the seeds (a single figure where only one seed has it);",
        "worst seed: the seed of lowest validity. Every seed's figure is in `report.json`.",
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "|".join("---" for _ in heads) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(agg, published=True)]
    if agg.suite.published:
        lines += ["", "Published rows are figures reported elsewhere, not measured here:", ""]
        lines += [f"- {p.label}: {p.source}" for p in agg.suite.published]
    lines += ["", "## Range over the seeds (min – max)", "",
              "| " + " | ".join(["model", *(c.heading for c in cols)]) + " |",
              "|" + "|".join("---" for _ in range(len(cols) + 1)) + "|"]
    for r in agg.rows:
        lines.append("| " + " | ".join([r.label, *(_range(r.metrics[c.key], c.kind) for c in cols)]) + " |")
    lines.append("")
    return "\n".join(lines)


# -- running --------------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` (or ``"0-4"`` ranges, mixed) -> distinct seeds, in order; one-line errors."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise SeedsError(f"--seeds {text!r}: expected seeds like 0,1,2 or 0-4, got {part!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise SeedsError(f"--seeds {text!r}: the range {part} is empty")
        if hi - lo >= 10_000:
            raise SeedsError(f"--seeds {text!r}: the range {part} has more than 10,000 seeds")
        for s in range(lo, hi + 1):
            if s in seeds:
                raise SeedsError(f"--seeds {text!r}: seed {s} is given twice")
            seeds.append(check_seed(s))
    return seeds


def threads_per_worker(workers: int) -> int:
    """Torch threads of each of ``workers`` children: the machine's cores shared out."""
    return max(1, usable_cpus() // workers)


def _marker(quick: bool, device: str, suite: Suite) -> dict[str, Any]:
    marker = _settings(0, quick, device, suite)
    del marker["seed"]  # each seed folder records its own
    return marker


def _claim_seeds_folder(out: Path, marker: dict[str, Any]) -> rundir.DirLock:
    """Lock ``out``: a new or empty folder, or one holding only what ``reproduce --seeds``
    makes (``seed-N`` folders, such as ``gumbelseq reproduce --seed N --out OUT/seed-N``
    makes; its marker and reports). Anything else is the user's and is refused untouched."""
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a folder; --out must be a new or empty folder")
    if not out.exists():
        lock, _created = rundir.claim_new_dir(out, "seeds folder")
        return lock
    lock = rundir.DirLock(out, "seeds folder")
    try:
        entries = sorted(os.listdir(out))
        ours = MARKER in entries
        foreign = [e for e in entries if not ((SEED_DIR_RE.match(e) and (out / e).is_dir())
                                             or e == MARKER or (ours and e in REPORTS))]
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise RunError(f"{out}: holds what a seeds reproduction does not make ({shown}); --out must be a new or"
                           " empty folder, or one of seed-N folders made by reproduce; nothing in it was touched")
        if ours:
            path = out / MARKER
            try:
                recorded = json.loads(read_text(path, "seeds marker"))
            except (InputFileError, json.JSONDecodeError) as e:
                raise RunError(f"{path}: unreadable ({e})") from None
            from .reproduce import _differences

            differ = _differences(recorded if isinstance(recorded, dict) else {}, marker)
            if differ:
                raise RunError(f"{out} holds seeds made with other settings: {', '.join(differ)};"
                               " use another --out (or delete the folder to redo it)")
    except BaseException:
        lock.release()
        raise
    return lock


def _read_report(path: Path) -> dict[str, Any]:
    try:
        rep = json.loads(read_text(path, "report"))
    except (InputFileError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: unreadable ({e}); run the command again to rewrite it") from None
    ok = isinstance(rep, dict) and isinstance(rep.get("rows"), list) and all(
        isinstance(r, dict) and isinstance(r.get("key"), str) for r in rep["rows"])
    if not ok:
        raise RunError(f"{path}: not a reproduction report (rows missing); run the command again to rewrite it")
    return rep


def reproduce_seeds(
    out_dir: str | Path,
    seeds: Sequence[int],
    *,
    workers: int = 1,
    suite: Suite | str = "paper",
    quick: bool = False,
    device: str = "cpu",
    only: Sequence[str] | None = None,
    progress: Callable[[ModelSpec], Sequence[Callback]] | None = None,
    on_message: Callable[[str], None] | None = None,
    plots: bool = True,
) -> SeedsReproduction:
    """One reproduction per seed in ``out_dir/seed-N``, ``workers`` at a time, then the
    aggregate ``report.json`` and ``report.md`` in ``out_dir`` (see the module's docstring).
    Everything that can be refused (the suite, the device, ``only``, every seed folder's
    recorded settings) is checked before anything is written or trained."""
    seeds = [check_seed(s) for s in seeds]
    if not seeds:
        raise SeedsError("no seeds given")
    if len(set(seeds)) != len(seeds):
        raise SeedsError("a seed is given twice")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise SeedsError(f"workers must be an integer >= 1, got {workers!r}")
    say = on_message or (lambda _m: None)
    out = Path(out_dir)
    the_suite, dev, _specs = prepare(suite, device=device, plots=plots, only=only)
    lock = _claim_seeds_folder(out, _marker(quick, dev.type, the_suite))
    try:
        for s in seeds:
            check_folder_settings(out / SEED_DIR.format(s), _settings(s, quick, dev.type, the_suite))
        write_text_atomic(out / MARKER, json.dumps(_marker(quick, dev.type, the_suite), indent=2) + "\n")
        t0 = time.perf_counter()
        if workers == 1 or len(seeds) == 1:
            for s in seeds:
                say(f"seed {s}: reproduction in {out / SEED_DIR.format(s)}")
                reproduce(out / SEED_DIR.format(s), seed=s, suite=the_suite, quick=quick, device=device, only=only,
                          progress=progress, on_message=lambda m, s=s: say(f"seed {s}: {m}"), plots=plots)
        else:
            _run_children(out, seeds, workers, the_suite, quick=quick, device=device, only=only, plots=plots, say=say)
        reports = {s: _read_report(out / SEED_DIR.format(s) / "report.json") for s in seeds}
        first = reports[seeds[0]]
        max_len = (first.get("data") or {}).get("max_len") or the_suite.max_len or MAX_LEN
        agg = SeedsReproduction(out, the_suite, list(seeds), quick, first.get("n_samples"), max_len,
                                aggregate(reports, columns(the_suite, max_len)),
                                {s: SEED_DIR.format(s) for s in seeds})
        write_text_atomic(out / "report.json", json.dumps(agg.to_dict(), indent=2) + "\n")
        write_text_atomic(out / "report.md", render_markdown(agg))
        say(f"{len(seeds)} seeds done in {time.perf_counter() - t0:.0f} s")
        return agg
    finally:
        lock.release()


def child_command(seed: int, out: Path, suite: Suite, *, quick: bool, device: str, only: Sequence[str] | None,
                  plots: bool) -> list[str]:
    """The ``gumbelseq reproduce`` command line a worker runs for ``seed``."""
    cmd = [sys.executable, "-m", "gumbelseq", "reproduce", "--seed", str(seed), "--out", str(out / SEED_DIR.format(seed)),
           "--device", device]
    if suite is not PAPER:
        cmd += ["--suite", suite.name if suite.source == "built-in" else str(Path(suite.source).absolute())]
    if quick:
        cmd.append("--quick")
    for key in only or ():
        cmd += ["--only", key]
    if not plots:
        cmd.append("--no-plots")
    return cmd


class _Child:
    def __init__(self, seed: int, cmd: list[str], env: dict[str, str], say: Callable[[str], None]) -> None:
        self.seed = seed
        self.errors: list[str] = []
        self.last = ""  # the last line it wrote: what a crash without an Error: line says
        # Its own session: Ctrl-C at the terminal reaches the parent only, which then asks each
        # child once (a second SIGINT would interrupt a child's checkpoint at once).
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=env, text=True, errors="replace", start_new_session=True)
        self.reader = threading.Thread(target=self._read, args=(say,), daemon=True)
        self.reader.start()

    def _read(self, say: Callable[[str], None]) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip()
            if not line:
                continue
            if line.startswith("Error:"):
                self.errors.append(line.removeprefix("Error:").strip())
            self.last = line.strip()
            say(f"seed {self.seed}: {line}")

    def done(self) -> bool:
        if self.proc.poll() is None:
            return False
        self.reader.join()
        return True


def _run_children(out: Path, seeds: Sequence[int], workers: int, suite: Suite, *, quick: bool, device: str,
                  only: Sequence[str] | None, plots: bool, say: Callable[[str], None]) -> None:
    threads = threads_per_worker(workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env[PARENT_ENV] = str(os.getpid())  # a child stops (checkpointing) if this command is killed
    lock = threading.Lock()

    def locked_say(m: str) -> None:
        with lock:
            say(m)

    say(f"{len(seeds)} seeds, {workers} at a time, {threads} torch thread{'s' if threads > 1 else ''} each")
    pending = list(seeds)
    running: list[_Child] = []
    finished: list[_Child] = []
    try:
        while pending or running:
            while pending and len(running) < workers:
                s = pending.pop(0)
                cmd = child_command(s, out, suite, quick=quick, device=device, only=only, plots=plots)
                running.append(_Child(s, cmd, env, locked_say))
            for child in [c for c in running if c.done()]:
                running.remove(child)
                finished.append(child)
            time.sleep(0.1)
    except KeyboardInterrupt:
        _stop(running, say)
        raise
    failed = [c for c in finished if c.proc.returncode != 0]
    if failed:
        c = failed[0]
        if c.errors:
            why = c.errors[-1]
        elif c.proc.returncode in (130, -signal.SIGINT):
            why = "stopped; run the same command again to resume"
        else:
            why = f"exit status {c.proc.returncode}" + (f" ({c.last[:200]})" if c.last else "")
        more = f" (and seeds {', '.join(str(f.seed) for f in failed[1:])})" if len(failed) > 1 else ""
        raise SeedsError(f"seed {c.seed} failed{more}: {why}")


def _stop(children: list[_Child], say: Callable[[str], None]) -> None:
    """Ask each running child to stop (one SIGINT: it checkpoints and exits), and wait; a
    further Ctrl-C sends a second SIGINT (the child stops at once), a third kills."""
    say(f"stopping {len(children)} running seed{'s' if len(children) != 1 else ''}")
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGKILL):
        live = [c for c in children if c.proc.poll() is None]
        for c in live:
            try:
                c.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            for c in live:
                c.proc.wait()
                c.reader.join()
            return
        except KeyboardInterrupt:
            continue
