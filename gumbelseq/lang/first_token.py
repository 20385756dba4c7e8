"""What Lark's lexer reads first in a string, over all of a grammar's terminals.

The sampler asks it whether two tokens written side by side stay two tokens (else it puts
ignorable text between them), and the exactness analysis asks it whether each terminal string
alone is read back as itself. It is Lark's own ``BasicLexer`` built from the grammar's terminals
(the lexer a contextual lexer falls back to), so its order of trying terminals and its keyword
folding are Lark's.
"""

from __future__ import annotations

import re

from lark import Lark
from lark.common import LexerConf
from lark.lexer import BasicLexer, UnlessCallback

from .recognizer import _Slice


class FirstToken:
    """``FirstToken(parser).read(text)``: ``(terminal, value)`` or ``None``."""

    def __init__(self, parser: Lark) -> None:
        conf = LexerConf(list(parser.terminals), re, parser.ignore_tokens, skip_validation=True)
        lexer = BasicLexer(conf)
        self._scanner = lexer.scanner  # builds lexer.callback as a side effect
        self._unless = {}
        for name, callback in lexer.callback.items():
            if type(callback) is UnlessCallback:
                self._unless[name] = callback.scanner.fullmatch
        self._cache: dict[str, tuple[str, str] | None] = {}

    def read(self, text: str) -> tuple[str, str] | None:
        """The first token at the start of ``text``, after Lark's keyword folding."""
        hit = self._cache.get(text, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        res = self._scanner.match(_Slice(text, len(text)), 0)
        if res is not None:
            value, ttype = res
            fold = self._unless.get(ttype)
            if fold is not None:
                ttype = fold(value) or ttype
            res = (ttype, value)
        if len(self._cache) < 1_000_000:
            self._cache[text] = res
        return res


_MISSING = object()
