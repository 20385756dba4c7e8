"""Reproduce a benchmark table with numbers: Kusner & Hernandez-Lobato (2016) by default.

``reproduce(out_dir, seed=0)`` runs a *suite* (``gumbelseq.model.suite``): by default ``paper``,
which draws one training set from the arith grammar (5000 strings, length <= 12), trains on it
every model the registered backends declare for that suite in their ``reproduce_suite`` (the
built-ins: the MLE baseline, the GAN (a) of the paper's figures and its variants (b), (c), (d),
and the ``best`` preset), samples 10,000 strings from each and scores them against the grammar
and the training set. A reference row scores a fresh draw from the grammar the same way (or, for
a suite over a data set, a fresh sample of its test split), as MOSES does for its training set:
it is what a perfect model gets. ``suite="moses"`` or a TOML/JSON suite file runs another table;
a suite's validators (``rdkit``) add their columns, and its published rows are printed beside.

Each model trains in its own run directory under ``out_dir/runs``; re-running the command
reuses finished runs and resumes unfinished ones, so a long reproduction survives a Ctrl-C.
``reproduce(out_dir, seeds=[0, 1, 2])`` runs one such reproduction per seed in
``out_dir/seed-N`` and aggregates them (``reproduce_seeds.py``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import platform
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from ..chem_metrics import internal_diversity
from ..datasets import DatasetError, dataset_status
from ..errors import GumbelseqError, InputFileError, RunError
from ..inputs import iter_samples, read_text
from ..lang.dataset import draw_dataset
from ..lang.grammar import DEFAULT_GRAMMAR, Grammar, load_grammar
from ..lang.score import Report, score_samples
from ..outputs import atomic_open, write_lines, write_text_atomic
from ..validators import Validator, canonical_forms, get_validator
from . import rundir
from .registry import get_registry
from .rundir import check_seed
from .run import Run, load_run
from .suite import PAPER, GrammarDraw, LinesFrom, ModelSpec, Suite
from .suite_file import get_suite
from .train import (DEFAULT_DATA_SIZE, DEFAULT_MAX_LEN, Callback, read_data, read_metrics, resolve_device,
                    resume_training, start_training)

if TYPE_CHECKING:
    from .reproduce_seeds import SeedsReproduction

#: The paper suite's length bound and training-set size (``suite.PAPER`` declares them).
MAX_LEN = 12
N_TRAIN = 5000

#: Validators whose canonical forms are SMILES: their rows also get MOSES's IntDiv1.
SMILES_VALIDATORS = ("rdkit",)


def suite_models(suite: Suite | str = PAPER, plugins_dir: str | Path | None = None) -> list[ModelSpec]:
    """The rows of a suite's table: its own rows if it lists them (a suite file's ``[[rows]]``),
    else every registered backend's ``reproduce_suite`` rows of that suite, by ``order``."""
    suite = get_suite(suite)
    if suite.rows is not None:
        return list(suite.rows)
    specs: list[ModelSpec] = []
    owner: dict[str, str] = {}
    for entry in get_registry(plugins_dir).entries():
        for spec in entry.backend.reproduce_suite:
            if spec.suite != suite.name:
                continue
            if spec.key in owner:
                raise GumbelseqError(f"reproduce model {spec.key!r} is declared by backends {owner[spec.key]} and {entry.name}")
            owner[spec.key] = entry.name
            specs.append(replace(spec, backend=entry.name))
    return sorted(specs, key=lambda s: s.order)  # stable: ties keep the declared order


def paper_models(plugins_dir: str | Path | None = None) -> list[ModelSpec]:
    """The rows of the paper's table: every registered backend's ``reproduce_suite`` rows of
    suite ``paper``, by ``order``."""
    return suite_models(PAPER, plugins_dir)


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
    #: Per validator of the suite: valid, validity, unique, uniqueness, novelty (and intdiv1).
    validators: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_report(cls, spec_key: str, label: str, backend: str, what: str, command: str,
                    options: dict[str, Any], iterations: int, seconds: float | None,
                    rep: Report, samples: list[str]) -> "Row":
        return cls(spec_key, label, backend, what, command, options, iterations, seconds,
                   rep.validity, rep.unique_valid, rep.novelty, rep.coverage,
                   rep.reference_coverage, rep.tv_strings, rep.tv_lengths, samples[:20])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.validators:
            del d["validators"]  # rows of a suite without validators read as they always did
        return d


