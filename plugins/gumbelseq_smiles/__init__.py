"""The ``smiles-rings`` automaton: SMILES ring-closure labels pair up.

The ``smiles`` grammar cannot check that each ring-closure label (a digit, or ``%`` and two
digits, outside brackets) is closed once after it is opened: ``C1CC`` is well formed and no
molecule. With ``gumbelseq sample --automaton smiles-rings`` a sample may end only when every
label it opened is closed, and a label may not be closed on the atom that opened it (``C11``,
which RDKit refuses). On the MOSES models, unpaired labels were nearly all of the grammar-valid
samples RDKit could not even read.

What it leaves to RDKit: a ring bond between atoms already bonded (``C1C1``, two labels
between one pair ``C12CC12``), bond symbols that disagree at the two ends, valences and
aromaticity. ``%nn`` labels are their own names (``%01`` does not close ``1``; RDKit reads
``C1CC%01`` as unclosed too).

The state is (in a bracket atom, the first digit of a ``%nn`` being written, the open labels,
the labels opened on the current atom, the branch depth): the depth only sharpens
``min_chars``, the bound that guides the search for a completion.
"""

from __future__ import annotations

from typing import Callable, Hashable

from gumbelseq.lang.automaton import CharAutomaton, hookimpl

#: Characters that begin an atom outside brackets (``l`` of ``Cl`` and ``r`` of ``Br`` continue one).
ATOM_STARTS = frozenset("BCNOSPFIbcnosp*")
DIGITS = frozenset("0123456789")

_OUT, _BRACKET, _PERCENT = 0, 1, 2  # where the next character is read


class RingClosures(CharAutomaton):
    name = "smiles-rings"
    description = "SMILES ring-closure labels pair up: every label opened is closed, never on the atom that opened it"

    def start(self) -> Hashable:
        # (mode, first digit of a %nn, open labels, labels opened on the current atom, depth)
        return (_OUT, "", frozenset(), frozenset(), 0)

    def step(self, state: Hashable, char: str) -> Hashable | None:
        mode, first, open_, here, depth = state  # type: ignore[misc]
        if mode == _BRACKET:
            return (_OUT, "", open_, here, depth) if char == "]" else state
        if mode == _PERCENT:
            if char not in DIGITS:
                return None
            if not first:
                return (_PERCENT, char, open_, here, depth)
            return self._label(f"%{first}{char}", open_, here, depth)
        if char in DIGITS:
            return self._label(char, open_, here, depth)
        if char == "%":
            return (_PERCENT, "", open_, here, depth)
        if char == "[":
            return (_BRACKET, "", open_, frozenset(), depth)  # a new atom
        if char in ATOM_STARTS:
            return (_OUT, "", open_, frozenset(), depth)
        if char == "(":
            return (_OUT, "", open_, here, depth + 1)
        if char == ")":
            # The atom the branch hangs from is current again; the labels it opened were
            # closed inside the branch or are still its own.
            return (_OUT, "", open_, here, depth - 1) if depth > 0 else None
        return state  # bonds, '.', the rest of Cl and Br

    @staticmethod
    def _label(label: str, open_: frozenset, here: frozenset, depth: int) -> Hashable | None:
        if label in open_:
            if label in here:  # closed on the atom that opened it
                return None
            return (_OUT, "", open_ - {label}, here, depth)
        return (_OUT, "", open_ | {label}, here | {label}, depth)

    def accepts(self, state: Hashable) -> bool:
        mode, _, open_, _, _ = state  # type: ignore[misc]
        return mode == _OUT and not open_

    def min_chars(self, state: Hashable) -> int:
        # Each term counts characters of its own kind, so the sum never overestimates: a digit
        # (or %nn) per open label, a ')' per open branch, an atom before closing labels the
        # current atom opened, a ']' inside brackets. A %nn being written may be a closing one.
        mode, _, open_, here, depth = state  # type: ignore[misc]
        rings = sum(1 if len(label) == 1 or mode == _PERCENT else 3 for label in open_)
        return rings + depth + (1 if here & open_ else 0) + (1 if mode == _BRACKET else 0)


    def suggest(self, state: Hashable) -> str:
        # Finish the bracket or the %nn, close a label the current atom did not open, write an
        # atom (which lets the current atom's own labels close), close a branch.
        mode, first, open_, here, depth = state  # type: ignore[misc]
        if mode == _BRACKET:
            return "]"
        if mode == _PERCENT:
            return "".join(sorted({label[len(first) + 1] for label in open_ if label.startswith("%" + first)}))
        closable = sorted(label for label in open_ if label not in here)
        out = "".join(label[0] for label in closable)  # a digit, or the '%' of a %nn
        if here & open_:
            out += "C"
        return out + (")" if depth else "")


@hookimpl
def register_automata(register: Callable[[CharAutomaton], None]) -> None:
    register(RingClosures())
