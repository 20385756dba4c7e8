"""Validators: domain validity beside grammar validity (``gumbelseq score --validator NAME``).

A grammar says whether a string is well formed; whether it *means* something (a SMILES string
that is a real molecule) takes a domain library such as RDKit. A validator is a plugin that
maps strings to a canonical form, or to ``None`` when the string is not valid in its domain;
``validate_distinct`` turns that into validity, uniqueness and novelty of the canonical forms,
with MOSES's definitions (Polykovskiy et al. 2020, ``moses.metrics``):

- ``validity``: share of samples (lines, repeats counted) the validator accepts;
- ``uniqueness``: distinct canonical forms among the valid samples / valid samples;
- ``novelty``: share of the distinct canonical valid samples that are not among the
  reference's strings. As in MOSES, the reference is taken as it is written (MOSES's training
  SMILES are RDKit-canonical already): canonicalising 1.6 million training molecules would take
  minutes on every run.

Validators join through the hook ``register_validators``, from packages in the entry-point
group ``gumbelseq.validators`` (``[project.entry-points."gumbelseq.validators"]``) or loose
plugin files (``--plugins-dir``). That group is
separate from the backends' ``gumbelseq`` group on purpose: loading the backends imports torch,
and ``score`` must start without it. This module imports neither torch nor any domain library;
a validator imports its library when it is used, and says how to install it when it is missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import pluggy

from .cpus import usable_cpus
from .errors import GumbelseqError
from .parallel import WorkersStopped, map_batches
from .plugin_loading import NamedPlugins, PluginFailure, plugin_code

if TYPE_CHECKING:
    from .lang.grammar import Grammar
    from .lang.score import Report

ENTRY_POINT_GROUP = "gumbelseq.validators"

# The project name is the backends' one, so ``gumbelseq.model.hookspecs.hookimpl`` marks a
# validator hook too; this module's own ``hookimpl`` spares a validator importing the model side.
hookspec = pluggy.HookspecMarker("gumbelseq")
hookimpl = pluggy.HookimplMarker("gumbelseq")

#: Distinct strings per batch handed to a worker process.
BATCH = 5000
#: Below this many distinct strings one process is faster than starting workers.
PARALLEL_MIN = 20000


class ValidatorError(GumbelseqError):
    """An unknown validator, a validator whose library is missing, or a broken plugin."""


class _Hooks:
    @hookspec
    def register_validators(self, register: Callable[["Validator"], None]) -> None:
        """Call ``register(validator)`` once for each ``gumbelseq.validators.Validator`` you provide."""


@dataclass(frozen=True)
class Validator:
    """What a validator plugin registers.

    ``canonical`` maps a batch of strings to their canonical forms, ``None`` for an invalid
    one; it must be a module-level function (worker processes receive it by reference).
    ``check`` raises ``ValidatorError`` with a one-line message saying how to install what is
    missing; it is called once before any file is read."""

    name: str
    description: str
    canonical: Callable[[list[str]], list[str | None]]
    check: Callable[[], None]
    #: Longest string ``canonical`` is given; a longer line is a one-line error naming it (for a
    #: library that crashes the process, or takes hours, past some length).
    max_length: int | None = None

    def __post_init__(self) -> None:
        # Checked when registered, so a plugin's mistake is named before any file is read.
        for field_name in ("canonical", "check"):
            if not callable(getattr(self, field_name)):
                raise TypeError(f"Validator {self.name!r}: {field_name} must be callable, got {getattr(self, field_name)!r}")
        m = self.max_length
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(f"Validator {self.name!r}: max_length must be None or an integer >= 1, got {m!r}")


@dataclass
class ValidatorReport:
    """What ``validate_distinct`` measures; fractions in [0, 1], ``None`` where undefined."""

    validator: str
    total: int = 0
    valid: int = 0
    validity: float | None = None
    unique: int = 0  # distinct canonical forms among the valid samples
    uniqueness: float | None = None
    novelty: float | None = None
    reference: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


_VALIDATORS = NamedPlugins(ENTRY_POINT_GROUP, _Hooks, "register_validators", Validator, ValidatorError, "validator", "validators")


def validators(plugins_dir: str | Path | None = None) -> dict[str, tuple[Validator, str]]:
    """Every registered validator by name, with where it came from (built once per process);
    ``plugins_dir``: loose plugin files too (default: ``$GUMBELSEQ_PLUGINS_DIR``)."""
    return _VALIDATORS.all(plugins_dir)


def get_validator(name: str, plugins_dir: str | Path | None = None) -> Validator:
    """The validator ``name``, checked usable (its library installed), or a one-line error."""
    validator = _VALIDATORS.get(name, plugins_dir)
    try:
        with plugin_code():
            validator.check()
    except PluginFailure as e:
        raise ValidatorError(f"validator {name!r} cannot run: {e}") from None
    return validator


def _run_canonical(canonical: Callable[[list[str]], list[str | None]], batch: list[str]) -> list[str | None]:
    """``canonical`` over one batch, wherever it runs (a worker process or this one): its
    failure is a ``PluginFailure`` made there, so the message is the same for any number of
    workers, and so is a result that is not a list of strings and Nones."""
    with plugin_code():
        forms = list(canonical(batch))
    for form in forms:
        if form is not None and not isinstance(form, str):
            raise PluginFailure(f"it returned {type(form).__name__} {repr(form)[:60]} where a string or None belongs")
    return forms


def canonical_forms(validator: Validator, strings: list[str], workers: int | None = None,
                    progress: Callable[[int, int], None] | None = None) -> list[str | None]:
    """``validator.canonical`` over ``strings``, in worker processes when there are many (forked:
    a script calling this needs no ``__main__`` guard, and ``score`` runs no threads);
    ``progress(done, total)`` after each batch."""
    if workers is None:
        workers = usable_cpus()
    try:
        out = map_batches(partial(_run_canonical, validator.canonical), strings, workers, batch=BATCH,
                          min_parallel=PARALLEL_MIN, progress=progress)
    except WorkersStopped:
        raise ValidatorError(
            f"validator {validator.name!r} failed: a worker process stopped (killed, out of memory, or a crash"
            " in the validator's library)"
        ) from None
    except PluginFailure as e:
        raise ValidatorError(f"validator {validator.name!r} failed: {e}") from None
    if len(out) != len(strings):
        raise ValidatorError(f"validator {validator.name!r} returned {len(out)} results for {len(strings)} strings")
    return out


def validate_distinct(
    validator: Validator,
    distinct: dict[str, list[int]],
    *,
    reference: dict[str, list[int]] | None = None,
    reference_name: str | None = None,
    workers: int | None = None,
    source: str = "samples",
    progress: Callable[[int, int], None] | None = None,
) -> ValidatorReport:
    """Validity, uniqueness and novelty under ``validator`` of samples already reduced to
    ``{sample: [count, first line]}`` (what ``gumbelseq.lang.score.read_distinct`` gives);
    each distinct sample is canonicalised once (``progress(done, total)`` as it goes)."""
    rep = ValidatorReport(validator=validator.name, reference=reference_name)
    strings = list(distinct)
    if validator.max_length is not None:
        too_long = [s for s in strings if len(s) > validator.max_length]
        if too_long:
            s = min(too_long, key=lambda s: distinct[s][1])
            raise ValidatorError(
                f"{source}:{distinct[s][1]}: a line of {len(s):,} characters; the {validator.name} validator"
                f" reads lines of at most {validator.max_length:,}"
            )
    forms = canonical_forms(validator, strings, workers, progress)
    canon: set[str] = set()
    for s, form in zip(strings, forms):
        count = distinct[s][0]
        rep.total += count
        if form is not None:
            rep.valid += count
            canon.add(form)
    rep.unique = len(canon)
    if rep.total:
        rep.validity = rep.valid / rep.total
    if rep.valid:
        rep.uniqueness = rep.unique / rep.valid
    if reference is not None and canon:
        rep.novelty = sum(1 for c in canon if c not in reference) / len(canon)
    return rep


def score_file_validated(
    path: str,
    grammar: "Grammar",
    validator_names: Sequence[str],
    *,
    reference: str | None = None,
    column: str | None = None,
    reference_column: str | None = None,
    max_len: int | None = None,
    show_invalid: int = 5,
    workers: int | None = None,
    progress: "Callable[[str, int, int], None] | None" = None,
    plugins_dir: str | Path | None = None,
) -> "tuple[Report, list[ValidatorReport]]":
    """``gumbelseq.lang.score.score_file`` plus one ``ValidatorReport`` per validator name.

    ``workers``: processes for the grammar check and each validator when there are many distinct
    samples (default: one per usable CPU); ``progress(stage, done, total)``: distinct samples
    checked so far by the grammar (stage ``"grammar"``) and each validator (its name);
    ``plugins_dir``: where loose validator plugin files are. Every validator is checked usable
    before any file is read (a missing library is one line, not a failure after minutes of
    reading), and the file is read once for all of them."""
    from .lang.score import check_two_inputs, read_distinct, score_distinct

    checked = [get_validator(name, plugins_dir) for name in validator_names]
    check_two_inputs(path, reference)
    # score_file's own steps, keeping the distinct samples for the validators.
    ref = read_distinct(reference, reference_column or column, "reference file") if reference is not None else None
    distinct = read_distinct(path, column)
    rep = score_distinct(distinct, grammar, source=path, reference=ref, reference_name=reference,
                         max_len=max_len, show_invalid=show_invalid, workers=workers,
                         progress=None if progress is None else partial(progress, "grammar"))
    return rep, [validate_distinct(v, distinct, reference=ref, reference_name=reference, workers=workers, source=path,
                                   progress=None if progress is None else partial(progress, v.name))
                 for v in checked]