@dataclass
class Reproduction:
    out_dir: Path
    seed: int
    quick: bool
    n_samples: int
    rows: list[Row]
    environment: dict[str, Any]
    suite: Suite = PAPER
    #: What the report says about the data: the training set's source and size, the length
    #: bound, the language's size (for coverage).
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "seed": self.seed,
            "quick": self.quick,
            "n_samples": self.n_samples,
            "rows": [r.to_dict() for r in self.rows],
            "environment": self.environment,
            "suite": self.suite.name,
            "data": self.data,
            "published": [p.to_dict() for p in self.suite.published],
        }


def _train_flags(suite: Suite, max_len: int) -> str:
    """What ``gumbelseq train`` needs to train on the suite's training set: nothing for a draw
    ``train`` makes the same way by default (the paper's), else the size and bound of the draw,
    else the reproduction's ``train.txt``."""
    src = suite.train
    if isinstance(src, GrammarDraw) and src.seed_offset == 0:
        if src.n == DEFAULT_DATA_SIZE and max_len == DEFAULT_MAX_LEN:
            return ""
        return f" --data-size {src.n} --max-len {max_len}"
    return f" --data train.txt --max-len {max_len}"


def _command(spec: ModelSpec, seed: int, quick: bool, n_samples: int = 10_000, *,
             grammar: str = DEFAULT_GRAMMAR, data_flags: str = "") -> str:
    if spec.sample_of:
        flag = " --constrained" if spec.constrained else ""
        return f"gumbelseq sample --run runs/{spec.sample_of}{flag} -n {n_samples} --seed {seed}"
    options = _expected_options(spec, quick)
    flags = ("iterations", "batch_size") if quick else ()
    opts = " ".join(f"-o {k}={v}" for k, v in options.items() if k not in flags)
    it = f" --iterations {options['iterations']} --batch-size {options['batch_size']}" if quick else ""
    return f"gumbelseq train --grammar {grammar}{data_flags} --backend {spec.backend} --seed {seed}{it} {opts}".strip()


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


# -- scoring --------------------------------------------------------------------------------------


