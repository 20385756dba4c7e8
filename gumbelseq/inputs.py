"""Reading the user's files, with a one-line error for every way a path or its bytes can be
wrong: missing, a directory, unreadable, not UTF-8 (naming the line and column).

Files of samples (``score``'s FILE and ``--reference``, ``train --data``) come in three shapes,
told apart by the name alone (``input_format``), never by sniffing the bytes, so that stdin, FIFOs
and every other name keep meaning exactly "one sample per line":

- ``NAME.csv``: a CSV file with a header row; the samples are one column of it (``column``, or
  by default the only column, else the column named ``SMILES``). Blank lines are skipped, as
  most CSV readers do; a row with another number of fields than the header is an error naming
  its line.
- ``NAME.gz``: gzip-compressed, read as a stream; ``NAME.csv.gz`` is a compressed CSV file,
  any other ``NAME.gz`` compressed plain lines.
- anything else, including ``-`` (stdin): plain text, one sample per line.

In every shape trailing spaces (the padding of fixed-length samples) are removed from a sample.
"""

from __future__ import annotations

import csv
import errno
import gzip
import io
import json
import os
import re
import sys
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

from .errors import InputFileError, first_line

#: What ``input_format`` calls the two layouts of a file of samples.
TEXT, CSV = "text", "csv"

#: The column a CSV file's samples are read from when it has several and none is named.
DEFAULT_CSV_COLUMN = "SMILES"


class _CheckedRead(io.RawIOBase):
    """The bytes of an opened input, with a failure to read them (EIO from a disk, EINVAL from
    a /proc file that opens but cannot be read) turned into a one-line ``InputFileError``
    naming the input: an OSError without a file name reads as a failure to write stdout."""

    def __init__(self, raw: BinaryIO, source: str) -> None:
        super().__init__()
        self._raw = raw
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        try:
            return self._raw.readinto(buffer)  # type: ignore[attr-defined]
        except OSError as e:
            raise InputFileError(f"{self._source}: cannot read it ({e.strerror or first_line(e)})") from None

    def close(self) -> None:
        if not self.closed and self._raw is not getattr(sys.stdin, "buffer", None):
            self._raw.close()
        super().close()


def open_binary(path: str | Path, what: str = "file") -> BinaryIO:
    """Open ``path`` for reading bytes; ``-`` is standard input. A read that fails later is a
    one-line ``InputFileError`` naming ``path``."""
    if str(path) == "-":
        if sys.stdin is None or sys.stdin.closed:  # run with stdin closed (``<&-``)
            raise InputFileError("-: standard input is closed")
        raw: BinaryIO = sys.stdin.buffer
    else:
        if str(path) == "":  # Path("") is the current folder
            raise InputFileError(f"'': an empty path names no {what}")
        p = Path(path)
        if not p.exists():
            try:
                os.stat(p)
            except OSError as e:  # a symlink loop is not a missing file
                if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise InputFileError(f"{path}: {e.strerror}") from None
            raise InputFileError(f"{path}: no such {what}")
        if p.is_dir():
            raise InputFileError(f"{path}: is a directory, not a {what}")
        try:
            raw = open(p, "rb", buffering=0)  # type: ignore[assignment]
        except OSError as e:
            raise InputFileError(f"{path}: {e.strerror}") from None
    return io.BufferedReader(_CheckedRead(raw, str(path)), buffer_size=1 << 16)  # type: ignore[return-value]


