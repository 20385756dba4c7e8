"""The ``gumbelseq`` command line: thin wrappers over the library.

Results go to stdout (a Rich table, or one JSON object with ``--json``); progress and notices go
to stderr. Domain errors (``GumbelseqError``) become one-line click errors here and nowhere else.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import os
import signal
import sys
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__
from .cpus import usable_cpus
from .errors import GumbelseqError, InputFileError
from .lang.grammar import DEFAULT_GRAMMAR, builtin_grammars, load_grammar
from .model.rundir import MAX_LEN_LIMIT  # torch-free


class _ResultsConsole(Console):
    """Rich exits 1 itself when the reader of stdout leaves; hand that to ``_Main.invoke``, which
    treats it the same for every command."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


# markup=False: what these print holds the user's text (samples, file names, grammar paths), and
# Rich would read "[nH]" or "[/]" in it as a style tag, dropping it or raising MarkupError.
out = _ResultsConsole(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)  # a notice stays one line


def _notice(msg: str) -> None:
    err.print(Text.assemble(("note:", "yellow"), " ", msg))


def domain_errors(fn: Callable) -> Callable:
    """Turn library errors into one-line ``Error: ...`` messages with exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GumbelseqError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


grammar_option = click.option(
    "--grammar",
    "-g",
    default=DEFAULT_GRAMMAR,
    show_default=True,
    help="A built-in grammar name (see `gumbelseq grammars`), or a .lark file: a value with a"
    " path separator or ending in .lark is a path (./NAME reaches a local file NAME).",
)


seed_option = click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    default=0,
    show_default=True,
    help="Random seed, an integer in [0, 2**63-1]: the same seed gives the same output.",
)

column_option = click.option(
    "--column",
    default=None,
    metavar="NAME",
    help="For .csv inputs (also .csv.gz): the column holding the samples [default: the only"
    " column, else the one named SMILES].",
)


def _check_column(column: str | None, *paths: str | None, flag: str = "--column") -> None:
    """``--column`` without a CSV input to apply it to is a mistake worth saying, not ignoring."""
    from .inputs import CSV, input_format

    if column is not None and not any(p is not None and input_format(p)[0] == CSV for p in paths):
        raise InputFileError(f"{flag} applies to .csv inputs (and .csv.gz) only; none was given")


#: Errors writing the results to stdout that are the output's fault, not the program's (a
#: pipe whose reader left, EPIPE, is not an error: see ``_reader_left``).
_STDOUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS, errno.EBADF}


class _ClosedStdout:
    """Stands in for ``sys.stdout`` when the command started with it closed (``>&-``): Python
    then sets ``sys.stdout = None``, rich prints into nothing and ``sys.stdout.write`` is an
    AttributeError, so results were lost with exit 0, or a traceback. A write here is EBADF,
    which ``_Main.invoke`` reports in one line."""

    closed = False

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation("standard output is closed")


def _reader_left() -> bool:
    """Whether stdout is a pipe whose reading end is closed (``gumbelseq score big.txt | head``).

    Asked of the descriptor itself because an EPIPE can also come from a pipe to a worker."""
    import select

    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # POLLERR is always reported
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    return False


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null: buffered results would fail again when Python flushes at exit."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


class _Main(click.Group):
    """The command group, which also turns a failed write to stdout into one line, and a
    reader that stopped reading (``| head``) into a quiet exit 0, like ``data``'s and ``sample``'s
    (click's own handling exits 1 for some commands and 0 for others, depending on buffering)."""

    def invoke(self, ctx: click.Context) -> Any:
        if sys.stdout is None:
            sys.stdout = _ClosedStdout()  # type: ignore[assignment]
        try:
            result = super().invoke(ctx)
            if sys.stdout is not None and not sys.stdout.closed:
                sys.stdout.flush()  # here, not at exit, so that a full device is reported
            return result
        except OSError as e:
            if e.errno == errno.EPIPE and e.filename is None and _reader_left():
                _silence_stdout()
                raise click.exceptions.Exit(0) from None
            if e.errno not in _STDOUT_ERRNOS or e.filename is not None:
                raise
            _silence_stdout()
            raise click.ClickException(f"-: cannot write the results to standard output: {e.strerror}") from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gumbelseq")
def main() -> None:
    """Generative models of grammar-constrained discrete sequences."""


@main.command("grammars")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def grammars_cmd(as_json: bool) -> None:
    """List the built-in grammars."""
    infos = builtin_grammars()
    if as_json:
        _emit_json([{"name": g.name, "path": g.path, "description": g.description} for g in infos])
        return
    table = Table("name", "description", "path", title="built-in grammars")
    for g in infos:
        table.add_row(g.name, g.description, g.path)
    out.print(table)


@main.command("data")
@grammar_option
@click.option("-n", "count", type=click.IntRange(min=0), default=5000, show_default=True, help="How many strings.")
@click.option("--max-len", type=click.IntRange(min=0), default=12, show_default=True, help="Longest string length.")
@click.option(
    "--mode",
    type=click.Choice(["uniform", "pcfg"]),
    default="uniform",
    show_default=True,
    help="uniform: every distinct string of length <= max-len equally likely. "
    "pcfg: random derivation, alternatives equally likely.",
)
@click.option(
    "--ignore",
    type=click.Choice(["none", "minimal", "random"]),
    default="minimal",
    show_default=True,
    help="Ignorable text (the grammar's %ignore) between tokens: none; minimal: only where two "
    "tokens would otherwise be read as something else; random: also at random boundaries.",
)
@click.option("--start", default="start", show_default=True, help="The grammar's start rule.")
@seed_option
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="Processes drawing the strings when there are more than 16,384 (0: one per usable CPU); the output is the same for any number.")
@click.option("-o", "--output", type=click.Path(readable=False, allow_dash=True), default=None, help="Write here instead of stdout; an existing file is replaced only on success, keeping its mode; symlinks are followed; FIFOs and /dev paths are written directly.")
@domain_errors
def data_cmd(grammar: str, count: int, max_len: int, mode: str, ignore: str, start: str, seed: int, workers: int, output: str | None) -> None:
    """Draw training strings from a grammar, one per line (no padding)."""
    from .lang.dataset import draw_dataset
    from .outputs import check_output, write_lines

    if output is not None:
        check_output(output)  # a bad path fails now, before drawing, and creates nothing
    g = load_grammar(grammar, start=start, on_notice=_notice)
    lines = draw_dataset(g, count, max_len=max_len, mode=mode, seed=seed, ignore=ignore, on_notice=_notice,
                         workers=workers or usable_cpus())
    if output is not None:
        write_lines(output, lines)
        err.print(f"wrote {len(lines)} strings to {output}")
    else:
        sys.stdout.write("".join(s + "\n" for s in lines))


