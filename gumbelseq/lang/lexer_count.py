"""Exact string counts of Lark's language where the lexer interacts, by counting paths of the
lexer-following masks (``lexer_constraint.py``).

``Language`` counts derivations, which are Lark's strings only when ``exactness.py`` proves it.
For the other strict-LALR grammars (keywords that are also names, colliding or merging
terminals, priorities, ``%ignore``d text that touches tokens) Lark's language up to a length is
still a finite set that ``LexerConstraint`` walks exactly: from its start state, the allowed
characters of each state are exactly those that continue the prefix to a string Lark accepts
within the length, and ``can_end`` is exactly "Lark accepts this prefix". So the number of
strings of length ``n`` is the number of paths of ``n`` characters from the start to a state that
can end; states are keyed by the characters left, so the walk is a forward sum over a DAG, one
pass per length.

That needs every character Lark's strings can hold, a finite set: the union of the characters
of each terminal's automaton (interegular's), rule and ``%ignore``d terminals alike. A terminal
that can hold a character interegular does not name (``[^"]``, ``.``), or whose Python match
reaches past ASCII (``\\d``, ``\\w``, ``\\s``, case-insensitive letters), makes the set
infinite or unknown: then there is no count (``LexerCount.reason`` says why). Budgets bound the
alphabet and the automaton's size, so a count is never slow: beyond them, the reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import interegular
from interegular.fsm import anything_else

from ..errors import UnsupportedGrammarError
from .exactness import _case_folding, _unicode_construct
from .grammar import Grammar
from .lexer_constraint import LexerConstraint

#: Most distinct characters a counted language may use.
MAX_ALPHABET = 64

#: Most lexer configurations the count may build (each a few microseconds to a few tens).
MAX_CONFIGS = 50_000


@dataclass(frozen=True)
class LexerCount:
    """Strings of Lark's language by length (``counts[n]``, ``n <= max_len``), or None with
    ``reason``."""

    counts: list[int] | None
    reason: str | None
    alphabet: str = ""
    states: int = 0


def language_alphabet(grammar: Grammar) -> str:
    """Every character a string of ``grammar``'s language can hold (sorted), from each terminal's
    automaton; raises ``UnsupportedGrammarError`` with the reason when that set is not finite
    and known."""
    chars: set[str] = set()
    for term in grammar.parser.terminals:
        pattern, flags = term.pattern.to_regexp(), term.pattern.flags
        bad = _unicode_construct(pattern, flags)
        if bad is not None:
            raise UnsupportedGrammarError(f"terminal {term.name} uses {bad}, which Python's re matches beyond ASCII")
        try:
            fsm = interegular.parse_pattern(pattern).to_fsm()
        except Exception:  # noqa: BLE001 - a regex interegular cannot take
            raise UnsupportedGrammarError(f"terminal {term.name}'s regular expression is beyond interegular") from None
        named = {c: i for c, i in fsm.alphabet.items() if c is not anything_else}
        other = fsm.alphabet[anything_else] if anything_else in fsm.alphabet else None
        live = _live_states(fsm)
        used: set[str] = set()
        for q in live:
            row = fsm.map.get(q, {})
            if other is not None and row.get(other) in live:
                raise UnsupportedGrammarError(f"terminal {term.name} can hold any character outside a list")
            used.update(c for c, i in named.items() if row.get(i) in live)
        folding = _case_folding(pattern, flags, used)
        if folding is not None:
            raise UnsupportedGrammarError(f"terminal {term.name} {folding}")
        chars |= used
    if len(chars) > MAX_ALPHABET:
        raise UnsupportedGrammarError(f"its strings can hold {len(chars)} distinct characters (counted up to {MAX_ALPHABET})")
    return "".join(sorted(chars))


def _live_states(fsm) -> set:  # noqa: ANN001 - interegular.FSM
    """States reachable from the initial one that can still reach an accepting one."""
    reach = {fsm.initial}
    frontier = [fsm.initial]
    while frontier:
        q = frontier.pop()
        for r in fsm.map.get(q, {}).values():
            if r not in reach:
                reach.add(r)
                frontier.append(r)
    back: dict = {}
    for q in reach:
        for r in fsm.map.get(q, {}).values():
            back.setdefault(r, set()).add(q)
    co = {q for q in fsm.finals if q in reach}
    frontier = list(co)
    while frontier:
        r = frontier.pop()
        for q in back.get(r, ()):
            if q not in co:
                co.add(q)
                frontier.append(q)
    return co


def lexer_count(
    grammar: Grammar, max_len: int, alphabet: str | None = None, max_configs: int = MAX_CONFIGS
) -> LexerCount:
    """Lark's strings of ``grammar`` by length up to ``max_len`` (over ``alphabet``, by default
    every character the language can hold), counted on the lexer-following masks."""
    if grammar.algorithm != "lalr":
        return LexerCount(None, "counting on Lark's lexer needs an LALR grammar (this one is parsed with Earley)")
    try:
        chars = language_alphabet(grammar) if alphabet is None else "".join(sorted(set(alphabet)))
        con = LexerConstraint(grammar, max_len, chars, "counting", max_configs=max_configs)
    except UnsupportedGrammarError as e:
        text = str(e)
        if "no valid string of length" in text:
            return LexerCount([0] * (max_len + 1), None, chars)
        return LexerCount(None, _why_not(text, grammar.path, max_configs, max_len))
    except (RecursionError, MemoryError) as e:
        return LexerCount(None, _exhausted(e))
    counts = [0] * (max_len + 1)
    frontier = {con.start: 1}
    try:
        for n in range(max_len + 1):
            ahead: dict[int, int] = {}
            for state, ways in frontier.items():
                if con.can_end(state):
                    counts[n] += ways
                for c in con.allowed(state):
                    nxt = con.next(state, c)
                    ahead[nxt] = ahead.get(nxt, 0) + ways
            frontier = ahead
    except UnsupportedGrammarError as e:
        return LexerCount(None, _why_not(str(e), grammar.path, max_configs, max_len), chars)
    except (RecursionError, MemoryError) as e:
        return LexerCount(None, _exhausted(e), chars)
    return LexerCount(counts, None, chars, con.states)


def _exhausted(e: BaseException) -> str:
    # A count is an extra of a report: running out of stack or memory ends the count, not the report.
    return f"counting on Lark's lexer ran out of {'stack' if isinstance(e, RecursionError) else 'memory'}"


def _why_not(message: str, path: str, max_configs: int, max_len: int) -> str:
    """The reason in a refusal of ``language_alphabet`` or ``LexerConstraint``, said for counting
    (without the grammar's path and what the engine was built for)."""
    if "lexer configurations" in message:
        return f"counting on Lark's lexer needs more than {max_configs:,} lexer configurations at length {max_len}"
    reason = message.removeprefix(f"{path}: ").rsplit("following Lark's lexer instead does not either: ", 1)[-1]
    return "counting on Lark's lexer: " + reason
