"""A grammar's masks and character automata at once: ``IntersectedMasks``.

The states of the intersection are tuples (grammar state, each automaton's state, length so
far), numbered as they are met. A character is allowed when the grammar allows it, every
automaton takes it, and some string finishes from the state it leads to: that last condition is
what keeps sampling free of dead ends, and it is decided by a depth-first search for one
completion, memoised per state. The search prunes a state whose lower bound on the characters
still needed (the largest of the grammar engine's own bound, where it has one, and each
automaton's ``min_chars``: the largest, not the sum, since one character may serve several
automata at once) exceeds what ``max_len`` leaves, and tries children with the smallest bound
first, so that a completion (close the rings, close the branches, end) is usually found in a
few steps.

It answers the same four questions as every mask engine (``gumbelseq.lang.masks``), so the
model side samples from it as from a grammar's masks.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Hashable, Iterable, Iterator, Sequence, TypeVar

from ..plugin_loading import PluginFailure, plugin_code
from .automaton import AutomatonError, CharAutomaton
from .masks import GrammarMasks

#: States expanded by one search for a completion before it gives up and counts the character
#: as not allowed: sound (nothing allowed is ever a dead end) but possibly strict. Never reached
#: in the tests or on MOSES; ``gave_up`` counts the times it was.
SEARCH_BUDGET = 200_000

_Key = tuple[int, tuple[Hashable, ...], int]
_F = TypeVar("_F", bound=Callable[..., Any])


def _plugin_failures(method: _F) -> _F:
    """Around the methods that run automata (plugins): what they print goes to stderr, and
    their exception, ``sys.exit``, a state that cannot be hashed or a bound that is not a number
    becomes a one-line ``AutomatonError`` naming the automaton, not a traceback."""

    @functools.wraps(method)
    def checked(self: "IntersectedMasks", *args: Any) -> Any:
        try:
            with plugin_code():
                return method(self, *args)
        except PluginFailure as e:  # quoted in one line, with the automaton's name
            raise AutomatonError(self._failure(e)) from None

    return checked  # type: ignore[return-value]


class IntersectedMasks:
    """``masks`` intersected with ``automata``, for prefixes of at most ``masks.max_len``."""

    def __init__(self, masks: GrammarMasks, automata: Sequence[CharAutomaton]) -> None:
        self.masks = masks
        self.automata = tuple(automata)
        self.max_len = masks.max_len
        self.gave_up = 0
        # Optional engine methods (``Constraint`` has both): a lower bound, and a step that
        # builds only one character's successor.
        self._grammar_bound = getattr(masks, "min_chars", None)
        self._grammar_step = getattr(masks, "step", None)
        self._keys: list[_Key] = []
        self._ids: dict[_Key, int] = {}
        self._allowed: list[frozenset[str] | None] = []  # None: not expanded yet
        self._ends: list[bool] = []
        self._next: list[dict[str, int]] = []
        self._viable: dict[_Key, bool] = {}
        self.start = self._root()

    @_plugin_failures
    def _root(self) -> int:
        root: _Key = (self.masks.start, tuple(a.start() for a in self.automata), 0)
        if not self._search(root):
            names = ", ".join(a.name for a in self.automata)
            if self.gave_up:  # not a proof that there is none
                raise AutomatonError(
                    f"found no string of at most {self.max_len} characters that the grammar and {names} both"
                    f" accept within {SEARCH_BUDGET:,} search steps (an automaton whose states never merge,"
                    " or a min_chars of 0, makes the search blind)"
                )
            raise AutomatonError(
                f"no string of at most {self.max_len} characters is both in the grammar's language and"
                f" accepted by {names}"
            )
        return self._id(root)

    # -- the mask engine's four questions ----------------------------------------------------

    def allowed(self, state: int) -> frozenset[str]:
        if self._allowed[state] is None:
            self._expand(state)
        return self._allowed[state]  # type: ignore[return-value]

    def can_end(self, state: int) -> bool:
        if self._allowed[state] is None:
            self._expand(state)
        return self._ends[state]

    def next(self, state: int, char: str) -> int:
        if self._allowed[state] is None:
            self._expand(state)
        try:
            return self._next[state][char]
        except KeyError:
            raise ValueError(f"{char!r} is not allowed here") from None

    @property
    def states(self) -> int:
        """States numbered so far (the search meets more, kept only as verdicts)."""
        return len(self._keys)

    # -- inside --------------------------------------------------------------------------------

    def _failure(self, e: PluginFailure) -> str:
        """One line for an automaton's failure, naming the automaton whose method raised it
        (the innermost frame run for one of them), else all of them."""
        culprit = None
        tb = e.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if any(owner is a for a in self.automata):
                culprit = owner
            tb = tb.tb_next
        if culprit is not None:
            return f"automaton {culprit.name!r} failed: {e}"
        names = ", ".join(repr(a.name) for a in self.automata)
        return (f"automaton {names} failed: {e} (a state must be hashable, min_chars an integer,"
                " suggest a string)")

    def _id(self, key: _Key) -> int:
        sid = self._ids.get(key)
        if sid is None:
            sid = len(self._keys)
            self._ids[key] = sid
            self._keys.append(key)
            self._allowed.append(None)
            self._ends.append(False)
            self._next.append({})
        return sid

    @_plugin_failures
    def _expand(self, sid: int) -> None:
        """A state's allowed characters, successors and whether it may end: all the automata's
        work for it, done once."""
        allowed = set()
        key = self._keys[sid]
        for c, child in self._children(key):
            if self._search(child):
                allowed.add(c)
                self._next[sid][c] = self._id(child)
        self._ends[sid] = self._accepting(key[0], key[1])
        self._allowed[sid] = frozenset(allowed)

    def _accepting(self, g: int, a: tuple[Hashable, ...]) -> bool:
        return all(aut.accepts(s) for aut, s in zip(self.automata, a)) and self.masks.can_end(g)

    def _automata_bound(self, a: tuple[Hashable, ...]) -> int:
        # The largest: a sum overestimates when one character serves two automata (a ring
        # closure that is also the last character), and the search then pruned real strings.
        return max((aut.min_chars(s) for aut, s in zip(self.automata, a)), default=0)

    def _children(self, key: _Key) -> Iterator[tuple[str, _Key]]:
        """``(char, child)`` for each character the grammar and every automaton take: first
        the automata's suggestions, then the rest, the smallest automaton bound first (ties in
        character order, so the search is deterministic). Lazily: a search that succeeds on a
        suggestion never steps the automata on the other characters, nor builds their grammar
        states."""
        g, a, depth = key
        tried = set()
        for aut, s in zip(self.automata, a):
            for c in aut.suggest(s):
                if c in tried:
                    continue
                tried.add(c)
                t = self._step(a, c)
                if t is None:
                    continue
                if self._grammar_step is not None:  # one character, without building g's mask
                    ng = self._grammar_step(g, c)
                elif c in self.masks.allowed(g):
                    ng = self.masks.next(g, c)
                else:
                    ng = None
                if ng is not None:
                    yield c, (ng, t, depth + 1)
        found = []
        for c in self.masks.allowed(g):
            if c not in tried:
                t = self._step(a, c)
                if t is not None:
                    found.append((self._automata_bound(t), c, t))
        found.sort(key=lambda x: (x[0], x[1]))
        for _, c, t in found:
            yield c, (self.masks.next(g, c), t, depth + 1)

    def _step(self, a: tuple[Hashable, ...], c: str) -> tuple[Hashable, ...] | None:
        after = []
        for aut, s in zip(self.automata, a):
            s2 = aut.step(s, c)
            if s2 is None:
                return None
            after.append(s2)
        return tuple(after)

    def _settled(self, key: _Key) -> bool | None:
        """The verdict on ``key`` where it needs no search (memoised, bounds, accepting);
        the cheap tests first."""
        verdict = self._viable.get(key)
        if verdict is not None:
            return verdict
        g, a, depth = key
        left = self.max_len - depth
        if self._automata_bound(a) > left or (self._grammar_bound is not None and self._grammar_bound(g) > left):
            verdict = False
        elif self._accepting(g, a):
            verdict = True
        else:
            return None
        self._viable[key] = verdict
        return verdict

    def _search(self, root: _Key) -> bool:
        """Whether some string finishes from ``root``: depth first, the path found is
        memoised as viable, every state fully searched without one as not."""
        verdict = self._settled(root)
        if verdict is not None:
            return verdict
        path: list[_Key] = [root]
        pending: list[Iterable[tuple[str, _Key]]] = [self._children(root)]
        expanded = 1
        while path:
            for _, child in pending[-1]:
                verdict = self._settled(child)
                if verdict:
                    for k in path:
                        self._viable[k] = True
                    return True
                if verdict is None:
                    expanded += 1
                    if expanded > SEARCH_BUDGET:
                        self.gave_up += 1
                        return False  # nothing memoised: a later search may still succeed
                    path.append(child)
                    pending.append(self._children(child))
                    break
            else:
                self._viable[path.pop()] = False
                pending.pop()
        return False