plugins_dir_option = click.option(
    "--plugins-dir",
    type=click.Path(readable=False),  # a file or an unreadable folder is the loader's own one Error line
    envvar="GUMBELSEQ_PLUGINS_DIR",
    default=None,
    help="Also load loose *.py plugin files (backends, validators, automata) from this directory [env: GUMBELSEQ_PLUGINS_DIR].",
)


@main.command("score")
@click.argument("file", type=str)
@grammar_option
@click.option("--start", default="start", show_default=True, help="The grammar's start rule: a line is valid when Lark parses it from this rule.")
@click.option("--reference", type=str, default=None, help="Training data file: enables novelty and distances.")
@column_option
@click.option("--reference-column", default=None, metavar="NAME",
              help="For a .csv --reference: its column, where it differs from FILE's [default: --column's].")
@click.option("--max-len", type=click.IntRange(min=0), default=None, help="Length bound for coverage [default: the longest valid sample].")
@click.option("--show-invalid", type=click.IntRange(min=0), default=5, show_default=True, help="How many invalid samples to show.")
@click.option("--validator", "validator_names", multiple=True, metavar="NAME", help="Also report validity, uniqueness and novelty under a validator plugin (rdkit: pip install -e '.[chem]'); repeatable.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="Processes checking the samples (grammar and validators) when there are many distinct ones (20,000 for an LALR grammar, 500 for an Earley one; 0: one per usable CPU); the report is the same for any number.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@plugins_dir_option
@domain_errors
def score_cmd(file: str, grammar: str, start: str, reference: str | None, column: str | None, reference_column: str | None, max_len: int | None, show_invalid: int, validator_names: tuple[str, ...], workers: int, as_json: bool, plugins_dir: str | None) -> None:
    """Score a sample file (one sample per line; FILE may be - for stdin; .csv and .gz files too)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .lang.score import EARLEY_PARALLEL_MIN
    from .validators import score_file_validated

    _check_column(column, file, reference)
    _check_column(reference_column, reference, flag="--reference-column")
    g = load_grammar(grammar, start=start, on_notice=_notice)
    # A bar only on a terminal and where checking may take a while (as many samples as make an
    # Earley grammar's check go to workers);
    # redrawn by the callback, not by a refresh thread: the workers are forked, and a thread
    # holding stderr's lock at that moment would leave the lock held in every worker.
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal, auto_refresh=False) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if total >= EARLEY_PARALLEL_MIN:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(f"checking ({stage})", total=total)
                bar.update(tasks[stage], completed=done, refresh=True)

        rep, extra = score_file_validated(file, g, validator_names, reference=reference, column=column,
                                          reference_column=reference_column, max_len=max_len,
                                          show_invalid=show_invalid, workers=workers or usable_cpus(),
                                          progress=progress, plugins_dir=plugins_dir)
    if as_json:
        obj = rep.to_dict()
        if extra:
            obj["validators"] = {r.validator: r.to_dict() for r in extra}
        _emit_json(obj)
        return
    _print_report(rep)
    for r in extra:
        table = Table("metric", "value", title=f"validator {r.validator}")
        table.add_row("valid", f"{r.valid} ({_fmt(r.validity)})")
        table.add_row("unique canonical valid", f"{r.unique} ({_fmt(r.uniqueness)} of valid)")
        if r.reference is not None:
            table.add_row("novelty (canonical, vs reference as written)", _fmt(r.novelty))
        out.print(table)


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.2f}%" if pct else f"{x:.4f}"


def _print_report(rep: Any) -> None:
    table = Table("metric", "value", title=f"{rep.source} against grammar {rep.grammar}")
    table.add_row("samples", str(rep.total))
    table.add_row("valid", f"{rep.valid} ({_fmt(rep.validity)})")
    table.add_row("unique", str(rep.unique))
    table.add_row("unique valid", str(rep.unique_valid))
    if rep.reference is not None:
        table.add_row("novelty", _fmt(rep.novelty))
        table.add_row("reference covered", _fmt(rep.reference_coverage))
        table.add_row("TV over strings", _fmt(rep.tv_strings, pct=False))
        table.add_row("TV over lengths", _fmt(rep.tv_lengths, pct=False))
    if rep.max_len is not None:
        size = "n/a" if rep.language_size is None else str(rep.language_size)
        table.add_row(f"coverage (len <= {rep.max_len}, of {size})", _fmt(rep.coverage))
    out.print(table)
    if rep.lengths:
        lt = Table("length", "count", "share", title="lengths")
        for k, v in sorted(rep.lengths.items()):
            lt.add_row(str(k), str(v), _fmt(v / rep.total))
        out.print(lt)
    if rep.invalid_examples:
        it = Table("line", "col", "sample", "expected", "count", title="invalid samples (first lines)")
        for e in rep.invalid_examples:
            it.add_row(str(e.line), str(e.column), repr(e.text), ", ".join(e.expected) or "-", str(e.count))
        out.print(it)
    for note in rep.notes:
        _notice(note)


# -- datasets -----------------------------------------------------------------------------------


@main.group("datasets")
def datasets_group() -> None:
    """Public data sets, fetched once into $GUMBELSEQ_HOME/datasets and used offline after."""


@datasets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@domain_errors
def datasets_list_cmd(as_json: bool) -> None:
    """List the known data sets, where each is cached and whether it is fetched."""
    from .datasets import list_datasets

    infos = list_datasets()
    if as_json:
        _emit_json([d.to_dict() for d in infos])
        return
    table = Table("name", "present", "lines", "path", "description", title="data sets")
    for d in infos:
        lines = ", ".join(f"{k} {v:,}" for k, v in d.lines.items()) if d.lines else "-"
        table.add_row(d.name, "yes" if d.present else "no", lines, d.path, d.description)
    out.print(table)


@datasets_group.command("fetch")
@click.argument("name")
@click.option("--wheel", type=str, default=None, help="Read an already downloaded wheel instead of running pip download (no network needed).")
@domain_errors
def datasets_fetch_cmd(name: str, wheel: str | None) -> None:
    """Fetch data set NAME (e.g. moses) into its cache folder and print the folder's path.

    Nothing is done when the cache is already complete."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from .datasets import dataset_status, fetch_dataset

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:  # no bar in logs
        task = bar.add_task(f"{name}: reading the wheel" if wheel else f"{name}: downloading", total=None)
        folder = fetch_dataset(
            name,
            wheel=wheel,
            progress=lambda done, total: bar.update(task, completed=done, total=total, description=f"{name}: extracting"),
            on_message=lambda m: bar.console.print(m),
        )
    status = dataset_status(name)
    if status.lines:
        err.print(", ".join(f"{k}: {v:,} lines" for k, v in status.lines.items()))
    click.echo(str(folder))


# -- backends, train, sample --------------------------------------------------------------------

@main.command("backends")
@plugins_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@domain_errors
def backends_cmd(plugins_dir: str | None, as_json: bool) -> None:
    """List the registered backends and where each came from."""
    from .model.options import accepted
    from .model.registry import get_registry

    entries = get_registry(plugins_dir).entries()
    if as_json:
        _emit_json(
            [
                {
                    "name": e.name,
                    "default": bool(getattr(e.backend, "default", False)),
                    "description": e.backend.description,
                    "source": e.source,
                    "options": accepted(e.backend.Options),
                    "tau": e.backend.tau_help,
                }
                for e in entries
            ]
        )
        return
    table = Table("name", "description", "source", title="backends")
    for e in entries:
        name = e.name + (" (default)" if getattr(e.backend, "default", False) else "")
        table.add_row(name, e.backend.description, e.source)
    out.print(table)


@main.command("plugins")
@plugins_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@domain_errors
def plugins_cmd(plugins_dir: str | None, as_json: bool) -> None:
    """List every plugin: backends, validators and automata, and where each came from."""
    from .lang.automaton import automata
    from .model.registry import get_registry
    from .validators import validators

    rows = [("backend", e.name, e.backend.description, e.source) for e in get_registry(plugins_dir).entries()]
    for kind, found in (("validator", validators(plugins_dir)), ("automaton", automata(plugins_dir))):
        rows += [(kind, name, obj.description, source) for name, (obj, source) in sorted(found.items())]
    if as_json:
        _emit_json([{"kind": k, "name": n, "description": d, "source": s} for k, n, d, s in rows])
        return
    table = Table("kind", "name", "description", "source", title="plugins")
    for row in rows:
        table.add_row(*row)
    out.print(table)


@main.command("train")
@grammar_option
@click.option("--start", default="start", show_default=True, help="The grammar's start rule.")
@click.option("--data", type=str, default=None, help="Training strings, one per line, or a .csv/.gz file [default: draw the paper's set from the grammar].")
@column_option
@click.option("--data-size", type=click.IntRange(min=1), default=5000, show_default=True, help="Strings to draw when --data is not given.")
@click.option("--max-len", type=click.IntRange(1, MAX_LEN_LIMIT), default=None, help="Sequence length [default: 12, or the longest --data string].")
@click.option("--backend", "-b", default=None, help="See `gumbelseq backends` [default: the backend registered as the default, marked there].")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Training iterations [default: the backend's/preset's].")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Minibatch size [default: the backend's].")
@seed_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--out", "out_dir", type=str, default=None, help="Run directory: a new or empty folder [default: runs/<backend>-<time>].")
@click.option("--resume", "resume_dir", type=str, default=None, help="Continue the run in this directory.")
@click.option("-o", "--option", "opts", multiple=True, metavar="KEY=VALUE", help="Backend option (repeatable).")
@click.option("--eval-every", type=click.IntRange(min=0), default=500, show_default=True, help="Check validity of a sample batch every N iterations (0: never).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=1000, show_default=True)
@plugins_dir_option
@domain_errors
def train_cmd(
    grammar: str,
    start: str,
    data: str | None,
    column: str | None,
    data_size: int,
    max_len: int | None,
    backend: str | None,
    iterations: int | None,
    batch_size: int | None,
    seed: int,
    device: str,
    out_dir: str | None,
    resume_dir: str | None,
    opts: tuple[str, ...],
    eval_every: int,
    checkpoint_every: int,
    plugins_dir: str | None,
) -> None:
    """Train a model; Ctrl-C stops cleanly with a resumable checkpoint."""
    from click.core import ParameterSource

    from .model.options import parse_pairs
    from .model.progress import RichProgress
    from .model.train import resume_training, start_training

    ctx = click.get_current_context()
    progress = [RichProgress(err, label=resume_dir or backend)]
    if resume_dir is not None:
        # A resumed run continues exactly as configured; silently ignoring a flag would lie.
        fixed = ["grammar", "start", "data", "column", "data_size", "max_len", "backend", "iterations", "batch_size", "seed",
                 "out_dir", "opts", "eval_every", "checkpoint_every"]
        given = [n for n in fixed if ctx.get_parameter_source(n) is not ParameterSource.DEFAULT]
        if given:
            opts_of = {p.name: p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0] for p in ctx.command.params}
            flags = ", ".join(opts_of[n] for n in given)
            raise click.UsageError(f"--resume continues the run as it was configured; drop {flags}")
        device_given = ctx.get_parameter_source("device") is not ParameterSource.DEFAULT
        result = resume_training(resume_dir, device=device if device_given else None, callbacks=progress,
                                 plugins_dir=plugins_dir, remember=True, on_notice=_notice)
    else:
        _check_column(column, data)
        if data is not None and ctx.get_parameter_source("data_size") is not ParameterSource.DEFAULT:
            raise click.UsageError("--data-size is the number of strings drawn from the grammar; with --data the"
                                   " file's strings are the data (drop one of them)")
        options: dict[str, object] = dict(parse_pairs(opts))
        if iterations is not None:
            options["iterations"] = iterations
        if batch_size is not None:
            options["batch_size"] = batch_size
        result = start_training(
            grammar=load_grammar(grammar, start=start, on_notice=_notice),
            backend=backend,
            out_dir=out_dir,
            options=options,
            data=_training_data(data, column) if data is not None else None,  # --data '' is a missing file
            data_source=data,
            n_data=data_size,
            max_len=max_len,
            seed=seed,
            device=device,
            eval_every=eval_every,
            checkpoint_every=checkpoint_every,
            callbacks=progress,
            plugins_dir=plugins_dir,
            remember=True,
        )
    if result.stopped:
        err.print(f"stopped at iteration {result.iterations}; continue with: gumbelseq train --resume {result.run_dir}")
        sys.exit(128 + (result.stop_signal or signal.SIGINT))  # 130 for Ctrl-C, 143 for SIGTERM
    click.echo(str(result.run_dir))