def decode_line(raw: bytes, source: str, line: int, *, strip_bom: bool | None = None) -> str:
    """One line of a one-sample-per-line file: decoded, newline and trailing spaces (the
    padding of fixed-length samples) removed, and on line 1 a byte-order mark (what some
    Windows editors write first; a CSV header loses it the same way). ``strip_bom=False``: the
    caller removed it already."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{source}:{line}: not valid UTF-8 (column {line_and_column(raw, e.start)[1]})") from None
    if line == 1 if strip_bom is None else strip_bom:
        text = text.removeprefix("\ufeff")
    return strip_sample(text)


def line_and_column(data: bytes | str, at: int) -> tuple[int, int]:
    """The 1-based line and column of offset ``at`` in ``data``, the column in characters as the
    parser's columns count them (for bytes, ``at`` is the first undecodable byte or any offset
    whose line decodes up to it)."""
    if isinstance(data, bytes):
        start = data.rfind(b"\n", 0, at) + 1
        return data.count(b"\n", 0, at) + 1, len(data[start:at].decode("utf-8")) + 1
    start = data.rfind("\n", 0, at) + 1
    return data.count("\n", 0, at) + 1, at - start + 1


def strip_sample(text: str) -> str:
    return text.rstrip("\n").rstrip("\r").rstrip(" ")


def read_text(path: str | Path, what: str = "file") -> str:
    with open_binary(path, what) as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, column = line_and_column(data, e.start)
        raise InputFileError(f"{path}:{line}:{column}: not valid UTF-8") from None


class Samples(list):
    """A list of samples that knows each one's line in its file (a CSV file's header and blank
    lines, and its quoted line breaks, make the two differ), so that a message about the i-th
    sample can name its line."""

    lines: list[int] | None = None  # None: sample i is on line i + 1


def line_of(samples: Sequence[str], i: int) -> int:
    """The file line of ``samples[i]`` (1-based): from ``Samples.lines``, else ``i + 1``."""
    lines = getattr(samples, "lines", None)
    return i + 1 if lines is None else lines[i]


def read_lines(path: str | Path, what: str = "file", column: str | None = None) -> Samples:
    """All samples of a file, in order, padding removed: one per line, or, for a ``.csv`` or
    ``.gz`` name, as ``iter_samples`` reads them (``column`` picks a CSV file's column)."""
    if input_format(path) != (TEXT, False):
        numbered = list(iter_samples(path, what, column))
        out = Samples(s for _, s in numbered)
        out.lines = [i for i, _ in numbered]
        return out
    with open_binary(path, what) as f:
        return Samples(decode_line(raw, str(path), i) for i, raw in enumerate(f, 1))


# -- formats of sample files: plain lines, CSV, gzip ---------------------------------------------


def input_format(path: str | Path) -> tuple[str, bool]:
    """``(TEXT or CSV, gzipped)`` for a file of samples, from its name alone (``-`` is plain
    text): ``.gz`` is gzip, and the name under it (or the name itself) ending in ``.csv`` is CSV.
    Case does not matter (``DATA.CSV.GZ``)."""
    name = str(path)
    if name == "-":
        return TEXT, False
    lower = name.lower()
    gz = lower.endswith(".gz")
    if gz:
        lower = lower[: -len(".gz")]
    return (CSV if lower.endswith(".csv") else TEXT), gz


class _CheckedGunzip(io.RawIOBase):
    """The decompressed bytes of a gzip stream, with every way the compressed data can be bad
    (not gzip at all, cut short, a CRC or deflate error) turned into a one-line
    ``InputFileError``. Wrapped in ``io.BufferedReader`` it reads lines like a plain file, so
    the callers' line loops stay the same for both."""

    def __init__(self, raw: BinaryIO, source: str) -> None:
        super().__init__()
        self._raw = raw
        # What the file starts with, read ahead: an empty file (which GzipFile reads as empty
        # data) and a file that is not gzip at all differ from junk after a gzip member.
        if hasattr(raw, "peek"):
            head = raw.peek(2)[:2]
        else:  # a reader without peek (a wheel member behind a progress counter): read, then give back
            head = raw.read(2)
            raw = _Prepended(head, raw)  # type: ignore[assignment]
        self._head = "empty" if head == b"" else "gzip" if head == b"\x1f\x8b" or len(head) < 2 else "other"
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._head == "empty":  # gzip(1) calls it cut short
            raise InputFileError(f"{self._source}: empty file, not gzip data (the name ends in .gz)")
        try:
            return self._gz.readinto(buffer)
        except gzip.BadGzipFile as e:
            if str(e).startswith("Not a gzipped file"):
                if self._head == "gzip":
                    raise InputFileError(f"{self._source}: bytes that are not gzip data after the gzip data") from None
                raise InputFileError(f"{self._source}: not gzip data (the name ends in .gz)") from None
            raise InputFileError(f"{self._source}: corrupt gzip data ({first_line(e)})") from None
        except EOFError:
            raise InputFileError(f"{self._source}: gzip data cut short (an incomplete file?)") from None
        except zlib.error as e:
            raise InputFileError(f"{self._source}: corrupt gzip data ({first_line(e)})") from None
        except OSError as e:
            raise InputFileError(f"{self._source}: {e.strerror or first_line(e)}") from None

    def close(self) -> None:
        if not self.closed:
            try:
                self._gz.close()  # GzipFile does not close a file object it was given
            finally:
                if self._raw is not getattr(sys.stdin, "buffer", None):
                    self._raw.close()
        super().close()


class _Prepended:
    """``raw`` with ``head`` (bytes already read from it) in front again: what GzipFile reads."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head, self._raw = head, raw

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(n)
        if n is None or n < 0:
            out, self._head = self._head + self._raw.read(), b""
            return out
        out, self._head = self._head[:n], self._head[n:]
        return out if len(out) == n else out + self._raw.read(n - len(out))

    def close(self) -> None:
        self._raw.close()


def gunzip_stream(raw: BinaryIO, source: str) -> BinaryIO:
    """A buffered, line-iterable reader of the gzip data in ``raw`` (closing it closes ``raw``);
    bad data is a one-line ``InputFileError`` naming ``source``."""
    return io.BufferedReader(_CheckedGunzip(raw, source), buffer_size=1 << 16)  # type: ignore[return-value]


def open_lines(path: str | Path, what: str = "file") -> BinaryIO:
    """``open_binary``, decompressed when the name ends in ``.gz``: the bytes of the lines."""
    stream = open_binary(path, what)
    if not input_format(path)[1]:
        return stream
    return gunzip_stream(stream, str(path))


def _decoded(stream: Iterable[bytes], source: str) -> Iterator[str]:
    for i, raw in enumerate(stream, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputFileError(f"{source}:{i}: not valid UTF-8 (column {line_and_column(raw, e.start)[1]})") from None


def iter_csv_column(stream: Iterable[bytes], source: str, column: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line, sample)`` for each row of a CSV byte stream with a header row, streaming.

    The samples are the column named ``column``; without one, the only column, else the
    column named ``SMILES`` (``DEFAULT_CSV_COLUMN``), else an error listing the columns. Blank
    lines are skipped. ``line`` is the line the row starts on. A row with another number of
    fields than the header, a value spanning several lines, or malformed CSV is an
    ``InputFileError`` naming the line."""
    reader = csv.reader(_decoded(stream, source), strict=True)
    # A field may be as long as a line of a text file (the csv module's default stops at 128 KiB
    # and calls the rest malformed); the limit is the module's, so it is put back after.
    limit = csv.field_size_limit(2**31 - 1)
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise InputFileError(f"{source}: empty CSV file (a header row naming the columns is expected)") from None
        if not header:
            raise InputFileError(f"{source}:1: blank line where the CSV header row naming the columns is expected")
        header[0] = header[0].removeprefix("\ufeff")  # a byte-order mark some tools write
        index = _pick_column(header, column, source)
        previous = reader.line_num
        for row in reader:
            line, previous = previous + 1, reader.line_num
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                raise InputFileError(
                    f"{source}:{line}: {len(row)} field{'s' if len(row) != 1 else ''} where the header has {len(header)}"
                )
            value = row[index]
            if "\n" in value or "\r" in value:  # a quoted value with a line break cannot be a sample
                raise InputFileError(f"{source}:{line}: the value in column {header[index]!r} spans several lines")
            yield line, strip_sample(value)
    except csv.Error as e:
        raise InputFileError(f"{source}:{reader.line_num}: malformed CSV ({first_line(e)})") from None
    finally:
        csv.field_size_limit(limit)


def _pick_column(header: list[str], column: str | None, source: str) -> int:
    names = ", ".join(repr(h) for h in header[:10]) + (", ..." if len(header) > 10 else "")
    wanted = column if column is not None else DEFAULT_CSV_COLUMN if len(header) > 1 else None
    if wanted is not None and header.count(wanted) > 1:
        # Taking the first of two same-named columns would score one of them silently.
        where = ", ".join(str(i + 1) for i, h in enumerate(header) if h == wanted)
        raise InputFileError(f"{source}:1: {header.count(wanted)} columns are named {wanted!r} (columns {where}); rename one")
    if column is not None:
        if column not in header:
            raise InputFileError(f"{source}:1: no column {column!r}; the columns are {names}")
        return header.index(column)
    if len(header) == 1:
        return 0
    if DEFAULT_CSV_COLUMN in header:
        return header.index(DEFAULT_CSV_COLUMN)
    raise InputFileError(
        f"{source}:1: {len(header)} columns ({names}) and none named {DEFAULT_CSV_COLUMN!r}; choose one with --column"
    )


def iter_samples(path: str | Path, what: str = "file", column: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line, sample)`` for every sample of a ``.txt``/``.csv``/``.gz`` file (or ``-``), in
    order, streaming, padding removed. ``column`` is for CSV files and ignored otherwise."""
    kind, _ = input_format(path)
    with open_lines(path, what) as f:
        if kind == CSV:
            yield from iter_csv_column(f, str(path), column)
        else:
            for i, raw in enumerate(f, 1):
                yield i, decode_line(raw, str(path), i)


class DuplicateKeyError(ValueError):
    """A JSON object that names a key twice; ``line`` and ``column`` (1-based) of the second."""

    def __init__(self, key: str, line: int, column: int) -> None:
        self.key, self.line, self.column = key, line, column
        super().__init__(f"duplicate key {key!r} (an object may name a key once)")


def loads_json_strict(text: str) -> Any:
    """``json.loads``, refusing an object that names a key twice: the last one won silently (a
    ``grid`` written twice lost the first). The position is that of the key's second spelling
    in the text (found by search: the decoder does not report positions of pairs)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out and not found:
                found.append(k)
            out[k] = v
        return out

    data = json.loads(text, object_pairs_hook=pairs)
    if found:
        key = found[0]
        spellings = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
        raise DuplicateKeyError(key, *line_and_column(text, spellings[1] if len(spellings) > 1 else 0))
    return data
