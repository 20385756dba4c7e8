"""Masks for grammars that ``Constraint`` cannot serve (not written yet: refuses with the reason)."""

from __future__ import annotations

from typing import Iterable

from ..errors import UnsupportedGrammarError
from .grammar import Grammar


class EarleyConstraint:
    def __init__(self, grammar: Grammar, max_len: int, alphabet: Iterable[str], reason: str) -> None:
        raise UnsupportedGrammarError(f"{grammar.path}: constrained sampling does not support this grammar: {reason}")
