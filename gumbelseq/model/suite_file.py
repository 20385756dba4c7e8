"""Suite files: a benchmark table declared in TOML or JSON (``reproduce --suite FILE``).

A suite file says what the built-in suites say in code (``suite.py``), so that a user can run
their own table without writing a plugin::

    name = "mini-smiles"                 # required; [A-Za-z0-9_.-]
    description = "..."                  # optional
    title = "..."                        # optional: the report's heading
    grammar = "smiles"                   # required: a built-in name or a .lark path
    max_len = 57                         # optional: default the longest training string
    samples = 10000                      # optional: samples per row (default 10,000)
    validators = ["rdkit"]               # optional: gumbelseq.validators names
    coverage = false                     # optional: show coverage of the language (default true)

    [train]                              # required, one of:
    draw = 5000                          #   drawn from the grammar (seed_offset = 0 optional)
    dataset = "moses"                    #   a named data set's split (split = "train" by default)
    file = "train.txt"                   #   a file (.txt, .csv with column = "...", .gz)
    limit = 100000                       #   optional with dataset/file: a seeded uniform sample

    [reference]                          # optional: default a fresh draw from the grammar
    dataset = "moses"                    #   or file = "..."; split = "test" by default

    [[published]]                        # optional, repeatable: figures printed beside
    label = "CharRNN"
    source = "MOSES paper, Table 1"
    metrics = { "rdkit.validity" = 0.9748, "rdkit.novelty" = { mean = 0.8419, std = 0.0509 } }

    [[rows]]                             # optional, repeatable: else the backends' rows of `name`
    backend = "my-backend"
    key = "mine"
    label = "My model"
    options = { iterations = 500 }       # also: what, quick_options, sample_of, constrained

Relative paths are relative to the suite file's folder. Every problem is one ``SuiteError``
line naming the file and the key; the file is read and checked completely (backends, options,
validators, data sets, grammar) before a reproduction writes anything.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from ..errors import GumbelseqError, first_line
from ..inputs import DuplicateKeyError, line_and_column, loads_json_strict
from .options import finite_number
from .suite import BUILTIN_SUITES, GrammarDraw, LinesFrom, ModelSpec, Published, Suite

SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
#: A row's key names its run folder: a safe folder name, and not the reference row's key.
RESERVED_KEYS = ("reference",)

TOP_KEYS = ("name", "description", "title", "grammar", "max_len", "samples", "validators", "coverage",
            "train", "reference", "published", "rows")
TRAIN_KEYS = ("draw", "seed_offset", "dataset", "split", "file", "column", "limit")
REFERENCE_KEYS = ("dataset", "split", "file", "column")
PUBLISHED_KEYS = ("label", "source", "metrics")
ROW_KEYS = ("backend", "key", "label", "options", "what", "quick_options", "sample_of", "constrained")


class SuiteError(GumbelseqError):
    """A suite name that is not built in, or a suite file that cannot be used as it is."""


def looks_like_suite_file(spec: str) -> bool:
    """``--suite`` names a file exactly when it has a path separator or a .toml/.json suffix."""
    return "/" in spec or "\\" in spec or spec.endswith((".toml", ".json"))


def get_suite(spec: str | Suite, *, check_rows: bool = True) -> Suite:
    """A built-in suite by name, or the suite file ``spec`` read and checked."""
    if isinstance(spec, Suite):
        return spec
    if looks_like_suite_file(spec):
        return load_suite_file(spec, check_rows=check_rows)
    if spec not in BUILTIN_SUITES:
        raise SuiteError(f"unknown suite {spec!r}; built-in suites: {', '.join(BUILTIN_SUITES)},"
                         f" or a .toml/.json suite file (./{spec}.toml)")
    return BUILTIN_SUITES[spec]


def _read(path: Path) -> Any:
    shown = str(path)
    if path.suffix not in (".toml", ".json"):
        raise SuiteError(f"{shown}: a suite file is a .toml or .json file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SuiteError(f"{shown}: no such suite file") from None
    except IsADirectoryError:
        raise SuiteError(f"{shown}: is a folder, not a suite file") from None
    except OSError as e:
        raise SuiteError(f"{shown}: cannot read the suite file ({e.strerror})") from None
    if b"\x00" in raw:
        raise SuiteError(f"{shown}: a binary file, not a {path.suffix[1:].upper()} suite file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, _ = line_and_column(raw, e.start)
        raise SuiteError(f"{shown}:{line}: not valid UTF-8; a suite file is UTF-8 text") from None
    if not text.strip():
        raise SuiteError(f"{shown}: empty suite file; it needs at least name, grammar and [train]")
    if path.suffix == ".json":
        try:
            data = loads_json_strict(text)
        except json.JSONDecodeError as e:
            raise SuiteError(f"{shown}:{e.lineno}:{e.colno}: JSON syntax error: {e.msg}") from None
        except DuplicateKeyError as e:
            raise SuiteError(f"{shown}:{e.line}:{e.column}: {e}") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise SuiteError(f"{shown}: TOML suite files need Python 3.11 or later (tomllib); write it as .json") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            msg = first_line(e)
            m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)  # FILE:LINE:COL, as everywhere else
            if m:
                raise SuiteError(f"{shown}:{m.group(1)}:{m.group(2)}: TOML syntax error: {msg[: m.start()]}") from None
            raise SuiteError(f"{shown}: TOML syntax error: {msg}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{shown}: expected a JSON object (a table of keys) at the top, got {_kind(data)}")
    return data


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


class _Reader:
    """Typed access to one table of the file, with the file and the table in every error."""

    def __init__(self, shown: str, where: str, table: Any, known: tuple[str, ...]) -> None:
        self.shown, self.where = shown, where
        if not isinstance(table, dict):
            raise SuiteError(f"{shown}: {where}: expected a table, got {_kind(table)}")
        unknown = [k for k in table if k not in known]
        if unknown:
            raise SuiteError(f"{self._at(unknown[0])}: unknown key (known keys: {', '.join(known)})")
        self.table = table

    def _at(self, key: str) -> str:
        return f"{self.shown}: {self.where + '.' if self.where else ''}{key}"

    def fail(self, key: str, what: str) -> SuiteError:
        return SuiteError(f"{self._at(key)}: {what}")

    def has(self, key: str) -> bool:
        return key in self.table

    def _get(self, key: str, default: Any, required: bool, ok: Callable[[Any], bool], expected: str) -> Any:
        if key not in self.table:
            if required:
                raise self.fail(key, f"missing; expected {expected}")
            return default
        v = self.table[key]
        if not ok(v):
            raise self.fail(key, f"expected {expected}, got {_kind(v)} {json.dumps(v, default=str)[:60]}")
        return v

    def str(self, key: str, default: str | None = None, required: bool = False, pattern: re.Pattern | None = None) -> Any:
        expected = "a non-empty string" + (" of letters, digits, _ . -" if pattern else "")
        return self._get(key, default, required,
                         lambda v: isinstance(v, str) and v.strip() != "" and (pattern is None or bool(pattern.match(v))),
                         expected)

    def int(self, key: str, default: int | None = None, required: bool = False, low: int = 0, high: int | None = None) -> Any:
        span = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        return self._get(key, default, required,
                         lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high),
                         span)

    def bool(self, key: str, default: bool) -> bool:
        return self._get(key, default, False, lambda v: isinstance(v, bool), "true or false")

    def table_(self, key: str) -> dict[str, Any]:
        return self._get(key, {}, False, lambda v: isinstance(v, dict), "a table")

    def list_(self, key: str) -> list[Any]:
        return self._get(key, [], False, lambda v: isinstance(v, list), "a list")


def load_suite_file(path: str | Path, *, check_rows: bool = True) -> Suite:
    """Read and check a suite file (see the module's docstring); ``SuiteError`` otherwise.

    ``check_rows`` also checks each row's backend and options against the registered backends
    (which imports them, and so torch)."""
    from .rundir import MAX_LEN_LIMIT

    p = Path(path)
    shown = str(path)
    data = _read(p)
    folder = p.parent
    top = _Reader(shown, "", data, TOP_KEYS)
    name = top.str("name", required=True, pattern=SAFE_NAME)
    grammar = _grammar(top, folder)
    max_len = top.int("max_len", None, low=1, high=MAX_LEN_LIMIT)
    n_samples = top.int("samples", 10_000, low=1)
    validators = _validators(top)
    train = _train(shown, data.get("train"), folder, required="train" in data)
    if train is None:
        raise top.fail("train", "missing; expected a table: draw = N, or dataset = NAME, or file = PATH")
    if isinstance(train, GrammarDraw) and max_len is None:
        raise top.fail("max_len", "missing; a training set drawn from the grammar needs the length bound")
    reference = _reference(shown, data["reference"], folder) if "reference" in data else None
    suite = Suite(
        name=name,
        description=top.str("description", ""),
        title=top.str("title", f"Suite {name}"),
        grammar=grammar,
        train=train,
        max_len=max_len,
        reference=reference,
        n_samples=n_samples,
        validators=validators,
        coverage=top.bool("coverage", isinstance(train, GrammarDraw)),
        published=tuple(_published(shown, i, t) for i, t in enumerate(top.list_("published"), 1)),
        rows=_rows(shown, name, top.list_("rows"), check_rows) if "rows" in data else None,
        source=shown,
    )
    return suite


def _grammar(top: _Reader, folder: Path) -> str:
    from ..lang.grammar import _looks_like_path, builtin_grammars

    spec = top.str("grammar", required=True)
    if _looks_like_path(spec):
        path = (folder / spec).absolute()
        if not path.is_file():
            raise top.fail("grammar", f"no such grammar file {path}")
        return str(path)
    known = sorted(g.name for g in builtin_grammars())
    if spec not in known:
        raise top.fail("grammar", f"unknown grammar {spec!r}; built-in grammars: {', '.join(known)} (a file: ./{spec}.lark)")
    return spec


def _validators(top: _Reader) -> tuple[str, ...]:
    names = top.list_("validators")
    for v in names:
        if not isinstance(v, str) or not v:
            raise top.fail("validators", f"expected a list of validator names, got {_kind(v)} in it")
    if names:
        from ..validators import validators as registered

        known = registered()
        for v in names:
            if v not in known:
                raise top.fail("validators", f"unknown validator {v!r}; known validators: {', '.join(sorted(known)) or 'none installed'}")
    if len(set(names)) != len(names):
        raise top.fail("validators", "a validator is listed twice")
    return tuple(names)


def _lines_from(r: _Reader, folder: Path, default_split: str, allow_limit: bool) -> LinesFrom:
    from ..datasets import DatasetError, get_dataset

    if r.has("dataset") == r.has("file"):
        raise SuiteError(f"{r.shown}: {r.where}: give exactly one of dataset = NAME or file = PATH")
    column = r.str("column", None)
    limit = r.int("limit", None, low=1) if allow_limit else None
    if r.has("dataset"):
        name = r.str("dataset", required=True)
        try:
            spec = get_dataset(name)
        except DatasetError as e:
            raise r.fail("dataset", str(e)) from None
        split = r.str("split", default_split)
        if f"{split}.txt" not in spec.members:
            splits = ", ".join(m.removesuffix(".txt") for m in spec.members)
            raise r.fail("split", f"data set {name} has no split {split!r} (it has: {splits})")
        return LinesFrom(dataset=name, split=split, column=column, limit=limit)
    if r.has("split"):
        raise r.fail("split", "applies to dataset = NAME only")
    path = (folder / r.str("file", required=True)).absolute()
    if not path.is_file():
        raise r.fail("file", f"no such file {path}")
    return LinesFrom(path=str(path), column=column, limit=limit)


def _train(shown: str, table: Any, folder: Path, required: bool) -> GrammarDraw | LinesFrom | None:
    if not required:
        return None
    r = _Reader(shown, "train", table, TRAIN_KEYS)
    if r.has("draw"):
        others = [k for k in ("dataset", "file", "split", "column", "limit") if r.has(k)]
        if others:
            raise r.fail(others[0], "does not go with draw = N (a draw from the grammar)")
        return GrammarDraw(r.int("draw", required=True, low=1), r.int("seed_offset", 0, low=0))
    if r.has("seed_offset"):
        raise r.fail("seed_offset", "applies to draw = N only")
    if not (r.has("dataset") or r.has("file")):
        raise SuiteError(f"{shown}: train: expected draw = N, dataset = NAME or file = PATH")
    return _lines_from(r, folder, "train", allow_limit=True)


def _reference(shown: str, table: Any, folder: Path) -> LinesFrom:
    r = _Reader(shown, "reference", table, REFERENCE_KEYS)
    return _lines_from(r, folder, "test", allow_limit=False)


def _number(v: Any) -> bool:
    return finite_number(v)


def _published(shown: str, i: int, table: Any) -> Published:
    r = _Reader(shown, f"published[{i}]", table, PUBLISHED_KEYS)
    metrics: dict[str, tuple[float, float | None]] = {}
    for key, v in r.table_("metrics").items():
        if _number(v):
            metrics[key] = (float(v), None)
        elif isinstance(v, dict) and set(v) <= {"mean", "std"} and _number(v.get("mean")) and (
                v.get("std") is None or _number(v["std"])):
            metrics[key] = (float(v["mean"]), None if v.get("std") is None else float(v["std"]))
        else:
            raise r.fail(f"metrics.{key}", f"expected a number or {{ mean = N, std = N }}, got {_kind(v)}")
    return Published(label=r.str("label", required=True), source=r.str("source", ""), metrics=metrics)


def _rows(shown: str, suite: str, tables: list[Any], check: bool) -> tuple[ModelSpec, ...]:
    specs: list[ModelSpec] = []
    for i, table in enumerate(tables, 1):
        r = _Reader(shown, f"rows[{i}]", table, ROW_KEYS)
        key = r.str("key", required=True, pattern=SAFE_NAME)
        if key in RESERVED_KEYS:
            raise r.fail("key", f"{key!r} is the reference row's key; choose another")
        if any(s.key == key for s in specs):
            raise r.fail("key", f"{key!r} is used by an earlier row")
        sample_of = r.str("sample_of", "")
        if sample_of and not any(s.key == sample_of and not s.sample_of for s in specs):
            raise r.fail("sample_of", f"{sample_of!r} is not an earlier row that trains a model")
        specs.append(ModelSpec(
            key=key,
            label=r.str("label", key),
            options=dict(r.table_("options")),
            what=r.str("what", ""),
            order=float(i),
            quick_options=dict(r.table_("quick_options")),
            sample_of=sample_of,
            constrained=r.bool("constrained", False),
            suite=suite,
            backend=r.str("backend", required=True),
        ))
    return tuple(_check_backends(shown, specs) if check else specs)


def _check_backends(shown: str, specs: list[ModelSpec]) -> list[ModelSpec]:
    """Each row's backend is registered and takes its options: refused here, before anything
    is written, rather than after the rows above it have trained. Options written as strings
    (``iterations = "500"``) come back typed, as a run's config records them, so that a finished
    run is recognised as made with them."""
    from dataclasses import replace

    from .registry import get_registry

    registry = get_registry()
    typed = []
    for i, spec in enumerate(specs, 1):
        try:
            backend = registry.get(spec.backend)
        except GumbelseqError as e:
            raise SuiteError(f"{shown}: rows[{i}].backend: {e}") from None
        if spec.sample_of:
            typed.append(spec)
            continue
        try:
            full = backend.make_options(spec.options)
            quick = backend.make_options({**spec.options, **spec.quick_options})
        except GumbelseqError as e:
            raise SuiteError(f"{shown}: rows[{i}].options: {e}") from None
        except (TypeError, ValueError) as e:  # a value of a type the options cannot take
            raise SuiteError(f"{shown}: rows[{i}].options: {first_line(e)}") from None
        typed.append(replace(spec, options={k: getattr(full, k) for k in spec.options},
                             quick_options={k: getattr(quick, k) for k in spec.quick_options}))
    return typed