class Scorer:
    """Scores a row's samples: against the grammar and the training set (``score_samples``),
    and under each of the suite's validators. ``novelty_source``, when given, is the file the
    training set was sampled from: validator novelty is then against all of it, streamed (the
    canonical forms of a row are few; the file may be millions of lines)."""

    def __init__(self, grammar: Grammar, train_set: Sequence[str], max_len: int, *, coverage: bool = True,
                 validators: Sequence[Validator] = (), novelty_source: tuple[Path, str | None] | None = None,
                 seed: int = 0) -> None:
        self.grammar, self.train_set, self.max_len = grammar, train_set, max_len
        self.coverage, self.validators, self.novelty_source, self.seed = coverage, validators, novelty_source, seed
        self._train_members: set[str] | None = None

    def report(self, samples: Sequence[str]) -> Report:
        rep = score_samples(samples, self.grammar, reference=self.train_set, max_len=self.max_len, show_invalid=0)
        if not self.coverage:
            rep.coverage = None
        return rep

    def validator_metrics(self, samples: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not self.validators:
            return out
        counts: dict[str, int] = {}
        for s in samples:
            counts[s] = counts.get(s, 0) + 1
        strings = list(counts)
        for v in self.validators:
            forms = canonical_forms(v, strings)
            valid = sum(counts[s] for s, f in zip(strings, forms) if f is not None)
            canon = {f for f in forms if f is not None}
            known = self._known(canon)
            m: dict[str, Any] = {
                "valid": valid,
                "validity": valid / len(samples) if samples else None,
                "unique": len(canon),
                "uniqueness": len(canon) / valid if valid else None,
                "novelty": sum(1 for c in canon if c not in known) / len(canon) if canon else None,
            }
            if v.name in SMILES_VALIDATORS:
                m["intdiv1"], m["intdiv_molecules"] = internal_diversity(sorted(canon), seed=self.seed)
            out[v.name] = m
        return out

    def _known(self, canon: set[str]) -> set[str]:
        """Those of ``canon`` that are training strings (as written, as MOSES compares)."""
        if self.novelty_source is None:
            if self._train_members is None:
                self._train_members = set(self.train_set)
            return canon & self._train_members
        path, column = self.novelty_source
        return {s for _, s in iter_samples(path, "training file", column) if s in canon}


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
    max_len: int = MAX_LEN,
    scorer: Scorer | None = None,
    command: str | None = None,
) -> Row:
    """Train one model on ``train_set`` in ``run_dir`` (reusing a finished run made with the
    same settings, resuming an unfinished one), draw ``n_samples`` at tau 1 and score them
    against the grammar and the training set (``scorer``: also under validators)."""
    say = on_message or (lambda _m: None)
    options = _expected_options(spec, quick)
    timing = run_dir / "timing.json"
    # Announced when training starts (not before its checks), so a refusal is one line.
    callbacks = [_Announce(say, spec.label), *(progress(spec) if progress else ())]
    if not (run_dir / rundir.CONFIG).exists():
        timing.unlink(missing_ok=True)  # a model being retrained after its run was deleted
        t0 = time.perf_counter()
        result = start_training(grammar=grammar, backend=spec.backend, out_dir=run_dir, options=options,
                                data=list(train_set), data_source="reproduce training set", max_len=max_len,
                                seed=seed, device=device, eval_every=QUICK["iterations"] if quick else 1000,
                                final_samples=0, callbacks=callbacks)
        seconds = time.perf_counter() - t0 if result.train_seconds is None else result.train_seconds
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
            # The checkpoint's own count survives a killed session; timing.json (kept for runs
            # whose checkpoints predate it) only counts sessions that ended normally.
            seconds = result.train_seconds
            if seconds is None:
                seconds = done["train_seconds"] + time.perf_counter() - t0
            done = {"train_seconds": seconds, "finished": not result.stopped}
            write_text_atomic(timing, json.dumps(done) + "\n")
    if not done["finished"]:
        raise KeyboardInterrupt  # the caller says how to resume
    run = load_run(run_dir, device=device)
    samples = run.sample(n_samples, tau=1.0, seed=seed)
    write_lines(run_dir / rundir.SAMPLES, samples)
    scorer = scorer or Scorer(grammar, train_set, max_len, seed=seed)
    return _scored_row(spec, run, samples, scorer, command or _command(spec, seed, quick), done["train_seconds"], say)


def _scored_row(spec: ModelSpec, run: Run, samples: list[str], scorer: Scorer,
                command: str, seconds: float | None, say: Callable[[str], None]) -> Row:
    """Score a row's samples against the grammar and the training set, say the headline figures."""
    rep = scorer.report(samples)
    row = Row.from_report(spec.key, spec.label, spec.backend, spec.what, command, run.config.options,
                          run.iteration, seconds, rep, samples)
    row.validators = scorer.validator_metrics(samples)
    extra = "".join(f", {name} valid {_pct(m['validity'])}" for name, m in row.validators.items())
    say(f"{spec.label}: validity {_pct(rep.validity)}, train coverage {_pct(rep.reference_coverage)}, "
        f"TV lengths {_num(rep.tv_lengths)}{extra}")
    return row


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
    max_len: int = MAX_LEN,
    scorer: Scorer | None = None,
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
    scorer = scorer or Scorer(grammar, train_set, max_len, seed=seed)
    return _scored_row(spec, run, samples, scorer, _command(spec, seed, quick, n_samples), None, say)


# -- data -----------------------------------------------------------------------------------------