def _training_data(path: str, column: str | None) -> list[str]:
    """``--data``: ``.txt``, ``.csv`` (``--column``) or ``.gz``, checked as training data."""
    from .inputs import read_lines
    from .model.train import check_data, read_data

    if column is None:
        return read_data(path)  # reads every format, the CSV column by its default
    lines = read_lines(path, "data file", column=column)
    check_data(lines, path)
    return lines


# -- sweep --------------------------------------------------------------------------------------


@main.command("sweep")
@click.argument("file", type=str)
@click.option("--out", "out_dir", type=str, default=None, help="Sweep folder: a new or empty folder, or this sweep's own (re-running the same command resumes it) [default: runs/sweep-<name>].")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True, help="Local worker processes sharing the storage, each with max(1, CPUs // N) torch threads (1: train in this process).")
@click.option("--storage", default=None, metavar="URL", help="Optuna storage: a journal file path (one machine, or a shared filesystem) or a database URL such as postgresql://user@host/db; the same command on several machines then joins one sweep [default: DIR/optuna.journal].")
@click.option("--json", "as_json", is_flag=True, help="Print the trials as one JSON object instead of tables.")
@plugins_dir_option
@domain_errors
def sweep_cmd(file: str, out_dir: str | None, workers: int, storage: str | None, as_json: bool, plugins_dir: str | None) -> None:
    """Sweep backend options on Optuna (a grid, or a seeded TPE search) as FILE says (.toml, .yaml or .json).

    Each trial is a run directory made as `gumbelseq train` makes one, then sampled and scored.
    Ctrl-C stops cleanly (exit 130); the same command again resumes: complete trials are kept,
    interrupted ones retried."""
    import time

    from .model.sweep import load_sweep_file, missing_trials, run_sweep

    t0 = time.monotonic()
    try:
        spec = load_sweep_file(file, plugins_dir=plugins_dir)
        out_dir = out_dir or f"runs/sweep-{spec.name}"
        with _SweepDisplay(spec) as display:
            results = run_sweep(spec, out_dir, workers=workers, storage=storage, on_update=display.update,
                                on_message=display.message, plugins_dir=plugins_dir)
    except KeyboardInterrupt:
        where = f" in {out_dir}" if out_dir else ""
        err.print(f"stopped; run the same command again to resume the sweep{where}")
        sys.exit(130)
    elapsed = time.monotonic() - t0
    if as_json:
        from .model.sweep import best_by_params

        _emit_json({"name": spec.name, "out": out_dir, "mode": spec.mode, "metric": spec.metric,
                    "direction": spec.direction, "seconds": round(elapsed, 1),
                    "trials": [r.to_dict() for r in results], "by_params": best_by_params(spec, results)})
    else:
        _print_sweep(spec, results, out_dir)
    err.print(f"sweep folder: {out_dir} ({len(results)} trials, {elapsed:.0f} s)")
    missing = missing_trials(spec, results)
    if missing:
        raise click.ClickException(f"{missing} of {spec.n_planned()} trials did not complete (their error is in"
                                   f" {out_dir}/results.jsonl); run the same command again to retry them")


