"""Lark's contextual lexer, read from Lark's own compiled objects, with each terminal's automaton.

``LarkScanner(grammar, alphabet)`` wraps, for each of the LALR parser's states, the lexer Lark's
``ContextualLexer`` built for it (``lexer_for(names)``, keyed by the state's set of action
names, as Lark keys them). Each wrapped lexer keeps Lark's scanner (the joined regular
expression, terminals in Lark's order), its ``%ignore`` types and its keyword callbacks
(``UnlessCallback``); ``match(text)`` is Lark's ``Scanner.match`` at position 0 with the text
ending where ``text`` ends, exactly what ``BasicLexer.next_token`` runs.

Beside them, each terminal's DFA over the alphabet (``TermDFA``: interegular's automaton of the
terminal's regex, restricted to the alphabet's characters and to live states, so a missing move
means no string of the terminal starts so). The DFA only ever decides *when* Lark's choice is
final, never what it is (``lexer_constraint.py``); the choice itself always comes from Lark's
scanner. The constructor refuses (``UnsupportedGrammarError``) what this reading does not
cover: another lexer or parser, callbacks other than keyword folding, global regex flags, the
``regex`` module, look-arounds, anchors and back-references (a match that depends on text past
its end), and a terminal whose DFA disagrees with Python's ``re.fullmatch`` on a short string of
the alphabet.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Callable

import interegular
from interegular.fsm import anything_else
from lark.lexer import BasicLexer, ContextualLexer, UnlessCallback

from ..errors import UnsupportedGrammarError
from .grammar import Grammar
from .longest_match import NotAnalysable, short_match

try:  # Python >= 3.11
    import re._parser as _sre_parse
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse  # type: ignore[no-redef]

#: Strings (over the alphabet) on which each terminal's DFA is checked against ``re.fullmatch``.
CHECK_STRINGS = 4000


@dataclass
class TermDFA:
    """A terminal's strings over the alphabet: ``step[q][c]`` (live states only; ``initial`` is
    None when no string of the alphabet is the terminal's), ``finals``, and ``finish[q]`` the
    fewest characters to an accepting state."""

    name: str
    initial: int | None
    finals: frozenset[int]
    step: dict[int, dict[str, int]]
    finish: dict[int, int]
    #: Python's ``re.match`` of this terminal on any text is its longest prefix in the language
    #: (``greedy_over``); otherwise only the DFA's dead ends are used.
    greedy: bool

    def run(self, text: str, q: int | None = None) -> int | None:
        """The state after ``text`` from ``q`` (the initial state by default); None if dead."""
        q = self.initial if q is None else q
        for c in text:
            if q is None:
                return None
            q = self.step[q].get(c)
        return q


@dataclass
class StateLexer:
    """One of Lark's per-state lexers."""

    scanner: object  # lark.lexer.Scanner
    order: tuple[str, ...]  # terminal names in the order the scanner tries them
    index: dict[str, int]
    ignore: frozenset[str]
    #: terminal -> Lark's keyword fold (``UnlessCallback.scanner.fullmatch``), its keyword names
    #: and the length of its longest keyword (a longer text is never a keyword).
    fold: dict[str, Callable[[str], str | None]] = field(default_factory=dict)
    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)
    keyword_len: dict[str, int] = field(default_factory=dict)

    def match(self, text: str) -> tuple[str, str] | None:
        """Lark's ``Scanner.match`` at the start of ``text``: ``(value, terminal)`` or None."""
        return self.scanner.match(_Slice(text, len(text)), 0)

    def token_type(self, name: str, value: str) -> str:
        """The token type Lark gives a match of ``name`` with text ``value`` (keyword folding)."""
        fold = self.fold.get(name)
        if fold is None or len(value) > self.keyword_len[name]:
            return name
        return fold(value) or name


class _Slice:
    """What ``Scanner.match`` reads of a ``TextSlice``: the text and its end."""

    __slots__ = ("text", "end")

    def __init__(self, text: str, end: int) -> None:
        self.text = text
        self.end = end


_REFUSED_OPS = {
    "AT": "an anchor (^, $, \\b, \\A, \\Z)",
    "ASSERT": "a look-around",
    "ASSERT_NOT": "a look-around",
    "GROUPREF": "a back-reference",
    "GROUPREF_EXISTS": "a conditional group",
    # An atomic group or possessive repeat commits to its first match, so a path that runs past
    # the text can cut off a shorter success: the dead-DFA argument does not hold.
    "ATOMIC_GROUP": "an atomic group",
    "POSSESSIVE_REPEAT": "a possessive repeat",
}


def _context_construct(pattern: str) -> str | None:
    """A construct whose match depends on text outside the match (or not regular), or None."""
    found: list[str] = []

    def walk(items) -> None:  # noqa: ANN001
        for op, av in items:
            name = str(op)
            if name in _REFUSED_OPS:
                found.append(_REFUSED_OPS[name])
            elif name == "SUBPATTERN":
                walk(av[-1])
            elif name in ("MAX_REPEAT", "MIN_REPEAT"):
                walk(av[2])
            elif name == "BRANCH":
                for branch in av[1]:
                    walk(branch)

    walk(_sre_parse.parse(pattern))
    return found[0] if found else None


def greedy_over(pattern: str, alphabet: list[str]) -> bool:
    """Whether Python's ``re.match`` of ``pattern``, on any text over ``alphabet``, is the text's
    longest prefix in the pattern's language (``longest_match.short_match`` finds no
    counterexample; a pattern it cannot analyse counts as not greedy)."""
    try:
        return short_match(pattern, alphabet) is None
    except NotAnalysable:
        return False


