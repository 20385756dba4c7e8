"""Suites of ``gumbelseq reproduce``: what data a table is made on, and which rows it has.

A *suite* (``Suite``) declares a benchmark's data: the grammar, how the training set is
obtained (drawn from the grammar, or read from a file or a named data set of
``gumbelseq.datasets``, optionally capped), the reference row (a fresh grammar draw, or a fresh
sample of a test file), the sequence length, how many samples each model draws, the validators
that score them beside the grammar, and published figures printed beside the measured rows.
Two suites are built in: ``paper`` (Kusner & Hernandez-Lobato's arith table) and ``moses``
(the MOSES SMILES benchmark); a TOML or JSON suite file declares more (``suite_file.py``).

The rows come from the backends: each lists ``ModelSpec`` rows in ``Backend.reproduce_suite``
with the suite they belong to (``ModelSpec.suite``); the core gathers, for a suite, every
registered backend's rows of that suite and orders them by ``order``. A suite file may list
its own rows instead. The core names no model, preset or option of its own.

Nothing here imports torch: ``backend.py`` imports ``ModelSpec`` from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class ModelSpec:
    """One row of the reproduction table: a backend trained with ``options``."""

    key: str  # a short name: the run's folder and ``--only``'s value
    label: str  # the table's row heading
    options: dict[str, Any]
    what: str  # one line on what the row is
    #: Rows are shown by increasing ``order`` (ties: as declared).
    order: float = 0.0
    #: Options replaced in ``--quick`` mode on top of its tiny iterations and batch size (an
    #: option too big for those, say).
    quick_options: dict[str, Any] = field(default_factory=dict)
    #: The key of another row whose trained run this row samples instead of training its own
    #: (``options`` are then unused), with ``constrained`` sampling: how the masks change a model.
    sample_of: str = ""
    constrained: bool = False
    #: The suite the row belongs to (``reproduce --suite NAME``): ``paper`` is the paper's
    #: arith table, ``moses`` the SMILES benchmark.
    suite: str = "paper"
    #: Filled in by the core: the backend that declared the row.
    backend: str = ""


@dataclass(frozen=True)
class GrammarDraw:
    """A training set drawn from the suite's grammar: ``n`` strings of length <= the suite's
    ``max_len`` (``gumbelseq data``: every string of the language equally likely, repeats
    allowed), with the reproduction's seed plus ``seed_offset``."""

    n: int
    seed_offset: int = 0

    def identity(self) -> dict[str, Any]:
        return {"draw": self.n, "seed_offset": self.seed_offset}


@dataclass(frozen=True)
class LinesFrom:
    """Strings read from a file, one per line (``.txt``, ``.csv`` with ``column``, ``.gz``):
    either split ``split`` of the named data set ``dataset`` (``dataset_dir(dataset)/<split>.txt``,
    cached by ``gumbelseq datasets fetch``) or the file ``path``. With ``limit``, at most that
    many lines, picked uniformly without replacement with the seed (streamed: the file is never
    held in memory whole)."""

    dataset: str = ""
    split: str = ""
    path: str = ""
    column: str | None = None
    limit: int | None = None

    def identity(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dataset": self.dataset, "split": self.split} if self.dataset else {"file": self.path}
        if self.column is not None:
            d["column"] = self.column
        if self.limit is not None:
            d["limit"] = self.limit
        return d

    def describe(self) -> str:
        return f"the {self.dataset} data set's {self.split} split" if self.dataset else f"`{self.path}`"


TrainSource = Union[GrammarDraw, LinesFrom]


@dataclass(frozen=True)
class Published:
    """A published row printed beside the measured ones: ``metrics`` maps a column key of the
    table (``validity``, ``rdkit.validity``, ``rdkit.intdiv1``...) to (mean, standard deviation
    or ``None``), as the source reports them."""

    label: str
    source: str
    metrics: dict[str, tuple[float, float | None]]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "source": self.source,
                "metrics": {k: {"mean": m, "std": s} for k, (m, s) in self.metrics.items()}}


