"""The ``smiles-rings`` automaton: SMILES ring closures that RDKit can read.

The ``smiles`` grammar cannot check that each ring-closure label (a digit, or ``%`` and two
digits, outside brackets) is closed once after it is opened: ``C1CC`` is well formed and no
molecule. With ``gumbelseq sample --automaton smiles-rings`` a sample may end only when every
label it opened is closed, and a ring bond may join only atoms not yet bonded: not the atom that
opened it (``C11``), not its neighbour in the chain (``C1C1``, ``C1(C)C1``), not one it is
already ring-bonded to (``C12CC12``, ``C1CC2C12``). RDKit refuses each of these before any
chemistry; on the MOSES models they were nearly all the grammar-valid samples it could not read.

What it leaves to RDKit: bond symbols that disagree at the two ends (RDKit reads them),
valences and aromaticity. ``%nn`` labels are their own names (``%01`` does not close ``1``;
RDKit reads ``C1CC%01`` as unclosed too).

The state names atoms by small numbers, renumbered after every step so that equal situations
are equal states: only the atoms that can still matter are kept (the current atom, the atoms
open branches hang from, and the atoms that opened the labels still open), with the bonds
among them. The branch depth also sharpens ``min_chars``, the bound that guides the search for a
completion.
"""

from __future__ import annotations

from typing import Callable, Hashable, NamedTuple

from gumbelseq.lang.automaton import CharAutomaton, hookimpl

#: Characters that begin an atom outside brackets (``l`` of ``Cl`` and ``r`` of ``Br`` continue one).
ATOM_STARTS = frozenset("BCNOSPFIbcnosp*")
DIGITS = frozenset("0123456789")

_OUT, _BRACKET, _PERCENT = 0, 1, 2  # where the next character is read


class _State(NamedTuple):
    mode: int  # _OUT, _BRACKET or _PERCENT
    first: str  # the first digit of a %nn being written
    can_ring: bool  # a ring closure may come next: right after an atom, a ring closure or their bond
    orphan: bool  # the next atom starts a new part ('.'): no bond to the current one
    current: int  # the atom ring closures attach to (-1: none yet)
    stack: tuple[int, ...]  # the atoms the open branches hang from, innermost last
    open_: tuple[tuple[str, int], ...]  # (label, the atom that opened it), by label
    bonds: frozenset[tuple[int, int]]  # bonds among the atoms above, (low, high)


def _canonical(mode: int, first: str, can_ring: bool, orphan: bool, current: int, stack: tuple[int, ...],
               open_: dict[str, int], bonds: set[tuple[int, int]] | frozenset[tuple[int, int]]) -> _State:
    """Keep only the atoms that can still matter and number them in order of appearance."""
    names: dict[int, int] = {}
    for atom in (current, *stack, *(open_[label] for label in sorted(open_))):
        if atom >= 0 and atom not in names:
            names[atom] = len(names)
    kept = frozenset(
        (min(names[a], names[b]), max(names[a], names[b])) for a, b in bonds if a in names and b in names
    )
    return _State(
        mode, first, can_ring, orphan, names.get(current, -1), tuple(names[a] for a in stack),
        tuple((label, names[open_[label]]) for label in sorted(open_)), kept,
    )


