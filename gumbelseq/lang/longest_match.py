"""Does Python's ``re`` take the longest match, and is a regex unambiguous? Decided, with witnesses.

Python's regex engine backtracks: at a position it returns the *first* match in priority order
(an earlier alternative before a later one; for a greedy repeat one more round before one fewer,
for a lazy one the reverse), not the longest. Lark's lexer takes what ``re`` returns, so a
terminal whose regex can stop short (``/(a|ab)c?/`` on ``ab``, ``/b+?/`` on ``bb``) reads text
differently from what its language suggests, while ``common.NUMBER``'s alternation of a float
and an integer does take every number whole. Two questions, each decided over all texts (and,
for the Earley engine, ``dfa(pattern, alphabet)``, the pattern's DFA over an alphabet):

- ``short_match(pattern)``: a shortest string of the pattern's language that ``re.match`` does
  not take whole, or None when there is none. None means: on any text, ``re.match`` returns the
  longest prefix of the text that is in the language (if a longer prefix were in it, reading
  that prefix would be a witness).
- ``ambiguous_match(pattern)``: a shortest string that the pattern matches in two ways (two
  parses: ``a?a?`` on ``a``), or None. Counting and sampling a terminal by its parses
  (``regex.RegexLanguage``) then count and draw each string once.

How. The pattern becomes an NFA whose empty moves are ordered by priority. A *Pike VM* runs it
with its threads in priority order; a thread that matches drops every lower-priority thread, and
a later match (from a higher-priority thread) replaces an earlier one. That is leftmost-first
matching, which gives backtracking's result for patterns without back-references (RE2 matches
Perl's semantics this way). Its configurations (the ordered threads, beside the plain set of
NFA states, which says whether the text read so far is in the language) are finitely many, so
all texts are covered by a breadth-first walk over them: a configuration whose text is in the
language but where no thread matched is a witness for ``short_match``, and BFS finds a shortest.
Ambiguity is the classic product walk: two runs over the same text that have parted and both
reach the end.

Characters are handled as classes: the characters that every set in the pattern treats alike
form one class, and one character (the smallest) stands for it. ``alphabet`` restricts texts to
given characters (a lexer that only ever sees those).

Outside (``NotAnalysable``, a one-line reason): look-arounds, anchors, back-references,
possessive repeats and atomic groups, inline flags, Unicode categories such as ``\\d`` without an
alphabet, a repeat whose body can match the empty string (Python's rules for empty rounds are
its own), and patterns past ``MAX_STATES`` NFA states or ``MAX_CONFIGS`` configurations.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import deque
from typing import Iterable

try:  # Python >= 3.11
    import re._parser as _sre_parse
    from re._compiler import compile as _compile_parsed
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse  # type: ignore[no-redef]
    from sre_compile import compile as _compile_parsed  # type: ignore[no-redef]

__all__ = ["NotAnalysable", "short_match", "what_re_takes", "ambiguous_match", "dfa", "MAX_STATES", "MAX_CONFIGS"]

#: NFA states (after ``{m,n}`` is written out) and Pike VM configurations past which a pattern
#: is not analysed. ``common.NUMBER`` needs 16 states and 12 configurations.
MAX_STATES = 4000
MAX_CONFIGS = 50_000

_MAXREPEAT = getattr(_sre_parse, "MAXREPEAT", None)
_UNICODE_MAX = 0x10FFFF


class NotAnalysable(Exception):
    """The pattern uses something this analysis does not model (the message says what)."""


# An NFA as parallel lists: kind[s] is "c" (consume one character of sets[s], go to nxt[s][0]),
# "e" (empty moves to nxt[s], highest priority first) or "m" (match).
class _Nfa:
    def __init__(self, alphabet: frozenset[str] | None) -> None:
        self.kind: list[str] = []
        self.sets: list[object] = []  # ranges [(lo, hi), ...] or, with an alphabet, a frozenset
        self.nxt: list[list[int]] = []
        self.alphabet = alphabet

    def add(self, kind: str, chars: object = None, nxt: list[int] | None = None) -> int:
        if len(self.kind) >= MAX_STATES:
            raise NotAnalysable(f"more than {MAX_STATES} states once its repeats are written out")
        self.kind.append(kind)
        self.sets.append(chars)
        self.nxt.append(nxt or [])
        return len(self.kind) - 1

    # -- building (right to left: each piece is built knowing where it goes on) ----------------

    def seq(self, items, then: int) -> int:  # noqa: ANN001 - sre_parse items
        for op, av in reversed(list(items)):
            then = self.item(str(op), av, then)
        return then

    def item(self, op: str, av, then: int) -> int:  # noqa: ANN001
        if op in ("LITERAL", "NOT_LITERAL", "IN", "ANY"):
            return self.add("c", self.charset(op, av), [then])
        if op == "SUBPATTERN":
            if av[1] or av[2]:
                raise NotAnalysable("inline flags")
            return self.seq(av[-1], then)
        if op == "BRANCH":
            return self.add("e", None, [self.seq(b, then) for b in av[1]])
        if op in ("MAX_REPEAT", "MIN_REPEAT"):
            lo, hi, body = av
            if _nullable(body):
                raise NotAnalysable("a repeat of something that can match the empty string")
            greedy = op == "MAX_REPEAT"
            if hi == _MAXREPEAT:
                loop = self.add("e")
                first = self.seq(body, loop)
                self.nxt[loop] = [first, then] if greedy else [then, first]
                then = loop
            else:
                end = then  # x{0,2} is (x(x)?)?: skipping a round skips the rest, one path each
                for _ in range(hi - lo):
                    first = self.seq(body, then)
                    then = self.add("e", None, [first, end] if greedy else [end, first])
            for _ in range(lo):
                then = self.seq(body, then)
            return then
        known = {
            "AT": "an anchor",
            "ASSERT": "a look-ahead or look-behind",
            "ASSERT_NOT": "a look-ahead or look-behind",
            "GROUPREF": "a back-reference",
            "GROUPREF_EXISTS": "a conditional group",
            "POSSESSIVE_REPEAT": "a possessive repeat",
            "ATOMIC_GROUP": "an atomic group",
        }
        raise NotAnalysable(known.get(op, f"the construct {op}"))

    def charset(self, op: str, av) -> object:  # noqa: ANN001
        if self.alphabet is not None:
            # Over a given alphabet any class can be read by asking re about each character.
            item = _compile_parsed(_sre_parse.SubPattern(_sre_parse.State(), [(getattr(_sre_parse, op), av)]), 0)
            return frozenset(c for c in self.alphabet if item.fullmatch(c))
        if op == "LITERAL":
            return [(av, av)]
        if op == "NOT_LITERAL":
            return _complement([(av, av)])
        if op == "ANY":
            return _complement([(10, 10)])  # no DOTALL (inline flags are refused)
        ranges, negate = [], False
        for kind, arg in av:
            kind = str(kind)
            if kind == "LITERAL":
                ranges.append((arg, arg))
            elif kind == "RANGE":
                ranges.append((arg[0], arg[1]))
            elif kind == "NEGATE":
                negate = True
            else:
                raise NotAnalysable("a character category such as \\d (give an alphabet)")
        ranges = _union(ranges)
        return _complement(ranges) if negate else ranges

    # -- running ------------------------------------------------------------------------------

    def ordered(self, starts: Iterable[int]) -> tuple[tuple[int, ...], bool]:
        """The Pike VM's threads after empty moves from ``starts`` (in priority order): the
        consuming states in priority order, cut after the first match, and whether one matched."""
        out: list[int] = []
        seen: set[int] = set()
        kind, nxt = self.kind, self.nxt
        for s in starts:
            stack = [s]
            while stack:
                q = stack.pop()
                if q in seen:
                    continue
                seen.add(q)
                k = kind[q]
                if k == "c":
                    out.append(q)
                elif k == "m":
                    return tuple(out), True
                else:
                    stack.extend(reversed(nxt[q]))
        return tuple(out), False

    def closure(self, starts: Iterable[int]) -> tuple[frozenset[int], bool]:
        """Every consuming state reachable by empty moves, and whether the match state is."""
        seen: set[int] = set()
        stack = list(starts)
        out: set[int] = set()
        matched = False
        while stack:
            q = stack.pop()
            if q in seen:
                continue
            seen.add(q)
            k = self.kind[q]
            if k == "c":
                out.add(q)
            elif k == "m":
                matched = True
            else:
                stack.extend(self.nxt[q])
        return frozenset(out), matched

    def classes(self, states: Iterable[int]) -> list[tuple[str, frozenset[int]]]:
        """One representative character per class of characters that the consuming states
        ``states`` treat alike, with the states that take it (classes no state takes left out)."""
        states = sorted(set(states))
        if self.alphabet is not None:
            by_sig: dict[frozenset[int], str] = {}
            for c in sorted(self.alphabet):
                sig = frozenset(q for q in states if c in self.sets[q])
                if sig and sig not in by_sig:
                    by_sig[sig] = c
            return [(c, sig) for sig, c in by_sig.items()]
        cuts = {0}
        for q in states:
            for lo, hi in self.sets[q]:
                cuts.add(lo)
                cuts.add(hi + 1)
        out = []
        seen: set[frozenset[int]] = set()
        for lo in sorted(c for c in cuts if c <= _UNICODE_MAX):
            sig = frozenset(q for q in states if _in_ranges(self.sets[q], lo))
            if sig and sig not in seen:
                seen.add(sig)
                out.append((chr(lo), sig))
        return out


def _build(pattern: str, alphabet: Iterable[str] | None) -> tuple[_Nfa, int]:
    try:
        parsed = _sre_parse.parse(pattern)
    except re.error as e:
        raise NotAnalysable(f"not a regular expression Python reads: {e}") from None
    if parsed.state.flags & ~re.UNICODE:
        raise NotAnalysable("inline flags")
    nfa = _Nfa(frozenset(alphabet) if alphabet is not None else None)
    match = nfa.add("m")
    return nfa, nfa.seq(parsed, match)


def short_match(pattern: str, alphabet: Iterable[str] | None = None) -> str | None:
    """A shortest non-empty string of ``pattern``'s language (over ``alphabet``, when given)
    that ``re.match(pattern, s)`` does not take whole; None when ``re.match`` takes the longest
    prefix in the language on every text. ``NotAnalysable`` for patterns outside (see above)."""
    nfa, start = _build(pattern, alphabet)
    first = (nfa.ordered([start])[0], nfa.closure([start])[0])
    parent: dict[tuple, tuple[tuple, str] | None] = {first: None}
    queue = deque([first])
    while queue:
        config = queue.popleft()
        threads, plain = config
        for c, takes in nfa.classes(plain):
            moved = [nfa.nxt[q][0] for q in threads if q in takes]
            threads2, matched = nfa.ordered(moved)
            plain2, accepts = nfa.closure(nfa.nxt[q][0] for q in plain if q in takes)
            nxt = (threads2, plain2)
            if accepts and not matched:
                return _text(parent, config) + c
            if nxt not in parent:
                if len(parent) >= MAX_CONFIGS:
                    raise NotAnalysable(f"more than {MAX_CONFIGS} matcher configurations")
                parent[nxt] = (config, c)
                queue.append(nxt)
    return None


def what_re_takes(pattern: str, short: str) -> str:
    """``short_match``'s witness in words: "it takes 'a' of 'ab'" (what ``re.match`` returns)."""
    took = re.match(pattern, short)
    return f"it takes {took.group() if took is not None else ''!r} of {short!r}"