@dataclass(frozen=True)
class Suite:
    """A benchmark table's data and settings (see the module's docstring)."""

    name: str
    description: str
    title: str  # the report's heading
    grammar: str  # a built-in grammar's name or a .lark path
    train: TrainSource
    #: Sequence length of every model; ``None``: the longest training string.
    max_len: int | None = None
    #: ``None``: a fresh draw of ``n_samples`` from the grammar (seed + 1), what a perfect model
    #: gets; else a fresh sample of ``n_samples`` lines of that file (seed + 1).
    reference: LinesFrom | None = None
    n_samples: int = 10_000
    #: Validator names (``gumbelseq.validators``) that also score every row.
    validators: tuple[str, ...] = ()
    #: Whether the table shows coverage of the language (pointless when it is astronomically large).
    coverage: bool = True
    published: tuple[Published, ...] = ()
    #: The suite's own rows (a suite file's ``[[rows]]``, backends checked); ``None``: every
    #: registered backend's ``reproduce_suite`` rows whose ``suite`` is this suite's name.
    rows: tuple[ModelSpec, ...] | None = None
    #: "built-in", or the suite file it was read from.
    source: str = "built-in"

    def identity(self) -> dict[str, Any]:
        """What a reproduction folder records about the suite (``settings.json``): a folder is
        reused only by the same suite with the same data settings."""
        return {
            "name": self.name,
            "grammar": self.grammar,
            "train": self.train.identity(),
            "reference": None if self.reference is None else self.reference.identity(),
            "max_len": self.max_len,
            "samples": self.n_samples,
            "validators": list(self.validators),
        }


#: The paper's table: exactly what ``reproduce`` did before suites existed (the same training
#: set, rows, commands and report).
PAPER = Suite(
    name="paper",
    description="Kusner & Hernandez-Lobato (2016): arith strings of length <= 12, 5000 drawn uniformly",
    title="Kusner & Hernandez-Lobato (2016), reproduced",
    grammar="arith",
    train=GrammarDraw(5000),
    max_len=12,
)

#: MOSES's published CharRNN row (Polykovskiy et al. 2020): mean and standard deviation over
#: independent runs, copied from the metrics table of the molecularsets/moses README (the paper's
#: table of baseline metrics; FCD, SNN, Frag, Scaf and Filters are not computed here).
MOSES_CHARRNN = Published(
    label="MOSES CharRNN",
    source="MOSES paper (Polykovskiy et al. 2020, Front. Pharmacol.), its table of baseline metrics (valid,"
    " unique@1k/10k, IntDiv, filters, novelty), as published in the molecularsets/moses README (commit ffbc4db):"
    " mean \u00b1 std over independent runs; uniqueness there is unique@10k",
    metrics={
        "rdkit.validity": (0.9748, 0.0264),
        "rdkit.uniqueness": (0.9994, 0.0003),
        "rdkit.novelty": (0.8419, 0.0509),
        "rdkit.intdiv1": (0.8562, 0.0005),
    },
)

#: Training on all 1,584,663 MOSES molecules is neither needed for a comparison on two CPU
#: cores nor cheap in memory (every run directory keeps its training set); a reproducible
#: uniform sample of this many is the training set. Novelty is still against the whole file.
MOSES_N_TRAIN = 100_000

MOSES = Suite(
    name="moses",
    description=f"MOSES SMILES benchmark: {MOSES_N_TRAIN:,} training molecules sampled from its train split, reference: its test split",
    title="MOSES benchmark (SMILES), reproduced",
    grammar="smiles",
    train=LinesFrom(dataset="moses", split="train", limit=MOSES_N_TRAIN),
    max_len=57,  # MOSES's longest SMILES (train and test)
    reference=LinesFrom(dataset="moses", split="test"),
    validators=("rdkit",),
    coverage=False,
    published=(MOSES_CHARRNN,),
)

BUILTIN_SUITES: dict[str, Suite] = {s.name: s for s in (PAPER, MOSES)}