def _sweep_value(metric: str, v: Any) -> str:
    if v is None:
        return "-"
    if metric in ("validity", "novelty", "coverage", "reference_coverage"):
        return f"{100 * v:.2f}%"
    if metric.startswith("tv_"):
        return f"{v:.4f}"
    return f"{v:g}"


def _sweep_table(spec: Any, results: list, title: str) -> Table:
    import time

    names = spec.option_names
    extra = [] if spec.metric == "validity" else ["validity"]
    retries = any(r.retry_of is not None for r in results)
    table = Table("#", *names, "seed", "state", spec.metric, *extra, "seconds", *(["retry of"] if retries else []), title=title)
    now = time.time()
    for r in results:
        secs = r.seconds if r.seconds is not None else (now - r.started if r.state == "running" and r.started else None)
        state = Text(r.state, style={"complete": "green", "failed": "red", "interrupted": "yellow"}.get(r.state, ""))
        cells = [str(r.number), *(str(r.params.get(n, "-")) for n in names), str(r.seed), state,
                 _sweep_value(spec.metric, r.value if r.value is not None else r.metrics.get(spec.metric)),
                 *(_sweep_value(m, r.metrics.get(m)) for m in extra), "-" if secs is None else f"{secs:.1f}"]
        if retries:
            cells.append("-" if r.retry_of is None else str(r.retry_of))
        table.add_row(*cells)
    return table


