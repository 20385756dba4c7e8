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
among them. States are interned and keep their successors: sampling meets a few thousand
states and calls ``step`` about a million times.
"""

from __future__ import annotations

from typing import Callable, Hashable

from gumbelseq.lang.automaton import CharAutomaton, hookimpl

#: Characters that begin an atom outside brackets (``l`` of ``Cl`` and ``r`` of ``Br`` continue one).
ATOM_STARTS = frozenset("BCNOSPFIbcnosp*")
DIGITS = frozenset("0123456789")

_OUT, _BRACKET, _PERCENT = 0, 1, 2  # where the next character is read


class _State:
    """One state, made once per automaton (``_make`` interns them): equal situations are the
    same object, which keeps its successors, so each transition is computed once per process."""

    __slots__ = ("mode", "first", "can_ring", "orphan", "current", "stack", "open_", "bonds", "pending", "load",
                 "bound", "hint", "key", "hash", "successors")

    def __init__(self, key: tuple, bound: int, hint: str) -> None:
        (self.mode,  # _OUT, _BRACKET or _PERCENT
         self.first,  # the first digit of a %nn being written
         self.can_ring,  # a ring closure may come next: right after an atom, a ring closure or their bond
         self.orphan,  # the next atom starts a new part ('.'): no bond to the current one
         self.current,  # the atom ring closures attach to (-1: none yet)
         self.stack,  # the atoms the open branches hang from, innermost last
         self.open_,  # (label, the atom that opened it, its bond's order if written there, else 0), by label
         self.bonds,  # bonds among the atoms above, (low, high)
         self.pending,  # the order of a bond symbol just written, else 0 (valence checks only)
         self.load,  # (atom, the valence it has left, None where unchecked) (valence checks only)
         ) = key
        self.bound, self.hint = bound, hint  # min_chars and suggest: asked for often
        self.key, self.hash = key, hash(key)
        self.successors: dict[str, _State | None] = {}

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, _State) and self.key == other.key)

    def __hash__(self) -> int:
        return self.hash


#: Valences of the organic-subset atoms, uncharged and not aromatic, as RDKit allows them (the
#: largest of its list: S 2/4/6, P 3/5, I 1/3/5); ``Cl`` and ``Br`` have 1.
VALENCE = {"B": 3, "C": 4, "N": 3, "O": 2, "S": 6, "P": 5, "F": 1, "I": 5}
#: The least order a bond symbol can mean (``:`` is aromatic, 1.5 to RDKit).
BOND_ORDER = {"-": 1, "=": 2, "#": 3, "$": 4, ":": 1, "/": 1, "\\": 1}

# atom -> the valence it has left (None: unchecked). What is left, not what is used, so that
# atoms alike in what they can still take are alike in the state.
_Load = dict[int, "int | None"]


class RingClosures(CharAutomaton):
    name = "smiles-rings"
    description = "SMILES ring closures RDKit can read: every label opened is closed, joining two atoms not yet bonded"
    #: Also refuse a bond that takes an atom past its valence.
    valence = False

    def __init__(self) -> None:
        self._interned: dict[tuple, _State] = {}

    def fresh(self) -> "RingClosures":
        return type(self)()  # the interned states are the only cache

    def _make(self, mode: int, first: str, can_ring: bool, orphan: bool, current: int, stack: tuple[int, ...],
              open_: dict[str, tuple[int, int]], bonds: set[tuple[int, int]] | frozenset[tuple[int, int]],
              pending: int = 0, load: _Load | None = None) -> _State:
        """The state, keeping only the atoms that can still matter, numbered in order of
        appearance (so that equal situations are equal states), with its bound and suggestions."""
        labels = sorted(open_)
        names: dict[int, int] = {}
        for atom in (current, *stack, *(open_[label][0] for label in labels)):
            if atom >= 0 and atom not in names:
                names[atom] = len(names)
        kept = frozenset((min(names[a], names[b]), max(names[a], names[b]))
                         for a, b in bonds if a in names and b in names)
        opened = tuple((label, names[open_[label][0]], open_[label][1]) for label in labels)
        loads = () if load is None else tuple((names[a], load[a]) for a in names)
        current = names.get(current, -1)
        key = (mode, first, can_ring, orphan, current, tuple(names[a] for a in stack), opened, kept, pending, loads)
        state = self._interned.get(key)
        if state is not None:
            return state
        # Labels the current atom may close (a bracket atom once its ']' is written): none after
        # a ')' or '.', none that it opened or whose opener it is bonded to, none where it has no
        # valence left.
        ready = (can_ring or mode == _BRACKET) and not any(a == current and left is not None and left < 1
                                                          for a, left in loads)
        closable = [label for label, atom, _ in opened
                    if ready and atom != current and (min(atom, current), max(atom, current)) not in kept]
        blocked = len(closable) < len(opened)
        # Each term counts characters of its own kind, so the sum never overestimates: a digit
        # (or %nn) per open label, a ')' per open branch, an atom where some label must wait for
        # one, a ']' inside brackets. A %nn being written may be a closing one.
        bound = (sum(1 if len(label) == 1 or mode == _PERCENT else 3 for label in labels) + len(stack)
                 + (1 if blocked else 0) + (1 if mode == _BRACKET else 0))
        if mode == _BRACKET:  # finish the bracket atom
            hint = "]"
        elif mode == _PERCENT:  # finish a %nn that is open
            hint = "".join(sorted({label[len(first) + 1] for label in labels if label.startswith("%" + first)}))
        else:  # close what can be closed here, write an atom (after which the others can be), close a branch
            hint = "".join(sorted({label[0] for label in closable})) + ("C" if blocked else "") + (")" if stack else "")
        state = self._interned[key] = _State(key, bound, hint)
        return state

    def start(self) -> Hashable:
        return self._make(_OUT, "", False, False, -1, (), {}, frozenset(), 0, {} if self.valence else None)

    def step(self, state: Hashable, char: str) -> Hashable | None:
        s: _State = state  # type: ignore[assignment]
        try:
            return s.successors[char]
        except KeyError:
            after = s.successors[char] = self._step(s, char)
            return after

    def _same(self, s: _State, mode: int, first: str, can_ring: bool, orphan: bool, current: int,
              stack: tuple[int, ...], pending: int = 0) -> _State:
        """``s`` with these fields changed and its atoms, labels, bonds and loads as they were."""
        return self._make(mode, first, can_ring, orphan, current, stack, self._open(s), s.bonds, pending, self._load(s))

    @staticmethod
    def _open(s: _State) -> dict[str, tuple[int, int]]:
        return {label: (atom, spec) for label, atom, spec in s.open_}

    def _load(self, s: _State) -> _Load | None:
        return dict(s.load) if self.valence else None

    def _step(self, s: _State, char: str) -> _State | None:
        if s.mode == _BRACKET:
            if char != "]":
                return s
            return self._same(s, _OUT, "", True, False, s.current, s.stack)
        if s.mode == _PERCENT:
            if char not in DIGITS:
                return None
            if not s.first:
                return self._same(s, _PERCENT, char, True, False, s.current, s.stack, s.pending)
            return self._label(s, f"%{s.first}{char}")
        if char in DIGITS:
            return self._label(s, char) if s.can_ring else None
        if char == "%":
            return self._same(s, _PERCENT, "", True, False, s.current, s.stack, s.pending) if s.can_ring else None
        if char == "[" or char in ATOM_STARTS:
            return self._atom(s, char)
        if char == "(":
            if s.current < 0:
                return None
            return self._same(s, _OUT, "", False, False, s.current, (*s.stack, s.current))
        if char == ")":
            if not s.stack:
                return None
            # The atom the branch hangs from is current again; no ring closure follows a ')'.
            return self._same(s, _OUT, "", False, False, s.stack[-1], s.stack[:-1])
        if char == ".":
            return self._same(s, _OUT, "", False, True, s.current, s.stack)
        if not self.valence:
            return s  # a bond symbol (what could follow before it still can), the rest of Cl and Br
        if char in BOND_ORDER:
            return self._same(s, _OUT, "", s.can_ring, s.orphan, s.current, s.stack, BOND_ORDER[char])
        if char in "lr":  # Cl, Br (the grammar has them only right after C and B): valence 1, not 4 or 3
            load = self._load(s)
            assert load is not None
            left = load[s.current]
            if left is not None:
                left -= 3 if char == "l" else 2
                if left < 0:
                    return None
                load[s.current] = left
            return self._make(_OUT, "", s.can_ring, s.orphan, s.current, s.stack, self._open(s), s.bonds, s.pending, load)
        return s

    def _atom(self, s: _State, char: str) -> _State | None:
        mode = _BRACKET if char == "[" else _OUT
        new = max((s.current, *s.stack, *(atom for _, atom, _ in s.open_)), default=-1) + 1
        bonds = set(s.bonds)
        load = self._load(s)
        linked = s.current >= 0 and not s.orphan
        if linked:
            bonds.add((s.current, new))
        if load is not None:
            order = (s.pending or 1) if linked else 0
            load[new] = VALENCE.get(char)  # aromatic, bracket and wildcard atoms are left to RDKit
            if not (self._bond(load, new, order) and (not linked or self._bond(load, s.current, order))):
                return None
        return self._make(mode, "", mode == _OUT, False, new, s.stack, self._open(s), bonds, 0, load)

    @staticmethod
    def _bond(load: _Load, atom: int, order: int) -> bool:
        """Add ``order`` to ``atom``'s bonds; whether it stays within the atom's valence."""
        left = load[atom]
        if left is None:
            return True
        load[atom] = left - order
        return left - order >= 0

    def _label(self, s: _State, label: str) -> _State | None:
        open_ = self._open(s)
        load = self._load(s)
        if label not in open_:
            open_[label] = (s.current, s.pending)
            # The ring bond's order is reserved on the opener now, so that it can be closed.
            if load is not None and not self._bond(load, s.current, s.pending or 1):
                return None
            return self._make(_OUT, "", True, False, s.current, s.stack, open_, s.bonds, 0, load)
        opener, spec = open_.pop(label)
        pair = (min(opener, s.current), max(opener, s.current))
        if opener == s.current or pair in s.bonds:  # a ring bond to itself, or a second bond
            return None
        if load is not None:
            # Written at both ends, the least of the two orders (RDKit reads a disagreement too).
            order = min(spec, s.pending) if spec and s.pending else (spec or s.pending or 1)
            if not (self._bond(load, s.current, order) and self._bond(load, opener, order - (spec or 1))):
                return None
        return self._make(_OUT, "", True, False, s.current, s.stack, open_, s.bonds | {pair}, 0, load)

    def accepts(self, state: Hashable) -> bool:
        s: _State = state  # type: ignore[assignment]
        return s.mode == _OUT and not s.open_ and not s.stack

    def min_chars(self, state: Hashable) -> int:
        return state.bound  # type: ignore[attr-defined]

    def suggest(self, state: Hashable) -> str:
        return state.hint  # type: ignore[attr-defined]


class Valences(RingClosures):
    name = "smiles-valence"
    description = ("smiles-rings, and no uncharged organic-subset atom outside aromatic rings bonded past its"
                   " valence (C 4, N 3, O 2, ...)")
    valence = True


@hookimpl
def register_automata(register: Callable[[CharAutomaton], None]) -> None:
    register(RingClosures())
    register(Valences())
