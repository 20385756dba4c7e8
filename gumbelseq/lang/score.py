"""Score a file of samples against a grammar: validity, uniqueness, novelty, coverage, distances.

The scorer streams: it reads the input in chunks of lines, counts each chunk with
``collections.Counter`` (a C loop), and keeps one entry per *distinct* line, so memory grows
with the number of distinct samples, not with the number of lines. Each distinct string is
decoded and parsed once, which is what makes it fast on model output (few distinct strings,
many repeats).
"""

from __future__ import annotations

import os
import stat
import sys
from collections import Counter
from functools import partial
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from ..cpus import usable_cpus
from ..errors import GumbelseqError, InputFileError
from ..parallel import WorkersStopped, map_batches
from .grammar import Grammar, Validation
from ..inputs import CSV, decode_line, input_format, iter_samples, open_lines, strip_sample
from .language import COUNT_MAX_LEN, Language
from .lexer_count import lexer_count

CHUNK_BYTES = 1 << 20
#: Distinct samples per batch handed to a worker process by ``check_strings``.
BATCH = 5000
#: Below this many distinct samples one process is faster than starting workers.
PARALLEL_MIN = 20000
#: The same for an Earley grammar, whose parses take milliseconds each, not microseconds.
EARLEY_BATCH = 100
EARLEY_PARALLEL_MIN = 500

#: Longest sample parsed with an Earley grammar (one LALR(1) cannot take). Earley time grows
#: faster than the length (an unambiguous grammar: ~0.3 s at 1000 characters, ~4 s at 10000;
#: an ambiguous one: ~2.5 s at 200, ~22 s at 400), so longer samples are not parsed: they
#: count as invalid and a note says how many. LALR(1) validation is linear and unbounded.
EARLEY_MAX_LEN = 500


@dataclass
class InvalidExample:
    line: int  # first line where this sample occurs (1-based)
    text: str
    column: int
    expected: list[str]
    count: int  # how many lines hold this same invalid sample


@dataclass
class Report:
    """What ``score`` measures. Fractions are in [0, 1]; ``None`` where undefined."""

    source: str
    grammar: str
    total: int = 0
    valid: int = 0
    validity: float | None = None
    unique: int = 0
    unique_valid: int = 0
    novelty: float | None = None
    coverage: float | None = None
    max_len: int | None = None
    language_size: int | None = None
    language_size_exact: bool | None = None
    language_size_reason: str | None = None
    lengths: dict[int, int] = field(default_factory=dict)
    invalid_examples: list[InvalidExample] = field(default_factory=list)
    # Against a reference sample (the training data), when one is given:
    reference: str | None = None
    reference_unique: int | None = None
    reference_coverage: float | None = None
    tv_strings: float | None = None
    tv_lengths: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lengths"] = {str(k): v for k, v in sorted(self.lengths.items())}
        return d


