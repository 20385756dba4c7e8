"""Sweep files: ``load_sweep_file(path) -> SweepSpec``, every key checked before anything runs.

A sweep file is TOML, YAML or JSON (told apart by the file name: ``.toml``, ``.yaml``/``.yml``,
``.json``) holding one mapping::

    name = "gan-tau"                  # the Optuna study name [default: the file's stem]
    grammar = "arith"                 # built-in name or .lark path (relative to this file)
    backend = "gumbel-lstm-gan"       # [default: the registered default backend]
    max_len = 12                      # sequence length [default: data.max_len, or the longest data line]
    iterations = 300                  # training iterations of every trial
    seeds = [0, 1]                    # every grid point trains once per seed [default: [0]]
    samples = 1000                    # samples drawn (tau 1, the trial's seed) and scored per trial
    metric = "validity"               # a numeric field of gumbelseq.lang.score.Report
    direction = "maximize"            # [default: minimize for tv_*, else maximize]

    [data]                            # drawn once, shared by every trial ...
    n = 1000
    max_len = 12
    seed = 0
    # file = "train.txt"              # ... or a data file (relative to this file)

    [fixed]                           # backend options every trial gets
    batch_size = 50

    [grid]                            # every combination x every seed (GridSampler) ...
    tau_end = [0.5, 1.0, 2.0, 4.0]

    # [search]                        # ... or n_trials points chosen by TPE (seeded)
    # lr_g = { low = 1e-4, high = 1e-2, log = true }
    # hidden_g = { low = 8, high = 64, step = 8 }
    # preset = { choices = ["paper", "best"] }

Validation is complete and has no side effects: the grammar and the backend are loaded, every
grid combination (and every range end and choice of a search) is built with the backend's own
option checks, a data file is read and checked. Every problem is a one-line ``SweepFileError``
naming the file (and ``line:column`` where the parser gives one).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import GumbelseqError
from ..inputs import DuplicateKeyError, line_and_column, loads_json_strict, read_lines
from ..lang.grammar import Grammar, load_grammar
from . import rundir
from .options import _field_types, finite_number

#: The ``Report`` fields a sweep can optimise, with the direction that is better by default.
METRICS: dict[str, str] = {
    "validity": "maximize",
    "valid": "maximize",
    "unique": "maximize",
    "unique_valid": "maximize",
    "novelty": "maximize",
    "coverage": "maximize",
    "reference_coverage": "maximize",  # "train coverage": share of the training set re-generated
    "tv_strings": "minimize",
    "tv_lengths": "minimize",
}
DIRECTIONS = {"maximize": "maximize", "maximise": "maximize", "minimize": "minimize", "minimise": "minimize"}

#: A grid past this many trials is a typo (a range written as a list), not a plan.
MAX_GRID = 10_000
MAX_TRIALS = 100_000
#: Sweep files are a few lines; a bigger one is not a sweep file.
MAX_FILE_BYTES = 1 << 20

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOP_KEYS = ("name", "grammar", "start", "backend", "data", "max_len", "iterations", "fixed", "grid", "search",
             "seeds", "n_trials", "sampler_seed", "metric", "direction", "samples", "device", "eval_every",
             "checkpoint_every")
_DATA_KEYS = ("file", "n", "max_len", "seed")
_RANGE_KEYS = ("low", "high", "log", "step")


class SweepFileError(GumbelseqError):
    """A sweep file that cannot be run as written."""


@dataclass(frozen=True)
class Dimension:
    """One searched option: an ``int`` or ``float`` range (``log`` scale, optional ``step``), or
    a list of ``choices``."""

    kind: str  # "int" | "float" | "choices"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choices":
            return {"choices": list(self.choices)}
        d: dict[str, Any] = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            d["step"] = self.step
        return d


@dataclass
class SweepSpec:
    """A checked sweep file. ``grid`` or ``search`` is set, never both."""

    name: str
    source: str
    grammar: str  # a built-in name, or an absolute path to a .lark file
    start: str
    backend: str
    max_len: int
    iterations: int | None  # None when `iterations` is itself a grid or search option
    fixed: dict[str, Any]
    grid: dict[str, list[Any]] | None
    search: dict[str, Dimension] | None
    seeds: list[int]
    n_trials: int | None
    sampler_seed: int
    metric: str
    direction: str
    samples: int
    data_file: str | None  # absolute path; None: drawn from the grammar
    data_n: int
    data_max_len: int
    data_seed: int
    device: str = "auto"
    eval_every: int = 500
    checkpoint_every: int = 1000
    grammar_sha256: str = ""
    data_sha256: str = ""  # of a data file's strings; "" for drawn data
    _data: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def mode(self) -> str:
        return "grid" if self.grid is not None else "search"

    @property
    def option_names(self) -> list[str]:
        """The searched options, in file order (the table's columns)."""
        return list(self.grid if self.grid is not None else self.search or {})

    def grid_points(self) -> list[dict[str, Any]]:
        """Every grid combination with every seed: the trials of a grid sweep, as Optuna params
        (options plus ``seed``)."""
        assert self.grid is not None
        names = list(self.grid)
        combos = itertools.product(*(self.grid[n] for n in names))
        return [{**dict(zip(names, c)), "seed": s} for c in combos for s in self.seeds]

    def n_planned(self) -> int:
        """Trials the sweep is done after: the grid size, or ``n_trials``."""
        return len(self.grid_points()) if self.grid is not None else int(self.n_trials or 0)

    def trial_options(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The backend options of one trial: the fixed ones, the trial's, the iterations."""
        opts = {**self.fixed, **{k: v for k, v in params.items() if k != "seed"}}
        if self.iterations is not None:
            opts["iterations"] = self.iterations
        return opts

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        if self.search is not None:
            d["search"] = {k: v.to_dict() for k, v in self.search.items()}
        return d

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "SweepSpec":
        """The inverse of ``to_dict`` (a sweep folder's ``sweep.json``); no checks beyond shape."""
        d = dict(raw)
        if d.get("search") is not None:
            d["search"] = {k: _dimension_from_dict(v) for k, v in d["search"].items()}
        try:
            return cls(**d)
        except TypeError as e:
            raise GumbelseqError(f"not a sweep spec of this gumbelseq version ({e})") from None

    def fingerprint(self) -> str:
        """What makes two sweep files the same sweep, whatever folder, machine or file they are
        in: everything but paths and the device, with the grammar and data file by content."""
        d = self.to_dict()
        for key in ("source", "grammar", "data_file", "device"):
            d.pop(key)
        d["grammar_name"] = Path(self.grammar).stem if _is_path(self.grammar) else self.grammar
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def training_data(self, grammar: Grammar) -> list[str]:
        """The strings every trial trains on: the data file's, or one draw from the grammar."""
        if self._data is None:
            if self.data_file is not None:
                self._data = _read_data_file(self.data_file, self.source)
            else:
                from ..lang.dataset import draw_dataset

                self._data = draw_dataset(grammar, self.data_n, max_len=self.data_max_len, seed=self.data_seed)
        return self._data


def _dimension_from_dict(raw: Mapping[str, Any]) -> Dimension:
    if "choices" in raw:
        return Dimension("choices", choices=tuple(raw["choices"]))
    kind = "int" if all(isinstance(raw.get(k), int) for k in ("low", "high")) else "float"
    return Dimension(kind, raw["low"], raw["high"], bool(raw.get("log", False)), raw.get("step"))


# -- reading the file ---------------------------------------------------------------------------


def _fail(path: str, msg: str) -> SweepFileError:
    return SweepFileError(f"{path}: {msg}")


def _read_file(path: str) -> str:
    """The file's text, refusing without blocking or reading much: a FIFO or device, a
    directory, a missing path, binary or non-UTF-8 bytes, an empty or huge file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(path, "no such sweep file") from None
    except OSError as e:
        raise _fail(path, f"cannot read the sweep file ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "is a directory, not a sweep file")
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO would block until someone writes; a sweep file is a plain file.
        raise _fail(path, "not a regular file (a FIFO, socket or device); give a sweep file")
    if st.st_size > MAX_FILE_BYTES:
        raise _fail(path, f"{st.st_size:,} bytes: too large to be a sweep file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise _fail(path, f"cannot read the sweep file ({e.strerror})") from None
    if b"\x00" in data:
        raise _fail(path, "binary data (NUL bytes), not a sweep file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, column = line_and_column(data, e.start)
        raise SweepFileError(f"{path}:{line}:{column}: not valid UTF-8") from None
    if not text.strip():
        raise _fail(path, "empty sweep file")
    return text


def _parse(path: str, text: str) -> Any:
    suffix = Path(path).suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib  # Python >= 3.11
        except ModuleNotFoundError:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib  # the [sweep] extra installs it there
            except ModuleNotFoundError:
                raise _fail(path, "reading TOML needs Python 3.11 or tomli: pip install -e '.[sweep]'") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            msg = str(e)
            m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
            if m:
                raise SweepFileError(f"{path}:{m.group(1)}:{m.group(2)}: {msg[: m.start()]}") from None
            if msg.endswith("(at end of document)"):
                lines = text.split("\n")
                where = f"{len(lines)}:{len(lines[-1]) + 1}"
                raise SweepFileError(f"{path}:{where}: {msg[: -len(' (at end of document)')]} (at the end)") from None
            raise _fail(path, f"not valid TOML ({msg})") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise _fail(path, "reading YAML needs PyYAML (Optuna brings it): pip install -e '.[sweep]'") from None
        try:
            return yaml.load(text, Loader=_unique_keys_loader(yaml))  # noqa: S506 - a SafeLoader subclass
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            what = e.problem or e.context or "not valid YAML"
            if mark is not None:
                raise SweepFileError(f"{path}:{mark.line + 1}:{mark.column + 1}: {what}") from None
            raise _fail(path, f"not valid YAML ({what})") from None
        except yaml.YAMLError as e:
            raise _fail(path, f"not valid YAML ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if suffix == ".json":
        try:
            return loads_json_strict(text)
        except json.JSONDecodeError as e:
            raise SweepFileError(f"{path}:{e.lineno}:{e.colno}: {e.msg}") from None
        except DuplicateKeyError as e:
            raise SweepFileError(f"{path}:{e.line}:{e.column}: {e}") from None
    raise _fail(path, f"unknown sweep file type {suffix or '(no extension)'!r}; name it .toml, .yaml, .yml or .json")


def _unique_keys_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader, refusing a mapping that names a key twice (it kept the last)."""

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (a mapping may name a key once)", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeys


# -- checking values ----------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return finite_number(v)


def _show(v: Any) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 40 else s[:37] + "..."


def _yaml_hint(path: str, v: Any) -> str:
    # PyYAML follows YAML 1.1, where 1e-4 (no dot) is a string, a classic trap in config files.
    if isinstance(v, str) and Path(path).suffix.lower() in (".yaml", ".yml"):
        try:
            float(v)
        except ValueError:
            return ""
        return " (YAML 1.1 reads 1e-4 as text: write 1.0e-4)"
    return ""


def _int_in(path: str, key: str, v: Any, low: int, high: int) -> int:
    if not _is_int(v) or not low <= v <= high:
        raise _fail(path, f"{key}: expected an integer in [{low}, {high}], got {_show(v)}{_yaml_hint(path, v)}")
    return v


def _str(path: str, key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise _fail(path, f"{key}: expected a non-empty string, got {_show(v)}")
    return v


def _table(path: str, key: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _fail(path, f"{key}: expected a table (a mapping of keys), got {_show(v)}")
    for k in v:
        if not isinstance(k, str):
            raise _fail(path, f"{key}: keys must be strings, got {_show(k)}")
    return v


def _check_keys(path: str, where: str, raw: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in raw:
        if key not in allowed:
            prefix = f"{where}: " if where else ""
            raise _fail(path, f"{prefix}unknown key {key!r}; accepted: {', '.join(allowed)}")


def _is_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.endswith(".lark")


def _relative_to(path: str, value: str) -> str:
    """A path written in the sweep file is relative to the file's own folder."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (Path(path).parent / p).resolve())


def _read_data_file(data_file: str, source: str) -> list[str]:
    from .train import check_data

    try:
        lines = read_lines(data_file, "data file")
        check_data(lines, data_file)
    except GumbelseqError as e:
        raise SweepFileError(f"{source}: data: {e}") from None
    return lines


# -- the whole file -----------------------------------------------------------------------------


def load_sweep_file(path: str | Path, *, plugins_dir: str | Path | None = None) -> SweepSpec:
    """Read and check a sweep file; raises ``SweepFileError`` (one line) and writes nothing."""
    path = str(path)
    raw = _parse(path, _read_file(path))
    if raw is None or raw == {}:
        raise _fail(path, "no settings (an empty sweep file)")
    if not isinstance(raw, dict):
        raise _fail(path, f"expected a mapping of keys at the top, got {type(raw).__name__}")
    _table(path, "top level", raw)
    _check_keys(path, "", raw, _TOP_KEYS)

    name = raw.get("name", re.sub(r"[^A-Za-z0-9._-]", "-", Path(path).stem) or "sweep")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(path, f"name: expected 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {_show(name)}")

    grammar_spec = _str(path, "grammar", raw.get("grammar", "arith"))
    if _is_path(grammar_spec):
        grammar_spec = _relative_to(path, grammar_spec)
    start = _str(path, "start", raw.get("start", "start"))
    try:
        grammar = load_grammar(grammar_spec, start=start)
    except GumbelseqError as e:
        raise _fail(path, f"grammar: {e}") from None

    from .registry import get_registry

    registry = get_registry(plugins_dir)
    try:
        backend = registry.get(_str(path, "backend", raw["backend"])) if "backend" in raw else registry.default()
    except GumbelseqError as e:
        raise _fail(path, f"backend: {e}") from None
    types = _field_types(backend.Options)

    # -- data and lengths
    data_raw = _table(path, "data", raw.get("data", {}))
    _check_keys(path, "data", data_raw, _DATA_KEYS)
    data_file: str | None = None
    data_lines: list[str] | None = None
    data_n, data_seed = 5000, 0
    data_max_len = None
    if "file" in data_raw:
        extra = [k for k in ("n", "max_len", "seed") if k in data_raw]
        if extra:
            raise _fail(path, f"data: {', '.join(extra)} are for drawn data; a data file is used as it is")
        data_file = _relative_to(path, _str(path, "data.file", data_raw["file"]))
        data_lines = _read_data_file(data_file, path)
    else:
        data_n = _int_in(path, "data.n", data_raw.get("n", 5000), 1, 10_000_000)
        data_seed = _int_in(path, "data.seed", data_raw.get("seed", 0), 0, rundir.MAX_SEED)
        if "max_len" in data_raw:
            data_max_len = _int_in(path, "data.max_len", data_raw["max_len"], 1, rundir.MAX_LEN_LIMIT)
    if "max_len" in raw:
        max_len = _int_in(path, "max_len", raw["max_len"], 1, rundir.MAX_LEN_LIMIT)
    elif data_lines is not None:
        max_len = max(len(s) for s in data_lines)
    else:
        max_len = data_max_len if data_max_len is not None else 12
    if data_lines is not None:
        longest = max(len(s) for s in data_lines)
        if longest > max_len:
            raise _fail(path, f"data: {data_file} has a string of length {longest}, more than max_len {max_len}")
    else:
        data_max_len = max_len if data_max_len is None else data_max_len
        if data_max_len > max_len:
            raise _fail(path, f"data.max_len {data_max_len} is more than max_len {max_len}: strings would not fit")

    # -- what is searched
    has_grid, has_search = "grid" in raw, "search" in raw
    if has_grid and has_search:
        raise _fail(path, "both [grid] and [search]: a sweep is one or the other")
    if not has_grid and not has_search:
        raise _fail(path, "no [grid] or [search] table: say which options to sweep")
    fixed = _table(path, "fixed", raw.get("fixed", {}))
    swept_raw = _table(path, "grid" if has_grid else "search", raw["grid" if has_grid else "search"])
    what = "grid" if has_grid else "search"
    if not swept_raw:
        raise _fail(path, f"[{what}] is empty: list at least one option to sweep")
    for section, keys in (("fixed", fixed), (what, swept_raw)):
        for key in keys:
            if key == "seed":
                raise _fail(path, f"{section}: 'seed' is not an option; list the seeds in `seeds`")
            if key not in types:
                accepted = ", ".join(types)
                raise _fail(path, f"{section}: unknown option {key!r} of backend {backend.name}; accepted: {accepted}")
    both = sorted(set(fixed) & set(swept_raw))
    if both:
        raise _fail(path, f"{both[0]!r} is both in [fixed] and in [{what}]")
    if "iterations" in fixed:
        raise _fail(path, "fixed: set iterations with the top-level `iterations` key")
    if "iterations" in swept_raw:
        if "iterations" in raw:
            raise _fail(path, f"iterations is both a top-level key and in [{what}]")
        iterations = None
    elif "iterations" not in raw:
        raise _fail(path, "iterations: missing (the training iterations of every trial)")
    else:
        iterations = _int_in(path, "iterations", raw["iterations"], 1, 2**31)
    fixed = {k: _coerce(types[k], v) for k, v in fixed.items()}

    grid: dict[str, list[Any]] | None = None
    search: dict[str, Dimension] | None = None
    if has_grid:
        grid = {}
        for key, values in swept_raw.items():
            if not isinstance(values, list):
                raise _fail(path, f"grid: {key}: expected a list of values, got {_show(values)}")
            if not values:
                raise _fail(path, f"grid: {key}: an empty list (each option needs at least one value)")
            for v in values:
                if not (isinstance(v, (str, bool)) or _is_number(v)):
                    raise _fail(path, f"grid: {key}: values must be numbers, strings or booleans, got {_show(v)}")
            if len(values) > MAX_GRID:  # before the work below: a 1 MiB file holds 150,000 values
                raise _fail(path, f"grid: {key}: {len(values):,} values; a grid has at most {MAX_GRID:,} trials")
            values = [_coerce(types[key], v) for v in values]
            seen: set[tuple[type, Any]] = set()
            for v in values:  # a set, not pairs: 40,000 values took 39 s
                if (type(v), v) in seen:
                    raise _fail(path, f"grid: {key}: {_show(v)} is listed twice")
                seen.add((type(v), v))
            grid[key] = values
    else:
        search = {key: _dimension(path, key, spec, types[key]) for key, spec in swept_raw.items()}

    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise _fail(path, f"seeds: expected a non-empty list of integers, got {_show(seeds)}")
    for s in seeds:
        _int_in(path, "seeds", s, 0, rundir.MAX_SEED - 1)
    if len(set(seeds)) != len(seeds):
        raise _fail(path, "seeds: a seed is listed twice")

    if has_search:
        if "n_trials" not in raw:
            raise _fail(path, "n_trials: missing (how many trials the search runs)")
        n_trials = _int_in(path, "n_trials", raw["n_trials"], 1, MAX_TRIALS)
    else:
        if "n_trials" in raw:
            raise _fail(path, "n_trials is for [search]; a grid runs every combination once per seed")
        n_trials = None
    sampler_seed = _int_in(path, "sampler_seed", raw.get("sampler_seed", 0), 0, 2**32 - 1)

    metric = _str(path, "metric", raw.get("metric", "validity"))
    if metric not in METRICS:
        raise _fail(path, f"metric: unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    direction_raw = raw.get("direction", METRICS[metric])
    if not isinstance(direction_raw, str) or direction_raw not in DIRECTIONS:  # a list is unhashable
        raise _fail(path, f"direction: expected maximize or minimize, got {_show(direction_raw)}")
    direction = DIRECTIONS[direction_raw]
    samples = _int_in(path, "samples", raw.get("samples", 1000), 1, 10_000_000)
    device = _str(path, "device", raw.get("device", "auto"))
    eval_every = _int_in(path, "eval_every", raw.get("eval_every", 500), 0, 2**31)
    checkpoint_every = _int_in(path, "checkpoint_every", raw.get("checkpoint_every", 1000), 1, 2**31)

    spec = SweepSpec(
        name=name, source=path, grammar=grammar_spec, start=start, backend=backend.name, max_len=max_len,
        iterations=iterations, fixed=fixed, grid=grid, search=search, seeds=list(seeds), n_trials=n_trials,
        sampler_seed=sampler_seed, metric=metric, direction=direction, samples=samples, data_file=data_file,
        data_n=data_n if data_file is None else len(data_lines or []), data_max_len=data_max_len or max_len,
        data_seed=data_seed, device=device, eval_every=eval_every, checkpoint_every=checkpoint_every,
        grammar_sha256=hashlib.sha256(grammar.text.encode()).hexdigest(),
        data_sha256=hashlib.sha256("\n".join(data_lines).encode()).hexdigest() if data_lines is not None else "",
    )
    spec._data = data_lines
    _check_trials(path, spec, backend)
    if metric == "coverage":
        _check_coverage(path, grammar, max_len)
    return spec


def _coerce(tp: Any, v: Any) -> Any:
    """An int written for a float option is that float (``1`` and ``1.0`` are one grid value,
    and the run's config reads as ``-o key=1`` would)."""
    base = [a for a in getattr(tp, "__args__", ()) if a is not type(None)]
    tp = base[0] if base else tp
    return float(v) if tp is float and _is_int(v) and finite_number(v) else v  # a huge int is refused later


def _dimension(path: str, key: str, raw: Any, tp: Any) -> Dimension:
    where = f"search: {key}"
    if not isinstance(raw, dict):
        raise _fail(path, f"{where}: expected {{low = .., high = ..}} (optional log, step) or {{choices = [..]}}, got {_show(raw)}")
    base = [a for a in getattr(tp, "__args__", ()) if a is not type(None)]
    tp = base[0] if base else tp
    if "choices" in raw:
        _check_keys(path, where, raw, ("choices",))
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise _fail(path, f"{where}: choices: expected a non-empty list, got {_show(choices)}")
        for v in choices:
            if not (isinstance(v, (str, bool)) or _is_number(v)):
                raise _fail(path, f"{where}: choices must be numbers, strings or booleans, got {_show(v)}")
        choices = [_coerce(tp, v) for v in choices]
        if len({json.dumps(v) for v in choices}) != len(choices):
            raise _fail(path, f"{where}: a choice is listed twice")
        return Dimension("choices", choices=tuple(choices))
    _check_keys(path, where, raw, _RANGE_KEYS)
    if tp not in (int, float):
        raise _fail(path, f"{where}: a {getattr(tp, '__name__', tp)} option is searched with {{choices = [..]}}, not a range")
    for k in ("low", "high"):
        if k not in raw:
            raise _fail(path, f"{where}: missing {k!r}")
    low, high = raw["low"], raw["high"]
    check = _is_int if tp is int else _is_number
    noun = "an integer" if tp is int else "a number"
    for k, v in (("low", low), ("high", high)):
        if not check(v):
            raise _fail(path, f"{where}: {k}: expected {noun}, got {_show(v)}{_yaml_hint(path, v)}")
    if low > high:
        raise _fail(path, f"{where}: low {low} is more than high {high}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise _fail(path, f"{where}: log: expected true or false, got {_show(log)}")
    if log and low <= 0:
        raise _fail(path, f"{where}: a log range needs low > 0, got {low}")
    step = raw.get("step")
    if step is not None:
        if not check(step) or step <= 0:
            raise _fail(path, f"{where}: step: expected {noun} > 0, got {_show(step)}")
        if log and tp is float:
            raise _fail(path, f"{where}: a float range takes log or step, not both")
        if log and step != 1:
            raise _fail(path, f"{where}: an integer log range takes no step (other than 1)")
    if tp is float:
        low, high = float(low), float(high)
        step = None if step is None else float(step)
    return Dimension("int" if tp is int else "float", low, high, log, step)


def _check_trials(path: str, spec: SweepSpec, backend: Any) -> None:
    """Every trial's options pass the backend's own checks now, not an hour into the sweep:
    each grid combination; for a search, each range end and choice (with the others at their
    low ends; combinations a search may reach inside the ranges are checked when the trial runs)."""
    if spec.grid is not None:
        points = 1
        for values in spec.grid.values():
            points *= len(values)
        if points * len(spec.seeds) > MAX_GRID:
            raise _fail(path, f"the grid has {points * len(spec.seeds):,} trials (with seeds); at most {MAX_GRID:,}")
        names = list(spec.grid)
        for combo in itertools.product(*(spec.grid[n] for n in names)):
            _check_options(path, "grid", spec, backend, dict(zip(names, combo)))
        return
    assert spec.search is not None
    base = {k: (d.choices[0] if d.kind == "choices" else d.low) for k, d in spec.search.items()}
    for key, d in spec.search.items():
        for v in (d.choices if d.kind == "choices" else (d.low, d.high)):
            _check_options(path, "search", spec, backend, {**base, key: v})


def _check_options(path: str, where: str, spec: SweepSpec, backend: Any, params: dict[str, Any]) -> None:
    try:
        backend.make_options(spec.trial_options(params))
    except GumbelseqError as e:
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        raise _fail(path, f"{where} ({shown}): {e}") from None


def _check_coverage(path: str, grammar: Grammar, max_len: int) -> None:
    from ..lang.language import COUNT_MAX_LEN, Language

    if max_len > COUNT_MAX_LEN:
        raise _fail(path, f"metric coverage: exact counting is limited to length {COUNT_MAX_LEN}, max_len is {max_len}")
    lang = Language(grammar, max_len)
    if not lang.exact:
        raise _fail(path, f"metric coverage is undefined for grammar {grammar.name} ({lang.reason}); choose another metric")
