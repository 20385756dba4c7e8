"""Finite-state checks beyond the grammar: ``gumbelseq sample --automaton NAME``.

A context-free grammar cannot say everything a domain requires. SMILES's ring-closure digits
must pair up (a label opened after one atom is closed after a later one): that is a matching of
arbitrary labels, not a nesting, so the ``smiles`` grammar accepts ``C1CC`` and RDKit refuses
it. A *character automaton* checks such a property one character at a time, in a state of its
own; constrained sampling follows the grammar's masks and every automaton asked for at once
(``gumbelseq.lang.intersection``), so that each sample is in the grammar's language, accepted by
each automaton, and no prefix is a dead end.

Automata are plugins, as validators are: the hook ``register_automata``, from packages in the
entry-point group ``gumbelseq.automata`` or loose files in ``--plugins-dir``. Nothing here imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Hashable

import pluggy

from ..errors import GumbelseqError
from ..plugin_loading import NamedPlugins, PluginFailure, plugin_code

ENTRY_POINT_GROUP = "gumbelseq.automata"

hookspec = pluggy.HookspecMarker("gumbelseq")
hookimpl = pluggy.HookimplMarker("gumbelseq")


class AutomatonError(GumbelseqError):
    """An unknown automaton, a broken automaton plugin, or grammar and automata that admit no string."""


class CharAutomaton(ABC):
    """What an automaton plugin registers: a deterministic automaton over characters.

    States are any hashable values (tuples, frozensets); the intersection keeps one per
    distinct prefix it meets, so a state should hold only what the check needs."""

    #: The name ``--automaton`` takes.
    name: str = ""
    #: One line for listings and messages.
    description: str = ""

    @abstractmethod
    def start(self) -> Hashable:
        """The state before the first character."""

    @abstractmethod
    def step(self, state: Hashable, char: str) -> Hashable | None:
        """The state after ``char``, or ``None`` where the automaton refuses it."""

    @abstractmethod
    def accepts(self, state: Hashable) -> bool:
        """Whether a string may end in ``state``."""

    def accepts_string(self, s: str) -> bool:
        """Whether the automaton, run over all of ``s`` from its start, accepts it."""
        state = self.start()
        for char in s:
            state = self.step(state, char)
            if state is None:
                return False
        return self.accepts(state)

    def min_chars(self, state: Hashable) -> int:
        """A lower bound on the characters still needed before acceptance (0 always works).

        It must never be more than the truth: the search for a completion prunes on it, so a
        bound too high would forbid strings the automaton accepts. A tight bound makes the
        search fast, and guides it (children with smaller bounds are tried first)."""
        return 0

    def suggest(self, state: Hashable) -> str:
        """Characters likely to lead to acceptance soonest, best first (default: none).

        The search for a completion tries these before ordering every other character by
        ``min_chars``: a good suggestion ("close this ring", "close this branch") finds one in
        a few steps without looking at the rest. Only speed depends on it."""
        return ""

    def fresh(self) -> "CharAutomaton":
        """The automaton without what it has cached (default: itself, for one that caches
        nothing). Long sampling runs drop their masks between chunks and ask for this: an
        automaton that interns its states should return a new instance, or its cache grows
        with every sample. The answers must not change."""
        return self


class _Hooks:
    @hookspec
    def register_automata(self, register: Callable[[CharAutomaton], None]) -> None:
        """Call ``register(automaton)`` once for each ``CharAutomaton`` you provide."""


_AUTOMATA = NamedPlugins(ENTRY_POINT_GROUP, _Hooks, "register_automata", CharAutomaton, AutomatonError, "automaton", "automata")


def automata(plugins_dir: str | Path | None = None) -> dict[str, tuple[CharAutomaton, str]]:
    """Every registered automaton by name, with where it came from (built once per process);
    ``plugins_dir``: loose plugin files too (default: ``$GUMBELSEQ_PLUGINS_DIR``)."""
    return _AUTOMATA.all(plugins_dir)


def get_automaton(name: str, plugins_dir: str | Path | None = None) -> CharAutomaton:
    """The automaton ``name``, or a one-line ``AutomatonError`` listing the known ones."""
    return _AUTOMATA.get(name, plugins_dir)


def fresh_automaton(automaton: CharAutomaton) -> CharAutomaton:
    """``automaton.fresh()``, checked: what it raises, or an answer that is not an automaton
    of the same name, is a one-line ``AutomatonError`` naming it."""
    try:
        with plugin_code():
            copy = automaton.fresh()
    except PluginFailure as e:
        raise AutomatonError(f"automaton {automaton.name!r} failed: {e}") from None
    if not isinstance(copy, CharAutomaton) or copy.name != automaton.name:
        raise AutomatonError(f"automaton {automaton.name!r} failed: fresh() returned {type(copy).__name__},"
                             " not a CharAutomaton of that name")
    return copy