def lines_path(src: LinesFrom) -> Path:
    """The file a ``LinesFrom`` reads; a data set that is not fetched is a one-line error."""
    if not src.dataset:
        return Path(src.path)
    status = dataset_status(src.dataset)
    path = Path(status.path) / f"{src.split}.txt"
    if not status.present:
        raise DatasetError(f"data set {src.dataset} is not fetched ({path} is missing or incomplete);"
                           f" run: gumbelseq datasets fetch {src.dataset}")
    return path


def _line_count(src: LinesFrom, path: Path) -> int:
    if src.dataset:
        lines = dataset_status(src.dataset).lines or {}
        if f"{src.split}.txt" in lines:
            return lines[f"{src.split}.txt"]  # the manifest says: no pass over the file
    return sum(1 for _ in iter_samples(path, "data file", src.column))


def sample_lines(src: LinesFrom, n: int | None, seed: int) -> list[str]:
    """``n`` lines of ``src`` (all of them when ``n`` is ``None`` or not less than the file's
    lines), picked uniformly without replacement with ``seed``, in file order. The file is
    streamed: memory holds the picked lines and their line numbers, never the whole file."""
    path = lines_path(src)
    total = _line_count(src, path)
    if n is None or n >= total:
        return [s for _, s in iter_samples(path, "data file", src.column)]
    picked = set(random.Random(seed).sample(range(total), n))
    return [s for i, (_, s) in enumerate(iter_samples(path, "data file", src.column)) if i in picked]


def training_set(suite: Suite, grammar: Grammar, seed: int) -> list[str]:
    """The suite's training set for ``seed`` (what ``train.txt`` of a new reproduction holds)."""
    src = suite.train
    if isinstance(src, GrammarDraw):
        assert suite.max_len is not None  # a suite file is refused without it
        return draw_dataset(grammar, src.n, max_len=suite.max_len, seed=seed + src.seed_offset)
    return sample_lines(src, src.limit, seed)


def _check_data_available(suite: Suite) -> None:
    """Every data set the suite reads is fetched, and every file is there: checked before
    anything is written."""
    for src in (suite.train, suite.reference):
        if isinstance(src, LinesFrom):
            path = lines_path(src)
            if not path.is_file():
                raise InputFileError(f"{path}: no such data file (suite {suite.name})")


# -- the folder -----------------------------------------------------------------------------------


SETTINGS = "settings.json"


def _settings(seed: int, quick: bool, device: str, suite: Suite) -> dict[str, Any]:
    """What ``settings.json`` records. The built-in paper suite records what every folder made
    before suites existed records (so those folders are reused as they are); any other suite
    adds its name and data settings."""
    settings: dict[str, Any] = {"seed": seed, "quick": quick, "device": device, "version": 1}
    if suite is not PAPER:
        settings["suite"] = suite.identity()
    return settings


