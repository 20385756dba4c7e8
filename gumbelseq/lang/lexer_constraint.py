"""Exact masks for LALR grammars whose lexer interacts: follow Lark's own lexer, token by token.

``Constraint`` (``constraint.py``) serves the grammars whose derivations are exactly Lark's
strings. For the other strict-LALR grammars (keywords that are also names, terminals that merge
when adjacent, priorities, ``%ignore`` that touches tokens, lazy or first-alternative regexes)
``LexerConstraint(grammar, max_len, alphabet, reason)`` gives the same four answers (``start``,
``allowed``, ``can_end``, ``next``; see ``masks.py``) by running Lark's lexer itself.

A prefix is one *configuration* ``(stack, pending)``: Lark's lexer is deterministic, so the
tokens it has already *decided* (no continuation of the text can change them) give one LALR
stack, and ``pending`` is the text after the last decided token. A token at the start of the
pending text ``u`` is decided when, in the lexer of the stack's parser state (Lark's
``ContextualLexer`` lexer for it, ``lark_scanner.py``), every terminal that the scanner tries
before the one that matches ``u`` is *dead* (its DFA over the alphabet has no string starting
with ``u``, and it does not match ``u``), and the matching terminal is dead too. Why that is
final: a regular expression without look-around, anchors or back-references that has no
string starting with ``u`` can only succeed on ``u + w`` by a path that stays inside ``u``, and
those paths are the same, in the same order, whatever ``w`` is; so its ``re.match`` on ``u + w``
is its match on ``u``, for every ``w`` (the empty one, the end of the text, included). The
scanner's joined regex tries the terminals in order and returns the first that matches, so its
answer on ``u + w`` is its answer on ``u``. The token, its type after Lark's keyword folding,
and whether it is ``%ignore``d all come from Lark's own scanner and callbacks on ``u``.

A *greedy* terminal (``lark_scanner.greedy_over``: Python's match is the longest prefix in its
language) that matches ``u`` while every terminal before it is dead wins whatever follows; only
its length is open. Such a pending token is kept as a summary ``(terminal, DFA state, text after
its last accepting point, token type at that point, text so far while a keyword could still be
it)`` instead of its text, so long names share states. When the DFA dies the token ends at its
last accepting point and the rest is lexed again from the new stack. Other pending text stays
text (always correct; only the number of states grows).

A configuration may end the string when Lark, given the pending text as the rest of the input
(scanner matches up to the end, keyword folding, ``%ignore``), feeds tokens that leave the
parser accepting ``$END``. A character is allowed when the configuration after it can still be
finished within the remaining length: a search over continuations, memoised per configuration
(the smallest length known to suffice and the largest known not to), pruned by a lower bound
(``Constraint``'s fewest characters that finish the parse from a stack, which ignores the
lexer: the lexer only removes strings, so it never overestimates). The search is exact; when it
needs more than ``max_configs`` configurations the grammar is refused at that length with a
one-line ``UnsupportedGrammarError`` (an honest refusal beats a wrong mask).

The parse table is Lark's, rebuilt by ``Constraint``'s loader (with kernel items, for the lower
bound); a state's lexer is Lark's lexer for the state with the same action names, which is how
Lark keys its per-state lexers.
"""

from __future__ import annotations

import sys
from typing import Iterable

from ..errors import UnsupportedGrammarError
from .constraint import _ACCEPT, END, Constraint
from .grammar import Grammar
from .lark_scanner import LarkScanner, StateLexer

_INF = float("inf")

#: Default bound on distinct configurations the completion search may build.
MAX_CONFIGS = 1_500_000


