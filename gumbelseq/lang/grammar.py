"""Grammars: load a Lark grammar file or a built-in by name, and validate strings against it.

A grammar is loaded once (``load_grammar``) and then answers ``validate(text)`` without
raising: the result carries the column where parsing failed, the tokens that were expected
there, and Lark's context line. LALR(1) is tried first (strict mode, so a conflict is
reported rather than silently resolved); a grammar LALR cannot take falls back to Earley,
and the caller is told through the ``on_notice`` callback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from lark import Lark
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)
from lark.lexer import PatternRE, PatternStr

from ..errors import GrammarSyntaxError, UnknownGrammarError, UnsupportedGrammarError
from ..inputs import line_and_column, read_text
from .recognizer import LalrRecognizer
from .regex import refers_to_group_by_number

DEFAULT_GRAMMAR = "arith"

_LINE_COL = re.compile(r"line (\d+),? col(?:umn)? (\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Validation:
    """Outcome of validating one string. ``column`` is 1-based; ``None`` when valid.

    When the parser itself failed (rather than rejecting the string), the string is reported
    invalid at column 1 and ``context`` holds the parser's one-line reason.
    """

    ok: bool
    column: int | None = None
    expected: tuple[str, ...] = ()
    context: str = ""


@dataclass(frozen=True)
class GrammarInfo:
    name: str
    path: str
    description: str


@dataclass
class Grammar:
    """A loaded grammar. Build it with ``load_grammar``."""

    name: str
    path: str
    text: str
    parser: Lark
    algorithm: str  # "lalr" or "earley"
    start: str = "start"
    _display: dict[str, str] = field(default_factory=dict, repr=False)
    _fast: LalrRecognizer | None = field(default=None, repr=False)
    #: Results of analyses that depend only on the grammar (see ``exactness.py``).
    _analysis: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.algorithm == "lalr":
            try:
                self._fast = LalrRecognizer.for_parser(self.parser, self.start)
            except re.error:
                raise  # the lexer regex itself; load_grammar reports it
            except Exception:  # noqa: BLE001 - Lark internals not as expected: Lark.parse decides
                self._fast = None
        # Expected-token sets name terminals; show literals as the user wrote them.
        for term in self.parser.terminals:
            if isinstance(term.pattern, PatternStr):
                self._display[term.name] = repr(term.pattern.value)
            else:
                self._display[term.name] = term.name

    def __reduce__(self) -> tuple:
        # Lark's parser does not pickle; another process (``draw_dataset(workers=N)``) gets the
        # grammar as its text and rebuilds it the same way (a relative %import is read again
        # from the file's folder).
        return _build, (self.name, self.path, self.text, self.start, None)

    @property
    def terminals(self) -> list:
        return list(self.parser.terminals)

    @property
    def rules(self) -> list:
        return list(self.parser.rules)

    def is_valid(self, text: str) -> bool:
        """Exactly whether ``self.parser.parse(text)`` succeeds (see ``validate``)."""
        if self._fast is not None:
            try:
                return self._fast.check(text)[0]
            except Exception:  # noqa: BLE001 - never raise; validate() reports the reason
                return False
        return self.validate(text).ok

    def validate(self, text: str) -> Validation:
        """Never raises: a failure inside the parser is an invalid result with its reason.

        Valid means exactly that ``Lark.parse`` accepts ``text`` with this grammar's parser and
        lexer (lexer included: ``%ignore``, terminal priorities, the contextual lexer's choice of
        terminals per parser state). For a strict-LALR grammar a tree-free recogniser on Lark's
        own tables and lexers answers (``recognizer.py``); otherwise ``Lark.parse`` itself.
        """
        try:
            if self._fast is not None:
                ok, column, names = self._fast.check(text)
                if ok:
                    return Validation(True)
                line = text
                if "\n" in text and column <= len(text):
                    # Lark counts a column from the start of its line (a grammar that %ignores
                    # line breaks reads many lines); the end of the text stays len(text) + 1,
                    # as for the Earley path.
                    start = text.rfind("\n", 0, column - 1) + 1
                    end = text.find("\n", column - 1)
                    line = text[start : end if end >= 0 else len(text)]
                    column -= start
                context = f"{line}\n{' ' * (column - 1)}^\n" if text else ""
                return Validation(False, column, self._expected(names), context)
            try:
                self.parser.parse(text)
            except UnexpectedInput as e:
                return self._describe(text, e)
            return Validation(True)
        except Exception as e:  # noqa: BLE001 - e.g. Earley's KeyError on a %declare'd terminal
            return Validation(False, 1, (), _reason(e))

    def _expected(self, names) -> tuple[str, ...]:
        expected = tuple(sorted({self._display.get(n, n) for n in names if n != "$END"}))
        if "$END" in names:
            expected += ("end of input",)
        return expected

    def _describe(self, text: str, e: UnexpectedInput) -> Validation:
        if isinstance(e, UnexpectedToken):
            names = e.expected
            at_end = e.token.type == "$END"
            column = len(text) + 1 if at_end else e.column
        elif isinstance(e, UnexpectedCharacters):
            names = e.allowed or set()
            column = e.column
        elif isinstance(e, UnexpectedEOF):
            names = e.expected
            column = len(text) + 1
        else:  # pragma: no cover - lark has no other UnexpectedInput subclasses today
            names, column = set(), getattr(e, "column", 1)
        expected = self._expected(names)
        try:
            context = e.get_context(text) if text else ""
        except Exception:  # get_context indexes into text; never let display code fail
            context = ""
        try:
            column = max(1, int(column))
        except (TypeError, ValueError):  # a token without a position ('?' or None)
            column = 1
        return Validation(False, column, expected, context)


def display_name(parser: Lark, name: str) -> str:
    """A terminal as the user wrote it: its name, or for an anonymous one (``__IGNORE_0``,
    ``LPAR`` made from ``"("``) its pattern."""
    if not name.startswith("__"):
        return name
    for term in parser.terminals:
        if term.name == name:
            p = term.pattern
            return repr(p.value) if isinstance(p, PatternStr) else f"/{p.value}/"
    return name


def builtin_grammars() -> list[GrammarInfo]:
    """The grammars shipped inside the package, sorted by name."""
    out = []
    for entry in resources.files("gumbelseq.grammars").iterdir():
        if entry.name.endswith(".lark"):
            text = entry.read_text(encoding="utf-8")
            out.append(GrammarInfo(entry.name[: -len(".lark")], str(entry), _description(text)))
    return sorted(out, key=lambda g: g.name)


def _description(text: str) -> str:
    """The first sentence of the grammar file's leading ``//`` comment block."""
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("//"):
            break
        lines.append(line.lstrip("/ ").strip())
    para = " ".join(lines)
    end = para.find(". ")
    return para if end < 0 else para[: end + 1]


