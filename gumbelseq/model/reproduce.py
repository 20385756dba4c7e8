"""Reproduce Kusner & Hernandez-Lobato (2016) with numbers, and the preset that beats it.

``reproduce(out_dir, seed=0)`` draws one training set from the arith grammar (5000 strings,
length <= 12), trains on it every model the registered backends declare in their
``reproduce_suite`` (the built-ins: the MLE baseline, the GAN (a) of the paper's figures and its
variants (b), (c), (d), and the ``best`` preset), samples 10,000 strings from each and scores
them against the grammar and the training set. A reference row scores a fresh draw from
the grammar the same way, as MOSES does for its training set: it is what a perfect model gets.

Each model trains in its own run directory under ``out_dir/runs``; re-running the command
reuses finished runs and resumes unfinished ones, so a long reproduction survives a Ctrl-C.
"""

from __future__ import annotations

import importlib.util
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..errors import GumbelseqError, InputFileError, RunError
from ..inputs import read_text
from ..lang.dataset import draw_dataset
from ..lang.grammar import Grammar, load_grammar
from ..lang.score import Report, score_samples
from ..outputs import atomic_open, write_lines, write_text_atomic
from . import rundir
from .registry import get_registry
from .rundir import check_seed
from .suite import ModelSpec
from .run import Run, load_run
from .train import Callback, read_data, read_metrics, resolve_device, resume_training, start_training

MAX_LEN = 12
N_TRAIN = 5000


def paper_models(plugins_dir: str | Path | None = None) -> list[ModelSpec]:
    """The rows of the table: every registered backend's ``reproduce_suite``, by ``order``."""
    specs: list[ModelSpec] = []
    owner: dict[str, str] = {}
    for entry in get_registry(plugins_dir).entries():
        for spec in entry.backend.reproduce_suite:
            if spec.key in owner:
                raise GumbelseqError(f"reproduce model {spec.key!r} is declared by backends {owner[spec.key]} and {entry.name}")
            owner[spec.key] = entry.name
            specs.append(replace(spec, backend=entry.name))
    return sorted(specs, key=lambda s: s.order)  # stable: ties keep the declared order


#: --quick: the same pipeline, tiny budgets, for tests and smoke runs.
QUICK = {"iterations": 30, "samples": 1000, "batch_size": 50}


@dataclass
class Row:
    key: str
    label: str
    backend: str
    what: str
    command: str
    options: dict[str, Any]
    iterations: int
    train_seconds: float | None
    validity: float | None
    unique_valid: int
    novelty: float | None
    coverage: float | None
    train_coverage: float | None
    tv_strings: float | None
    tv_lengths: float | None
    samples: list[str] = field(default_factory=list)

    @classmethod
    def from_report(cls, spec_key: str, label: str, backend: str, what: str, command: str,
                    options: dict[str, Any], iterations: int, seconds: float | None,
                    rep: Report, samples: list[str]) -> "Row":
        return cls(spec_key, label, backend, what, command, options, iterations, seconds,
                   rep.validity, rep.unique_valid, rep.novelty, rep.coverage,
                   rep.reference_coverage, rep.tv_strings, rep.tv_lengths, samples[:20])


@dataclass
class Reproduction:
    out_dir: Path
    seed: int
    quick: bool
    n_samples: int
    rows: list[Row]
    environment: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


def _command(spec: ModelSpec, seed: int, quick: bool, n_samples: int = 10_000) -> str:
    if spec.sample_of:
        flag = " --constrained" if spec.constrained else ""
        return f"gumbelseq sample --run runs/{spec.sample_of}{flag} -n {n_samples} --seed {seed}"
    options = _expected_options(spec, quick)
    flags = ("iterations", "batch_size") if quick else ()
    opts = " ".join(f"-o {k}={v}" for k, v in options.items() if k not in flags)
    it = f" --iterations {options['iterations']} --batch-size {options['batch_size']}" if quick else ""
    return f"gumbelseq train --grammar arith --backend {spec.backend} --seed {seed}{it} {opts}".strip()


class _Announce(Callback):
    def __init__(self, say: Callable[[str], None], label: str) -> None:
        self.say, self.label = say, label

    def on_start(self, run_dir: Path, total: int, start: int, config: Any) -> None:
        self.say(f"{self.label}: training in {run_dir}" + (f" from iteration {start}" if start else ""))


def _expected_options(spec: ModelSpec, quick: bool) -> dict[str, Any]:
    options = dict(spec.options)
    if quick:
        options.update(iterations=QUICK["iterations"], batch_size=QUICK["batch_size"])
        options.update(spec.quick_options)
    return options


