"""Domain errors. Only ``cli.py`` turns them into click exceptions."""

from __future__ import annotations


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to ``limit`` characters: how a foreign
    exception (a plugin's, torch's) is quoted inside a one-line error."""
    try:
        text = str(e)
    except Exception:  # noqa: BLE001 - a foreign exception whose message itself fails
        return "(its message cannot be shown)"
    return (text.strip().splitlines() or [""])[0][:limit]


def shown(path: object) -> str:
    """A path as a one-line message shows it: as written, or quoted where it holds a line
    break or another unprintable character."""
    text = str(path)
    return text if text.isprintable() else repr(text)


class GumbelseqError(Exception):
    """Base class: a user-facing problem with a one-line message."""


class UnknownGrammarError(GumbelseqError):
    pass


class GrammarSyntaxError(GumbelseqError):
    pass


class UnsupportedGrammarError(GumbelseqError):
    """The grammar parses, but the sampler or counter cannot handle part of it."""


class InputFileError(GumbelseqError):
    """A file the user gave us cannot be read as asked (missing, a directory, not UTF-8...)."""


class OutputFileError(GumbelseqError):
    """A path the user gave for output cannot be written (a directory, a missing folder...)."""


class UnknownBackendError(GumbelseqError):
    pass


class OptionError(GumbelseqError):
    """A ``-o key=value`` backend option is unknown or has a bad value."""


class RunError(GumbelseqError):
    """A run directory is missing, incomplete or inconsistent."""


class TemperatureError(GumbelseqError, ValueError):
    """A Gumbel-softmax or sampling temperature outside what float32 arithmetic can honour."""
