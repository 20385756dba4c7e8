"""Next-character masks for grammars Lark parses with Earley and its dynamic lexer.

``EarleyConstraint(grammar, max_len, alphabet, reason)`` answers the questions of
``masks.GrammarMasks`` (``start``, ``allowed``, ``can_end``, ``next``) for the grammars that
strict LALR refuses and ``load_grammar`` gives to Lark's Earley parser (``lexer='dynamic'``).

What Lark accepts (``lark/parsers/xearley.py``). There is no lexer pass: at a position ``i`` the
Earley parser holds the items that expect a terminal there, and for each expected terminal ``X``
it runs ``re.match`` of ``X``'s regex on the whole text at ``i``; the one match it gets (if any)
becomes a token ``text[i:m.end()]`` that advances those items. Each ``%ignore`` terminal is
matched at ``i`` the same way; a match carries every item that expects a terminal at ``i`` (and
a completed start item) to the end of the match, unchanged. Terminals do not compete with each
other (each is matched on its own), but each gets *one* end per position: Python's match.

The terminals served. On a terminal's regex Python's ``re.match`` must take the *longest* prefix
of the text in the terminal's language, on every text over the alphabet (``longest_match.py``
decides it, with character classes read over the alphabet, so ``\\d``, ``.`` and negated classes
are fine). On top, each terminal's DFA (over the alphabet, ``longest_match.dfa``) must have
*one-character lookahead*: from an accepting state, every character leads to an accepting state
or to none that can still accept. Then a token of ``X`` that has reached accepting state ``q``
at position ``e`` ends there exactly when the next character is not in ``C(q)`` (the characters
that continue it) or the text ends. String literals qualify (``C(q)`` empty: a literal is its
own only string). Anything else (flags, a regex ``re`` can cut short such as ``/a|ab/`` or
``/b+?/``, look-arounds, anchors, a DFA needing longer lookahead such as ``/[ab]*b/``) is
refused with a one-line reason.

So Lark's language here is: the strings ``r0 t1 r1 ... tk rk`` where ``t1..tk`` are a
derivation's tokens, each ``ri`` a run of ignored tokens, every token (rule or ignored) a string
of its terminal, and the character after each token (if any) outside ``C`` of the state where
the token ended. (Lark finds every such split: by induction over positions, the items expecting
the next token are at its start, and ``re.match`` there returns exactly that token since nothing
longer of its language follows. Conversely every split Lark builds is of this form.)

How. A prefix is tracked as Lark's own chart over the characters read so far: finished columns
(Earley item sets, one per position, each built once the character after it is known, since the
lookahead decides which tokens ended there), the tokens and ignored runs in flight (terminal,
start position, DFA state, the items waiting on it) and the token ends pending at the current
position with their lookahead sets. The fewest characters that complete a prefix are exact: each
lookahead set ``F`` (the characters the next one must avoid) is a small index, each terminal,
rule suffix and nonterminal gets a min-plus matrix ``F_in -> F_out`` of the fewest characters
of a consistent string (each token preceded by any run of ignored tokens), and each finished
column gets, per nonterminal waiting there, the vector of the fewest characters that finish the
whole parse after it completes (a fixpoint inside the column, left recursion included). A
character ``c`` is allowed when one of: continuing a token in flight, or starting a token or an
ignored run at the current position (with the column built for ``c``), then finishing, takes at
most the remaining length. Tested against Lark by brute force (``tests/test_earley_constraint.py``).

States are prefixes, numbered on first use and cached with their masks and transitions.
"""

from __future__ import annotations

import re
from typing import Iterable

from lark.lexer import PatternRE, PatternStr

from ..errors import UnsupportedGrammarError
from .constraint import Constraint
from .grammar import Grammar
from .longest_match import NotAnalysable, dfa, short_match, what_re_takes

_INF = float("inf")


class _Refuse(Exception):
    """A construct this engine does not serve (its message names it)."""


# --- terminals -------------------------------------------------------------------------------


