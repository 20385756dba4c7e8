"""Grammar masks on a model's per-step logits: ``StepMask``.

A backend that samples step by step calls ``mask.apply(scores)`` on each step's scores (shape
``[V, n]``: vocabulary by batch, pad id 0 first) before it picks ids, and ``mask.advance(ids)``
after. Disallowed entries become ``-inf``: a Gumbel-max or ancestral pick never chooses them
and a softmax gives them probability 0. The pad (the end of the string) is allowed exactly
where the prefix is a complete valid string, and after it only the pad.

The masks come from ``gumbelseq.lang.constraint.Constraint`` over the run's vocabulary and
``max_len``; its states are numbers, and this class keeps, per state, a row of allowed ids and
a row of next states as tensors, filled the first time a state occurs in a batch (a batch only
gathers rows; the grammar is consulted once per new state).
"""

from __future__ import annotations

import torch

from ..lang.constraint import Constraint
from .vocab import PAD_ID, Vocabulary

_DONE = 0  # the state after the pad: only the pad again


class StepMask:
    """Masks for ``n`` sequences sampled together; build one per sampling call."""

    def __init__(self, constraint: Constraint, vocab: Vocabulary, device: torch.device) -> None:
        self.constraint = constraint
        self.vocab = vocab
        self.device = device
        self._ids = {c: i + 1 for i, c in enumerate(vocab.chars)}
        size = vocab.size
        self._allowed = torch.zeros((64, size), dtype=torch.bool, device=device)
        self._next = torch.zeros((64, size), dtype=torch.long, device=device)
        self._filled: set[int] = set()
        self._allowed[_DONE, PAD_ID] = True
        self._next[_DONE, PAD_ID] = _DONE
        self._filled.add(_DONE)
        self.state: torch.Tensor | None = None

    def start(self, n: int) -> None:
        """Begin ``n`` empty prefixes."""
        self.state = torch.full((n,), self.constraint.start + 1, dtype=torch.long, device=self.device)

    def _fill(self, states: torch.Tensor) -> None:
        for s in torch.unique(states).tolist():
            if s in self._filled:
                continue
            sid = s - 1
            if s >= self._allowed.shape[0]:
                self._grow(s + 1)
            allowed = self.constraint.allowed(sid)
            if not allowed and not self.constraint.can_end(sid):  # pragma: no cover - engine invariant
                raise AssertionError(f"constraint state {sid} has no continuation")
            row_a = self._allowed[s]
            row_n = self._next[s]
            for c in allowed:
                i = self._ids[c]
                row_a[i] = True
                row_n[i] = self.constraint.next(sid, c) + 1
            if self.constraint.can_end(sid):
                row_a[PAD_ID] = True
                row_n[PAD_ID] = _DONE
            self._filled.add(s)

    def _grow(self, needed: int) -> None:
        cap = self._allowed.shape[0]
        while cap < needed:
            cap *= 2
        size = self._allowed.shape[1]
        allowed = torch.zeros((cap, size), dtype=torch.bool, device=self.device)
        nxt = torch.zeros((cap, size), dtype=torch.long, device=self.device)
        allowed[: self._allowed.shape[0]] = self._allowed
        nxt[: self._next.shape[0]] = self._next
        self._allowed, self._next = allowed, nxt

    def allowed(self) -> torch.Tensor:
        """``[n, V]``: which ids each sequence may take next."""
        assert self.state is not None, "call start(n) first"
        self._fill(self.state)
        return self._allowed[self.state]

    def apply(self, scores: torch.Tensor) -> torch.Tensor:
        """Set disallowed entries of ``scores`` (``[V, n]``) to ``-inf``, in place."""
        scores.masked_fill_(~self.allowed().t(), float("-inf"))
        return scores

    def advance(self, ids: torch.Tensor) -> None:
        """Move every sequence past its chosen id (``[n]``; each must have been allowed)."""
        assert self.state is not None, "call start(n) first"
        self.state = self._next[self.state, ids]