def _read_timing(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"train_seconds": 0.0, "finished": False}
    try:
        raw = json.loads(read_text(path, "timing file"))
    except (InputFileError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: unreadable ({e}); delete it to retrain that model") from None
    ok = (isinstance(raw, dict) and isinstance(raw.get("finished"), bool)
          and isinstance(raw.get("train_seconds"), (int, float)) and not isinstance(raw.get("train_seconds"), bool)
          and math.isfinite(raw["train_seconds"]) and raw["train_seconds"] >= 0)
    if not ok:
        raise RunError(f'{path}: expected {{"train_seconds": number >= 0, "finished": true|false}}; delete it to retrain that model')
    return raw


def _check_reusable(run_dir: Path, spec: ModelSpec, options: dict[str, Any], seed: int) -> None:
    """A run found in the folder is reused only if it was made with the settings asked for."""
    cfg = rundir.read_config(run_dir)
    problems = []
    if cfg.backend != spec.backend:
        problems.append(f"backend {cfg.backend} (asked: {spec.backend})")
    if cfg.seed != seed:
        problems.append(f"seed {cfg.seed} (asked: {seed})")
    for key, value in options.items():
        if cfg.options.get(key) != value:
            problems.append(f"{key} {cfg.options.get(key)} (asked: {value})")
    if problems:
        raise RunError(f"{run_dir} was made with other settings: {', '.join(problems)}; delete it to retrain, or use another --out")


def run_model(
    spec: ModelSpec,
    run_dir: Path,
    train_set: Sequence[str],
    grammar: Grammar,
    *,
    seed: int = 0,
    n_samples: int = 10_000,
    quick: bool = False,
    device: str = "cpu",
    progress: Callable[[ModelSpec], Sequence[Callback]] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> Row:
    """Train one model on ``train_set`` in ``run_dir`` (reusing a finished run made with the
    same settings, resuming an unfinished one), draw ``n_samples`` at tau 1 and score them
    against the grammar and the training set."""
    say = on_message or (lambda _m: None)
    options = _expected_options(spec, quick)
    timing = run_dir / "timing.json"
    # Announced when training starts (not before its checks), so a refusal is one line.
    callbacks = [_Announce(say, spec.label), *(progress(spec) if progress else ())]
    if not (run_dir / rundir.CONFIG).exists():
        timing.unlink(missing_ok=True)  # a model being retrained after its run was deleted
        t0 = time.perf_counter()
        result = start_training(grammar=grammar, backend=spec.backend, out_dir=run_dir, options=options,
                                data=list(train_set), data_source="reproduce training set", max_len=MAX_LEN,
                                seed=seed, device=device, eval_every=QUICK["iterations"] if quick else 1000,
                                final_samples=0, callbacks=callbacks)
        seconds = time.perf_counter() - t0
        done = {"train_seconds": seconds, "finished": not result.stopped}
        write_text_atomic(timing, json.dumps(done) + "\n")
    else:
        _check_reusable(run_dir, spec, options, seed)
        done = _read_timing(timing)
        if done["finished"]:
            say(f"{spec.label}: reusing the finished run in {run_dir}")
        if not done["finished"]:
            t0 = time.perf_counter()
            result = resume_training(run_dir, device=device, callbacks=callbacks)
            done = {"train_seconds": done["train_seconds"] + time.perf_counter() - t0, "finished": not result.stopped}
            write_text_atomic(timing, json.dumps(done) + "\n")
    if not done["finished"]:
        raise KeyboardInterrupt  # the caller says how to resume
    run = load_run(run_dir, device=device)
    samples = run.sample(n_samples, tau=1.0, seed=seed)
    write_lines(run_dir / rundir.SAMPLES, samples)
    return _scored_row(spec, run, samples, grammar, train_set, _command(spec, seed, quick), done["train_seconds"], say)


def _scored_row(spec: ModelSpec, run: Run, samples: list[str], grammar: Grammar, train_set: Sequence[str],
                command: str, seconds: float | None, say: Callable[[str], None]) -> Row:
    """Score a row's samples against the grammar and the training set, say the headline figures."""
    rep = score_samples(samples, grammar, reference=train_set, max_len=MAX_LEN, show_invalid=0)
    say(f"{spec.label}: validity {_pct(rep.validity)}, train coverage {_pct(rep.reference_coverage)}, "
        f"TV lengths {_num(rep.tv_lengths)}")
    return Row.from_report(spec.key, spec.label, spec.backend, spec.what, command, run.config.options,
                           run.iteration, seconds, rep, samples)


def sample_model(
    spec: ModelSpec,
    out: Path,
    train_set: Sequence[str],
    grammar: Grammar,
    *,
    seed: int = 0,
    n_samples: int = 10_000,
    quick: bool = False,
    device: str = "cpu",
    on_message: Callable[[str], None] | None = None,
) -> Row:
    """A row that trains nothing: ``n_samples`` from the finished run of row ``spec.sample_of``,
    constrained if the row says so, scored like the others (its samples go to
    ``constrained/<key>.txt`` in the reproduction folder)."""
    say = on_message or (lambda _m: None)
    source = out / "runs" / spec.sample_of
    timing = _read_timing(source / "timing.json") if (source / "timing.json").exists() else {"finished": False}
    if not timing["finished"]:
        raise RunError(f"{spec.label}: it samples the run of row {spec.sample_of!r}, which is not trained in {out}"
                       f" (run with --only {spec.sample_of} first)")
    run = load_run(source, device=device)
    samples = run.sample(n_samples, tau=1.0, seed=seed, constrained=spec.constrained)
    (out / "constrained").mkdir(exist_ok=True)
    write_lines(out / "constrained" / f"{spec.key}.txt", samples)
    return _scored_row(spec, run, samples, grammar, train_set, _command(spec, seed, quick, n_samples), None, say)


SETTINGS = "settings.json"


def _claim_folder(out: Path, settings: dict[str, Any]) -> rundir.DirLock:
    """Lock ``out`` for this reproduction. A new or empty folder gets ``settings.json``; a
    folder that has one is reused only if it records the same settings; anything else is the
    user's and is refused untouched."""
    if out.is_dir() and (out / SETTINGS).exists():
        lock = rundir.DirLock(out, "reproduction folder")
        try:
            path = out / SETTINGS
            try:
                recorded = json.loads(read_text(path, "settings file"))
            except (InputFileError, json.JSONDecodeError) as e:
                raise RunError(f"{path}: unreadable ({e})") from None
            if not isinstance(recorded, dict):
                raise RunError(f"{path}: expected a JSON object")
            differ = [f"{k} {json.dumps(recorded.get(k))} (asked: {json.dumps(v)})" for k, v in settings.items()
                      if recorded.get(k) != v]
            if differ:
                raise RunError(f"{out} holds a reproduction made with other settings: {', '.join(differ)};"
                               " use another --out (or delete the folder to redo it)")
        except BaseException:
            lock.release()
            raise
        return lock
    lock, _created = rundir.claim_new_dir(out, "reproduction folder")
    write_text_atomic(out / SETTINGS, json.dumps(settings, indent=2) + "\n")
    return lock


def reproduce(
    out_dir: str | Path,
    *,
    seed: int = 0,
    quick: bool = False,
    device: str = "cpu",
    only: Sequence[str] | None = None,
    progress: Callable[[ModelSpec], Sequence[Callback]] | None = None,
    on_message: Callable[[str], None] | None = None,
    plots: bool = True,
) -> Reproduction:
    """Train, sample and score every model; write report.{md,json} and figures into ``out_dir``
    (the figures need matplotlib, the ``[plot]`` extra; ``plots=False`` skips them).

    ``out_dir`` must be new, empty, or a folder this function made with the same ``seed``,
    ``quick`` and device (recorded in ``settings.json``); then finished runs are reused and
    unfinished ones resumed. The folder is locked while it runs.
    """
    seed = check_seed(seed)
    out = Path(out_dir)
    say = on_message or (lambda _m: None)
    dev = resolve_device(device)  # before anything is written: a bad device leaves no trace
    if plots and importlib.util.find_spec("matplotlib") is None:
        raise GumbelseqError(
            "reproduce draws losses.png and samples.png with matplotlib, which is not installed:"
            " pip install -e '.[plot]' (or pass --no-plots)"
        )
    known = [s.key for s in paper_models()]
    for key in only or ():
        if key not in known:
            raise GumbelseqError(f"unknown model {key!r}; choose from {', '.join(known)}")
    settings = {"seed": seed, "quick": quick, "device": dev.type, "version": 1}
    lock = _claim_folder(out, settings)
    try:
        return _reproduce_locked(out, seed, quick, str(dev), only, progress, say, plots)
    finally:
        lock.release()


def _reproduce_locked(out: Path, seed: int, quick: bool, device: str, only: Sequence[str] | None,
                      progress: Callable[[ModelSpec], Sequence[Callback]] | None,
                      say: Callable[[str], None], plots: bool = True) -> Reproduction:
    grammar = load_grammar("arith")
    train_path = out / "train.txt"
    if train_path.exists():
        train_set = read_data(train_path)
    else:
        train_set = draw_dataset(grammar, N_TRAIN, max_len=MAX_LEN, seed=seed)
        write_lines(train_path, train_set)
    n_samples = QUICK["samples"] if quick else 10_000
    specs = [s for s in paper_models() if only is None or s.key in only]

    rows: list[Row] = []
    fresh = draw_dataset(grammar, n_samples, max_len=MAX_LEN, seed=seed + 1)
    rep = score_samples(fresh, grammar, reference=train_set, max_len=MAX_LEN, show_invalid=0)
    rows.append(Row.from_report("reference", "reference: fresh grammar draw", "-", "a new uniform draw from the grammar",
                                f"gumbelseq data -n {n_samples} --seed {seed + 1}", {}, 0, None, rep, fresh))

    for spec in specs:
        if spec.sample_of:
            row = sample_model(spec, out, train_set, grammar, seed=seed, n_samples=n_samples, quick=quick,
                               device=device, on_message=say)
        else:
            row = run_model(spec, out / "runs" / spec.key, train_set, grammar, seed=seed, n_samples=n_samples,
                            quick=quick, device=device, progress=progress, on_message=say)
        rows.append(row)

    repro = Reproduction(out, seed, quick, n_samples, rows, _environment())
    write_text_atomic(out / "report.json", json.dumps(repro.to_dict(), indent=2) + "\n")
    write_text_atomic(out / "report.md", render_markdown(repro))
    if plots:
        _plot_losses(out, [s for s in specs if not s.sample_of])
        _plot_samples(out, rows, grammar)
    return repro


def _environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


COLUMNS = ("model", "validity", "unique valid", "novelty", "coverage L<=12", "train coverage",
           "TV strings", "TV lengths", "train time")


def table_rows(repro: Reproduction) -> list[list[str]]:
    out = []
    for r in repro.rows:
        t = "-" if r.train_seconds is None else f"{r.train_seconds:.0f} s"
        out.append([r.label, _pct(r.validity), str(r.unique_valid), _pct(r.novelty), _pct(r.coverage),
                    _pct(r.train_coverage), _num(r.tv_strings), _num(r.tv_lengths), t])
    return out


def render_markdown(repro: Reproduction) -> str:
    env = repro.environment
    lines = [
        "# Kusner & Hernandez-Lobato (2016), reproduced",
        "",
        f"Training set: {N_TRAIN} strings drawn uniformly from `arith` (length <= {MAX_LEN}), seed {repro.seed}"
        f" (`train.txt`). Each model: {repro.n_samples} samples at tau 1, seed {repro.seed}."
        + (" **Quick mode: tiny budgets, not the paper's.**" if repro.quick else ""),
        f"Machine: {env['processor']}, torch {env['torch']}, {env['threads']} threads, {env['date']}.",
        "",
        "Validity: fraction of samples in the language. Unique valid: distinct valid samples. Novelty: share of",
        "those not in the training set. Coverage: distinct valid samples / 1365 strings of length <= 12. Train",
        "coverage: share of the training set's distinct strings that were sampled. TV: total variation",
        "distance between the sample and training distributions over strings and over lengths.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(repro)]
    lines += ["", "## Commands", ""]
    for r in repro.rows:
        lines.append(f"- {r.label}: `{r.command}` ({r.what})")
    lines += ["", "## 20 samples per model (the paper's Fig. 3)", ""]
    heads = [r.label for r in repro.rows]
    lines.append("| " + " | ".join(heads) + " |")
    lines.append("|" + "|".join("---" for _ in heads) + "|")
    for i in range(20):
        cells = []
        for r in repro.rows:
            s = r.samples[i] if i < len(r.samples) else ""
            cells.append("`" + s.replace("|", "\\|").replace(" ", "\u2423") + "`" if s else "(empty)")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Loss curves: `losses.png` (the paper's Fig. 2). Samples: `samples.png`.", ""]
    return "\n".join(lines)


def _plot_losses(out: Path, specs: Sequence[ModelSpec]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(specs))
    nrows = -(-len(specs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(specs):]:
        ax.axis("off")
    registry = get_registry()
    for ax, spec in zip(axes.flat, specs):
        metrics = read_metrics(out / "runs" / spec.key)
        backend = registry.get(spec.backend)
        # What the backend declares; a backend that declares nothing gets every metric it logs.
        keys = backend.plot_metrics or backend.progress_metrics
        if not keys:
            keys = tuple(dict.fromkeys(k for m in metrics for k in m if k != "iteration"))
        for key in keys:
            pts = [(m["iteration"], m[key]) for m in metrics if key in m and m[key] == m[key]]
            if pts:
                ax.plot(*zip(*pts), label=key, linewidth=0.8)
        ax.set_title(spec.label, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(out / "losses.png", "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def _plot_samples(out: Path, rows: Sequence[Row], grammar: Grammar) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.1 * len(rows), 5.2))
    ax.axis("off")
    for j, r in enumerate(rows):
        x = (j + 0.5) / len(rows)
        ax.text(x, 1.0, r.label, ha="center", va="top", fontsize=8, weight="bold", transform=ax.transAxes)
        for i, s in enumerate(r.samples[:20]):
            ok = grammar.is_valid(s)
            ax.text(x, 0.94 - i * 0.047, s.replace(" ", "\u2423") or "(empty)", ha="center", va="top",
                    family="monospace", fontsize=8, color="black" if ok else "tab:red", transform=ax.transAxes)
    with atomic_open(out / "samples.png", "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