class RingClosures(CharAutomaton):
    name = "smiles-rings"
    description = "SMILES ring closures RDKit can read: every label opened is closed, joining two atoms not yet bonded"

    def start(self) -> Hashable:
        return _State(_OUT, "", False, False, -1, (), (), frozenset())

    def step(self, state: Hashable, char: str) -> Hashable | None:
        s: _State = state  # type: ignore[assignment]
        if s.mode == _BRACKET:
            return s._replace(mode=_OUT, can_ring=True) if char == "]" else s
        if s.mode == _PERCENT:
            if char not in DIGITS:
                return None
            if not s.first:
                return s._replace(first=char)
            return self._label(s, f"%{s.first}{char}")
        if char in DIGITS:
            return self._label(s, char) if s.can_ring else None
        if char == "%":
            return s._replace(mode=_PERCENT, first="") if s.can_ring else None
        if char == "[" or char in ATOM_STARTS:
            return self._atom(s, _BRACKET if char == "[" else _OUT)
        if char == "(":
            return s._replace(can_ring=False, stack=(*s.stack, s.current)) if s.current >= 0 else None
        if char == ")":
            if not s.stack:
                return None
            # The atom the branch hangs from is current again; no ring closure follows a ')'.
            return _canonical(_OUT, "", False, False, s.stack[-1], s.stack[:-1], dict(s.open_), s.bonds)
        if char == ".":
            return s._replace(can_ring=False, orphan=True)
        if char in "lr":  # the rest of Cl and Br
            return s
        return s  # a bond symbol: what could follow before it still can

    @staticmethod
    def _atom(s: _State, mode: int) -> _State:
        new = max((s.current, *s.stack, *(atom for _, atom in s.open_)), default=-1) + 1
        bonds = set(s.bonds)
        if s.current >= 0 and not s.orphan:
            bonds.add((s.current, new))
        return _canonical(mode, "", mode == _OUT, False, new, s.stack, dict(s.open_), bonds)

    @staticmethod
    def _label(s: _State, label: str) -> _State | None:
        open_ = dict(s.open_)
        if label not in open_:
            open_[label] = s.current
            return _canonical(_OUT, "", True, False, s.current, s.stack, open_, s.bonds)
        opener = open_.pop(label)
        pair = (min(opener, s.current), max(opener, s.current))
        if opener == s.current or pair in s.bonds:  # a ring bond to itself, or a second bond
            return None
        return _canonical(_OUT, "", True, False, s.current, s.stack, open_, s.bonds | {pair})

    def accepts(self, state: Hashable) -> bool:
        s: _State = state  # type: ignore[assignment]
        return s.mode == _OUT and not s.open_ and not s.stack

    def _blocked(self, s: _State) -> bool:
        """Whether some open label cannot be closed before a new atom is written."""
        if not s.can_ring and s.mode != _BRACKET:  # a bracket atom being written is the current one
            return bool(s.open_)
        return any(atom == s.current or (min(atom, s.current), max(atom, s.current)) in s.bonds for _, atom in s.open_)

    def min_chars(self, state: Hashable) -> int:
        # Each term counts characters of its own kind, so the sum never overestimates: a digit
        # (or %nn) per open label, a ')' per open branch, an atom where some label cannot be
        # closed on the current one, a ']' inside brackets. A %nn being written may close one.
        s: _State = state  # type: ignore[assignment]
        rings = sum(1 if len(label) == 1 or s.mode == _PERCENT else 3 for label, _ in s.open_)
        return rings + len(s.stack) + (1 if self._blocked(s) else 0) + (1 if s.mode == _BRACKET else 0)

    def suggest(self, state: Hashable) -> str:
        # Finish the bracket or the %nn, close a label that can be closed here, write an atom
        # (after which the others can be), close a branch.
        s: _State = state  # type: ignore[assignment]
        if s.mode == _BRACKET:
            return "]"
        if s.mode == _PERCENT:
            return "".join(sorted({label[len(s.first) + 1] for label, _ in s.open_ if label.startswith("%" + s.first)}))
        out = ""
        if s.can_ring:
            closable = [label for label, atom in s.open_
                        if atom != s.current and (min(atom, s.current), max(atom, s.current)) not in s.bonds]
            out = "".join(sorted({label[0] for label in closable}))  # a digit, or the '%' of a %nn
        if self._blocked(s):
            out += "C"
        return out + (")" if s.stack else "")


@hookimpl
def register_automata(register: Callable[[CharAutomaton], None]) -> None:
    register(RingClosures())