def _differences(recorded: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    out = []
    for k in dict.fromkeys([*asked, *recorded]):
        r, a = recorded.get(k), asked.get(k)
        if r == a:
            continue
        if k == "suite":  # a folder without the key is the paper's
            rn, an = (r or {}).get("name", "paper"), (a or {}).get("name", "paper")
            out.append(f"suite {rn} (asked: {an})" if rn != an else f"suite {an} with other data settings")
        else:
            out.append(f"{k} {json.dumps(r)} (asked: {json.dumps(a)})")
    return out


def read_settings(out: Path) -> dict[str, Any] | None:
    """A reproduction folder's recorded settings, ``None`` if it has none; unreadable is an error."""
    path = out / SETTINGS
    if not path.exists():
        return None
    try:
        recorded = json.loads(read_text(path, "settings file"))
    except (InputFileError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: unreadable ({e})") from None
    if not isinstance(recorded, dict):
        raise RunError(f"{path}: expected a JSON object")
    return recorded


def check_folder_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuse a folder holding a reproduction made with other settings (nothing is touched)."""
    recorded = read_settings(out)
    if recorded is None:
        return
    differ = _differences(recorded, settings)
    if differ:
        raise RunError(f"{out} holds a reproduction made with other settings: {', '.join(differ)};"
                       " use another --out (or delete the folder to redo it)")


def _claim_folder(out: Path, settings: dict[str, Any]) -> rundir.DirLock:
    """Lock ``out`` for this reproduction. A new or empty folder gets ``settings.json``; a
    folder that has one is reused only if it records the same settings; anything else is the
    user's and is refused untouched."""
    if out.is_dir() and (out / SETTINGS).exists():
        lock = rundir.DirLock(out, "reproduction folder")
        try:
            check_folder_settings(out, settings)
        except BaseException:
            lock.release()
            raise
        return lock
    lock, _created = rundir.claim_new_dir(out, "reproduction folder")
    write_text_atomic(out / SETTINGS, json.dumps(settings, indent=2) + "\n")
    return lock


def prepare(suite: Suite | str, *, device: str, plots: bool, only: Sequence[str] | None,
            plugins_dir: str | Path | None = None) -> tuple[Suite, torch.device, list[ModelSpec]]:
    """Every check a reproduction makes before it writes anything: the suite (a suite file is
    read and checked whole), the device, matplotlib for the figures, ``only``'s keys, the
    validators' libraries, the data sets. Returns the suite, the device and its rows."""
    suite = get_suite(suite)
    dev = resolve_device(device)  # before anything is written: a bad device leaves no trace
    if plots and importlib.util.find_spec("matplotlib") is None:
        raise GumbelseqError(
            "reproduce draws losses.png and samples.png with matplotlib, which is not installed:"
            " pip install -e '.[plot]' (or pass --no-plots)"
        )
    specs = suite_models(suite, plugins_dir)
    known = [s.key for s in specs]
    for key in only or ():
        if key not in known:
            raise GumbelseqError(f"unknown model {key!r}; choose from {', '.join(known)}" if known
                                 else f"unknown model {key!r}: suite {suite.name} has no rows")
    _check_data_available(suite)
    for name in suite.validators:
        get_validator(name)  # a missing library (RDKit) fails now
    return suite, dev, specs


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
    suite: Suite | str = "paper",
    seeds: Sequence[int] | None = None,
    workers: int = 1,
) -> "Reproduction | SeedsReproduction":
    """Train, sample and score every model of ``suite``; write report.{md,json} and figures into
    ``out_dir`` (the figures need matplotlib, the ``[plot]`` extra; ``plots=False`` skips them).

    ``out_dir`` must be new, empty, or a folder this function made with the same ``seed``,
    ``quick``, device and suite (recorded in ``settings.json``); then finished runs are reused
    and unfinished ones resumed. The folder is locked while it runs.

    With ``seeds``, one reproduction per seed in ``out_dir/seed-N`` (each exactly what
    ``seed=N, out_dir=out_dir/seed-N`` makes), ``workers`` of them at a time, then an aggregate
    report: see ``reproduce_seeds.reproduce_seeds``, which this returns.
    """
    if seeds is not None:
        from .reproduce_seeds import reproduce_seeds

        return reproduce_seeds(out_dir, seeds, workers=workers, suite=suite, quick=quick, device=device,
                               only=only, progress=progress, on_message=on_message, plots=plots)
    seed = check_seed(seed)
    out = Path(out_dir)
    say = on_message or (lambda _m: None)
    the_suite, dev, specs = prepare(suite, device=device, plots=plots, only=only)
    if not specs:
        say(f"suite {the_suite.name}: no registered backend declares rows for it; the report holds the reference row only")
    lock = _claim_folder(out, _settings(seed, quick, dev.type, the_suite))
    try:
        return _reproduce_locked(out, the_suite, specs, seed, quick, str(dev), only, progress, say, plots)
    finally:
        lock.release()


def _reproduce_locked(out: Path, suite: Suite, all_specs: list[ModelSpec], seed: int, quick: bool, device: str,
                      only: Sequence[str] | None, progress: Callable[[ModelSpec], Sequence[Callback]] | None,
                      say: Callable[[str], None], plots: bool = True) -> Reproduction:
    grammar = load_grammar(suite.grammar)
    train_path = out / "train.txt"
    if train_path.exists():
        train_set = read_data(train_path)
    else:
        train_set = training_set(suite, grammar, seed)
        write_lines(train_path, train_set)
    max_len = suite.max_len if suite.max_len is not None else max(len(s) for s in train_set)
    n_samples = min(QUICK["samples"], suite.n_samples) if quick else suite.n_samples
    specs = [s for s in all_specs if only is None or s.key in only]
    novelty_source = None
    if isinstance(suite.train, LinesFrom) and suite.train.limit is not None:
        novelty_source = (lines_path(suite.train), suite.train.column)
    scorer = Scorer(grammar, train_set, max_len, coverage=suite.coverage,
                    validators=[get_validator(v) for v in suite.validators], novelty_source=novelty_source, seed=seed)
    data_flags = _train_flags(suite, max_len)

    rows: list[Row] = [_reference_row(suite, grammar, scorer, max_len, n_samples, seed)]
    for spec in specs:
        if spec.sample_of:
            row = sample_model(spec, out, train_set, grammar, seed=seed, n_samples=n_samples, quick=quick,
                               device=device, on_message=say, max_len=max_len, scorer=scorer)
        else:
            command = _command(spec, seed, quick, grammar=suite.grammar, data_flags=data_flags)
            row = run_model(spec, out / "runs" / spec.key, train_set, grammar, seed=seed, n_samples=n_samples,
                            quick=quick, device=device, progress=progress, on_message=say, max_len=max_len,
                            scorer=scorer, command=command)
        rows.append(row)

    total = _line_count(suite.train, lines_path(suite.train)) if isinstance(suite.train, LinesFrom) else None
    data: dict[str, Any] = {"train": _describe_train(suite, seed, total), "n_train": len(train_set), "max_len": max_len}
    if total is not None:
        data["source_lines"] = total
    if suite.coverage:
        data["language_size"] = score_samples([], grammar, max_len=max_len).language_size
    repro = Reproduction(out, seed, quick, n_samples, rows, _environment(), suite, data)
    write_text_atomic(out / "report.json", json.dumps(repro.to_dict(), indent=2) + "\n")
    write_text_atomic(out / "report.md", render_markdown(repro))
    if plots:
        trained = [s for s in specs if not s.sample_of]
        if trained:  # rows that only sample another row's run have no losses of their own
            _plot_losses(out, trained)
        _plot_samples(out, rows, grammar)
    return repro


def _reference_row(suite: Suite, grammar: Grammar, scorer: Scorer, max_len: int, n_samples: int, seed: int) -> Row:
    """What a perfect model gets: a fresh grammar draw, or a fresh sample of the test file."""
    if suite.reference is None:
        fresh = draw_dataset(grammar, n_samples, max_len=max_len, seed=seed + 1)
        flags = "" if suite.grammar == DEFAULT_GRAMMAR and max_len == DEFAULT_MAX_LEN else f" --grammar {suite.grammar} --max-len {max_len}"
        label, what = "reference: fresh grammar draw", "a new uniform draw from the grammar"
        command = f"gumbelseq data{flags} -n {n_samples} --seed {seed + 1}"
    else:
        fresh = sample_lines(suite.reference, n_samples, seed + 1)
        label = "reference: fresh test-set sample"
        what = f"{len(fresh)} lines drawn uniformly without replacement from {suite.reference.describe()}"
        command = f"{len(fresh)} lines of {lines_path(suite.reference)}, seed {seed + 1}"
    row = Row.from_report("reference", label, "-", what, command, {}, 0, None, scorer.report(fresh), fresh)
    row.validators = scorer.validator_metrics(fresh)
    return row


def _describe_train(suite: Suite, seed: int, total: int | None = None) -> str:
    src = suite.train
    if isinstance(src, GrammarDraw):
        return f"{src.n} strings drawn uniformly from `{suite.grammar}` (length <= {suite.max_len}), seed {seed + src.seed_offset}"
    if src.limit is None or (total is not None and src.limit >= total):
        return f"every line of {src.describe()}"
    return (f"{src.limit:,} of the {total:,} lines of {src.describe()}, drawn uniformly without replacement"
            f" with seed {seed} (a cap that keeps training and run folders small)")


def _environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }


# -- the report -----------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


#: The paper's table columns (the headings of ``columns(PAPER, 12)``).
COLUMNS = ("model", "validity", "unique valid", "novelty", "coverage L<=12", "train coverage",
           "TV strings", "TV lengths", "train time")


@dataclass(frozen=True)
class Column:
    key: str  # a Row field, or "VALIDATOR.metric"
    heading: str
    kind: str  # pct, int, num, time


def columns(suite: Suite = PAPER, max_len: int = MAX_LEN) -> list[Column]:
    """The table's columns after "model": the grammar's figures, coverage if the suite shows
    it, each validator's figures (and IntDiv1 for SMILES), the training time."""
    cols = [Column("validity", "validity", "pct"), Column("unique_valid", "unique valid", "int"),
            Column("novelty", "novelty", "pct")]
    if suite.coverage:
        cols.append(Column("coverage", f"coverage L<={max_len}", "pct"))
    cols += [Column("train_coverage", "train coverage", "pct"), Column("tv_strings", "TV strings", "num"),
             Column("tv_lengths", "TV lengths", "num")]
    for v in suite.validators:
        cols += [Column(f"{v}.validity", f"valid ({v})", "pct"), Column(f"{v}.uniqueness", f"unique ({v})", "pct"),
                 Column(f"{v}.novelty", f"novelty ({v})", "pct")]
        if v in SMILES_VALIDATORS:
            cols.append(Column(f"{v}.intdiv1", "IntDiv1", "num"))
    cols.append(Column("train_seconds", "train time", "time"))
    return cols