def iter_line_chunks(stream: BinaryIO) -> Iterator[list[bytes]]:
    while True:
        chunk = stream.readlines(CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


_BOM = "\ufeff".encode()


def count_distinct(chunks: Iterable[list[bytes]], source: str) -> dict[str, list[int]]:
    """Map each distinct sample (padding removed) to ``[count, first line]``."""
    raw: dict[bytes, list[int]] = {}
    base = 0
    for chunk in chunks:
        if base == 0 and chunk and chunk[0].startswith(_BOM):
            # Only line 1 loses a byte-order mark: its bytes must not stand for a later line's.
            chunk = [chunk[0][len(_BOM):], *chunk[1:]]
        counts = Counter(chunk)
        new = [k for k in counts if k not in raw]
        if len(new) > 16:
            # Many new strings in this chunk: one pass finds all first positions.
            first: dict[bytes, int] = {}
            for i, line in enumerate(chunk):
                first.setdefault(line, i)
        else:
            first = {k: chunk.index(k) for k in new}
        for k, c in counts.items():
            e = raw.get(k)
            if e is None:
                raw[k] = [c, base + first[k] + 1]
            else:
                e[0] += c
        base += len(chunk)
    out: dict[str, list[int]] = {}
    for k, (c, line) in raw.items():
        s = decode_line(k, source, line, strip_bom=False)
        e2 = out.get(s)
        if e2 is None:
            out[s] = [c, line]
        else:
            e2[0] += c
            e2[1] = min(e2[1], line)
    return out


def read_distinct(path: str | Path, column: str | None = None, what: str = "file of samples") -> dict[str, list[int]]:
    """Distinct samples of a file (or ``-``) with their counts and first lines; ``what`` names
    the file in messages.

    Plain and gzipped lines take the bytes fast path (``count_distinct``); a CSV file is read
    row by row (``gumbelseq.inputs.iter_samples``; ``column`` picks its column)."""
    if input_format(path)[0] == CSV:
        return _distinct_lines(iter_samples(path, what, column))
    stream = open_lines(path, what)
    try:
        return count_distinct(iter_line_chunks(stream), str(path))
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def score_distinct(
    distinct: dict[str, list[int]],
    grammar: Grammar,
    *,
    source: str = "-",
    reference: dict[str, list[int]] | None = None,
    reference_name: str | None = None,
    max_len: int | None = None,
    show_invalid: int = 5,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Score samples already reduced to ``{sample: [count, first line]}``; ``workers``: processes
    checking them against the grammar when there are many (default: one per usable CPU);
    ``progress(done, total)``: distinct samples checked so far."""
    rep = Report(source=source, grammar=grammar.name)
    valid_set: list[str] = []
    invalid: list[InvalidExample] = []
    bounded = grammar.algorithm != "lalr"
    unparsed = unparsed_distinct = 0
    checked: list[str] = []
    for s, (c, line) in distinct.items():
        rep.total += c
        rep.lengths[len(s)] = rep.lengths.get(len(s), 0) + c
        if bounded and len(s) > EARLEY_MAX_LEN:
            unparsed += c
            unparsed_distinct += 1
        else:
            checked.append(s)
    for s, v in zip(checked, check_strings(grammar, checked, workers, progress)):
        c, line = distinct[s]
        if v is None:
            rep.valid += c
            valid_set.append(s)
        else:
            invalid.append(InvalidExample(line, s, v.column or 1, list(v.expected), c))
    rep.unique = len(distinct)
    rep.unique_valid = len(valid_set)
    if rep.total:
        rep.validity = rep.valid / rep.total
    invalid.sort(key=lambda e: e.line)
    rep.invalid_examples = invalid[: max(0, show_invalid)]
    if unparsed:
        rep.notes.append(
            f"{unparsed} samples ({unparsed_distinct} distinct) longer than {EARLEY_MAX_LEN}"
            " characters were not parsed (Earley parsing time grows faster than the length)"
            " and count as invalid, so validity is a lower bound"
        )

    explicit = max_len is not None
    if max_len is None and valid_set:
        max_len = max(len(s) for s in valid_set)
    if max_len is not None and max_len > COUNT_MAX_LEN:
        rep.max_len = max_len
        source_of_bound = "--max-len" if explicit else "the longest valid sample's length"
        rep.notes.append(
            f"coverage not computed: exact counting is limited to length {COUNT_MAX_LEN}"
            f" (its time grows about as the cube of the length) and the bound is {max_len}"
            f" ({source_of_bound}); pass --max-len {COUNT_MAX_LEN} or less to count up to it"
        )
    elif max_len is not None:
        rep.max_len = max_len
        try:
            lang = Language(grammar, max_len)
        except GumbelseqError as e:
            rep.notes.append(f"coverage not computed: {e}")
        else:
            rep.language_size = lang.count_upto(max_len)
            rep.language_size_exact = lang.exact
            rep.language_size_reason = lang.reason
            if not lang.exact:
                # Derivations are not Lark's strings here; count the strings themselves on the
                # lexer-following automaton when it is small enough (lexer_count.py).
                counted = lexer_count(grammar, max_len)
                if counted.counts is not None:
                    rep.language_size = sum(counted.counts)
                    rep.language_size_exact = True
                    rep.language_size_reason = None
                    rep.notes.append(
                        f"language_size counts Lark's strings by following its lexer ({counted.states:,} states),"
                        f" since derivations are not strings here ({lang.reason})"
                    )
                else:
                    rep.language_size_reason = f"{lang.reason}; {counted.reason}"
            if not rep.language_size_exact:
                # A derivation count is then neither a bound nor a size of the set the samples
                # come from (ignorable text makes more valid strings than derivations), so a
                # ratio could pass 1 or mean nothing.
                rep.notes.append(
                    f"language_size counts derivations, not strings of Lark's language ({rep.language_size_reason});"
                    " coverage is not computed"
                )
            elif rep.language_size:
                inside = sum(1 for s in valid_set if len(s) <= max_len)
                rep.coverage = inside / rep.language_size

    if reference is not None:
        rep.reference = reference_name
        rep.reference_unique = len(reference)
        if valid_set:
            rep.novelty = sum(1 for s in valid_set if s not in reference) / len(valid_set)
        if reference:
            rep.reference_coverage = sum(1 for s in reference if s in distinct) / len(reference)
        ref_total = sum(c for c, _ in reference.values())
        if rep.total and ref_total:
            rep.tv_strings = _tv(
                {s: c for s, (c, _) in distinct.items()}, rep.total,
                {s: c for s, (c, _) in reference.items()}, ref_total,
            )
            ref_lengths: dict[int, int] = {}
            for s, (c, _) in reference.items():
                ref_lengths[len(s)] = ref_lengths.get(len(s), 0) + c
            rep.tv_lengths = _tv(rep.lengths, rep.total, ref_lengths, ref_total)
    return rep


def check_strings(grammar: Grammar, strings: list[str], workers: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[Validation | None]:
    """``grammar.validate`` of each string, ``None`` for a valid one; in ``workers`` forked
    processes (default: one per usable CPU) when there are at least ``PARALLEL_MIN``
    (``EARLEY_PARALLEL_MIN`` for an Earley grammar).

    Scoring model output needs no workers (few distinct strings, many repeats), but a data set
    does: MOSES's 176,074 distinct test SMILES take 11 s in one process on a 2-core EPYC."""
    if workers is None:
        workers = usable_cpus()
    if grammar.algorithm == "lalr":
        batch, least = BATCH, PARALLEL_MIN
    else:
        batch, least = EARLEY_BATCH, EARLEY_PARALLEL_MIN
    try:
        return map_batches(partial(_check_batch, grammar), strings, workers, batch=batch, min_parallel=least,
                           progress=progress)
    except WorkersStopped:
        raise GumbelseqError("checking the samples against the grammar failed: a worker process stopped"
                             " (killed, or out of memory)") from None


def _check_batch(grammar: Grammar, batch: list[str]) -> list[Validation | None]:
    out: list[Validation | None] = []
    for s in batch:
        v = grammar.validate(s)
        out.append(None if v.ok else v)
    return out


def _tv(p: dict, p_total: int, q: dict, q_total: int) -> float:
    """Total variation distance between two empirical distributions given as counts.

    In integers, ``1 - sum_k min(p_k / P, q_k / Q)`` over the shared keys, then one division:
    exact up to that division (disjoint supports give exactly 1.0, equal ones 0.0), and the
    same in every process whatever the order of the keys."""
    small, large = (p, q) if len(p) <= len(q) else (q, p)
    scale_small, scale_large = (q_total, p_total) if small is p else (p_total, q_total)
    overlap = sum(min(c * scale_small, large[k] * scale_large) for k, c in small.items() if k in large)
    both = p_total * q_total
    return (both - overlap) / both


_STDIN_NAMES = {"-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"}


def check_two_inputs(path: str | Path, reference: str | Path | None) -> None:
    """Samples and reference cannot both be one stream: the reference, read first, would take
    all of it and the samples would be scored as none."""
    if reference is None:
        return
    a, b = str(path), str(reference)
    same = a in _STDIN_NAMES and b in _STDIN_NAMES
    if not same:
        try:
            same = stat.S_ISFIFO(os.stat(a).st_mode) and os.path.samefile(a, b)
        except OSError:
            same = False
    if same:
        raise InputFileError(f"{b}: the samples and --reference are the same stream; read one of them from a file")


def score_file(
    path: str | Path,
    grammar: Grammar,
    *,
    reference: str | Path | None = None,
    max_len: int | None = None,
    show_invalid: int = 5,
    column: str | None = None,
    reference_column: str | None = None,
    workers: int | None = None,
) -> Report:
    """Score the samples in ``path`` (``-`` for stdin), one per line, trailing spaces removed;
    ``.csv`` and ``.gz`` files (``path`` and ``reference``) as ``gumbelseq.inputs`` reads them,
    ``column`` naming the CSV column of both, or ``reference_column`` the reference's;
    ``workers`` as for ``score_distinct``."""
    check_two_inputs(path, reference)
    ref = read_distinct(reference, reference_column or column, "reference file") if reference is not None else None
    distinct = read_distinct(path, column)
    return score_distinct(
        distinct,
        grammar,
        source=str(path),
        reference=ref,
        reference_name=None if reference is None else str(reference),
        max_len=max_len,
        show_invalid=show_invalid,
        workers=workers,
    )


def score_samples(
    samples: Iterable[str],
    grammar: Grammar,
    *,
    reference: Iterable[str] | None = None,
    max_len: int | None = None,
    show_invalid: int = 5,
    workers: int | None = None,
) -> Report:
    """Score in-memory samples (the Python-API twin of ``score_file``)."""
    return score_distinct(
        _distinct_strings(samples),
        grammar,
        source="<samples>",
        reference=None if reference is None else _distinct_strings(reference),
        reference_name=None if reference is None else "<reference>",
        max_len=max_len,
        show_invalid=show_invalid,
        workers=workers,
    )


def _distinct_lines(numbered: Iterable[tuple[int, str]]) -> dict[str, list[int]]:
    """``{sample: [count, first line]}`` from ``(line, sample)`` pairs."""
    out: dict[str, list[int]] = {}
    for line, s in numbered:
        e = out.get(s)
        if e is None:
            out[s] = [1, line]
        else:
            e[0] += 1
    return out


def _distinct_strings(samples: Iterable[str]) -> dict[str, list[int]]:
    return _distinct_lines((i, strip_sample(s)) for i, s in enumerate(samples, 1))
