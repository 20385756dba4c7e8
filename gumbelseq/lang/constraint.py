"""Which characters may come next: the grammar as a mask over a model's vocabulary.

``Constraint(grammar, max_len, alphabet)`` answers, for a prefix written so far, which
characters of ``alphabet`` keep it completable to a valid string of at most ``max_len``
characters (using only ``alphabet``), and whether the prefix may end here. A model that samples
only allowed characters and stops only where allowed writes valid strings, never longer than
``max_len``, and is never left without a choice: if a prefix is completable, one of its next
characters (or the end) is.

How: a prefix is tracked as a set of *configurations* ``(LR stack, position)``. The stack is
Lark's own LALR(1) parse table driven by terminal names (as the recogniser does); the position
is a node of a trie of every terminal string over ``alphabet`` (positive; for terminals with
infinitely many strings, a node of the subset automaton of all terminals' DFAs run side by side,
of which the trie is the finite case), the boundary between tokens (0), or, for a grammar with ``%ignore``, a state of the DFA of runs of ignorable text
part-way through a run (negative). A prefix that could end a token here *or* continue it gives
two configurations. A configuration is kept only if it can be finished within the remaining
length: the fewest characters to finish the token (or the run; per node and terminal, a
breadth-first distance to an accepting node, exact and computed once) plus the fewest to finish the
parse from the stack after it (a shortest-path search over stacks, whose edges are terminals
weighted by their shortest string; memoised per stack). Ignorable text is optional, so it adds
nothing to the fewest characters that finish a parse.

Ignorable text (an *ignore-separable* grammar, ``exactness.py``): its characters occur in no
token, so a configuration at a token boundary (or at a complete token, which then ends) may
also start a run; a run goes on along its DFA, whose start is its only accepting state, and
returns to the boundary (0) whenever it is complete, at the same stack. A prefix may end at the
boundary after a complete run, never inside one. The grammar's strings are exactly a
derivation's tokens with a run before the first and after each (``exactness.py`` proves it
against Lark's lexer), so these masks are Lark's.

Each distinct (set of configurations, remaining length) is a *state* with a number; states,
their masks and transitions are built on first use and cached, so a model batch only looks up
integers: ``start``, ``allowed(state)``, ``can_end(state)``, ``next(state, char)``; ``table()``
builds every state reachable within ``max_len`` for vectorised use (up to ``max_states``).

Which grammars: those whose counts are exact (``exactness.py``): plain ones, whose derivations
are exactly Lark's strings, ignore-separable ones, and regular ones (infinite terminals); then a string that the parse table
accepts as some token sequence (with runs of ignorable text between tokens) is one that
``Lark.parse`` accepts, lexer included. For the others (``%ignore`` that can touch a token,
terminals that merge or collide, a terminal regex whose Python match may not be its whole
string, Earley) the constructor raises a one-line
error naming the reason.
"""

from __future__ import annotations

from typing import Iterable

from lark.parsers.lalr_analysis import LALR_Analyzer, Shift

from ..errors import UnsupportedGrammarError
from .exactness import exactness, ignore_runs, terminal_dfas, terminal_strings
from .grammar import Grammar

END = "$END"
_ACCEPT = ("accept",)
_INF = float("inf")

#: Default bound on the states ``table()`` builds; past it, states are built on demand only.
MAX_STATES = 200_000