def row_value(row: Row | dict[str, Any], key: str) -> Any:
    """A column's value in a row (a ``Row`` or its ``report.json`` form); ``None`` if absent."""
    d = row if isinstance(row, dict) else None
    if "." in key:
        name, metric = key.split(".", 1)
        vals = (d.get("validators") if d is not None else row.validators) or {}  # type: ignore[union-attr]
        return (vals.get(name) or {}).get(metric)
    return d.get(key) if d is not None else getattr(row, key, None)


def format_value(x: Any, kind: str) -> str:
    if kind == "time":
        return "-" if x is None else f"{x:.0f} s"
    if kind == "pct":
        return _pct(x)
    if kind == "int":
        return "n/a" if x is None else str(x)
    return _num(x)


def format_published(mean: float, std: float | None, kind: str) -> str:
    """A figure with its spread as the tables show it: ``97.5 ± 2.6%``, ``0.856 ± 0.001``."""
    if kind == "pct":
        return f"{100 * mean:.1f}%" if std is None else f"{100 * mean:.1f} ± {100 * std:.1f}%"
    if kind == "int":
        return f"{mean:.0f}" + ("" if std is None else f" ± {std:.0f}")
    if kind == "time":
        return f"{mean:.0f}" + ("" if std is None else f" ± {std:.0f}") + " s"
    return f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}")


def published_rows(suite: Suite, cols: Sequence[Column]) -> list[list[str]]:
    """The suite's published rows as table cells (``-`` where the source gives no figure)."""
    out = []
    for p in suite.published:
        cells = [format_published(*p.metrics[c.key], c.kind) if c.key in p.metrics else "-" for c in cols]
        out.append([f"published: {p.label}", *cells])
    return out


def _max_len_of(repro: Reproduction) -> int:
    return repro.data.get("max_len") or repro.suite.max_len or MAX_LEN


def headings(repro: Reproduction) -> list[str]:
    return ["model", *(c.heading for c in columns(repro.suite, _max_len_of(repro)))]


def table_rows(repro: Reproduction, *, published: bool = False) -> list[list[str]]:
    """The table's cells, one list per row (``published``: the suite's published rows after)."""
    cols = columns(repro.suite, _max_len_of(repro))
    out = [[r.label, *(format_value(row_value(r, c.key), c.kind) for c in cols)] for r in repro.rows]
    if published:
        out += published_rows(repro.suite, cols)
    return out


