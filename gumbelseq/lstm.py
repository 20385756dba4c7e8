"""The LSTM sequence generator shared by the backends: one network, three ways to run it.

``FeedbackLSTM`` is an ``nn.LSTM`` (one layer) plus a linear head ``state -> vocab logits``.
Its input at step t is a vector over the vocabulary describing the symbol emitted at step t-1
(``y_0 = 0``). It can be run

* teacher-forced (``teacher_forced_logits`` / ``mle_loss``): inputs are the one-hots of the true
  previous symbols, known in advance, so the whole sequence goes through ``nn.LSTM`` in one op;
* relaxed (``relaxed``): the Gumbel-softmax sample of step t is fed back at t+1, with gradients
  (the GAN generator of Kusner & Hernandez-Lobato 2016);
* sampling (``sample``): no gradients, ids out, soft or one-hot feedback.

The feedback loops cannot use ``nn.LSTM`` (each input depends on the previous output), so they
run a fused cell built from the very same parameters: one ``addmm`` over ``[input, h]`` for all
four gates, one sigmoid over all gates, and the temperature folded into the head. For the tiny
matrices of this problem (state 10, vocabulary 6) time goes into per-op overhead, not FLOPs, so
the cell is written to issue as few ops per step as possible.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .gumbel import check_tau, gumbel_noise, straight_through

__all__ = ["FeedbackLSTM"]


class FeedbackLSTM(nn.Module):
    """One-layer LSTM over vocabulary vectors with a linear head to vocabulary logits.

    Tensors are time-major: ``[steps, batch, vocab]`` (what ``nn.LSTM`` is fastest with).
    ``state`` arguments are ``(h0, c0)`` pairs of ``[batch, hidden]`` tensors.
    """

    def __init__(self, vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(vocab_size, hidden_size)
        self.head = nn.Linear(hidden_size, vocab_size)

    # -- fused cell -------------------------------------------------------------------------

    def _cell_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W [V+H, 4H], b [4H], W_hh^T [H, 4H])`` in nn.LSTM's gate order i, f, g, o."""
        w_ih, w_hh = self.lstm.weight_ih_l0, self.lstm.weight_hh_l0
        w = torch.cat([w_ih, w_hh], dim=1).t()
        b = self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0
        return w, b, w_hh.t()

    def _cell(
        self, gates: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hs = self.hidden_size
        # One sigmoid over all 4H gates (the g block's sigmoid is wasted, but one op beats two).
        s = gates.sigmoid()
        g = gates[:, 2 * hs : 3 * hs].tanh()
        c = torch.addcmul(s[:, hs : 2 * hs] * c, s[:, :hs], g)
        h = s[:, 3 * hs :] * c.tanh()
        return h, c

    def relaxed(
        self,
        state: tuple[torch.Tensor, torch.Tensor],
        noise: torch.Tensor,
        tau: float,
        *,
        hard: bool = False,
    ) -> torch.Tensor:
        """Free-running relaxed samples ``y_t = softmax((logits_t + g_t) / tau)``, ``[T, B, V]``.

        ``noise`` is the Gumbel noise of all steps ``[T, B, V]``, drawn by the caller in one
        call. ``y_t`` is fed back as the input of step t+1. ``hard`` makes every ``y_t`` a
        straight-through one-hot (fed back as such). Differentiable w.r.t. parameters and state.
        """
        inv_tau = 1.0 / check_tau(tau)
        h, c = state
        w, b, w_hh_t = self._cell_weights()
        # (logits + g) / tau == h @ (W_o / tau)^T + (b_o + g) / tau: the scale is paid once per
        # sequence instead of once per step, and each step's head is one addmm.
        w_o = self.head.weight.t() * inv_tau
        bias_noise = (noise + self.head.bias) * inv_tau
        outs = []
        y = None
        for t in range(noise.shape[0]):
            if y is None:  # y_0 = 0: only the recurrent half of the gate matmul is non-zero
                gates = torch.addmm(b, h, w_hh_t)
            else:
                gates = torch.addmm(b, torch.cat([y, h], dim=1), w)
            h, c = self._cell(gates, c)
            scores = torch.addmm(bias_noise[t], h, w_o)
            # softmax removes the row max itself; scores are finite (tau was checked), so
            # there is no overflow path here.
            y = torch.softmax(scores, dim=-1)
            if hard:
                y = straight_through(y, scores.argmax(dim=-1))
            outs.append(y)
        return torch.stack(outs)

    @torch.no_grad()
    def sample(
        self,
        state: tuple[torch.Tensor, torch.Tensor],
        steps: int,
        tau: float,
        generator: torch.Generator | None,
        *,
        feedback: str = "soft",
    ) -> torch.Tensor:
        """Draw ids ``[B, steps]`` (no gradients). Uses only ``generator`` for randomness.

        ``feedback="soft"`` (the GAN generator): the id of step t is ``argmax(logits + g)``, a
        Gumbel-max draw from ``softmax(logits)``, and the relaxed sample
        ``softmax((logits + g) / tau)`` is fed back; ``tau`` only shapes that input.
        ``feedback="hard"``: same ids, one-hot fed back (a straight-through generator).
        ``feedback="ancestral"`` (MLE): the id is a draw from ``softmax(logits / tau)`` and its
        one-hot is fed back.
        """
        if feedback not in ("soft", "hard", "ancestral"):
            raise ValueError(f"feedback must be soft, hard or ancestral, got {feedback!r}")
        inv_tau = 1.0 / check_tau(tau)
        h, c = state
        n = h.shape[0]
        w, b, w_hh_t = self._cell_weights()
        noise = gumbel_noise(
            (steps, n, self.vocab_size), generator=generator, device=h.device, dtype=h.dtype
        )
        if feedback == "ancestral":
            # argmax(logits / tau + g): scale the head once instead of every step.
            w_o, bias = self.head.weight.t() * inv_tau, self.head.bias * inv_tau
        else:
            w_o, bias = self.head.weight.t(), self.head.bias
        noise.add_(bias)
        ids = torch.empty((n, steps), dtype=torch.long, device=h.device)
        y = None
        for t in range(steps):
            gates = (
                torch.addmm(b, h, w_hh_t)
                if y is None
                else torch.addmm(b, torch.cat([y, h], dim=1), w)
            )
            h, c = self._cell(gates, c)
            scores = torch.addmm(noise[t], h, w_o)  # logits + g (for ancestral: logits/tau + g)
            idx = scores.argmax(dim=-1)
            ids[:, t] = idx
            if feedback == "soft":
                # Max-shift before the division: tau may be tiny at sampling time.
                scores = scores - scores.amax(dim=-1, keepdim=True)
                y = torch.softmax(scores.mul_(inv_tau), dim=-1)
            else:
                y = torch.zeros_like(scores).scatter_(1, idx.unsqueeze(1), 1.0)
        return ids

    # -- teacher forcing --------------------------------------------------------------------

    def teacher_forced_logits(
        self, ids: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Logits ``[T, B, V]`` predicting ``ids[:, t]`` from the one-hots of ``ids[:, :t]``.

        ``ids`` is ``[B, T]``; the input of step 0 is the zero vector. ``state`` defaults to
        zeros. One ``nn.LSTM`` call for the whole sequence.
        """
        bsz, steps = ids.shape
        x = torch.zeros(steps, bsz, self.vocab_size, device=ids.device, dtype=self.head.weight.dtype)
        if steps > 1:
            x[1:].scatter_(2, ids[:, :-1].t().unsqueeze(2), 1.0)
        if state is not None:
            state = (state[0].unsqueeze(0).contiguous(), state[1].unsqueeze(0).contiguous())
        out, _ = self.lstm(x, state)
        return self.head(out)

    def mle_loss(
        self, ids: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Mean teacher-forced cross-entropy over every position, pads included (so the
        length distribution is learned too)."""
        logits = self.teacher_forced_logits(ids, state)
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), ids.t().reshape(-1))
