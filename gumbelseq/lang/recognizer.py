"""A tree-free LALR(1) recogniser over Lark's own tables, for validating many strings fast.

``Lark.parse`` builds a tree, wraps every token in a ``Token`` object and, on failure, builds an
exception with an interactive parser attached; scoring needs none of that, only "valid or not,
and where it failed". This recogniser reuses Lark's compiled pieces unchanged (the parse table,
the per-state contextual lexers' scanners, their ignore sets and keyword callbacks) and runs the
same loops as ``BasicLexer.next_token`` and ``ParserState.feed_token`` on terminal names only, so
it accepts exactly the strings Lark accepts (``tests/test_corpus_validity.py`` checks that
exhaustively on a corpus of lexer corner cases, against Lark itself).

What the lexer does, and this loop copies (lark/lexer.py, 1.x):

- The lexer is the one for the parser's current state (the state after the last shift): it
  knows only the terminals that state accepts plus the ``%ignore`` terminals.
- Its scanner tries terminals in one fixed order (priority, then longest possible match, then
  pattern length, then name) and takes the *first* that matches, not the longest match.
- A string terminal that a regex terminal of the same priority also matches is folded into that
  regex (Lark's ``UnlessCallback``): a regex match whose whole text equals the string becomes the
  string's terminal. Only terminals of the current state's lexer take part, so a keyword is a
  keyword only where the parser can take it.
- Whether a token is ignored is decided on the terminal the scanner matched, *before* that
  callback: an ignored match is dropped even if the callback would rename it to a rule terminal,
  and a rule terminal's match renamed to an ignore terminal is not dropped.
"""

from __future__ import annotations

from lark import Lark
from lark.lexer import BasicLexer, ContextualLexer, UnlessCallback
from lark.parsers.lalr_analysis import Shift

END = "$END"


class LalrRecognizer:
    """Build with ``LalrRecognizer.for_parser(lark)``; ``None`` when the fast path can't apply."""

    def __init__(self, lexers: dict, parse_table, start: str) -> None:
        self._states = parse_table.states
        self._start = parse_table.start_states[start]
        self._end = parse_table.end_states[start]
        self._lexers = lexers
        self._expected_cache: dict[int, frozenset[str]] = {}
        # Lark's table, re-encoded for speed (same entries): an action is a shift or goto target
        # (>= 0) or ~i for rule i, whose (length, origin) is self._rules[i]. Terminal and rule
        # names never collide, so gotos stay in the same dict. Names become plain str: a rule
        # name is a lark Token, whose Python-level __eq__ would run on every dict look-up.
        rules: dict = {}
        self._actions: dict[int, dict[str, int]] = {}
        for state, actions in parse_table.states.items():
            self._actions[state] = {
                str.__str__(symbol): arg if kind is Shift else ~rules.setdefault(arg, len(rules))
                for symbol, (kind, arg) in actions.items()
            }
        self._rules = [(len(rule.expansion), str.__str__(rule.origin.name)) for rule in rules]

    @classmethod
    def for_parser(cls, lark: Lark, start: str = "start") -> "LalrRecognizer | None":
        """The recogniser for a strict-LALR ``lark``, or ``None`` (then use ``Lark.parse``).

        ``None`` whenever the loop below would not be an exact copy of what Lark runs: another
        parser or lexer, a post-lexer, or any lexer callback other than Lark's own keyword
        folding (a user ``lexer_callbacks`` entry can do anything).
        """
        if lark.options.parser != "lalr" or lark.options.postlex is not None or lark.options.lexer_callbacks:
            return None
        frontend = lark.parser
        lexer = getattr(frontend, "lexer", None)
        if type(lexer) is not ContextualLexer:
            return None
        parse_table = frontend.parser.parser.parse_table
        if start not in parse_table.start_states:
            return None
        lexers = {}
        built: dict[int, tuple] = {}
        for state, lexer_ in lexer.lexers.items():
            if type(lexer_) is not BasicLexer:
                return None
            entry = built.get(id(lexer_))
            if entry is None:
                scanner = lexer_.scanner  # builds lexer_.callback as a side effect
                mres = getattr(scanner, "_mres", None)
                # One joined regex: call it directly. Several (Lark splits the terminals when
                # Python's re refuses too many groups): Scanner.match tries them in order.
                match = mres[0].match if isinstance(mres, list) and len(mres) == 1 else None
                unless = {}
                for name, callback in lexer_.callback.items():
                    fold = getattr(getattr(callback, "scanner", None), "fullmatch", None)
                    if type(callback) is not UnlessCallback or fold is None:
                        return None
                    unless[name] = fold
                entry = (match, scanner, lexer_.ignore_types, unless)
                built[id(lexer_)] = entry
            lexers[state] = entry
        return cls(lexers, parse_table, start)

    def check(self, text: str) -> tuple[bool, int, frozenset[str]]:
        """``(ok, column, expected)``: column (1-based) and expected terminals where it failed."""
        return self._run(text, None)

    def tokens(self, text: str) -> list[tuple[str, str]] | None:
        """The ``(terminal, text)`` tokens Lark's lexer makes of a valid ``text`` (ignored ones
        left out), or ``None`` when ``text`` is invalid."""
        out: list[tuple[str, str]] = []
        return out if self._run(text, out)[0] else None

    def _run(self, text: str, out: list | None) -> tuple[bool, int, frozenset[str]]:
        actions, rules, lexers = self._actions, self._rules, self._lexers
        end = self._end
        state = self._start
        stack = [state]
        pos, n = 0, len(text)
        while True:
            if pos < n:
                match, scanner, ignore, unless = lexers[state]
                if match is not None:
                    m = match(text, pos)
                    if m is None:
                        return False, pos + 1, self._expected(state)
                    value, ttype = m.group(), m.lastgroup
                else:
                    res = scanner.match(_Slice(text, n), pos)
                    if res is None:
                        return False, pos + 1, self._expected(state)
                    value, ttype = res
                column = pos + 1
                pos += len(value)
                if ttype in ignore:  # decided before the keyword callback, as BasicLexer does
                    continue
                if ttype in unless:
                    ttype = unless[ttype](value) or ttype
                if out is not None:
                    out.append((ttype, value))
            else:
                ttype, column = END, n + 1
            # ParserState.feed_token: reduce until the token shifts (or the input is accepted).
            while True:
                action = actions[state].get(ttype)
                if action is None:
                    return False, column, self._expected(state)
                if action >= 0:
                    stack.append(action)
                    state = action
                    break
                size, origin = rules[~action]
                if size:
                    del stack[-size:]
                state = actions[stack[-1]][origin]
                stack.append(state)
                if state == end and ttype == END:
                    return True, 0, frozenset()

    def _expected(self, state: int) -> frozenset[str]:
        expected = self._expected_cache.get(state)
        if expected is None:
            expected = frozenset(s for s in self._states[state] if s.isupper())
            self._expected_cache[state] = expected
        return expected


class _Slice:
    """What ``Scanner.match`` reads of a ``TextSlice``: the text and its end."""

    __slots__ = ("text", "end")

    def __init__(self, text: str, end: int) -> None:
        self.text = text
        self.end = end