class LexerConstraint:
    """Next-character masks of ``grammar`` that follow Lark's lexer (prefixes of at most
    ``max_len`` characters of ``alphabet``)."""

    # The parse-table pieces are Constraint's own (same table, same shortest completions).
    _load_table = Constraint._load_table
    _shortest_derivations = Constraint._shortest_derivations
    _feed = Constraint._feed
    _complete_cost = Constraint._complete_cost

    def __init__(
        self, grammar: Grammar, max_len: int, alphabet: Iterable[str], reason: str, max_configs: int = MAX_CONFIGS
    ) -> None:
        self.grammar = grammar
        self.max_len = max_len
        self.reason = reason
        self.alphabet = sorted(set(alphabet))
        self.max_configs = max_configs
        if grammar.algorithm != "lalr" or grammar._fast is None:
            raise UnsupportedGrammarError(f"{grammar.path}: constrained sampling does not support this grammar: {reason}")
        try:
            self.scanner = LarkScanner(grammar, self.alphabet)
        except UnsupportedGrammarError as e:
            raise UnsupportedGrammarError(
                f"{grammar.path}: constrained sampling does not support this grammar: {reason};"
                f" following Lark's lexer instead does not either: {e}"
            ) from None
        self._load_table(grammar)
        self._names = {s: frozenset(acts) for s, acts in self._actions.items()}
        dfas = self.scanner.dfas
        # Fewest characters of each terminal over the alphabet (inf if none), for the bound.
        self._min_term = {
            n: (d.finish[d.initial] if d.initial is not None else _INF) for n, d in dfas.items()
        }
        self._min_sym = self._shortest_derivations(grammar)
        self._mincomp: dict[tuple, float] = {}
        self._feed_cache: dict = {}
        self._lexers: dict[int, StateLexer] = {}
        self._step_cache: dict = {}
        self._known: dict = {}  # configuration -> [largest length known too short, smallest known enough]
        self._ends_cache: dict = {}
        self._ids: dict = {}
        self._keys: list = []
        self._masks: list = []
        self._next: list = []
        if sys.getrecursionlimit() < 2 * max_len + 1000:  # the search recurses once per character
            sys.setrecursionlimit(2 * max_len + 1000)
        start = ((self._start_state,), "")
        if not self._feasible(start, max_len):
            raise UnsupportedGrammarError(
                f"{grammar.path}: no valid string of length <= {max_len} can be written with the"
                f" characters {''.join(self.alphabet)!r}"
            )
        self.start = self._state(start, max_len)
        self.allowed(self.start)

    # -- the lexer -----------------------------------------------------------------------

    def _lexer(self, stack: tuple) -> StateLexer:
        top = stack[-1]
        lx = self._lexers.get(top)
        if lx is None:
            lx = self._lexers[top] = self.scanner.lexer_for(self._names[top])
        return lx

    def _emit(self, stack: tuple, lx: StateLexer, name: str, ttype: str) -> tuple | None:
        """The stack after Lark's lexer hands over a token matched as ``name`` with type
        ``ttype`` (after keyword folding); an ignored match is dropped (decided on ``name``,
        before the fold, as ``BasicLexer.next_token`` does). None if the parser refuses it."""
        if name in lx.ignore:
            return stack
        after = self._feed(stack, ttype)
        return None if after is None or after is _ACCEPT else after

    def _normal(self, stack: tuple, u: str):
        """The configuration of text ``u`` after the decided tokens of ``stack``; None if no
        continuation can be lexed and parsed."""
        dfas = self.scanner.dfas
        while u:
            lx = self._lexer(stack)
            res = lx.match(u)
            first = lx.index[res[1]] if res is not None else len(lx.order)
            live = None
            for j in range(min(first + 1, len(lx.order))):
                name = lx.order[j]
                if dfas[name].run(u) is not None:
                    live = j
                    break
            if live is None:  # the match (if any) is final
                if res is None:
                    return None
                value, name = res
                stack = self._emit(stack, lx, name, lx.token_type(name, value))
                if stack is None:
                    return None
                u = u[len(value) :]
                continue
            name = lx.order[live]
            d = dfas[name]
            if not d.greedy:
                return (stack, u)
            if live == first:  # it matches: it wins, only its length is open
                value = res[0]
                ttype, tail = lx.token_type(name, value), u[len(value) :]
            elif res is None and not any(dfas[n].run(u) is not None for n in lx.order[live + 1 :]):
                ttype, tail = None, ""  # the only terminal still possible, not matched yet
            else:
                return (stack, u)
            kw = u if name in lx.fold and len(u) <= lx.keyword_len[name] else None
            return (stack, (name, d.run(u), tail, ttype, kw))
        return (stack, "")

    def _step(self, config, c: str):
        key = (config, c)
        hit = self._step_cache.get(key, False)
        if hit is not False:
            return hit
        stack, pend = config
        if isinstance(pend, str):
            out = self._normal(stack, pend + c)
        else:
            name, q, tail, ttype, kw = pend
            d = self.scanner.dfas[name]
            r = d.step[q].get(c)
            lx = self._lexer(stack)
            if r is None:  # the token ends at its last accepting point
                if ttype is None:  # it never matched, and nothing else can: a lexer error
                    return self._cache_step(key, None)
                after = self._emit(stack, lx, name, ttype)
                out = None if after is None else self._normal(after, tail + c)
            else:
                kw = kw + c if kw is not None and len(kw) < lx.keyword_len[name] else None
                if r in d.finals:
                    text_type = lx.token_type(name, kw) if kw is not None else name
                    out = (stack, (name, r, "", text_type, kw))
                else:
                    out = (stack, (name, r, "" if ttype is None else tail + c, ttype, kw))
        return self._cache_step(key, out)

    def _cache_step(self, key, out):
        if len(self._step_cache) < 4_000_000:
            self._step_cache[key] = out
        return out

    def _end_stack(self, stack: tuple, u: str) -> tuple | None:
        """Lark's lexer on ``u`` as the rest of the input: the stack after its tokens, or None."""
        while u:
            lx = self._lexer(stack)
            res = lx.match(u)
            if res is None:
                return None
            value, name = res
            stack = self._emit(stack, lx, name, lx.token_type(name, value))
            if stack is None:
                return None
            u = u[len(value) :]
        return stack

    def _ends(self, config) -> bool:
        hit = self._ends_cache.get(config)
        if hit is not None:
            return hit
        stack, pend = config
        if isinstance(pend, str):
            after = self._end_stack(stack, pend)
        else:
            name, q, tail, ttype, kw = pend
            after = None if ttype is None else self._emit(stack, self._lexer(stack), name, ttype)
            if after is not None:
                after = self._end_stack(after, tail)
        out = after is not None and self._feed(after, END) is _ACCEPT
        self._ends_cache[config] = out
        return out

    # -- completion --------------------------------------------------------------------------

    def _bound(self, config) -> float:
        """Fewest more characters that could finish ``config`` (a lower bound)."""
        stack, pend = config
        if isinstance(pend, str):
            return max(0, self._complete_cost(stack) - len(pend))
        name, q, tail, ttype, kw = pend
        lx = self._lexer(stack)
        best = _INF
        after = None if ttype is None else self._emit(stack, lx, name, ttype)  # the token ends at its last accepting point
        if after is not None:
            best = max(0, self._complete_cost(after) - len(tail))
        types = (name,) + (lx.keywords.get(name, ()) if kw is not None else ())
        ext = self.scanner.dfas[name].finish[q]
        for t in types:  # or it goes on
            after = self._emit(stack, lx, name, t)
            if after is not None:
                best = min(best, ext + self._complete_cost(after))
        return best

    def _feasible(self, config, remaining: int) -> bool:
        """Whether some continuation of at most ``remaining`` characters is accepted."""
        known = self._known.get(config)
        if known is None:
            if len(self._known) >= self.max_configs:
                raise UnsupportedGrammarError(
                    f"{self.grammar.path}: constrained sampling does not support this grammar: {self.reason};"
                    f" following Lark's lexer instead needs more than {self.max_configs:,} lexer"
                    f" configurations at max_len {self.max_len} (too large for exact masks)"
                )
            known = self._known[config] = [-1, _INF]
        if remaining >= known[1]:
            return True
        if remaining <= known[0]:
            return False
        ok = False
        if self._ends(config):
            ok = True
        elif remaining > 0 and self._bound(config) <= remaining:
            for c in self.alphabet:
                nxt = self._step(config, c)
                if nxt is not None and self._feasible(nxt, remaining - 1):
                    ok = True
                    break
        if ok:
            known[1] = min(known[1], remaining)
        else:
            known[0] = max(known[0], remaining)
        return ok

    # -- states ------------------------------------------------------------------------------

    def _state(self, config, remaining: int) -> int:
        key = (config, remaining)
        sid = self._ids.get(key)
        if sid is None:
            sid = len(self._keys)
            self._ids[key] = sid
            self._keys.append(key)
            self._masks.append(None)
            self._next.append({})
        return sid

    def _expand(self, sid: int) -> None:
        config, remaining = self._keys[sid]
        allowed = set()
        if remaining > 0:
            for c in self.alphabet:
                nxt = self._step(config, c)
                if nxt is not None and self._feasible(nxt, remaining - 1):
                    allowed.add(c)
                    self._next[sid][c] = self._state(nxt, remaining - 1)
        self._masks[sid] = frozenset(allowed)

    def allowed(self, state: int) -> frozenset[str]:
        """Characters that may come next in ``state``."""
        if self._masks[state] is None:
            self._expand(state)
        return self._masks[state]

    def can_end(self, state: int) -> bool:
        """Whether the prefix of ``state`` is a string Lark accepts."""
        return self._ends(self._keys[state][0])

    def next(self, state: int, char: str) -> int:
        """The state after ``char``; ``char`` must be allowed in ``state``."""
        if self._masks[state] is None:
            self._expand(state)
        try:
            return self._next[state][char]
        except KeyError:
            raise ValueError(f"{char!r} is not allowed here") from None

    # Walking a prefix needs only start, allowed and next: Constraint's own walk.
    state_of = Constraint.state_of

    @property
    def states(self) -> int:
        """States built so far."""
        return len(self._keys)

    def table(self, max_states: int = 200_000) -> bool:
        """Build every state reachable from ``start`` (breadth first); False past ``max_states``."""
        seen = {self.start}
        frontier = [self.start]
        while frontier:
            nxt = []
            for sid in frontier:
                self.allowed(sid)
                for target in self._next[sid].values():
                    if target not in seen:
                        seen.add(target)
                        nxt.append(target)
                        if len(seen) > max_states:
                            return False
            frontier = nxt
        return True
