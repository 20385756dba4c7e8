"""A tree-free LALR(1) recogniser over Lark's own tables, for validating many strings fast.

``Lark.parse`` builds a tree, wraps every token in a ``Token`` object and, on failure, builds an
exception with an interactive parser attached; scoring needs none of that, only "valid or not,
and where it failed". This recogniser reuses Lark's compiled pieces unchanged (the parse table,
the per-state contextual lexers' scanners, their ignore sets and terminal callbacks) and runs the
same shift/reduce loop on terminal names only, so it accepts exactly the strings Lark accepts
(``tests/test_recognizer.py`` checks that on random strings for every shipped grammar).
"""

from __future__ import annotations

from lark import Lark, Token
from lark.lexer import ContextualLexer, TextSlice
from lark.parsers.lalr_analysis import Shift

END = "$END"


class LalrRecognizer:
    """Build with ``LalrRecognizer.for_parser(lark)``; ``None`` when the fast path can't apply."""

    def __init__(self, lexer: ContextualLexer, parse_table, start: str) -> None:
        self._states = parse_table.states
        self._start = parse_table.start_states[start]
        self._end = parse_table.end_states[start]
        self._lexers = {}
        for state, lexer_ in lexer.lexers.items():
            scanner = lexer_.scanner  # builds lexer_.callback as a side effect
            self._lexers[state] = (scanner, lexer_.ignore_types, lexer_.callback)

    @classmethod
    def for_parser(cls, lark: Lark, start: str = "start") -> "LalrRecognizer | None":
        if lark.options.parser != "lalr" or lark.options.postlex is not None:
            return None
        frontend = lark.parser
        lexer = getattr(frontend, "lexer", None)
        if not isinstance(lexer, ContextualLexer):
            return None
        return cls(lexer, frontend.parser.parser.parse_table, start)

    def check(self, text: str) -> tuple[bool, int, frozenset[str]]:
        """``(ok, column, expected)``: column (1-based) and expected terminals where it failed."""
        states = self._states
        stack = [self._start]
        pos, n = 0, len(text)
        slice_ = TextSlice(text, 0, n)
        while True:
            if pos < n:
                scanner, ignore, callbacks = self._lexers[stack[-1]]
                res = scanner.match(slice_, pos)
                if res is None:
                    return False, pos + 1, self._expected(stack[-1])
                value, ttype = res
                if ttype in callbacks:  # e.g. keyword-vs-name "unless" callbacks rename tokens
                    ttype = callbacks[ttype](Token(ttype, value, pos)).type
                column = pos + 1
                pos += len(value)
                if ttype in ignore:
                    continue
            else:
                ttype, column = END, n + 1
            while True:
                action = states[stack[-1]].get(ttype)
                if action is None:
                    return False, column, self._expected(stack[-1])
                kind, arg = action
                if kind is Shift:
                    stack.append(arg)
                    break
                size = len(arg.expansion)
                if size:
                    del stack[-size:]
                stack.append(states[stack[-1]][arg.origin.name][1])
                if ttype == END and stack[-1] == self._end:
                    return True, 0, frozenset()

    def _expected(self, state: int) -> frozenset[str]:
        return frozenset(s for s in self._states[state] if s.isupper())