def _looks_like_path(spec: str) -> bool:
    """The spec rule: a path exactly when it has a path separator or ends in ``.lark``.

    Files in the current directory are not consulted, so a folder named ``arith`` cannot
    hijack ``--grammar arith``; ``./arith`` or ``arith.lark`` reaches a local file.
    """
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    return any(sep in spec for sep in seps) or spec.endswith(".lark")


def load_grammar(
    spec: str | Path = DEFAULT_GRAMMAR,
    *,
    start: str = "start",
    on_notice: Callable[[str], None] | None = None,
) -> Grammar:
    """Load a grammar from a file path or a built-in name (``gumbelseq grammars`` lists them).

    ``spec`` is a path exactly when it contains a path separator or ends in ``.lark``;
    otherwise it names a built-in. A file's relative ``%import .module.rule`` is resolved from
    the file's own folder.

    Raises ``UnknownGrammarError``, ``InputFileError``, ``GrammarSyntaxError`` or
    ``UnsupportedGrammarError`` with a one-line message; ``on_notice`` receives the Earley
    fall-back notice, if any.
    """
    spec = str(spec)
    if _looks_like_path(spec):
        path = Path(spec)
        text = read_text(path, "grammar file")
        name, shown = path.stem, spec
    else:
        known = {g.name: g for g in builtin_grammars()}
        if not spec:
            raise UnknownGrammarError(f"an empty grammar name; built-in grammars: {', '.join(sorted(known))}, or a .lark file")
        if spec not in known:
            raise UnknownGrammarError(
                f"unknown grammar {spec!r}; built-in grammars: {', '.join(sorted(known))}"
                f" (a spec with a path separator or ending in .lark is a file: ./{spec} or {spec}.lark)"
            )
        name, shown = spec, known[spec].path
        text = resources.files("gumbelseq.grammars").joinpath(f"{spec}.lark").read_text("utf-8")
    return _build(name, shown, text, start, on_notice)