def dfa(pattern: str, alphabet: Iterable[str]) -> tuple[list[dict[str, int]], frozenset[int]]:
    """The pattern's DFA over ``alphabet`` by subset construction: ``step[q]`` maps a character
    to the next state (missing: no string continues so; dead states are not pruned), state 0 is
    the start; and the accepting states. Refuses what ``short_match`` refuses."""
    chars = sorted(set(alphabet))
    nfa, start = _build(pattern, chars)
    first = nfa.closure([start])
    ids = {first: 0}
    subsets = [first]
    step: list[dict[str, int]] = []
    i = 0
    while i < len(subsets):
        row: dict[str, int] = {}
        states = subsets[i][0]
        for c in chars:
            key = nfa.closure(nfa.nxt[q][0] for q in states if c in nfa.sets[q])
            if not key[0] and not key[1]:
                continue
            if key not in ids:
                if len(ids) >= MAX_CONFIGS:
                    raise NotAnalysable(f"more than {MAX_CONFIGS} automaton states")
                ids[key] = len(subsets)
                subsets.append(key)
            row[c] = ids[key]
        step.append(row)
        i += 1
    return step, frozenset(q for q, (_, accepts) in enumerate(subsets) if accepts)


def ambiguous_match(pattern: str, alphabet: Iterable[str] | None = None) -> str | None:
    """A shortest string that ``pattern`` matches by two different parses (over ``alphabet``,
    when given), or None when every string of its language has one parse."""
    nfa, start = _build(pattern, alphabet)

    def moves(q: int) -> dict[int, int]:
        """The consuming states (and the match state) reachable from ``q`` by empty moves, each
        with its number of paths (the empty-move graph has no cycles: nullable repeat bodies
        are refused)."""
        paths: dict[int, int] = {}

        def walk(s: int) -> None:
            if nfa.kind[s] == "e":
                for t in nfa.nxt[s]:
                    walk(t)
            else:
                paths[s] = paths.get(s, 0) + 1

        walk(q)
        return paths

    cache: dict[int, dict[int, int]] = {}

    def after(q: int) -> dict[int, int]:
        got = cache.get(q)
        if got is None:
            got = cache[q] = moves(q)
        return got

    # A pair (p, q) of consuming states (or the match state) reached on the same text, and
    # whether the two runs have parted. Unparted pairs are (p, p). Runs part where they go to
    # different states, or to one state along two different empty paths.
    match = nfa.kind.index("m")

    def pairs(a: dict[int, int], b: dict[int, int], parted: bool) -> Iterable[tuple]:
        for x, nx in a.items():
            for y in b:
                yield (x, y), parted or x != y or nx > 1

    first = list(pairs(after(start), after(start), False))
    parent: dict[tuple, tuple | None] = {x: None for x in first}
    queue = deque(first)
    while queue:
        node = queue.popleft()
        (p, q), parted = node
        if p == q == match and parted:
            return _text(parent, node)
        if p == match or q == match:
            continue
        for c, takes in nfa.classes({p, q}):
            if p not in takes or q not in takes:
                continue
            for nxt in pairs(after(nfa.nxt[p][0]), after(nfa.nxt[q][0]), parted):
                if nxt not in parent:
                    if len(parent) >= MAX_CONFIGS:
                        raise NotAnalysable(f"more than {MAX_CONFIGS} pairs of states")
                    parent[nxt] = (node, c)
                    queue.append(nxt)
    return None


def _text(parent: dict, node: tuple) -> str:
    out = []
    while parent[node] is not None:
        node, c = parent[node]
        out.append(c)
    return "".join(reversed(out))


def _nullable(items) -> bool:  # noqa: ANN001
    for op, av in items:
        op = str(op)
        if op in ("LITERAL", "NOT_LITERAL", "IN", "ANY"):
            return False
        if op == "SUBPATTERN":
            if not _nullable(av[-1]):
                return False
        elif op == "BRANCH":
            if not any(_nullable(b) for b in av[1]):
                return False
        elif op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            if av[0] > 0 and not _nullable(av[2]):
                return False
        # anchors and look-arounds match empty: they keep the sequence nullable
    return True


def _union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, at = [], 0
    for lo, hi in _union(ranges):
        if lo > at:
            out.append((at, lo - 1))
        at = hi + 1
    if at <= _UNICODE_MAX:
        out.append((at, _UNICODE_MAX))
    return out


def _in_ranges(ranges: list[tuple[int, int]], c: int) -> bool:
    i = bisect_right(ranges, (c, _UNICODE_MAX + 1)) - 1
    return i >= 0 and ranges[i][0] <= c <= ranges[i][1]