class LarkScanner:
    """Lark's per-state lexers of ``grammar`` and each terminal's DFA over ``alphabet``."""

    def __init__(self, grammar: Grammar, alphabet: list[str]) -> None:
        where = grammar.path
        lark = grammar.parser
        if lark.options.parser != "lalr" or lark.options.postlex is not None or lark.options.lexer_callbacks:
            raise UnsupportedGrammarError("it needs an LALR parser without a post-lexer or lexer callbacks")
        frontend = lark.parser
        lexer = getattr(frontend, "lexer", None)
        if type(lexer) is not ContextualLexer:
            raise UnsupportedGrammarError("it needs Lark's contextual lexer")
        conf = lark.lexer_conf
        if conf.g_regex_flags or conf.re_module is not re or conf.use_bytes:
            raise UnsupportedGrammarError("it needs Python's re without global flags")
        self.alphabet = alphabet
        self.dfas: dict[str, TermDFA] = {}
        for term in lark.terminals:
            self.dfas[term.name] = self._dfa(term, where)
        parse_table = frontend.parser.parser.parse_table
        self._by_names: dict[frozenset, StateLexer] = {}
        built: dict[int, StateLexer] = {}
        for state, actions in parse_table.states.items():
            lx = lexer.lexers[state]
            if type(lx) is not BasicLexer:
                raise UnsupportedGrammarError("it needs Lark's basic per-state lexers")
            wrapped = built.get(id(lx))
            if wrapped is None:
                wrapped = built[id(lx)] = self._wrap(lx, where)
            key = frozenset(str(s) for s in actions)
            if self._by_names.setdefault(key, wrapped) is not wrapped:  # pragma: no cover - Lark keys lexers so
                raise UnsupportedGrammarError("two parser states with the same actions have different lexers")

    def lexer_for(self, names: frozenset) -> StateLexer:
        """The lexer of the parser state whose action names are ``names``."""
        return self._by_names[names]

    def _wrap(self, lx: BasicLexer, where: str) -> StateLexer:
        scanner = lx.scanner  # builds lx.callback as a side effect
        order = tuple(t.name for t in scanner.terminals)
        out = StateLexer(scanner, order, {n: i for i, n in enumerate(order)}, frozenset(lx.ignore_types))
        for name, callback in lx.callback.items():
            fold = getattr(getattr(callback, "scanner", None), "fullmatch", None)
            if type(callback) is not UnlessCallback or fold is None:
                raise UnsupportedGrammarError("it needs Lark's own keyword callbacks only")
            words = callback.scanner.terminals
            out.fold[name] = fold
            out.keywords[name] = tuple(t.name for t in words)
            out.keyword_len[name] = max(len(t.pattern.value) for t in words)
        return out

    def _dfa(self, term, where: str) -> TermDFA:  # noqa: ANN001
        regexp = term.pattern.to_regexp()
        try:
            bad = _context_construct(regexp)
        except Exception:  # noqa: BLE001
            bad = "a construct this reading does not parse"
        if bad is not None:
            raise UnsupportedGrammarError(f"terminal {term.name} uses {bad}")
        try:
            fsm = interegular.parse_pattern(regexp).to_fsm()
        except Exception:  # noqa: BLE001 - a regex interegular cannot take
            raise UnsupportedGrammarError(f"terminal {term.name}'s regular expression is beyond interegular") from None
        # Moves over the alphabet only (a character interegular does not name is anything_else).
        moves: dict = {}
        for q in fsm.states:
            row = fsm.map.get(q, {})
            out = {}
            for c in self.alphabet:
                index = fsm.alphabet[c] if c in fsm.alphabet else fsm.alphabet[anything_else]
                r = row.get(index)
                if r is not None:
                    out[c] = r
            moves[q] = out
        # Live states: reachable from the initial one and able to reach an accepting one.
        finish: dict = {q: 0 for q in fsm.finals}
        frontier = list(finish)
        back: dict = {}
        for q, row in moves.items():
            for r in row.values():
                back.setdefault(r, []).append(q)
        while frontier:
            nxt = []
            for r in frontier:
                for q in back.get(r, ()):
                    if q not in finish:
                        finish[q] = finish[r] + 1
                        nxt.append(q)
            frontier = nxt
        step = {q: {c: r for c, r in row.items() if r in finish} for q, row in moves.items() if q in finish}
        initial = fsm.initial if fsm.initial in finish else None
        dfa = TermDFA(
            term.name, initial, frozenset(q for q in fsm.finals if q in finish), step, finish,
            greedy=greedy_over(regexp, self.alphabet),
        )
        self._check(dfa, re.compile(regexp), where)
        return dfa

    def _check(self, dfa: TermDFA, compiled: re.Pattern, where: str) -> None:
        """The DFA accepts exactly what ``re.fullmatch`` does, on the shortest strings of the
        alphabet (a guard against a regex interegular reads differently from Python)."""
        count = 0
        for n in itertools.count(1):
            for chars in itertools.product(self.alphabet, repeat=n):
                s = "".join(chars)
                q = dfa.run(s)
                if (q is not None and q in dfa.finals) != (compiled.fullmatch(s) is not None):
                    raise UnsupportedGrammarError(
                        f"terminal {dfa.name}'s automaton and Python's re disagree on {s!r}"
                    )
                count += 1
                if count >= CHECK_STRINGS:
                    return
            if not self.alphabet:
                return