def _build(name: str, shown: str, text: str, start: str, on_notice: Callable[[str], None] | None) -> Grammar:
    if "\0" in text:  # Lark's own message is a Python tuple about source code
        line, column = line_and_column(text, text.index("\0"))
        raise GrammarSyntaxError(f"{shown}:{line}:{column}: a NUL character; a grammar is text")
    # source_path: Lark resolves a relative ``%import .module.rule`` from this file's folder
    # (for a grammar given as a string it would use the folder of the running script).
    try:
        parser = _lark(text, shown, parser="lalr", strict=True, start=start)
        algorithm = "lalr"
    except LarkError as e:
        _check_start_rule(text, shown, start)
        # Strict LALR reports conflicts (GrammarError) and regex collisions (LexError);
        # anything else is a real error in the grammar file.
        if not _is_lalr_limitation(e):
            raise GrammarSyntaxError(_grammar_error_line(shown, e)) from None
        try:
            parser = _lark(text, shown, parser="earley", start=start)
        except LarkError as e2:
            raise GrammarSyntaxError(_grammar_error_line(shown, e2)) from None
        algorithm = "earley"
        if on_notice is not None:
            first = str(e).strip().splitlines()[0]
            on_notice(f"{shown}: LALR(1) cannot take this grammar ({first}); using Earley (slower)")
    _hoist_inline_flags(parser)
    if algorithm == "lalr":
        _check_lexer_terminals(parser, shown)
    try:
        return Grammar(name=name, path=shown, text=text, parser=parser, algorithm=algorithm, start=start)
    except re.error as e:  # building Lark's joined lexer regex; per-terminal causes are caught above
        raise UnsupportedGrammarError(
            f"{shown}: Lark cannot join the terminals' regular expressions into one lexer: {e}"
        ) from None


def _lark(text: str, shown: str, **options) -> Lark:
    """``Lark(text, ...)``, with a missing or unreadable ``%import`` as a one-line error."""
    try:
        return Lark(text, source_path=shown, **options)
    except LarkError:
        raise
    except OSError as e:  # Lark ends a failed %import search with a bare open()
        raise GrammarSyntaxError(_import_error_line(shown, text, e)) from None
    except RecursionError:
        raise GrammarSyntaxError(
            f"{shown}: nests too deeply for Lark to load (a file that %imports itself, or a chain of"
            " thousands of rules)"
        ) from None
    except Exception as e:  # noqa: BLE001 - e.g. an assert in Lark's import search
        raise GrammarSyntaxError(_grammar_error_line(shown, e)) from None


def _check_start_rule(text: str, shown: str, start: str) -> None:
    """An unknown start rule is a one-line error that lists the rules the grammar defines."""
    try:
        from lark.load_grammar import load_grammar as lark_load_grammar

        defined, _ = lark_load_grammar(text, shown, [], False)
        rules = [str(r[0]) for r in defined.rule_defs if not r[1]]  # r[1]: template parameters
    except Exception:  # noqa: BLE001 - a grammar Lark cannot read: its own error says why
        return
    if start in rules:
        return
    # Rules pulled in by %import are renamed module__rule; they are not the grammar's own names.
    own = sorted(r for r in rules if "__" not in r) or sorted(rules)
    raise GrammarSyntaxError(
        f"{shown}: unknown start rule {start!r}; the grammar's rules are: {', '.join(own) or '(none)'}"
    )