def render_markdown(repro: Reproduction) -> str:
    env = repro.environment
    suite = repro.suite
    paper = suite is PAPER
    max_len = _max_len_of(repro)
    if "train" in repro.data:
        data_line = f"Training set: {repro.data['train']}"
    else:  # a Reproduction made by hand (experiments/): the paper's data
        data_line = f"Training set: {N_TRAIN} strings drawn uniformly from `arith` (length <= {MAX_LEN}), seed {repro.seed}"
    cols = headings(repro)
    lines = [
        f"# {suite.title}",
        "",
        f"{data_line} (`train.txt`). Each model: {repro.n_samples} samples at tau 1, seed {repro.seed}."
        + (" **Quick mode: tiny budgets, not the paper's.**" if repro.quick else ""),
        f"Machine: {env['processor']}, torch {env['torch']}, {env['threads']} threads, {env['date']}.",
        "",
    ]
    if suite.coverage:
        size = repro.data.get("language_size", 1365 if paper else "n/a")
        lines += [
            "Validity: fraction of samples in the language. Unique valid: distinct valid samples. Novelty: share of",
            f"those not in the training set. Coverage: distinct valid samples / {size} strings of length <= {max_len}. Train",
            "coverage: share of the training set's distinct strings that were sampled. TV: total variation",
            "distance between the sample and training distributions over strings and over lengths.",
        ]
    else:
        lines += [
            "Validity: fraction of samples in the language. Unique valid: distinct valid samples. Novelty: share of",
            "those not in the training set. Train coverage: share of the training set's distinct strings that were",
            "sampled. TV: total variation distance between the sample and training distributions over strings and",
            "over lengths.",
        ]
    lines += _validator_text(repro)
    lines += [
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---" for _ in cols) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(repro, published=True)]
    if suite.published:
        lines += ["", "Published rows are figures reported elsewhere, not measured here:", ""]
        lines += [f"- {p.label}: {p.source}" for p in suite.published]
    lines += ["", "## Commands", ""]
    for r in repro.rows:
        lines.append(f"- {r.label}: `{r.command}` ({r.what})")
    lines += ["", "## 20 samples per model" + (" (the paper's Fig. 3)" if paper else ""), ""]
    heads = [r.label for r in repro.rows]
    lines.append("| " + " | ".join(heads) + " |")
    lines.append("|" + "|".join("---" for _ in heads) + "|")
    for i in range(20):
        cells = []
        for r in repro.rows:
            s = r.samples[i] if i < len(r.samples) else ""
            cells.append("`" + s.replace("|", "\\|").replace(" ", "\u2423") + "`" if s else "(empty)")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Loss curves: `losses.png`" + (" (the paper's Fig. 2)" if paper else "") + ". Samples: `samples.png`.", ""]
    return "\n".join(lines)


def _validator_text(repro: Reproduction) -> list[str]:
    suite = repro.suite
    if not suite.validators:
        return []
    train = suite.train
    against = (f"all of {train.describe()} (not only the {repro.data.get('n_train', 'sampled')} training strings)"
               if isinstance(train, LinesFrom) and train.limit is not None else "the training set")
    out = [""]
    for v in suite.validators:
        out.append(
            f"Valid ({v}): share of samples the {v} validator accepts. Unique ({v}): distinct canonical forms /"
            f" valid samples (MOSES's unique@k, k = the valid samples). Novelty ({v}): share of the distinct"
            f" canonical valid samples not in {against}, compared as written (MOSES's novelty)."
        )
        if v in SMILES_VALIDATORS:
            out.append(
                "IntDiv1: 1 - mean Tanimoto similarity over all pairs (self-pairs included) of Morgan fingerprints"
                " (radius 2, 1024 bits), MOSES's definition, computed over at most 1000 distinct valid molecules"
                " (a seeded uniform subset; MOSES uses every valid sample) to stay cheap."
            )
    return out


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