class Constraint:
    """Next-character masks of ``grammar`` for prefixes of at most ``max_len`` characters."""

    def __init__(self, grammar: Grammar, max_len: int, alphabet: Iterable[str]) -> None:
        reason = exactness(grammar)
        if reason is not None:
            raise UnsupportedGrammarError(f"{grammar.path}: constrained sampling does not support this grammar: {reason}")
        self.grammar = grammar
        self.max_len = max_len
        self.alphabet = sorted(set(alphabet))
        allowed_chars = set(self.alphabet)
        self._load_table(grammar)
        # _children[node]: char -> node inside a token; _complete[node]: the terminals whose
        # string ends there; _finish[node]: terminal -> fewest more characters to finish one.
        self._children: list[dict[str, int]] = [{}]
        self._complete: list[tuple[str, ...]] = [()]
        self._finish: list[dict[str, int]] = [{}]
        dfas = terminal_dfas(grammar)
        if dfas:
            self._build_automaton(dfas, allowed_chars)
        else:
            self._build_trie(terminal_strings(grammar), allowed_chars)
        self._min_term = dict(self._finish[0])  # shortest string of each terminal
        # Runs of ignorable text: DFA state q > 0 is node -q; state 0 is the boundary (node 0).
        # _run_step[q]: char -> next node (0 when the run is complete), only alphabet characters.
        runs = ignore_runs(grammar)
        self._run_step: list[dict[str, int]] = []
        self._run_finish: list[float] = []
        if runs is not None:
            self._run_step = [{c: -r for c, r in row.items() if c in allowed_chars} for row in runs.step]
            self._run_finish = runs.to_end(allowed_chars)
        self._run_start = self._run_step[0] if self._run_step else {}
        self._min_sym = self._shortest_derivations(grammar)
        self._mincomp: dict[tuple, float] = {}
        self._feed_cache: dict[tuple[tuple, str], tuple | None] = {}
        self._cost_cache: dict[tuple[tuple, int], float] = {}
        # States: key (frozenset of configurations, remaining) -> id.
        self._ids: dict[tuple[frozenset, int], int] = {}
        self._keys: list[tuple[frozenset, int]] = []
        self._masks: list[frozenset[str] | None] = []
        self._ends: list[bool | None] = []
        self._next: list[dict[str, int]] = []
        self._steps: dict[tuple[int, str], int | None] = {}  # step()'s answers before a state is built
        start = frozenset({((self._start_state,), 0)})
        self.start = self._state(self._viable(start, max_len), max_len)
        if not self.allowed(self.start) and not self.can_end(self.start):
            raise UnsupportedGrammarError(
                f"{grammar.path}: no valid string of length <= {max_len} can be written with the"
                f" characters {''.join(self.alphabet)!r}"
            )

    def _build_trie(self, strings: dict[str, str], allowed_chars: set[str]) -> None:
        """The trie of every terminal string writable with the alphabet (finite terminals)."""
        children, complete = self._children, self._complete  # locals: json has ~190k nodes
        for s, term in strings.items():
            if not s or set(s) - allowed_chars:
                continue
            node = 0
            for c in s:
                nxt = children[node].get(c)
                if nxt is None:
                    nxt = len(children)
                    children[node][c] = nxt
                    children.append({})
                    complete.append(())
                node = nxt
            complete[node] = (term,)
        finish: list[dict[str, int]] = [{} for _ in children]
        for node in reversed(range(len(children))):  # children have larger numbers
            here = finish[node]
            if complete[node]:
                here[complete[node][0]] = 0
            for child in children[node].values():
                for term, k in finish[child].items():
                    if k + 1 < here.get(term, _INF):
                        here[term] = k + 1
        self._finish = finish

    def _build_automaton(self, dfas: dict, allowed_chars: set[str]) -> None:
        """The trie's generalisation for terminals with infinitely many strings: the subset
        automaton of all terminals' DFAs run side by side (a node is the set of ``(terminal,
        DFA state)`` pairs a token prefix reaches), over the alphabet only, keeping the nodes
        from which some terminal can still be finished with it. Node 0 is the token boundary;
        a token prefix never comes back to it (its subset gets its own node)."""
        names = sorted(dfas)
        start = frozenset((n, dfas[n].initial) for n in names)
        number = {start: 1}
        subsets = [frozenset(), start]  # 0: the boundary, whose moves are the start subset's
        edges: list[dict[str, int]] = [{}, {}]
        k = 1
        while k < len(subsets):  # grows while it is walked
            moves: dict[str, set] = {}
            for n, q in subsets[k]:
                for c, r in dfas[n].step[q].items():
                    if c in allowed_chars:
                        moves.setdefault(c, set()).add((n, r))
            for c, nxt in moves.items():
                key = frozenset(nxt)
                if key not in number:
                    number[key] = len(subsets)
                    subsets.append(key)
                    edges.append({})
                edges[k][c] = number[key]
            k += 1
        edges[0] = edges[1]
        complete = [tuple(sorted(n for n, q in sub if q in dfas[n].finals)) for sub in subsets]
        # Fewest characters to finish each terminal: breadth first backwards from the nodes
        # that complete it (exact shortest completions, over the alphabet).
        back: list[list[int]] = [[] for _ in subsets]
        for a, row in enumerate(edges):
            for b in row.values():
                back[b].append(a)
        finish: list[dict[str, int]] = [{} for _ in subsets]
        for n in names:
            frontier = [a for a in range(len(subsets)) if n in complete[a]]
            for a in frontier:
                finish[a][n] = 0
            while frontier:
                nxt = []
                for b in frontier:
                    for a in back[b]:
                        if n not in finish[a]:
                            finish[a][n] = finish[b][n] + 1
                            nxt.append(a)
                frontier = nxt
        # Drop the moves into nodes that can finish nothing (characters that start no token).
        self._children = [{c: b for c, b in row.items() if finish[b]} for row in edges]
        self._complete = complete
        self._finish = finish

    def _load_table(self, grammar: Grammar) -> None:
        """Lark's LALR(1) table for ``grammar`` with its LR(0) kernel items.

        Built again here with Lark's own analyser (the parser Lark keeps has only the table,
        numbered in an order that varies between processes); it is the same table up to that
        numbering. The kernel items give exact shortest completions (``_complete_cost``).
        """
        conf = grammar.parser.parser.parser.parser_conf
        analyzer = LALR_Analyzer(conf, debug=True, strict=True)
        analyzer.compute_lalr()
        table = analyzer.parse_table
        number = {closure: i for i, closure in enumerate(table.states)}
        rules: dict = {}
        self._actions: dict[int, dict[str, int]] = {}
        for closure, actions in table.states.items():
            self._actions[number[closure]] = {
                str(sym): number[arg] if kind is Shift else ~rules.setdefault(arg, len(rules))
                for sym, (kind, arg) in actions.items()
            }
        self._rules = [(len(rule.expansion), str(rule.origin.name)) for rule in rules]
        start = grammar.start
        self._start_state = number[table.start_states[start]]
        self._end = number[table.end_states[start]]
        # Kernel items per state: (origin, dot, symbols after the dot, whether the root rule).
        self._kernel: dict[int, list[tuple[str, int, tuple[str, ...], bool]]] = {}
        for itemset in analyzer.lr0_itemsets:
            sid = number[itemset.closure]
            items = []
            for ptr in itemset.kernel:
                origin = str(ptr.rule.origin.name)
                after = tuple(str(x.name) for x in ptr.rule.expansion[ptr.index :] if x.name != END)
                items.append((origin, ptr.index, after, origin.startswith("$root_")))
            self._kernel[sid] = items

    def _shortest_derivations(self, grammar: Grammar) -> dict[str, float]:
        """Fewest characters each symbol derives, with terminals spelled from the alphabet."""
        best: dict[str, float] = dict(self._min_term)
        rules = [(str(r.origin.name), [str(x.name) for x in r.expansion]) for r in grammar.parser.rules]
        changed = True
        while changed:
            changed = False
            for origin, expansion in rules:
                c = sum(best.get(x, _INF) for x in expansion)
                if c < best.get(origin, _INF):
                    best[origin] = c
                    changed = True
        return best

    # -- the parse table -----------------------------------------------------------------

    def _feed(self, stack: tuple, term: str) -> tuple | None:
        """The stack after ``term`` is shifted (reductions first), ``_ACCEPT``, or None."""
        key = (stack, term)
        if key in self._feed_cache:
            return self._feed_cache[key]
        actions, rules = self._actions, self._rules
        st = list(stack)
        result: tuple | None
        while True:
            action = actions[st[-1]].get(term)
            if action is None:
                result = None
                break
            if action >= 0:
                st.append(action)
                result = tuple(st)
                break
            size, origin = rules[~action]
            if size:
                del st[-size:]
            state = actions[st[-1]][origin]
            st.append(state)
            if state == self._end and term == END:
                result = _ACCEPT
                break
        if len(self._feed_cache) < 2_000_000:
            self._feed_cache[key] = result
        return result

    def _complete_cost(self, stack: tuple) -> float:
        """Fewest characters that finish a parse from ``stack`` (between tokens); inf if none
        within ``max_len``.

        From the kernel items of the top state: an item ``A -> alpha . beta`` finishes with the
        shortest ``beta``, then reduces (``len(alpha)`` states off the stack, ``goto(A)``) and
        the parse goes on from that shorter stack; the root item finishes the parse. Every
        continuation of a viable prefix goes through one of these items, so the minimum over
        them is exact. Stacks never grow here (a kernel item has ``alpha`` non-empty), and are
        memoised, so stacks sharing a bottom share their work.
        """
        hit = self._mincomp.get(stack)
        if hit is not None:
            return hit
        self._mincomp[stack] = _INF  # a guard: a grammar that loops through unit rules gets inf
        best = 0.0 if self._feed(stack, END) is _ACCEPT else _INF
        depth = len(stack) - 1
        for origin, dot, after, is_root in self._kernel[stack[-1]]:
            c = sum(self._min_sym.get(x, _INF) for x in after)
            if c >= best:
                continue
            if is_root:
                best = c
                continue
            if dot > depth:
                continue
            below = stack[: len(stack) - dot]
            target = self._actions[below[-1]].get(origin)
            if target is None or target < 0:
                continue
            best = min(best, c + self._complete_cost(below + (target,)))
        if best > self.max_len:
            best = _INF
        self._mincomp[stack] = best
        return best

    # -- configurations ------------------------------------------------------------------

    def _cost(self, config: tuple[tuple, int]) -> float:
        """Fewest characters that finish a valid string from ``config`` (memoised: a
        configuration recurs in many states, at many remaining lengths)."""
        hit = self._cost_cache.get(config)
        if hit is not None:
            return hit
        cost = self._config_cost(config)
        if len(self._cost_cache) < 2_000_000:
            self._cost_cache[config] = cost
        return cost

    def _config_cost(self, config: tuple[tuple, int]) -> float:
        stack, node = config
        if node == 0:
            return self._complete_cost(stack)
        if node < 0:  # inside a run of ignorable text: finish it, then the parse
            return self._run_finish[-node] + self._complete_cost(stack)
        best = _INF
        for term, k in self._finish[node].items():
            after = self._feed(stack, term)
            if after is None or after is _ACCEPT:
                continue
            best = min(best, k + self._complete_cost(after))
        return best

    def _viable(self, configs: Iterable[tuple[tuple, int]], remaining: int) -> frozenset:
        return frozenset(c for c in configs if self._cost(c) <= remaining)

    def _state(self, configs: frozenset, remaining: int) -> int:
        key = (configs, remaining)
        sid = self._ids.get(key)
        if sid is None:
            sid = len(self._keys)
            self._ids[key] = sid
            self._keys.append(key)
            self._masks.append(None)
            self._ends.append(None)
            self._next.append({})
        return sid

    def _moves(self, sid: int, only: str | None = None) -> tuple[dict[str, set], bool]:
        """The configurations each character leads to from ``sid`` (before the length check),
        and whether ``sid`` can end. ``only``: just that character's moves ("": none)."""
        configs, remaining = self._keys[sid]
        moves: dict[str, set] = {}
        can_end = False
        run_start = self._run_start
        children, complete, feed = self._children, self._complete, self._feed
        wanted = (lambda row: row.items()) if only is None else (lambda row: [(only, row[only])] if only in row else [])
        for stack, node in configs:
            if node < 0:  # inside a run: only its DFA's characters; it cannot end here
                if remaining > 0:
                    for c, nxt in wanted(self._run_step[-node]):
                        moves.setdefault(c, set()).add((stack, nxt))
                continue
            if node == 0:
                can_end = can_end or feed(stack, END) is _ACCEPT
                if remaining > 0:
                    for c, nxt in wanted(run_start):
                        moves.setdefault(c, set()).add((stack, nxt))
            else:
                # The terminals whose string ends here (one in a trie; with infinite terminals,
                # several that never come at the same place may share a node).
                for term in complete[node]:
                    after = feed(stack, term)
                    if after is None or after is _ACCEPT:
                        continue
                    can_end = can_end or feed(after, END) is _ACCEPT
                    if remaining > 0:
                        for c, child in wanted(children[0]):
                            moves.setdefault(c, set()).add((after, child))
                        for c, nxt in wanted(run_start):
                            moves.setdefault(c, set()).add((after, nxt))
            if remaining > 0:
                for c, child in wanted(children[node]):
                    moves.setdefault(c, set()).add((stack, child))
        return moves, can_end

    def _expand(self, sid: int) -> None:
        _, remaining = self._keys[sid]
        moves, can_end = self._moves(sid)
        allowed = set()
        for c, nxt in moves.items():
            viable = self._viable(nxt, remaining - 1)
            if viable:
                allowed.add(c)
                self._next[sid][c] = self._state(viable, remaining - 1)
        self._masks[sid] = frozenset(allowed)
        self._ends[sid] = can_end

    def step(self, state: int, char: str) -> int | None:
        """The state after ``char``, or None where it is not allowed: ``next`` without building
        the whole state (what a search along one character at a time needs)."""
        if self._masks[state] is not None:
            return self._next[state].get(char)
        key = (state, char)
        if key in self._steps:
            return self._steps[key]
        _, remaining = self._keys[state]
        moves, _ = self._moves(state, only=char)
        viable = self._viable(moves.get(char, ()), remaining - 1)
        out = self._state(viable, remaining - 1) if viable else None
        self._steps[key] = out
        return out

    # -- the public lookups ----------------------------------------------------------------

    def allowed(self, state: int) -> frozenset[str]:
        """Characters that may come next in ``state``."""
        if self._masks[state] is None:
            self._expand(state)
        return self._masks[state]  # type: ignore[return-value]

    def can_end(self, state: int) -> bool:
        """Whether the prefix of ``state`` is a complete valid string."""
        if self._ends[state] is None:
            self._ends[state] = self._moves(state, only="")[1]
        return bool(self._ends[state])

    def next(self, state: int, char: str) -> int:
        """The state after ``char``; ``char`` must be allowed in ``state``."""
        if self._masks[state] is None:
            self._expand(state)
        try:
            return self._next[state][char]
        except KeyError:
            raise ValueError(f"{char!r} is not allowed here") from None

    def min_chars(self, state: int) -> int:
        """Fewest characters that finish a valid string from ``state`` (0 where it can end)."""
        configs, _ = self._keys[state]
        return int(min((self._cost(c) for c in configs), default=0))

    def state_of(self, prefix: str) -> int | None:
        """The state after writing ``prefix``, or None if it cannot be completed."""
        sid = self.start
        for c in prefix:
            if c not in self.allowed(sid):
                return None
            sid = self.next(sid, c)
        return sid

    @property
    def states(self) -> int:
        """States built so far."""
        return len(self._keys)

    def table(self, max_states: int = MAX_STATES) -> bool:
        """Build every state reachable from ``start`` (breadth first); False if there are more
        than ``max_states`` (then the rest are built on demand)."""
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