def _import_error_line(shown: str, text: str, e: OSError) -> str:
    """Point at the ``%import`` line of the module Lark could not find."""
    missing = str(e.filename or "")
    if not missing.endswith(".lark"):
        return f"{shown}: %import failed: {e.strerror or e}"
    dotted = missing[: -len(".lark")].replace(os.sep, ".").replace("/", ".")
    stmt = re.compile(rf"^([ \t]*)%import[ \t]+(\.?){re.escape(dotted)}[ \t]*[.(]")
    for number, line in enumerate(text.splitlines(), 1):
        m = stmt.match(line)
        if m:
            where = (
                f"no {missing} beside the grammar file"
                if m.group(2)
                else f"no {missing} in Lark's library (start the name with a dot, %import"
                f" .{dotted}..., to import from the grammar file's folder)"
            )
            return f"{shown}:{number}:{len(m.group(1)) + 1}: cannot import {dotted!r}: {where}"
    return f"{shown}: cannot import {dotted!r} (from a grammar it imports): no {missing} found"


_GLOBAL_FLAGS = re.compile(r"\(\?([aimsux]+)\)")


def _hoist_inline_flags(parser: Lark) -> None:
    """Turn a regex terminal's leading ``(?i)`` into the flag Lark writes as ``/.../i``.

    Python accepts global inline flags only at the very start of a regex, and Lark joins all
    terminals into one (``(?P<A>...)|(?P<B>...)``), where ``(?i)`` is no longer at the start.
    As a flag on the pattern Lark scopes it, ``(?i:...)``, which means the same for the
    terminal. Patterns are replaced before any lexer is built (Lark builds them lazily).
    """
    for term in parser.terminals:
        pattern = term.pattern
        if not isinstance(pattern, PatternRE):
            continue
        value, flags = pattern.value, set(pattern.flags)
        m = _GLOBAL_FLAGS.match(value)
        while m:
            flags.update(m.group(1))
            value = value[m.end():]
            m = _GLOBAL_FLAGS.match(value)
        if value != pattern.value:
            term.pattern = PatternRE(value, frozenset(flags), pattern.raw)


def _check_lexer_terminals(parser: Lark, shown: str) -> None:
    """Each regex terminal must survive Lark joining them into one lexer regex."""
    for term in parser.terminals:
        if not isinstance(term.pattern, PatternRE):
            continue
        regexp = term.pattern.to_regexp()
        where = f"{shown}: terminal {term.name} ({term.pattern.raw or term.pattern.value})"
        if refers_to_group_by_number(regexp):
            raise UnsupportedGrammarError(
                f"{where}: a numbered back-reference is not supported (Lark puts all terminals"
                " into one regular expression, which renumbers groups; use (?P<name>...) and"
                " (?P=name))"
            )
        try:
            re.compile(f"(?P<{term.name}>{regexp})")
        except re.error as e:
            msg = re.sub(r" at position \d+$", "", str(e).splitlines()[0])
            raise UnsupportedGrammarError(
                f"{where}: {msg} (Lark puts all terminals into one regular expression)"
            ) from None


def _reason(e: BaseException) -> str:
    msg = str(e).strip()
    first = msg.splitlines()[0] if msg else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _is_lalr_limitation(e: LarkError) -> bool:
    msg = str(e)
    return any(
        key in msg
        for key in ("Shift/Reduce", "Reduce/Reduce", "conflict", "Collision", "collision", "strict")
    )


def _grammar_error_line(path: str, e: Exception) -> str:
    msg = str(e).strip()
    first = msg.splitlines()[0] if msg else type(e).__name__
    line = getattr(e, "line", None)
    column = getattr(e, "column", None)
    m = _LINE_COL.search(msg)
    if (not isinstance(line, int) or line < 1) and m:
        line, column = int(m.group(1)), int(m.group(2))
    # Lark says "at line 2 column 14 in <string>: ..."; we already lead with the location.
    first = re.sub(r"\s*at line \d+ column \d+ in [^:]*:?\s*$", "", first)
    first = re.sub(r"\s*in <string>:?\s*$", "", first) or "grammar error"
    if isinstance(line, int) and line >= 1:
        return f"{path}:{line}:{column}: {first}"
    return f"{path}: {first}"
