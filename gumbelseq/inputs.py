"""Reading the user's files, with a one-line error for every way a path or its bytes can be
wrong: missing, a directory, unreadable, not UTF-8 (naming the line and column)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

from .errors import InputFileError


def open_binary(path: str | Path, what: str = "file") -> BinaryIO:
    """Open ``path`` for reading bytes; ``-`` is standard input."""
    if str(path) == "-":
        if sys.stdin is None or sys.stdin.closed:  # run with stdin closed (``<&-``)
            raise InputFileError("-: standard input is closed")
        return sys.stdin.buffer
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{path}: no such {what}")
    if p.is_dir():
        raise InputFileError(f"{path}: is a directory, not a {what}")
    try:
        return open(p, "rb")
    except OSError as e:
        raise InputFileError(f"{path}: {e.strerror}") from None


def decode_line(raw: bytes, source: str, line: int) -> str:
    """One line of a one-sample-per-line file: decoded, newline and trailing spaces (the
    padding of fixed-length samples) removed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{source}:{line}: not valid UTF-8 (column {e.start + 1})") from None
    return strip_sample(text)


def strip_sample(text: str) -> str:
    return text.rstrip("\n").rstrip("\r").rstrip(" ")


def read_text(path: str | Path, what: str = "file") -> str:
    with open_binary(path, what) as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise InputFileError(f"{path}:{line}:{column}: not valid UTF-8") from None


def read_lines(path: str | Path, what: str = "file") -> list[str]:
    """All lines of a one-sample-per-line file, in order, padding removed."""
    with open_binary(path, what) as f:
        return [decode_line(raw, str(path), i) for i, raw in enumerate(f, 1)]