class _TermDFA:
    """One terminal over the alphabet: a DFA with live states only (``step[q]``: char -> state),
    ``finals``, ``tag[q]`` (for an accepting ``q``: the index of the set of characters that
    continue the token, which the next character must avoid for the token to end there) and
    ``dist[q][f]``: the fewest characters from ``q`` to an accepting state of tag ``f``."""

    def __init__(self, name: str, pattern: str, alphabet: list[str]) -> None:
        self.name = name
        try:
            raw, finals = dfa(pattern, alphabet)
        except NotAnalysable as e:
            raise _Refuse(str(e)) from None
        # live: can reach an accepting state
        live = set(finals)
        changed = True
        while changed:
            changed = False
            for q, row in enumerate(raw):
                if q not in live and any(r in live for r in row.values()):
                    live.add(q)
                    changed = True
        if 0 not in live:
            raise _Refuse("no string over the alphabet")
        self.initial = 0
        self.step = {q: {c: r for c, r in raw[q].items() if r in live} for q in live}
        self.finals = frozenset(finals)
        self.conts: dict[int, frozenset[str]] = {}
        for q in finals:
            for c, r in self.step[q].items():
                if r not in finals:
                    raise _Refuse(
                        f"after a match, {c!r} may continue it without completing it at once"
                        " (Lark's greedy match then needs more than one character of lookahead)"
                    )
            self.conts[q] = frozenset(self.step[q])
        self.tag: dict[int, int] = {}
        self.dist: dict[int, list[float]] = {}

    def index_tags(self, index: dict[frozenset[str], int]) -> None:
        for q, cont in self.conts.items():
            self.tag[q] = index[cont]
        nf = len(index)
        dist = {q: [_INF] * nf for q in self.step}
        for q in self.finals:
            dist[q][self.tag[q]] = 0
        changed = True
        while changed:  # Bellman-Ford over a small DFA
            changed = False
            for q, row in self.step.items():
                dq = dist[q]
                for r in row.values():
                    dr = dist[r]
                    for f in range(nf):
                        if dr[f] + 1 < dq[f]:
                            dq[f] = dr[f] + 1
                            changed = True
        self.dist = dist


def _terminal_pattern(term, alphabet: list[str]) -> str:  # noqa: ANN001
    """The terminal's regex, when ``re.match`` takes the longest match of it on every text over
    the alphabet (``longest_match.short_match``); else ``_Refuse`` with a counterexample."""
    pattern = term.pattern
    if pattern.flags:
        raise _Refuse(f"the flags {''.join(sorted(pattern.flags))}")
    if isinstance(pattern, PatternStr):
        return re.escape(pattern.value)
    if isinstance(pattern, PatternRE):
        try:
            short = short_match(pattern.value, alphabet)
        except NotAnalysable as e:
            raise _Refuse(str(e)) from None
        if short is not None:
            raise _Refuse(f"a regex that Python's re cuts short: {what_re_takes(pattern.value, short)}, not the longest match")
        return pattern.value
    raise _Refuse(f"a pattern of type {type(pattern).__name__}")  # pragma: no cover


# --- min-plus algebra over lookahead tags ------------------------------------------------------


def _mat_mul(a, b):  # noqa: ANN001, ANN202
    n = len(a)
    return tuple(
        tuple(min((a[i][k] + b[k][j] for k in range(n)), default=_INF) for j in range(n)) for i in range(n)
    )


def _mat_vec(a, v):  # noqa: ANN001, ANN202
    n = len(a)
    return tuple(min(a[i][k] + v[k] for k in range(n)) for i in range(n))


def _mat_min(a, b):  # noqa: ANN001, ANN202
    return tuple(tuple(min(x, y) for x, y in zip(ra, rb)) for ra, rb in zip(a, b))


def _vec_min(a, b):  # noqa: ANN001, ANN202
    return tuple(min(x, y) for x, y in zip(a, b))


# --- the chart ---------------------------------------------------------------------------------


class _Column:
    """A finished Earley column: ``waiting[A]`` (items expecting nonterminal ``A``), ``scan[X]``
    (items expecting terminal ``X``, those carried here by an ignored run included), ``done``
    (a completed start item from position 0 is here), and ``need[A]``: per lookahead tag, the
    fewest characters that finish the whole parse once an ``A`` started here completes."""

    __slots__ = ("waiting", "scan", "done", "need")

    def __init__(self, waiting, scan, done) -> None:  # noqa: ANN001
        self.waiting = waiting
        self.scan = scan
        self.done = done
        self.need: dict[str, tuple] = {}


class _State:
    __slots__ = ("n", "cols", "flights", "pending", "finals")

    def __init__(self, n, cols, flights, pending) -> None:  # noqa: ANN001
        self.n = n
        self.cols = cols  # tuple of _Column for positions 0..n-1
        self.flights = flights  # tuple of (is_ignore, terminal, q, payload)
        self.pending = pending  # tuple of (tag-chars, advanced items, carried scan items, carried done)
        self.finals: dict = {}  # next char (None: the end) -> _Column for position n


