"""Grammar masks on a model's per-step logits: ``StepMask``.

A backend that samples step by step calls ``mask.apply(scores)`` on each step's scores (shape
``[V, n]``: vocabulary by batch, pad id 0 first) before it picks ids, and ``mask.advance(ids)``
after. Disallowed entries become ``-inf``: a Gumbel-max or ancestral pick never chooses them
and a softmax gives them probability 0. The pad (the end of the string) is allowed exactly
where the prefix is a complete valid string, and after it only the pad.

The masks come from ``gumbelseq.lang.masks.grammar_masks`` over the run's vocabulary and
``max_len``; its states are numbers, and this class keeps, per state, a row of allowed ids and
a row of next states as tensors, filled the first time a state occurs in a batch and kept for the
run (a batch only gathers rows; the grammar is consulted once per new state).
"""

from __future__ import annotations

import torch

from ..errors import InputFileError
from ..lang.masks import GrammarMasks
from .vocab import PAD_ID, Vocabulary

_DONE = 0  # the state after the pad: only the pad again


class MaskedDataError(InputFileError):
    """A training string the grammar's masks do not allow: ``row`` (0-based), ``column`` (1-based)."""

    def __init__(self, row: int, column: int, what: str) -> None:
        self.row, self.column = row, column
        self.reason = (
            f"the string {what} where the grammar allows no such thing within the length bound, so it"
            " cannot be trained with grammar masks"
        )
        super().__init__(f"training data line {row + 1}, column {column}: {self.reason}")


class MaskTable:
    """Per constraint state, the allowed ids and the next states, as tensors on ``device``.

    Rows are filled the first time a state occurs and kept: one table serves every chunk and
    every call of a run (``StepMask`` holds only the per-sequence states)."""

    def __init__(self, constraint: GrammarMasks, vocab: Vocabulary, device: torch.device) -> None:
        self.constraint = constraint
        self.vocab = vocab
        self.device = device
        self._ids = {c: i + 1 for i, c in enumerate(vocab.chars)}
        size = vocab.size
        self.allowed = torch.zeros((64, size), dtype=torch.bool, device=device)
        self.next = torch.zeros((64, size), dtype=torch.long, device=device)
        self._filled: set[int] = {_DONE}
        self.filled = torch.zeros(64, dtype=torch.bool, device=device)
        self.filled[_DONE] = True
        self.allowed[_DONE, PAD_ID] = True
        self.next[_DONE, PAD_ID] = _DONE

    @property
    def start(self) -> int:
        return self.constraint.start + 1

    def fill(self, states: torch.Tensor) -> None:
        """Make sure every state in ``states`` has its rows."""
        # A max, a gather and an all() per step; the unique() (a sort) only when a state is new.
        top = int(states.max()) if states.numel() else 0
        if top >= self.allowed.shape[0]:
            self._grow(top + 1)
        elif bool(self.filled[states].all()):
            return
        new = [s for s in torch.unique(states).tolist() if s not in self._filled]
        if not new:
            return
        # Rows are built as lists and copied once: per-element writes to a tensor cost
        # microseconds each (and a GPU tensor far more), and a long run meets many states.
        size = self.allowed.shape[1]
        rows_n = [[-1] * size for _ in new]  # -1: not allowed
        for row, s in zip(rows_n, new):
            sid = s - 1
            for c in self.constraint.allowed(sid):
                row[self._ids[c]] = self.constraint.next(sid, c) + 1
            if self.constraint.can_end(sid):
                row[PAD_ID] = _DONE
            if max(row) < 0:  # pragma: no cover - the engine never builds such a state
                raise AssertionError(f"constraint state {sid} has no continuation")
        nxt = torch.tensor(rows_n, dtype=torch.long)
        index = torch.tensor(new, dtype=torch.long).to(self.device)
        self.allowed[index] = (nxt >= 0).to(self.device)
        self.next[index] = nxt.clamp(min=0).to(self.device)
        self._filled.update(new)
        self.filled[index.to(self.device)] = True

    def _grow(self, needed: int) -> None:
        cap = self.allowed.shape[0]
        while cap < needed:
            cap *= 2
        size = self.allowed.shape[1]
        allowed = torch.zeros((cap, size), dtype=torch.bool, device=self.device)
        nxt = torch.zeros((cap, size), dtype=torch.long, device=self.device)
        filled = torch.zeros(cap, dtype=torch.bool, device=self.device)
        allowed[: self.allowed.shape[0]] = self.allowed
        nxt[: self.next.shape[0]] = self.next
        filled[: self.filled.shape[0]] = self.filled
        self.allowed, self.next, self.filled = allowed, nxt, filled


    def states_of(self, ids: torch.Tensor) -> torch.Tensor:
        """For rows of ids ``[N, T]`` (padded strings), the state before each position
        ``[N, T]``; the first row (in order) the grammar does not allow is a ``MaskedDataError``."""
        n, steps = ids.shape
        out = torch.empty((n, steps), dtype=torch.long, device=self.device)
        state = torch.full((n,), self.start, dtype=torch.long, device=self.device)
        # Columns are walked for all rows at once, so a row that fails is parked in the state
        # after the end (a pad keeps it there) and the first failing row is found at the end.
        failed_at = torch.full((n,), steps, dtype=torch.long, device=self.device)
        for t in range(steps):
            self.fill(state)
            out[:, t] = state
            col = ids[:, t]
            ok = self.allowed[state, col]
            if not bool(ok.all()):
                bad = ~ok & (failed_at == steps)
                failed_at[bad] = t
                col = col.masked_fill(~ok, PAD_ID)
                state = state.masked_fill(~ok, _DONE)
            state = self.next[state, col]
        if bool((failed_at < steps).any()):
            row = int((failed_at < steps).nonzero()[0, 0])
            t = int(failed_at[row])
            c = int(ids[row, t])
            raise MaskedDataError(row, t + 1, "ends" if c == PAD_ID else f"has {self.vocab.chars[c - 1]!r}")
        return out


class StepMask:
    """The masks of ``n`` sequences sampled together, over a shared ``MaskTable``."""

    def __init__(self, table: MaskTable, n: int) -> None:
        self.table = table
        self.state = torch.full((n,), table.start, dtype=torch.long, device=table.device)

    def allowed(self) -> torch.Tensor:
        """``[n, V]``: which ids each sequence may take next."""
        self.table.fill(self.state)
        return self.table.allowed[self.state]

    def apply(self, scores: torch.Tensor) -> torch.Tensor:
        """Set disallowed entries of ``scores`` (``[V, n]``) to ``-inf``, in place."""
        scores.masked_fill_(~self.allowed().t(), float("-inf"))
        return scores

    def advance(self, ids: torch.Tensor) -> None:
        """Move every sequence past its chosen id (``[n]``; each must have been allowed)."""
        self.state = self.table.next[self.state, ids]
