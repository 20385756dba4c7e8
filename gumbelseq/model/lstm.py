"""The LSTM sequence generator shared by the backends: one network, three ways to run it.

``FeedbackLSTM`` is an ``nn.LSTM`` (one layer) plus a linear head ``state -> vocab logits``.
Its input at step t is a vector over the vocabulary describing the symbol emitted at step t-1
(``y_0 = 0``). It can be run

* teacher-forced (``teacher_forced_logits`` / ``mle_loss``): the inputs are the one-hots of the
  true previous symbols, known in advance, so the whole sequence is one ``nn.LSTM`` call;
* relaxed (``relaxed``): the Gumbel-softmax sample of step t is fed back at step t+1, with
  gradients (the generator of Kusner & Hernandez-Lobato 2016);
* sampling (``sample``): no gradients, ids out, soft / one-hot / ancestral feedback.

The feedback loops cannot use ``nn.LSTM`` (each input depends on the previous output), so they
run a fused cell built from the very same parameters. At this problem's sizes (state 10,
vocabulary 6, batch 200) time goes into per-op overhead, not arithmetic, so:

* one ``addmm`` over ``[y; h]`` computes all four gates; one sigmoid activates all of them (the
  g-gate rows are pre-scaled by 2 and ``tanh(a) = 2 sigmoid(2a) - 1``: CPU tanh is ~5x slower
  than sigmoid);
* tensors are feature-major (``[features, batch]``): gate blocks are contiguous rows, and CPU
  softmax over a short leading dimension is ~5x faster than over a short last one;
* the temperature is folded into the head (``(W h + b + g) / tau = (W/tau) h + (b + g)/tau``);
* ``relaxed`` is one ``torch.autograd.Function`` with a hand-written backward through time: its
  forward writes every intermediate into preallocated buffers without recording a graph, and its
  backward issues ~20 plain ops per step instead of autograd's ~40 nodes. ``relaxed_reference``
  is the same computation in plain autograd ops; the tests check that both agree (values and
  gradients, in float64) and ``gradcheck`` the fused one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from .gumbel import check_tau, gumbel_noise, straight_through

if TYPE_CHECKING:
    from .constrained import StepMask

__all__ = ["FeedbackLSTM", "lstm_parameters", "sampling_bytes"]


class _RelaxedLoop(torch.autograd.Function):
    """Free-running LSTM with (straight-through) softmax feedback, feature-major.

    Inputs: ``h0, c0 [H, B]``; ``bias_noise [T, V, B] = (b_o + g) / tau``; ``w [4H, V+H]`` and
    ``b [4H, 1]`` (gate order i, f, g, o; g rows pre-scaled by 2); ``w_o [V, H] = W_o / tau``;
    ``hard``. Output: ``y [T, B, V]``.
    """

    @staticmethod
    def forward(ctx, h0, c0, bias_noise, w, b, w_o, hard: bool, mask=None):  # type: ignore[override]
        steps, vocab, batch = bias_noise.shape
        hs = w_o.shape[1]
        opts = dict(dtype=w.dtype, device=w.device)
        x = torch.empty((steps + 1, vocab + hs, batch), **opts)  # x[t] = [y_{t-1}; h_{t-1}]
        act = torch.empty((steps, 4 * hs, batch), **opts)  # sigmoid of all gates
        g = torch.empty((steps, hs, batch), **opts)  # tanh gate
        c = torch.empty((steps + 1, hs, batch), **opts)  # c[t+1] = c_t
        k = torch.empty((steps, hs, batch), **opts)  # tanh(c_t)
        soft = torch.empty((steps, vocab, batch), **opts) if hard else None
        # Per-step views made in a few C++ calls: a Python slice per use costs as much as the op.
        xs, ys, hs_ = x.unbind(0), x[:, :vocab].unbind(0), x[:, vocab:].unbind(0)
        acts, gs, cs, ks = act.unbind(0), g.unbind(0), c.unbind(0), k.unbind(0)
        noises = bias_noise.unbind(0)
        ys[0].zero_()
        hs_[0].copy_(h0)
        cs[0].copy_(c0)
        for t in range(steps):
            s = torch.addmm(b, w, xs[t], out=acts[t]).sigmoid_()
            i, f, sg, o = s.split(hs)
            gt = torch.mul(sg, 2.0, out=gs[t]).sub_(1.0)
            torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, gt)
            h = torch.mul(o, torch.tanh(cs[t + 1], out=ks[t]), out=hs_[t + 1])
            scores = torch.addmm(noises[t], w_o, h)
            if mask is not None:
                # -inf before the softmax: masked entries get p = 0, so the backward below
                # (which only reads p) gives them no gradient either.
                mask.apply(scores)
            p = torch.softmax(scores, dim=0)
            if hard:
                soft[t].copy_(p)  # type: ignore[index]
                idx = scores.max(dim=0, keepdim=True).indices  # max(): far faster than argmax
                ys[t + 1].zero_().scatter_(0, idx, 1.0)
            else:
                ys[t + 1].copy_(p)
                if mask is not None:
                    idx = scores.max(dim=0, keepdim=True).indices
            if mask is not None:
                mask.advance(idx[0])
        ctx.hard = hard
        ctx.save_for_backward(x, act, g, c, k, soft if hard else x, w, w_o)
        return x[1:, :vocab].transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        x, act, g, c, k, soft, w, w_o = ctx.saved_tensors
        steps, hs, batch = k.shape
        vocab = w_o.shape[0]
        # Probabilities of the soft samples: their own buffer in hard mode, the fed-back inputs
        # otherwise.
        probs = (soft if ctx.hard else x[1:, :vocab]).unbind(0)
        dy = dy.transpose(1, 2).contiguous()  # [T, V, B]
        d_act = torch.empty_like(act)  # grads w.r.t. the (scaled) gate pre-activations
        d_scores = torch.empty_like(dy)
        dys, das, dss = dy.unbind(0), d_act.unbind(0), d_scores.unbind(0)
        acts, gs, cs, ks = act.unbind(0), g.unbind(0), c.unbind(0), k.unbind(0)
        dy_next = dh_next = dc_next = None  # grads arriving from step t+1 through x[t+1], c_t
        w_t, w_o_t = w.t(), w_o.t()
        for t in range(steps - 1, -1, -1):
            dyt = dys[t] if dy_next is None else dys[t] + dy_next
            p, kt = probs[t], ks[t]
            # softmax backward: ds = p * (dy - <p, dy>)
            ds = torch.mul(dyt, p, out=dss[t])
            ds.addcmul_(p, ds.sum(dim=0, keepdim=True), value=-1.0)
            dh = torch.mm(w_o_t, ds) if dh_next is None else torch.addmm(dh_next, w_o_t, ds)
            s = acts[t]
            i, f, _, o = s.split(hs)
            da_i, da_f, da_g, da_o = das[t].split(hs)
            torch.mul(dh, kt, out=da_o)
            dk = dh * o
            dc = torch.addcmul(dk, dk * kt, kt, value=-1.0)  # dk * (1 - k^2)
            if dc_next is not None:
                dc.add_(dc_next)
            torch.mul(dc, gs[t], out=da_i)
            torch.mul(dc, cs[t], out=da_f)
            torch.mul(dc, i, out=da_g).mul_(2.0)  # d sg = 2 d g
            dc_next = dc * f
            das[t].mul_(torch.addcmul(s, s, s, value=-1.0))  # sigmoid' = s (1 - s)
            dx = torch.mm(w_t, das[t])
            dy_next, dh_next = dx[:vocab], dx[vocab:]
        need = ctx.needs_input_grad
        dw = torch.bmm(d_act, x[:steps].transpose(1, 2)).sum(0) if need[3] else None
        db = d_act.sum(dim=(0, 2)).unsqueeze(1) if need[4] else None
        dw_o = torch.bmm(d_scores, x[1:, vocab:].transpose(1, 2)).sum(0) if need[5] else None
        return (
            dh_next if need[0] else None,
            dc_next if need[1] else None,
            d_scores if need[2] else None,
            dw,
            db,
            dw_o,
            None,
            None,
        )


class FeedbackLSTM(nn.Module):
    """One-layer LSTM over vocabulary vectors with a linear head to vocabulary logits.

    Public tensors are time-major, batch second: ``[steps, batch, vocab]`` (``nn.LSTM``'s
    layout). ``state`` arguments are ``(h0, c0)`` pairs of ``[batch, hidden]`` tensors.
    """

    def __init__(self, vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(vocab_size, hidden_size)
        self.head = nn.Linear(hidden_size, vocab_size)
        scale = torch.ones(4 * hidden_size, 1)
        scale[2 * hidden_size : 3 * hidden_size] = 2.0  # tanh(a) = 2 sigmoid(2a) - 1
        self.register_buffer("_gate_scale", scale, persistent=False)

    def _cell_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W [4H, V+H], b [4H, 1])`` over ``[y; h]``, g-gate rows scaled by 2; differentiable."""
        w = torch.cat([self.lstm.weight_ih_l0, self.lstm.weight_hh_l0], dim=1) * self._gate_scale
        b = (self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0).unsqueeze(1) * self._gate_scale
        return w, b

    # -- relaxed free-running (training the GAN generator) ----------------------------------

    def relaxed(
        self,
        state: tuple[torch.Tensor, torch.Tensor],
        noise: torch.Tensor,
        tau: float,
        *,
        hard: bool = False,
        mask: StepMask | None = None,
    ) -> torch.Tensor:
        """Free-running relaxed samples ``y_t = softmax((logits_t + g_t) / tau)``: ``[T, B, V]``.

        ``mask`` (a started ``StepMask``): at every step the ids the grammar does not allow get
        ``-inf`` before the softmax, so relaxed and straight-through samples stay inside the
        grammar; the mask follows the argmax id of each step.

        ``noise`` is the Gumbel noise of all steps, ``[T, B, V]`` (a ``[T, V, B]`` tensor viewed
        through ``.transpose(1, 2)`` avoids a copy). ``y_t`` is fed back as the input of step
        t+1. ``hard``: every ``y_t`` is the exact one-hot of ``argmax(logits_t + g_t)`` (also
        fed back), with straight-through gradients. Differentiable w.r.t. the parameters and
        ``state``.
        """
        inv_tau = 1.0 / check_tau(tau)
        w, b = self._cell_weights()
        w_o = self.head.weight * inv_tau
        bias_noise = (noise.transpose(1, 2) + self.head.bias.unsqueeze(1)) * inv_tau
        h0, c0 = state
        return _RelaxedLoop.apply(
            h0.t().contiguous(),
            c0.t().contiguous(),
            bias_noise.contiguous(),
            w,
            b,
            w_o,
            bool(hard),
            mask,
        )

    def relaxed_reference(
        self,
        state: tuple[torch.Tensor, torch.Tensor],
        noise: torch.Tensor,
        tau: float,
        *,
        hard: bool = False,
    ) -> torch.Tensor:
        """``relaxed`` written plainly with autograd ops (slow; the specification it is tested
        against)."""
        tau = check_tau(tau)
        h, c = state
        y = torch.zeros(h.shape[0], self.vocab_size, dtype=h.dtype, device=h.device)
        outs = []
        for t in range(noise.shape[0]):
            gates = F.linear(y, self.lstm.weight_ih_l0, self.lstm.bias_ih_l0) + F.linear(
                h, self.lstm.weight_hh_l0, self.lstm.bias_hh_l0
            )
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            scores = (self.head(h) + noise[t]) / tau
            y = torch.softmax(scores, dim=-1)
            if hard:
                y = straight_through(y, scores.argmax(dim=-1))
            outs.append(y)
        return torch.stack(outs)

    # -- sampling ---------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        state: tuple[torch.Tensor, torch.Tensor],
        steps: int,
        tau: float,
        generator: torch.Generator | None,
        *,
        feedback: str = "soft",
        mask: StepMask | None = None,
    ) -> torch.Tensor:
        """Draw ids ``[B, steps]`` without gradients, using only ``generator``.

        ``mask`` (a started ``StepMask``): disallowed ids get score ``-inf`` at every step
        before the pick, so they are never chosen and get no mass in a fed-back softmax. The
        noise drawn is the same with or without it.

        * ``"soft"`` (GAN generator): the id of step t is ``argmax(logits + g)``, a Gumbel-max
          draw from ``softmax(logits)``; the relaxed sample ``softmax((logits + g) / tau)`` is
          fed back, so ``tau`` only shapes the next input.
        * ``"hard"``: the same ids; their one-hots are fed back (straight-through generators).
        * ``"ancestral"`` (MLE): the id is a draw from ``softmax(logits / tau)``; its one-hot
          is fed back.
        """
        if feedback not in ("soft", "hard", "ancestral"):
            raise ValueError(f"feedback must be soft, hard or ancestral, got {feedback!r}")
        inv_tau = 1.0 / check_tau(tau)
        hs, vocab = self.hidden_size, self.vocab_size
        h0, c0 = state
        n = h0.shape[0]
        w, b = self._cell_weights()
        w_o, b_o = self.head.weight, self.head.bias.unsqueeze(1)
        if feedback == "ancestral":  # argmax(logits / tau + g): scale the head once
            w_o, b_o = w_o * inv_tau, b_o * inv_tau
        # Noise feature-major [T, V, n] in one call; the head bias is folded in.
        noise = gumbel_noise(
            (steps, vocab, n), generator=generator, device=h0.device, dtype=w.dtype
        )
        noise.add_(b_o)
        ids = torch.empty((steps, n), dtype=torch.long, device=h0.device)
        x = torch.empty((vocab + hs, n), dtype=w.dtype, device=h0.device)  # [y; h]
        x[:vocab].zero_()
        x[vocab:].copy_(h0.t())
        c = c0.t().contiguous()
        for t in range(steps):
            s = torch.addmm(b, w, x).sigmoid_()
            gt = s[2 * hs : 3 * hs].mul(2.0).sub_(1.0)
            c = torch.mul(s[hs : 2 * hs], c).addcmul_(s[:hs], gt)
            h = torch.mul(s[3 * hs :], torch.tanh(c), out=x[vocab:])
            scores = torch.addmm(noise[t], w_o, h)
            if mask is not None:
                mask.apply(scores)
            # max() rather than argmax(): same first-max index, ~20x faster on CPU over a
            # short leading dimension.
            top, idx = scores.max(dim=0, keepdim=True)
            ids[t] = idx[0]
            if mask is not None:
                mask.advance(idx[0])
            if feedback == "soft":
                # Shift before dividing by tau: tau may be tiny here.
                scores.sub_(top).mul_(inv_tau)
                x[:vocab].copy_(torch.softmax(scores, dim=0))
            else:
                x[:vocab].zero_().scatter_(0, idx, 1.0)
        return ids.t().contiguous()

    # -- teacher forcing --------------------------------------------------------------------

    def teacher_forced_logits(
        self, ids: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Logits ``[T, B, V]`` predicting ``ids[:, t]`` from the one-hots of ``ids[:, :t]``.

        ``ids`` is ``[B, T]``; the input of step 0 is the zero vector; ``state`` defaults to
        zeros. One ``nn.LSTM`` call for the whole sequence.
        """
        bsz, steps = ids.shape
        dtype = self.head.weight.dtype
        x = torch.zeros(steps, bsz, self.vocab_size, device=ids.device, dtype=dtype)
        if steps > 1:
            x[1:].scatter_(2, ids[:, :-1].t().unsqueeze(2), 1.0)
        if state is not None:
            state = (state[0].unsqueeze(0).contiguous(), state[1].unsqueeze(0).contiguous())
        out, _ = self.lstm(x, state)
        return self.head(out)

    def mle_loss(
        self,
        ids: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean teacher-forced cross-entropy over every position, pads included (so the length
        distribution is learned too). ``allowed`` ``[B, T, V]``: a masked softmax, over the ids
        the grammar allows at each position (the others get logit ``-inf``)."""
        logits = self.teacher_forced_logits(ids, state)
        if allowed is not None:
            logits = logits.masked_fill(~allowed.transpose(0, 1), float("-inf"))
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), ids.t().reshape(-1))


def lstm_parameters(hidden: int, vocab: int) -> int:
    """Parameters of a one-layer LSTM over one-hot inputs of size ``vocab`` with a linear head
    back to ``vocab`` (what ``FeedbackLSTM`` and the discriminators hold, give or take a head)."""
    return 4 * hidden * (hidden + vocab) + 8 * hidden + vocab * hidden + vocab


def sampling_bytes(chunk: int, steps: int, vocab: int, hidden: int) -> int:
    """Memory of one sampling chunk (``BaseTrainer.sample_ids``): noise for every step, ids, and the state."""
    return chunk * (steps * (4 * vocab + 8) + 4 * (vocab + 4 * hidden))

