"""What a backend contributes to ``gumbelseq reproduce``: the models of its rows.

A backend lists them in ``Backend.reproduce_suite``; the core gathers every registered
backend's rows, orders them by ``order`` and runs them on the paper's data set. The core names
no model, preset or option of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
