"""The ``gumbelseq`` command line: thin wrappers over the library.

Results go to stdout (a Rich table, or one JSON object with ``--json``); progress and notices go
to stderr. Domain errors (``GumbelseqError``) become one-line click errors here and nowhere else.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import GumbelseqError
from .grammar import DEFAULT_GRAMMAR, builtin_grammars, load_grammar

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def _notice(msg: str) -> None:
    err.print(f"[yellow]note:[/] {msg}", markup=True, highlight=False)


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
    help="A .lark file or a built-in grammar name (see `gumbelseq grammars`).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write here (atomically) instead of stdout.")
@domain_errors
def data_cmd(grammar: str, count: int, max_len: int, mode: str, seed: int, output: str | None) -> None:
    """Draw training strings from a grammar, one per line (no padding)."""
    from .dataset import draw_dataset, write_lines

    g = load_grammar(grammar, on_notice=_notice)
    lines = draw_dataset(g, count, max_len=max_len, mode=mode, seed=seed)
    if output:
        write_lines(output, lines)
        err.print(f"wrote {len(lines)} strings to {output}")
    else:
        sys.stdout.write("".join(s + "\n" for s in lines))


@main.command("score")
@click.argument("file", type=str)
@grammar_option
@click.option("--reference", type=str, default=None, help="Training data file: enables novelty and distances.")
@click.option("--max-len", type=click.IntRange(min=0), default=None, help="Length bound for coverage [default: the longest valid sample].")
@click.option("--show-invalid", type=click.IntRange(min=0), default=5, show_default=True, help="How many invalid samples to show.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@domain_errors
def score_cmd(file: str, grammar: str, reference: str | None, max_len: int | None, show_invalid: int, as_json: bool) -> None:
    """Score a sample file (one sample per line; FILE may be - for stdin)."""
    from .score import score_file

    g = load_grammar(grammar, on_notice=_notice)
    rep = score_file(file, g, reference=reference, max_len=max_len, show_invalid=show_invalid)
    if as_json:
        _emit_json(rep.to_dict())
        return
    _print_report(rep)


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
