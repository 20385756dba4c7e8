"""Grammars: load a Lark grammar file or a built-in by name, and validate strings against it.

A grammar is loaded once (``load_grammar``) and then answers ``validate(text)`` without
raising: the result carries the column where parsing failed, the tokens that were expected
there, and Lark's context line. LALR(1) is tried first (strict mode, so a conflict is
reported rather than silently resolved); a grammar LALR cannot take falls back to Earley,
and the caller is told through the ``on_notice`` callback.
"""

from __future__ import annotations

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
from lark.lexer import PatternStr

from ..errors import GrammarSyntaxError, UnknownGrammarError
from ..inputs import read_text
from .recognizer import LalrRecognizer

DEFAULT_GRAMMAR = "arith"

_LINE_COL = re.compile(r"line (\d+),? col(?:umn)? (\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Validation:
    """Outcome of validating one string. ``column`` is 1-based; ``None`` when valid."""

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

    def __post_init__(self) -> None:
        if self.algorithm == "lalr":
            self._fast = LalrRecognizer.for_parser(self.parser, self.start)
        # Expected-token sets name terminals; show literals as the user wrote them.
        for term in self.parser.terminals:
            if isinstance(term.pattern, PatternStr):
                self._display[term.name] = repr(term.pattern.value)
            else:
                self._display[term.name] = term.name

    @property
    def terminals(self) -> list:
        return list(self.parser.terminals)

    @property
    def rules(self) -> list:
        return list(self.parser.rules)

    def is_valid(self, text: str) -> bool:
        if self._fast is not None:
            return self._fast.check(text)[0]
        try:
            self.parser.parse(text)
        except LarkError:
            return False
        return True

    def validate(self, text: str) -> Validation:
        if self._fast is not None:
            ok, column, names = self._fast.check(text)
            if ok:
                return Validation(True)
            context = f"{text}\n{' ' * (column - 1)}^\n" if text else ""
            return Validation(False, column, self._expected(names), context)
        try:
            self.parser.parse(text)
        except UnexpectedInput as e:
            return self._describe(text, e)
        except LarkError as e:  # e.g. a transformer-free tree build failing; still "invalid"
            return Validation(False, 1, (), str(e).splitlines()[0] if str(e) else "")
        return Validation(True)

    def _expected(self, names) -> tuple[str, ...]:
        expected = tuple(sorted(self._display.get(n, n) for n in names if n != "$END"))
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
        return Validation(False, max(1, int(column)), expected, context)


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
    return "/" in spec or "\\" in spec or spec.endswith(".lark") or Path(spec).exists()


def load_grammar(
    spec: str | Path = DEFAULT_GRAMMAR,
    *,
    start: str = "start",
    on_notice: Callable[[str], None] | None = None,
) -> Grammar:
    """Load a grammar from a file path or a built-in name (``gumbelseq grammars`` lists them).

    Raises ``UnknownGrammarError``, ``InputFileError`` or ``GrammarSyntaxError`` with a
    one-line message; ``on_notice`` receives the Earley fall-back notice, if any.
    """
    spec = str(spec)
    if _looks_like_path(spec):
        path = Path(spec)
        text = read_text(path, "grammar file")
        name, shown = path.stem, spec
    else:
        known = {g.name: g for g in builtin_grammars()}
        if spec not in known:
            raise UnknownGrammarError(
                f"unknown grammar {spec!r}; built-in grammars: {', '.join(sorted(known))}"
                " (or pass a path to a .lark file)"
            )
        name, shown = spec, known[spec].path
        text = resources.files("gumbelseq.grammars").joinpath(f"{spec}.lark").read_text("utf-8")

    try:
        parser = Lark(text, parser="lalr", strict=True, start=start)
        algorithm = "lalr"
    except LarkError as e:
        # Strict LALR reports conflicts (GrammarError) and regex collisions (LexError);
        # anything else is a real error in the grammar file.
        if not _is_lalr_limitation(e):
            raise GrammarSyntaxError(_grammar_error_line(shown, e)) from None
        try:
            parser = Lark(text, parser="earley", start=start)
        except LarkError as e2:
            raise GrammarSyntaxError(_grammar_error_line(shown, e2)) from None
        algorithm = "earley"
        if on_notice is not None:
            first = str(e).strip().splitlines()[0]
            on_notice(f"{shown}: LALR(1) cannot take this grammar ({first}); using Earley (slower)")
    return Grammar(name=name, path=shown, text=text, parser=parser, algorithm=algorithm, start=start)


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