def _print_sweep(spec: Any, results: list, out_dir: str) -> None:
    from .model.sweep import best_by_params

    done = sum(1 for r in results if r.state == "complete")
    out.print(_sweep_table(spec, results, f"sweep {spec.name}: {spec.mode}, {done} complete trials, {spec.direction} {spec.metric}"))
    groups = best_by_params(spec, results)
    if groups and len(spec.seeds) > 1:
        table = Table(*spec.option_names, "seeds", f"mean {spec.metric}", "min", "max", title="by options, over seeds (best first)")
        for g in groups:
            table.add_row(*(str(g["params"].get(n, "-")) for n in spec.option_names), str(len(g["seeds"])),
                          *(_sweep_value(spec.metric, g[k]) for k in ("mean", "min", "max")))
        out.print(table)
    for r in results:
        if r.state == "failed" and r.error:
            _notice(f"trial {r.number} failed: {r.error}")


class _SweepDisplay:
    """The sweep's progress on stderr: a live table on a terminal (refreshed from the storage,
    so it shows every worker's and machine's trials), one line per event in a log."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.live = None
        self.seen: dict[int, str] | None = None
        if err.is_terminal:
            from rich.live import Live

            self.live = Live(console=err, refresh_per_second=2, transient=True)

    def __enter__(self) -> "_SweepDisplay":
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.stop()

    def message(self, msg: str) -> None:
        (self.live.console if self.live is not None else err).print(msg)

    def update(self, results: list) -> None:
        if self.live is not None:
            done = sum(1 for r in results if r.state == "complete")
            self.live.update(_sweep_table(self.spec, results, f"sweep {self.spec.name}: {done}/{self.spec.n_planned()} complete"))
            return
        if self.seen is None:  # what a resumed sweep had finished before is said once
            self.seen = {r.number: r.state for r in results if r.state in ("complete", "failed", "interrupted")}
            if self.seen:
                done = sum(1 for s in self.seen.values() if s == "complete")
                err.print(f"resuming: {done} complete trials kept, {len(self.seen) - done} failed or interrupted before")
        for r in results:
            if self.seen.get(r.number) == r.state or r.state == "waiting":
                continue
            self.seen[r.number] = r.state
            shown = ", ".join([*(f"{k}={v}" for k, v in r.params.items()), f"seed={r.seed}"])
            if r.state == "running":
                err.print(f"trial {r.number} ({shown}): running")
            elif r.state == "complete":
                err.print(f"trial {r.number} ({shown}): complete, {self.spec.metric} {_sweep_value(self.spec.metric, r.value)}, {r.seconds or 0:.1f} s")
            else:
                err.print(f"trial {r.number} ({shown}): {r.state}" + (f": {r.error}" if r.error else ""))


@main.command("sample")
@click.option("--run", "run_dir", type=str, default=None, help="Run directory [default: the last trained run].")
@click.option("-n", "count", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--tau", type=float, default=1.0, show_default=True, help="Sampling temperature, in [1e-8, 1e8]; see README for what it does per backend.")
@seed_option
@click.option("--device", default="auto", show_default=True)
@click.option("-o", "--output", type=click.Path(readable=False, allow_dash=True), default=None, help="Write here instead of stdout; an existing file is replaced only on success, keeping its mode; symlinks are followed; FIFOs and /dev paths are written directly.")
@click.option("--constrained", is_flag=True, help="Only let the model write what keeps the string completable to a valid one within the run's max length: every sample is valid.")
@click.option("--automaton", "automata", multiple=True, metavar="NAME", help="Also keep every sample accepted by this character automaton (a plugin; smiles-rings: SMILES ring closures RDKit can read; smiles-valence: and no atom past its valence); implies --constrained; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with the samples.")
@plugins_dir_option
@domain_errors
def sample_cmd(run_dir: str | None, count: int, tau: float, seed: int, device: str, output: str | None, constrained: bool, automata: tuple[str, ...], as_json: bool, plugins_dir: str | None) -> None:
    """Sample strings from a trained run (one per line, padding removed)."""
    from .model.gumbel import check_tau
    from .model.run import load_run
    from .outputs import check_output, open_output

    check_tau(tau)  # before loading the run: a bad value fails in milliseconds
    if output is not None:
        check_output(output)  # a bad path fails now, before loading and sampling
    run = load_run(run_dir, device=device, plugins_dir=plugins_dir)
    constrained = constrained or bool(automata)
    if constrained:
        run.constraint(automata)  # a backend, grammar or automaton that cannot be used fails before any output
    if as_json:
        samples = run.sample(count, tau=tau, seed=seed, constrained=constrained, automata=automata)
        obj = {"run": str(run.run_dir), "backend": run.config.backend, "tau": tau, "seed": seed, "constrained": constrained,
               "automata": list(automata), "samples": samples}
        if automata:
            obj["search_gave_up"] = _search_gave_up(run, automata)
        if output is not None:  # the JSON object goes where -o says, like the lines would
            with open_output(output, "w") as f:
                f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            err.print(f"wrote {count} samples as JSON to {output}")
        else:
            _emit_json(obj)
        return
    if output is not None:
        with open_output(output, "w") as f:
            for chunk in run.sample_iter(count, tau=tau, seed=seed, constrained=constrained, automata=automata):
                f.write("".join(s + "\n" for s in chunk))
        err.print(f"wrote {count} samples to {output}")
    else:
        for chunk in run.sample_iter(count, tau=tau, seed=seed, constrained=constrained, automata=automata):
            sys.stdout.write("".join(s + "\n" for s in chunk))
    if automata:
        _search_gave_up(run, automata)


def _search_gave_up(run: Any, automata: tuple[str, ...]) -> int:
    """How often the search for a completion ran out of budget while sampling, said on stderr
    when it did: the samples are valid, but some allowed characters were left out."""
    from .lang.intersection import SEARCH_BUDGET

    gave_up = run.search_gave_up(automata)
    if gave_up:
        _notice(f"the search for a completion ran out of its budget ({SEARCH_BUDGET:,} states) {gave_up:,} times;"
                " each time one character was left out, so samples are valid but drawn from less than"
                " the whole intersection")
    return gave_up


@main.command("reproduce")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="reproduction", show_default=True, help="Report directory (re-running resumes it).")
@seed_option
@click.option("--seeds", "seeds_text", default=None, metavar="LIST", help="Several seeds (0,1,2 or 0-4): one ordinary reproduction per seed in OUT/seed-N, then OUT/report.md and report.json with mean ± std, min, max and the worst seed per row. Not with --seed.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="With --seeds: run this many seeds at a time, each in its own process with cpus/N torch threads [default: 1, in this process].")
@click.option("--suite", default="paper", show_default=True, help="The table: paper (the arith table), moses (the MOSES SMILES benchmark, after `gumbelseq datasets fetch moses`), or a .toml/.json suite file.")
@click.option("--quick", is_flag=True, help="The same pipeline with tiny budgets (a smoke test, not the paper's numbers).")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--only", multiple=True, help="Only these rows (their keys: see report.json or the README; rows that sample another row's run need it trained); repeatable.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Draw losses.png and samples.png (needs the [plot] extra: matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the table.")
@domain_errors
def reproduce_cmd(out_dir: str, seed: int, seeds_text: str | None, workers: int | None, suite: str, quick: bool, device: str,
                  only: tuple[str, ...], plots: bool, as_json: bool) -> None:
    """Reproduce a benchmark table with numbers (the paper's by default; --suite): train, sample, score, report."""
    from click.core import ParameterSource

    from .parent_death import stop_with_parent_from_env

    stop_with_parent_from_env()  # a child of `reproduce --seeds`: stop when that command dies

    from pathlib import Path

    from .model.progress import RichProgress
    from .model.reproduce import headings, reproduce, suite_models, table_rows
    from .model.suite_file import get_suite

    if seeds_text is not None and click.get_current_context().get_parameter_source("seed") is not ParameterSource.DEFAULT:
        raise GumbelseqError("--seed and --seeds are mutually exclusive: one reproduction, or one per seed")
    if workers is not None and seeds_text is None:
        raise GumbelseqError("--workers runs several seeds at a time; it needs --seeds")
    the_suite = get_suite(suite)
    known = [m.key for m in suite_models(the_suite)]
    for key in only:
        if key not in known:
            raise click.BadParameter(f"{key!r}; choose from {', '.join(known) or f'nothing (suite {the_suite.name} has no rows)'}",
                                     param_hint="--only")
    kwargs: dict[str, Any] = dict(quick=quick, device=device, only=list(only) or None, suite=the_suite, plots=plots,
                                  progress=lambda spec: [RichProgress(err, label=spec.label)],
                                  on_message=lambda m: err.print(m, markup=False, highlight=False))
    try:
        if seeds_text is not None:
            from .model.reproduce_seeds import headings as seed_headings, parse_seeds, table_rows as seed_rows

            agg = reproduce(out_dir, seeds=parse_seeds(seeds_text), workers=workers or 1, **kwargs)
        else:
            repro = reproduce(out_dir, seed=seed, **kwargs)
    except KeyboardInterrupt:
        err.print(f"stopped; run the same command again to resume from {out_dir}")
        sys.exit(130)
    if seeds_text is not None:
        if as_json:
            _emit_json(agg.to_dict())
            return
        table = Table(*seed_headings(agg), title=f"{the_suite.name}, seeds {', '.join(map(str, agg.seeds))}, mean ± std"
                      + (" (quick)" if quick else ""))
        for row in seed_rows(agg, published=True):
            table.add_row(*row)
        out.print(table)
        err.print(f"wrote {out_dir}/report.md, report.json (each seed's reproduction: {out_dir}/seed-N)")
        return
    if as_json:
        _emit_json(repro.to_dict())
        return
    name = the_suite.grammar if the_suite.name == "paper" else the_suite.name
    table = Table(*headings(repro), title=f"{name}, seed {seed}, {repro.n_samples} samples per model" + (" (quick)" if quick else ""))
    for row in table_rows(repro, published=True):
        table.add_row(*row)
    out.print(table)
    figures = [f for f in ("losses.png", "samples.png") if plots and (Path(out_dir) / f).exists()]
    err.print(f"wrote {out_dir}/report.md, " + ", ".join(["report.json", *figures]))