class EarleyConstraint:
    """Next-character masks of an Earley ``grammar`` for prefixes of at most ``max_len``
    characters of ``alphabet`` (see the module docstring)."""

    def __init__(self, grammar: Grammar, max_len: int, alphabet: Iterable[str], reason: str = "") -> None:
        self.grammar = grammar
        self.max_len = max_len
        self.alphabet = sorted(set(alphabet))
        where = f"{grammar.path}: constrained sampling does not support this grammar"
        parser = grammar.parser
        opts = parser.options
        if grammar.algorithm != "earley":
            raise UnsupportedGrammarError(f"{where}: the Earley engine serves Earley grammars only ({reason})")
        if opts.lexer != "dynamic":
            raise UnsupportedGrammarError(f"{where}: Earley with the {opts.lexer!r} lexer (only 'dynamic' is followed)")
        if opts.postlex is not None or parser.lexer_conf.callbacks or getattr(opts, "regex", False):
            raise UnsupportedGrammarError(f"{where}: lexer callbacks, a post-lexer or the regex module")
        if parser.lexer_conf.g_regex_flags:
            raise UnsupportedGrammarError(f"{where}: global regex flags")
        self._load_rules(parser, grammar.start, where)
        self._load_terminals(parser, where)
        self._load_matrices()
        self._states: list[_State] = []
        self._masks: list[frozenset[str] | None] = []
        self._ends: list[bool | None] = []
        self._next: list[dict[str, int]] = []
        seeds = tuple((r, 0, 0) for r in self._by_lhs.get(self._start, ()))
        self.start = self._add(_State(0, (), (), ((frozenset(), seeds, (), False),)))
        if not self.allowed(self.start) and not self.can_end(self.start):
            raise UnsupportedGrammarError(
                f"{grammar.path}: no valid string of length <= {max_len} can be written with the"
                f" characters {''.join(self.alphabet)!r}"
            )

    # -- loading --

    def _load_rules(self, parser, start: str, where: str) -> None:  # noqa: ANN001
        rules = []
        for r in parser.rules:
            rules.append((r.origin.name, tuple((s.is_term, s.name) for s in r.expansion)))
        self._rules = rules
        self._by_lhs: dict[str, list[int]] = {}
        for i, (lhs, _) in enumerate(rules):
            self._by_lhs.setdefault(lhs, []).append(i)
        self._start = start
        nullable: set[str] = set()
        changed = True
        while changed:
            changed = False
            for lhs, rhs in rules:
                if lhs not in nullable and all(not t and s in nullable for t, s in rhs):
                    nullable.add(lhs)
                    changed = True
        self._nullable = nullable
        self._used_terms = {s for _, rhs in rules for t, s in rhs if t}

    def _load_terminals(self, parser, where: str) -> None:  # noqa: ANN001
        defs = {t.name: t for t in parser.terminals}
        self._ignore = list(dict.fromkeys(parser.ignore_tokens))
        dfas: dict[str, _TermDFA] = {}
        for name in sorted(self._used_terms | set(self._ignore)):
            term = defs.get(name)
            if term is None:
                raise UnsupportedGrammarError(f"{where}: terminal {name} has no definition (%declare)")
            try:
                dfas[name] = _TermDFA(name, _terminal_pattern(term, self.alphabet), self.alphabet)
            except _Refuse as e:
                if str(e) == "no string over the alphabet":
                    continue  # never matches here: items expecting it never advance
                shown = term.pattern.raw or term.pattern.value
                raise UnsupportedGrammarError(f"{where}: terminal {name} ({shown}): {e}") from None
        self._dfas = dfas
        tags = {frozenset(): 0}
        for d in dfas.values():
            for cont in d.conts.values():
                tags.setdefault(cont, len(tags))
        self._tags = list(tags)
        for d in dfas.values():
            d.index_tags(tags)

    def _load_matrices(self) -> None:
        nf = len(self._tags)
        inf_m = tuple(tuple(_INF for _ in range(nf)) for _ in range(nf))
        ident = tuple(tuple(0 if i == j else _INF for j in range(nf)) for i in range(nf))
        self._ident = ident

        def token(d: _TermDFA):  # noqa: ANN202
            rows = []
            for fi, forbid in enumerate(self._tags):
                row = [_INF] * nf
                for c, q in d.step[d.initial].items():
                    if c in forbid:
                        continue
                    for fo in range(nf):
                        row[fo] = min(row[fo], 1 + d.dist[q][fo])
                rows.append(tuple(row))
            return tuple(rows)

        tok = {name: token(d) for name, d in self._dfas.items()}
        ign = inf_m
        for name in self._ignore:
            if name in tok:
                ign = _mat_min(ign, tok[name])
        gap = ident
        while True:
            nxt = _mat_min(ident, _mat_mul(ign, gap))
            if nxt == gap:
                break
            gap = nxt
        self._gap = gap
        self._term_mat = {name: _mat_mul(gap, m) for name, m in tok.items()}
        nts = {lhs for lhs, _ in self._rules}
        nt_mat = {a: inf_m for a in nts}
        suffix: list[list] = [[None] * (len(rhs) + 1) for _, rhs in self._rules]
        changed = True
        while changed:
            changed = False
            for ri, (lhs, rhs) in enumerate(self._rules):
                m = ident
                suffix[ri][len(rhs)] = m
                for d in range(len(rhs) - 1, -1, -1):
                    is_t, s = rhs[d]
                    sym = self._term_mat.get(s, inf_m) if is_t else nt_mat.get(s, inf_m)
                    m = _mat_mul(sym, m)
                    suffix[ri][d] = m
                new = _mat_min(nt_mat[lhs], m)
                if new != nt_mat[lhs]:
                    nt_mat[lhs] = new
                    changed = True
        self._suffix = suffix
        self._zero = tuple(0 for _ in range(nf))
        self._infv = tuple(_INF for _ in range(nf))

    # -- states --

    def _add(self, state: _State) -> int:
        self._states.append(state)
        self._masks.append(None)
        self._ends.append(None)
        self._next.append({})
        return len(self._states) - 1

    def _column(self, state: _State, char: str | None) -> _Column:
        """Column ``state.n`` once the next character (None: the end) is known."""
        col = state.finals.get(char)
        if col is not None:
            return col
        rules, by_lhs, nullable = self._rules, self._by_lhs, self._nullable
        n = state.n
        items: set = set()
        todo: list = []
        scan: dict[str, set] = {}
        done = False
        for forbid, advanced, carried, carried_done in state.pending:
            if char is not None and char in forbid:
                continue
            for it in advanced:
                if it not in items:
                    items.add(it)
                    todo.append(it)
            for it in carried:
                rule, dot, _ = it
                scan.setdefault(rules[rule][1][dot][1], set()).add(it)
            if carried_done:
                for r in by_lhs.get(self._start, ()):
                    it = (r, len(rules[r][1]), 0)
                    if it not in items:
                        items.add(it)
                        todo.append(it)
        waiting: dict[str, set] = {}
        cols = state.cols
        while todo:
            it = todo.pop()
            rule, dot, origin = it
            lhs, rhs = rules[rule]
            if dot == len(rhs):
                if origin == 0 and lhs == self._start:
                    done = True
                parents = waiting.get(lhs, ()) if origin == n else cols[origin].waiting.get(lhs, ())
                for p in list(parents):
                    adv = (p[0], p[1] + 1, p[2])
                    if adv not in items:
                        items.add(adv)
                        todo.append(adv)
                continue
            is_t, sym = rhs[dot]
            if is_t:
                scan.setdefault(sym, set()).add(it)
                continue
            waiting.setdefault(sym, set()).add(it)
            for r in by_lhs.get(sym, ()):
                new = (r, 0, n)
                if new not in items:
                    items.add(new)
                    todo.append(new)
            if sym in nullable:
                adv = (rule, dot + 1, origin)
                if adv not in items:
                    items.add(adv)
                    todo.append(adv)
        col = _Column(
            {a: tuple(v) for a, v in waiting.items()},
            {x: tuple(v) for x, v in scan.items()},
            done,
        )
        self._fill_need(col, cols, n)
        state.finals[char] = col
        return col

    def _fill_need(self, col: _Column, cols: tuple, n: int) -> None:
        """``col.need``: a fixpoint over the items waiting in the column (left recursion)."""
        need: dict[str, tuple] = {a: self._infv for a in col.waiting}
        if n == 0:
            need[self._start] = self._zero
        changed = True
        while changed:
            changed = False
            for a, parents in col.waiting.items():
                best = need[a]
                for rule, dot, origin in parents:
                    lhs = self._rules[rule][0]
                    above = need.get(lhs, self._infv) if origin == n else cols[origin].need.get(lhs, self._infv)
                    best = _vec_min(best, _mat_vec(self._suffix[rule][dot + 1], above))
                if best != need[a]:
                    need[a] = best
                    changed = True
        col.need = need

    def _after(self, item, cols: tuple, col: _Column, n: int, skip: int):  # noqa: ANN001, ANN202
        """Per lookahead tag, the fewest characters to finish the parse once ``item`` has moved
        past ``skip`` more symbols (0: before its next symbol, 1: after it)."""
        rule, dot, origin = item
        lhs = self._rules[rule][0]
        above = (col if origin == n else cols[origin]).need.get(lhs, self._infv)
        return _mat_vec(self._suffix[rule][dot + skip], above)

    def _finish(self, is_ignore: bool, payload, cols, col, n, f: int) -> float:  # noqa: ANN001
        """The fewest characters after a token (or ignored run) that ended with tag ``f``."""
        if is_ignore:
            carried, carried_done = payload
            best = 0 if carried_done else _INF
            for it in carried:
                best = min(best, self._after(it, cols, col, n, 0)[f])
            return best
        best = _INF
        for it in payload:
            best = min(best, self._after(it, cols, col, n, 1)[f])
        return best

    def _cost(self, state: _State, c: str) -> float:
        """The fewest characters of a completion of ``state``'s prefix that starts with ``c``."""
        col = self._column(state, c)
        cols, n = state.cols, state.n
        nf = len(self._tags)
        best = _INF
        for is_ignore, term, q, payload in state.flights:
            d = self._dfas[term]
            r = d.step[q].get(c)
            if r is None:
                continue
            for f in range(nf):
                if d.dist[r][f] < _INF:
                    best = min(best, 1 + d.dist[r][f] + self._finish(is_ignore, payload, cols, col, n, f))
        for term, its in col.scan.items():
            d = self._dfas.get(term)
            r = d.step[d.initial].get(c) if d else None
            if r is None:
                continue
            for f in range(nf):
                if d.dist[r][f] < _INF:
                    best = min(best, 1 + d.dist[r][f] + self._finish(False, its, cols, col, n, f))
        if col.scan or col.done:
            carried = tuple(it for its in col.scan.values() for it in its)
            for term in self._ignore:
                d = self._dfas.get(term)
                r = d.step[d.initial].get(c) if d else None
                if r is None:
                    continue
                for f in range(nf):
                    if d.dist[r][f] < _INF:
                        best = min(best, 1 + d.dist[r][f] + self._finish(True, (carried, col.done), cols, col, n, f))
        return best

    def allowed(self, state: int) -> frozenset[str]:
        mask = self._masks[state]
        if mask is None:
            st = self._states[state]
            left = self.max_len - st.n
            mask = frozenset(c for c in self.alphabet if left >= 1 and self._cost(st, c) <= left)
            self._masks[state] = mask
        return mask

    def can_end(self, state: int) -> bool:
        end = self._ends[state]
        if end is None:
            end = self._column(self._states[state], None).done
            self._ends[state] = end
        return end

    # Walking a prefix needs only start, allowed and next: Constraint's own walk.
    state_of = Constraint.state_of

    @property
    def states(self) -> int:
        """States built so far."""
        return len(self._states)

    def next(self, state: int, char: str) -> int:
        cached = self._next[state].get(char)
        if cached is not None:
            return cached
        st = self._states[state]
        col = self._column(st, char)
        n = st.n
        flights = []
        for is_ignore, term, q, payload in st.flights:
            r = self._dfas[term].step[q].get(char)
            if r is not None:
                flights.append((is_ignore, term, r, payload))
        for term, its in col.scan.items():
            d = self._dfas.get(term)
            r = d.step[d.initial].get(char) if d else None
            if r is not None:
                flights.append((False, term, r, its))
        if col.scan or col.done:
            carried = tuple(it for its in col.scan.values() for it in its)
            for term in self._ignore:
                d = self._dfas.get(term)
                r = d.step[d.initial].get(char) if d else None
                if r is not None:
                    flights.append((True, term, r, (carried, col.done)))
        pending = []
        for is_ignore, term, q, payload in flights:
            d = self._dfas[term]
            if q in d.finals:
                forbid = d.conts[q]
                if is_ignore:
                    pending.append((forbid, (), payload[0], payload[1]))
                else:
                    pending.append((forbid, tuple((r, dot + 1, o) for r, dot, o in payload), (), False))
        live = tuple(f for f in flights if self._dfas[f[1]].step[f[2]])
        nxt = self._add(_State(n + 1, st.cols + (col,), live, tuple(pending)))
        self._next[state][char] = nxt
        return nxt
