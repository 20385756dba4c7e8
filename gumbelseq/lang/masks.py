"""Which mask engine serves a grammar: ``grammar_masks(grammar, max_len, alphabet)``.

Every engine answers the same four questions about integer states (``start``,
``allowed(state)``, ``can_end(state)``, ``next(state, char)``), so the model side never knows
which one it holds. ``Constraint`` (``constraint.py``) serves the grammars whose derivations are
exactly Lark's strings (``exactness.py``); the others go to an engine that follows Lark's lexer
itself (``lexer_constraint.py``, LALR grammars) or Lark's Earley parser
(``earley_constraint.py``). An engine that cannot serve a grammar raises a one-line
``UnsupportedGrammarError`` naming the construct.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from .constraint import Constraint
from .exactness import exactness
from .grammar import Grammar


class GrammarMasks(Protocol):
    """Next-character masks over integer states (see ``constraint.py`` for their meaning)."""

    start: int
    max_len: int

    def allowed(self, state: int) -> frozenset[str]: ...

    def can_end(self, state: int) -> bool: ...

    def next(self, state: int, char: str) -> int: ...


def grammar_masks(grammar: Grammar, max_len: int, alphabet: Iterable[str]) -> GrammarMasks:
    """The masks of ``grammar`` for prefixes of at most ``max_len`` characters of ``alphabet``."""
    reason = exactness(grammar)
    if reason is None:
        return Constraint(grammar, max_len, alphabet)
    if grammar.algorithm == "earley":
        from .earley_constraint import EarleyConstraint

        return EarleyConstraint(grammar, max_len, alphabet, reason)
    from .lexer_constraint import LexerConstraint

    return LexerConstraint(grammar, max_len, alphabet, reason)
