"""Kernel ``v2`` of the LSTMs: any number of layers, and big state sizes.

``lstm.FeedbackLSTM`` (kernel ``v1``) is tuned for the paper's sizes (state 10, vocabulary 6),
where time goes into per-op overhead: it is feature-major, one layer, and every earlier run's
numbers depend on its exact arithmetic, so it stays as it is. At MOSES's sizes (state 256,
length 57) the time goes into matrix products instead, and ``v1`` runs some of them in shapes
that waste the CPU (a weight gradient as 57 products of inner size 64, ``bmm``) or runs them
for nothing (the discriminator's weight gradients in the generator's step, where only its input
gradient is wanted: ``nn.LSTM``'s fused backward computes all of them). ``v2``:

* is batch-major, ``[T, B, features]`` as ``nn.LSTM``: every step's tensor is contiguous and so is
  the whole sequence, so each weight gradient and each input projection is *one* product over all
  ``T * B`` rows instead of one per step;
* teacher forcing and the discriminator run the recurrence over known inputs (``_Sequence``):
  the input projection of the first layer is a row lookup for one-hot inputs (teacher forcing)
  or one product for soft ones (D), and only the recurrent product is left per step;
* the free-running loop (``_Relaxed``, the GAN's generator) keeps ``v1``'s design (one
  ``autograd.Function``, preallocated buffers, a hand-written backward through time) for any
  number of layers;
* gradients nobody asked for are not computed (D's weights in the generator's step);
* sampling on a CPU runs a chunk's rows in blocks of ~256 per thread, so that a step's gates
  stay in cache (the same draws: a row's arithmetic does not depend on its block);
* optionally (``matmul="bfloat16"``) runs the products in bfloat16 with float32 accumulation,
  everything else (states, gates, softmax, Adam) in float32: CPUs with AMX or AVX512-BF16 and
  recent GPUs multiply bfloat16 several times faster. Gate pre-activations are then rounded
  to bfloat16, as under ``torch.autocast`` (gradients differ from float32 by ~0.3%); the
  teacher-forced head and D's input projection run in bfloat16 too, and the cells compute
  tanh as ``2 sigmoid(2c) - 1`` (see ``_MM``).

For teacher forcing alone in float32, oneDNN's fused LSTM (``v1``'s ``nn.LSTM``) is as fast as
``v2`` on CPU; ``v2`` wins where ``v1`` wastes work (the GAN) and is what runs several layers.

Parameters are those of ``nn.LSTM(V, H, num_layers=L)`` plus the head ``nn.Linear(H, V)``, so a
``v2`` network holds (and checkpoints) exactly what ``v1``'s one-layer ``nn.LSTM`` holds. As in
``v1``, the g-gate rows are pre-scaled by 2 so that one sigmoid activates all gates
(``tanh(a) = 2 sigmoid(2a) - 1``). The tests check both functions against plain autograd
(values and gradients, float64) and ``gradcheck`` them.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import OptionError
from .gumbel import check_tau, gumbel_noise

if TYPE_CHECKING:
    from .constrained import StepMask

__all__ = [
    "StackedLSTM", "SequenceClassifier", "KERNELS", "MATMULS", "MATMUL_DTYPES", "check_kernel",
    "default_kernel", "stacked_parameters", "sample_chunk_rows",
]

#: The ``kernel`` option's values: ``v1`` is ``lstm.FeedbackLSTM`` (and ``nn.LSTM`` for D), ``v2``
#: this module.
KERNELS = ("v1", "v2")
#: ``matmul`` option values -> the dtype products run in.
MATMUL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MATMULS = tuple(MATMUL_DTYPES)


def check_kernel(kernel: str, layers: Mapping[str, int], matmul: str) -> None:
    """``kernel=v1`` runs one-layer float32 networks only: anything else is one line saying so."""
    if kernel != "v1":
        return
    deep = [f"{k}={v}" for k, v in layers.items() if v != 1]
    if deep or matmul != "float32":
        asked = ", ".join(deep + ([f"matmul={matmul}"] if matmul != "float32" else []))
        raise OptionError(f"option kernel=v1 is invalid with {asked}: v1 runs one-layer float32 LSTMs; use kernel=v2")


def default_kernel(given: Mapping[str, Any], layer_keys: tuple[str, ...], preset_kernel: str = "v1") -> str:
    """The kernel when none is given: v2 where layers or matmul need it, else the preset's."""
    if any(given.get(k, 1) != 1 for k in layer_keys) or given.get("matmul", "float32") != "float32":
        return "v2"
    return preset_kernel


def sample_chunk_rows(hidden: int, layers: int) -> int:
    """Rows per sampling chunk for a ``v2`` network: 16,384 (``v1``'s) for small states, fewer
    for big ones, so that a step's gates (``rows x 4H x layers`` floats) stay within ~8 MiB,
    i.e. in cache; at state 256 that is 2,048 rows. A function of the options only: the chunks
    decide the random stream, so they must not depend on the machine."""
    rows = (8 << 20) // (4 * 4 * hidden * layers)
    return max(256, min(16384, 1 << (max(rows, 1).bit_length() - 1)))


def stacked_parameters(hidden: int, vocab: int, layers: int, out: int | None = None) -> int:
    """Parameters of an ``L``-layer LSTM over inputs of size ``vocab`` and a linear head to
    ``out`` outputs (default ``vocab``)."""
    out = vocab if out is None else out
    first = 4 * hidden * (vocab + hidden) + 8 * hidden
    rest = (layers - 1) * (4 * hidden * 2 * hidden + 8 * hidden)
    return first + rest + out * hidden + out


class _Pool:
    """Recycled buffers for the kernels' per-call tensors (bit for bit the same results).

    A call of ``_Sequence`` or ``_Relaxed`` at MOSES's sizes allocates ~50 MB of buffers
    (gates, states for every step). Freshly allocated, they come from the OS page by page (glibc
    serves such sizes with ``mmap`` and returns them at ``free``): in some runs a third of a GAN
    iteration was spent in page faults. Here a buffer goes back to a free list when the
    autograd node that saved it is freed (after its backward, or at once when no graph was
    recorded; ``retain_graph`` keeps it) and the next call of the same shape takes it. A buffer is only reused after its owner gave it back, every
    kernel writes each buffer before reading it (as it must: ``torch.empty`` is uninitialised
    memory too), and a recycled buffer has the same shape, strides and alignment, so results
    are unchanged. Buffers handed to the caller (outputs, returned gradients) are never given
    back. At most ``keep`` free buffers per shape are kept; the rest are freed."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self.free: dict[tuple, list[torch.Tensor]] = {}

    def take(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        stack = self.free.get((tuple(shape), dtype, device))
        if stack:
            try:
                return stack.pop()
            except IndexError:  # another thread took it first
                pass
        return torch.empty(shape, dtype=dtype, device=device)

    def give(self, *buffers: torch.Tensor | None) -> None:
        for b in buffers:
            if b is None:
                continue
            stack = self.free.setdefault((tuple(b.shape), b.dtype, b.device), [])
            if len(stack) < self.keep:
                stack.append(b)


_POOL = _Pool()


def _recycle_with(ctx: Any, buffers: list[torch.Tensor | None]) -> None:
    """Give ``buffers`` back to the pool when the autograd node ``ctx`` is freed: after the
    backward that consumed it (or at once when no graph was recorded), never while a
    ``retain_graph`` backward could still read them."""
    weakref.finalize(ctx, _POOL.give, *buffers)


class _MM:
    """Matrix products in the chosen dtype, results in float32.

    In bfloat16 mode the tensors products read (states, inputs, gate gradients) get a bfloat16
    twin written once, when they are made (``operand``), so no product casts a big tensor."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.low = dtype != torch.float32
        self.dtype = dtype
        # tanh(c) as 2 sigmoid(2c) - 1 in the cells: CPU tanh is ~4x slower than sigmoid (1.36
        # vs 0.32 ms for 2,048 x 256 floats, four passes included) and the identity's error
        # (~1e-7) is far under bfloat16's rounding. Float32 keeps tanh: its runs' numbers stay
        # bit for bit as they were.
        self.fast_tanh = self.low

    def cast(self, w: torch.Tensor) -> torch.Tensor:
        """A weight prepared once per call (cast and laid out for the products)."""
        return w.to(self.dtype).contiguous() if self.low else w

    def operand(self, buffer: torch.Tensor) -> torch.Tensor:
        """The twin of ``buffer`` that products read: ``buffer`` itself in float32."""
        return _POOL.take(buffer.shape, self.dtype, buffer.device) if self.low else buffer

    def mm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.low:
            return torch.mm(a.to(self.dtype), b.to(self.dtype)).float()
        return torch.mm(a, b)

    def addmm(self, bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        """``out = bias + a @ b`` (``out`` may be ``bias`` itself)."""
        if self.low:
            product = torch.mm(a.to(self.dtype), b.to(self.dtype))
            if out is None or out is bias:
                return torch.add(bias, product, out=out)
            # The same sum as torch.add(bias, product), ~20% faster: a mixed-dtype add is slow.
            return out.copy_(product).add_(bias)
        if out is bias:
            return out.addmm_(a, b)
        return torch.addmm(bias, a, b, out=out)

    def linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``F.linear(x, w, b)`` with its products (backward's too) in the chosen dtype, as
        ``torch.autocast`` would run it; the result in float32."""
        if self.low:
            return F.linear(x.to(self.dtype), w.to(self.dtype)).float() + b
        return F.linear(x, w, b)

    def grad_weight(self, d_pre: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """``d_pre^T @ inputs`` over all rows (``[N, out]``, ``[N, in]`` -> ``[out, in]``),
        computed as ``(inputs^T @ d_pre)^T``: MKL runs that shape faster."""
        return self.mm(inputs.t(), d_pre).t().contiguous()


def _cell(
    a: torch.Tensor, c_prev: torch.Tensor, c_out: torch.Tensor, k_out: torch.Tensor, h_out: torch.Tensor, hs: int,
    fast_tanh: bool = False, gates: tuple[torch.Tensor, ...] | None = None, g_out: torch.Tensor | None = None,
) -> None:
    """Activate the scaled gate pre-activations ``a [B, 4H]`` in place and write ``c_t``,
    ``tanh(c_t)`` and ``h_t`` into the given buffers (``fast_tanh``: see ``_MM``). ``gates``:
    ``a``'s four gate blocks as views made beforehand (a ``split`` per step costs as much as a
    small op); ``g_out``: where to keep the tanh gate (the backward reads it)."""
    s = a.sigmoid_()
    i, f, sg, o = gates if gates is not None else s.split(hs, dim=1)
    g = torch.mul(sg, 2.0, out=g_out).sub_(1.0)
    torch.mul(f, c_prev, out=c_out).addcmul_(i, g)
    if fast_tanh:
        torch.mul(c_out, 2.0, out=k_out).sigmoid_().mul_(2.0).sub_(1.0)
    else:
        torch.tanh(c_out, out=k_out)
    torch.mul(o, k_out, out=h_out)


def _cell_backward(
    dh: torch.Tensor, dc_next: torch.Tensor | None, s: torch.Tensor, k: torch.Tensor,
    c_prev: torch.Tensor, da: torch.Tensor, g: torch.Tensor, gates: tuple[torch.Tensor, ...],
    d_gates: tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """Gradients of one cell step: writes d(pre-activations) into ``da`` and returns ``dc_{t-1}``.
    ``s``: the step's activated gates, ``gates``/``d_gates``: the four blocks of ``s``/``da`` as
    views, ``g``: the tanh gate the forward kept."""
    i, f, _, o = gates
    da_i, da_f, da_g, da_o = d_gates
    torch.mul(dh, k, out=da_o)
    dk = dh * o
    dc = torch.addcmul(dk, dk * k, k, value=-1.0)  # dk * (1 - k^2)
    if dc_next is not None:
        dc.add_(dc_next)
    torch.mul(dc, g, out=da_i)
    torch.mul(dc, c_prev, out=da_f)
    torch.mul(dc, i, out=da_g).mul_(2.0)  # d sg = 2 d g
    da.mul_(torch.addcmul(s, s, s, value=-1.0))  # sigmoid' = s (1 - s)
    return dc * f


def _gate_views(buffer: torch.Tensor, hs: int) -> list[tuple[torch.Tensor, ...]]:
    """Per step, the four gate blocks of ``buffer [T, B, 4H]`` as views, made in a few calls."""
    return list(zip(*(x.unbind(0) for x in buffer.split(hs, dim=2))))


def _seq_index(layer: int) -> tuple[int | None, int, int | None]:
    """Where ``(w_ih, w_hh, b)`` of ``layer`` sit in ``_Sequence``'s parameter list (the first
    layer has only ``w_hh``: its input projection arrives computed)."""
    return (None, 0, None) if layer == 0 else (3 * layer - 2, 3 * layer - 1, 3 * layer)


class _Sequence(torch.autograd.Function):
    """An ``L``-layer LSTM over known inputs, batch-major.

    Inputs: ``p0 [T, B, 4H]``, the first layer's input projections with its bias (scaled g
    rows; float32, or the products' dtype); ``h0, c0 [L, B, H]``; ``mm``; then the parameters,
    laid out as ``_seq_index`` says: ``w_hh [4H, H]`` of the first layer, then ``w_ih [4H, H],
    w_hh, b [4H]`` of each further layer (all scaled). Output: the top layer's states
    ``[T, B, H]``.
    """

    @staticmethod
    def forward(ctx, p0, h0, c0, mm: _MM, *params):  # type: ignore[override]
        steps, batch, four_h = p0.shape
        hs = four_h // 4
        opts = dict(dtype=h0.dtype, device=p0.device)  # p0 may be bfloat16: the states are not
        saved = []
        below_m = None
        top = None  # the layer below's float32 states, once there is one
        for layer in range(h0.shape[0]):
            i_ih, i_hh, i_b = _seq_index(layer)
            w_hh_t = mm.cast(params[i_hh].t())
            act = _POOL.take((steps, batch, four_h), **opts)
            if layer > 0:
                # One product over all steps and rows: the layer below is done.
                mm.addmm(params[i_b], below_m.reshape(steps * batch, hs), mm.cast(params[i_ih].t()),
                         out=act.view(steps * batch, four_h))
            h = _POOL.take((steps + 1, batch, hs), **opts)
            h_m = mm.operand(h)
            c = _POOL.take((steps + 1, batch, hs), **opts)
            k = _POOL.take((steps, batch, hs), **opts)
            g = _POOL.take((steps, batch, hs), **opts)
            h[0].copy_(h0[layer])
            c[0].copy_(c0[layer])
            acts, hl, hml, cl, kl = act.unbind(0), h.unbind(0), h_m.unbind(0), c.unbind(0), k.unbind(0)
            gates, gl = _gate_views(act, hs), g.unbind(0)
            if mm.low:
                hml[0].copy_(hl[0])
            # From the second layer on the projections are in `act` already: added to in place.
            sources = acts if layer > 0 else p0.unbind(0)
            for t in range(steps):
                a = mm.addmm(sources[t], hml[t], w_hh_t, out=acts[t])
                _cell(a, cl[t], cl[t + 1], kl[t], hl[t + 1], hs, mm.fast_tanh, gates[t], gl[t])
                if mm.low:
                    hml[t + 1].copy_(hl[t + 1])
            saved.append((act, h_m, c, k, g))
            below_m = h_m[1:]
            if layer > 0 and mm.low:
                _POOL.give(top)  # the float32 states below: backward reads only their twin
            top = h  # (in float32 h_m is h itself: kept for backward)
        ctx.mm = mm
        ctx.layers = saved
        ctx.p0_dtype = p0.dtype
        ctx.save_for_backward(*params)
        out = top[1:].clone()  # the buffer stays private: backward reads it
        if mm.low:
            _POOL.give(top)  # float32 states of the top layer: only h_m is read later
        _recycle_with(ctx, [b for bufs in saved for b in bufs])
        return out

    @staticmethod
    def backward(ctx, d_out):  # type: ignore[override]
        params = ctx.saved_tensors
        mm: _MM = ctx.mm
        need_p0, need_h0, need_c0, _, *need = ctx.needs_input_grad
        steps, batch, hs = d_out.shape
        rows = steps * batch
        d_params: list[torch.Tensor | None] = [None] * len(params)
        d_h0, d_c0 = [], []
        d_below = d_out.contiguous()
        d_p0 = None
        for layer in range(len(ctx.layers) - 1, -1, -1):
            act, h_m, c, k, g = ctx.layers[layer]
            i_ih, i_hh, i_b = _seq_index(layer)
            w_hh = mm.cast(params[i_hh])
            d_act = _POOL.take(act.shape, act.dtype, act.device)
            d_act_m = mm.operand(d_act)
            dh_next = dc_next = None
            acts, cl, kl, gl, das, dams, dbs = (act.unbind(0), c.unbind(0), k.unbind(0), g.unbind(0),
                                                d_act.unbind(0), d_act_m.unbind(0), d_below.unbind(0))
            gates, d_gates = _gate_views(act, hs), _gate_views(d_act, hs)
            for t in range(steps - 1, -1, -1):
                dh = dbs[t] if dh_next is None else dbs[t] + dh_next
                dc_next = _cell_backward(dh, dc_next, acts[t], kl[t], cl[t], das[t], gl[t], gates[t], d_gates[t])
                if mm.low:
                    dams[t].copy_(das[t])
                dh_next = mm.mm(dams[t], w_hh)
            d_h0.append(dh_next)
            d_c0.append(dc_next)
            flat_m = d_act_m.view(rows, 4 * hs)
            # Weight gradients: one product each over all steps and rows.
            if need[i_hh]:
                d_params[i_hh] = mm.grad_weight(flat_m, h_m[:-1].reshape(rows, hs))
            if layer == 0:
                # Returned (so not recycled) in p0's dtype: for a bfloat16 p0 the twin the
                # products read is that gradient already (autograd would cast d_act again).
                if d_act_m.dtype == ctx.p0_dtype:
                    d_p0 = d_act_m
                    _POOL.give(d_act if mm.low else None)
                else:
                    d_p0 = d_act
                    _POOL.give(d_act_m if mm.low else None)
                break
            below_m = ctx.layers[layer - 1][1][1:].reshape(rows, hs)
            if need[i_ih]:
                d_params[i_ih] = mm.grad_weight(flat_m, below_m)
            if need[i_b]:
                d_params[i_b] = d_act.view(rows, 4 * hs).sum(0)
            d_below = mm.mm(flat_m, mm.cast(params[i_ih])).view(steps, batch, hs)
            _POOL.give(d_act, d_act_m if mm.low else None)
        d_h0.reverse()
        d_c0.reverse()
        return (
            d_p0 if need_p0 else None,
            torch.stack(d_h0) if need_h0 else None,
            torch.stack(d_c0) if need_c0 else None,
            None,
            *d_params,
        )


class _Relaxed(torch.autograd.Function):
    """Free-running ``L``-layer LSTM with (straight-through) softmax feedback, batch-major.

    Inputs: ``h0, c0 [L, B, H]``; ``bias_noise [T, B, V] = (b_o + g) / tau``; ``w_o [V, H] =
    W_o / tau``; ``hard``; ``mask``; ``mm``; then per layer ``w_ih [4H, in]``, ``w_hh [4H, H]``,
    ``b [4H]`` (scaled g rows). Output: ``y [T, B, V]``.
    """

    @staticmethod
    def forward(ctx, h0, c0, bias_noise, w_o, hard: bool, mask, mm: _MM, *params):  # type: ignore[override]
        steps, batch, vocab = bias_noise.shape
        layers, _, hs = h0.shape
        opts = dict(dtype=w_o.dtype, device=w_o.device)
        y = _POOL.take((steps + 1, batch, vocab), **opts)  # y[t] is the input of step t
        y[0].zero_()
        y_m = mm.operand(y)
        if mm.low:
            y_m[0].zero_()
        soft = _POOL.take((steps, batch, vocab), **opts) if hard else None
        acts = [_POOL.take((steps, batch, 4 * hs), **opts) for _ in range(layers)]
        hbuf = [_POOL.take((steps + 1, batch, hs), **opts) for _ in range(layers)]
        hbuf_m = [mm.operand(h) for h in hbuf]
        cbuf = [_POOL.take((steps + 1, batch, hs), **opts) for _ in range(layers)]
        kbuf = [_POOL.take((steps, batch, hs), **opts) for _ in range(layers)]
        gbuf = [_POOL.take((steps, batch, hs), **opts) for _ in range(layers)]
        for layer in range(layers):
            hbuf[layer][0].copy_(h0[layer])
            cbuf[layer][0].copy_(c0[layer])
            if mm.low:
                hbuf_m[layer][0].copy_(h0[layer])
        w_ih_t = [mm.cast(params[3 * l].t()) for l in range(layers)]
        w_hh_t = [mm.cast(params[3 * l + 1].t()) for l in range(layers)]
        bias = [params[3 * l + 2] for l in range(layers)]
        w_o_t = mm.cast(w_o.t())
        # Per-step views made once: a Python slice per use costs as much as the op.
        ys, yms, noises = y.unbind(0), y_m.unbind(0), bias_noise.unbind(0)
        a_v = [a.unbind(0) for a in acts]
        h_v = [h.unbind(0) for h in hbuf]
        hm_v = [h.unbind(0) for h in hbuf_m]
        c_v = [c.unbind(0) for c in cbuf]
        k_v = [k.unbind(0) for k in kbuf]
        g_v = [g.unbind(0) for g in gbuf]
        gate_v = [_gate_views(a, hs) for a in acts]
        for t in range(steps):
            x = yms[t]
            for layer in range(layers):
                a = mm.addmm(bias[layer], x, w_ih_t[layer], out=a_v[layer][t])
                a = mm.addmm(a, hm_v[layer][t], w_hh_t[layer], out=a)
                _cell(a, c_v[layer][t], c_v[layer][t + 1], k_v[layer][t], h_v[layer][t + 1], hs, mm.fast_tanh,
                      gate_v[layer][t], g_v[layer][t])
                if mm.low:
                    hm_v[layer][t + 1].copy_(h_v[layer][t + 1])
                x = hm_v[layer][t + 1]
            scores = mm.addmm(noises[t], x, w_o_t, out=torch.empty((batch, vocab), **opts))
            if mask is not None:
                # -inf before the softmax: masked entries get p = 0, so the backward (which only
                # reads p) gives them no gradient either.
                mask.apply(scores.t())
            p = torch.softmax(scores, dim=1)
            idx = None
            if hard:
                soft[t].copy_(p)  # type: ignore[index]
                idx = scores.max(dim=1, keepdim=True).indices  # max(): far faster than argmax
                ys[t + 1].zero_().scatter_(1, idx, 1.0)
            else:
                ys[t + 1].copy_(p)
                if mask is not None:
                    idx = scores.max(dim=1, keepdim=True).indices
            if mm.low:
                yms[t + 1].copy_(ys[t + 1])
            if mask is not None:
                mask.advance(idx[:, 0])
        ctx.mm = mm
        ctx.hard = hard
        ctx.buffers = (y, y_m, soft, acts, hbuf_m, cbuf, kbuf, gbuf)
        ctx.save_for_backward(w_o, *params)
        out = y[1:].clone()  # the buffer stays private: backward reads it
        if mm.low:
            _POOL.give(*hbuf)  # backward reads only the states' twins
        _recycle_with(ctx, [y, y_m if mm.low else None, soft, *acts, *hbuf_m, *cbuf, *kbuf, *gbuf])
        return out

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        w_o, *params = ctx.saved_tensors
        mm: _MM = ctx.mm
        y, y_m, soft, acts, hbuf_m, cbuf, kbuf, gbuf = ctx.buffers
        layers = len(acts)
        steps, batch, vocab = dy.shape
        rows = steps * batch
        hs = hbuf_m[0].shape[2]
        probs = (soft if ctx.hard else y[1:]).unbind(0)
        dy = dy.contiguous()
        d_scores = _POOL.take(dy.shape, dy.dtype, dy.device)
        d_acts = [_POOL.take(a.shape, a.dtype, a.device) for a in acts]
        d_acts_m = [mm.operand(d) for d in d_acts]
        w_ih = [mm.cast(params[3 * l]) for l in range(layers)]
        w_hh = [mm.cast(params[3 * l + 1]) for l in range(layers)]
        w_o_m = mm.cast(w_o)
        dys, dss = dy.unbind(0), d_scores.unbind(0)
        a_v = [a.unbind(0) for a in acts]
        c_v = [c.unbind(0) for c in cbuf]
        k_v = [k.unbind(0) for k in kbuf]
        g_v = [g.unbind(0) for g in gbuf]
        gate_v = [_gate_views(a, hs) for a in acts]
        d_gate_v = [_gate_views(d, hs) for d in d_acts]
        da_v = [d.unbind(0) for d in d_acts]
        dam_v = [d.unbind(0) for d in d_acts_m]
        dy_next = None
        dh_next: list[torch.Tensor | None] = [None] * layers
        dc_next: list[torch.Tensor | None] = [None] * layers
        for t in range(steps - 1, -1, -1):
            dyt = dys[t] if dy_next is None else dys[t] + dy_next
            p = probs[t]
            ds = torch.mul(dyt, p, out=dss[t])  # softmax backward: p * (dy - <p, dy>)
            ds.addcmul_(p, ds.sum(dim=1, keepdim=True), value=-1.0)
            d_in = mm.mm(ds, w_o_m)
            for layer in range(layers - 1, -1, -1):
                dh = d_in if dh_next[layer] is None else d_in.add_(dh_next[layer])
                da = da_v[layer][t]
                dc_next[layer] = _cell_backward(dh, dc_next[layer], a_v[layer][t], k_v[layer][t], c_v[layer][t], da,
                                                g_v[layer][t], gate_v[layer][t], d_gate_v[layer][t])
                if mm.low:
                    dam_v[layer][t].copy_(da)
                da = dam_v[layer][t]
                dh_next[layer] = mm.mm(da, w_hh[layer])
                if layer > 0 or t > 0:  # the input of step 0 is the constant zero vector
                    d_in = mm.mm(da, w_ih[layer])
            dy_next = d_in
        need = ctx.needs_input_grad
        d_params: list[torch.Tensor | None] = []
        for layer in range(layers):
            flat_m = d_acts_m[layer].view(rows, 4 * hs)
            below = (y_m[:-1] if layer == 0 else hbuf_m[layer - 1][1:])
            below = below.reshape(rows, below.shape[2])
            d_params.append(mm.grad_weight(flat_m, below) if need[7 + 3 * layer] else None)
            d_params.append(mm.grad_weight(flat_m, hbuf_m[layer][:-1].reshape(rows, hs)) if need[8 + 3 * layer] else None)
            d_params.append(d_acts[layer].view(rows, 4 * hs).sum(0) if need[9 + 3 * layer] else None)
        top = hbuf_m[-1][1:].reshape(rows, hs)
        d_w_o = mm.grad_weight(d_scores.view(rows, vocab), top) if need[3] else None
        _POOL.give(*d_acts, *(d_acts_m if mm.low else ()), None if need[2] else d_scores)
        return (
            torch.stack(dh_next) if need[0] else None,  # type: ignore[arg-type]
            torch.stack(dc_next) if need[1] else None,  # type: ignore[arg-type]
            d_scores if need[2] else None,
            d_w_o,
            None,
            None,
            None,
            *d_params,
        )


class _Weights(nn.Module):
    """An ``nn.LSTM``'s parameters, read as the kernels want them (g rows scaled by 2)."""

    lstm: nn.LSTM

    def _init_scale(self, hidden: int) -> None:
        scale = torch.ones(4 * hidden)
        scale[2 * hidden : 3 * hidden] = 2.0  # tanh(a) = 2 sigmoid(2a) - 1
        self.register_buffer("_gate_scale", scale, persistent=False)

    def layer_weights(self, layer: int, *, detach: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(w_ih [4H, in], w_hh [4H, H], b [4H])`` of ``layer``, scaled; differentiable
        unless ``detach``."""
        s = self._gate_scale
        raw = [getattr(self.lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if detach:
            raw = [w.detach() for w in raw]
        w_ih = raw[0] * s.unsqueeze(1)
        w_hh = raw[1] * s.unsqueeze(1)
        b = (raw[2] + raw[3]) * s
        return w_ih, w_hh, b

    def run_sequence(
        self, p0: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], mm: _MM, *, detach: bool = False
    ) -> torch.Tensor:
        """Top-layer states ``[T, B, H]`` over the first layer's input projections ``p0``."""
        flat: list[torch.Tensor] = []
        for layer in range(self.lstm.num_layers):
            w_ih, w_hh, b = self.layer_weights(layer, detach=detach)
            flat.extend([w_hh] if layer == 0 else [w_ih, w_hh, b])
        return _Sequence.apply(p0, state[0], state[1], mm, *flat)


class StackedLSTM(_Weights):
    """``L``-layer LSTM over vocabulary vectors with a linear head to vocabulary logits: the
    ``v2`` counterpart of ``lstm.FeedbackLSTM``, with the same methods. ``state`` arguments are
    ``(h0, c0)`` pairs of ``[L, batch, hidden]`` tensors."""

    def __init__(self, vocab_size: int, hidden_size: int, layers: int = 1, matmul: str = "float32") -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.layers = layers
        self.matmul = matmul
        self.lstm = nn.LSTM(vocab_size, hidden_size, num_layers=layers)
        self.head = nn.Linear(hidden_size, vocab_size)
        self._init_scale(hidden_size)

    def _mm(self) -> _MM:
        return _MM(MATMUL_DTYPES[self.matmul])

    def zero_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros((self.layers, n, self.hidden_size), device=self.head.weight.device)
        return z, z

    def relaxed(
        self,
        state: tuple[torch.Tensor, torch.Tensor],
        noise: torch.Tensor,
        tau: float,
        *,
        hard: bool = False,
        mask: StepMask | None = None,
    ) -> torch.Tensor:
        """Free-running relaxed samples ``y_t = softmax((logits_t + g_t) / tau)``, ``[T, B, V]``,
        as ``FeedbackLSTM.relaxed`` (``noise [T, B, V]``; ``hard``: straight-through one-hots;
        ``mask``: grammar masks before the softmax)."""
        inv_tau = 1.0 / check_tau(tau)
        flat: list[torch.Tensor] = []
        for layer in range(self.layers):
            flat.extend(self.layer_weights(layer))
        w_o = self.head.weight * inv_tau
        bias_noise = ((noise + self.head.bias) * inv_tau).contiguous()
        return _Relaxed.apply(state[0].contiguous(), state[1].contiguous(), bias_noise, w_o, bool(hard), mask, self._mm(), *flat)

    def relaxed_reference(
        self, state: tuple[torch.Tensor, torch.Tensor], noise: torch.Tensor, tau: float, *, hard: bool = False
    ) -> torch.Tensor:
        """``relaxed`` written plainly with autograd ops (slow; the specification it is tested against)."""
        tau = check_tau(tau)
        h, c = list(state[0].unbind(0)), list(state[1].unbind(0))
        y = torch.zeros(h[0].shape[0], self.vocab_size, dtype=h[0].dtype, device=h[0].device)
        outs = []
        for t in range(noise.shape[0]):
            x = y
            for layer in range(self.layers):
                gates = F.linear(x, getattr(self.lstm, f"weight_ih_l{layer}"), getattr(self.lstm, f"bias_ih_l{layer}"))
                gates = gates + F.linear(h[layer], getattr(self.lstm, f"weight_hh_l{layer}"), getattr(self.lstm, f"bias_hh_l{layer}"))
                i, f, g, o = gates.chunk(4, dim=1)
                c[layer] = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
                h[layer] = torch.sigmoid(o) * torch.tanh(c[layer])
                x = h[layer]
            scores = (self.head(x) + noise[t]) / tau
            y = torch.softmax(scores, dim=-1)
            if hard:
                hard_y = torch.zeros_like(y).scatter_(-1, scores.argmax(-1, keepdim=True), 1.0)
                y = hard_y + (y - y.detach())
            outs.append(y)
        return torch.stack(outs)

    # -- teacher forcing --------------------------------------------------------------------

    def teacher_forced_logits(
        self, ids: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Logits ``[T, B, V]`` predicting ``ids[:, t]`` from the one-hots of ``ids[:, :t]``
        (the input of step 0 is the zero vector); ``state`` defaults to zeros."""
        bsz, steps = ids.shape
        w_ih, _, b = self.layer_weights(0)
        # The input projection of a one-hot is a column of w_ih: one lookup for all steps.
        # Row V of the table is the zero vector's (the bias alone), the input of step 0.
        table = torch.cat([w_ih.t() + b, b.unsqueeze(0)])
        prev = torch.full((steps, bsz), self.vocab_size, dtype=torch.long, device=ids.device)
        if steps > 1:
            prev[1:] = ids[:, :-1].t()
        p0 = F.embedding(prev, table)  # its backward is deterministic, on CUDA too
        if state is None:
            state = self.zero_state(bsz)
        mm = self._mm()
        return mm.linear(self.run_sequence(p0, state, mm), self.head.weight, self.head.bias)

    def mle_loss(
        self,
        ids: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean teacher-forced cross-entropy over every position, pads included; ``allowed``
        ``[B, T, V]``: a masked softmax (as ``FeedbackLSTM.mle_loss``)."""
        logits = self.teacher_forced_logits(ids, state)
        if allowed is not None:
            logits = logits.masked_fill(~allowed.transpose(0, 1), float("-inf"))
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), ids.t().reshape(-1))

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
        """Ids ``[B, steps]`` without gradients, from ``generator`` only, as
        ``FeedbackLSTM.sample`` (``soft``, ``hard`` or ``ancestral`` feedback; ``mask``)."""
        if feedback not in ("soft", "hard", "ancestral"):
            raise ValueError(f"feedback must be soft, hard or ancestral, got {feedback!r}")
        inv_tau = 1.0 / check_tau(tau)
        mm = self._mm()
        vocab = self.vocab_size
        n = state[0].shape[1]
        device = state[0].device
        weights = [self.layer_weights(layer) for layer in range(self.layers)]
        w_o, b_o = self.head.weight, self.head.bias
        if feedback == "ancestral":  # argmax(logits / tau + g): scale the head once
            w_o, b_o = w_o * inv_tau, b_o * inv_tau
        plan = _SamplePlan(mm, self.hidden_size, weights, w_o, b_o, inv_tau, feedback)
        # Noise [T, V, n] in one call, as v1 draws it (so both kernels see the same numbers).
        noise = gumbel_noise((steps, vocab, n), generator=generator, device=device, dtype=w_o.dtype)
        noise = noise.transpose(1, 2)
        ids = torch.empty((steps, n), dtype=torch.long, device=device)
        # On a CPU, rows run in blocks whose gates stay in a core's cache (the cell's
        # element-wise passes over a chunk's 2,048 x 1,024 gates run from memory); a row's
        # arithmetic does not depend on its block, so the draws are those of one block. A mask
        # follows all rows of the chunk at once, and a GPU wants them all: one block.
        block = n
        if mask is None and device.type == "cpu":
            block = min(n, _sample_block_rows(self.hidden_size, self.layers))
        for r0 in range(0, n, block):
            r1 = min(n, r0 + block)
            plan.run(state[0][:, r0:r1], state[1][:, r0:r1], noise[:, r0:r1], ids[:, r0:r1], mask)
        return ids.t().contiguous()


def _sample_block_rows(hidden: int, layers: int) -> int:
    """Rows sampled together: a step's gates (``rows x 4H x layers`` floats) within ~1 MiB per
    thread (a core's L2 cache), so that the threads split each product and element-wise pass
    between them; at least 256 rows (fewer and per-op overhead dominates), a power of two.
    Blocks do not change the draws, so this may depend on the machine."""
    rows = (1 << 20) * max(1, torch.get_num_threads()) // (4 * 4 * hidden * layers)
    return max(256, 1 << (max(rows, 1).bit_length() - 1))


class _SamplePlan:
    """``StackedLSTM.sample``'s loop over the steps of one block of rows, weights prepared once
    per call."""

    def __init__(self, mm: _MM, hs: int, weights: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                 w_o: torch.Tensor, b_o: torch.Tensor, inv_tau: float, feedback: str) -> None:
        """``weights``: each layer's ``layer_weights``; ``w_o, b_o``: the head (scaled by
        ``1/tau`` for ancestral feedback)."""
        self.mm, self.hs, self.weights, self.b_o, self.inv_tau, self.feedback = mm, hs, weights, b_o, inv_tau, feedback
        self.w_hh_t = [mm.cast(w[1].t()) for w in weights]
        self.w_ih_t = [mm.cast(w[0].t()) for w in weights]
        # One-hot feedback: the first layer's input projection is a row of this table.
        self.table = torch.cat([weights[0][0].t() + weights[0][2], weights[0][2].unsqueeze(0)])
        self.w_o_t = mm.cast(w_o.t())

    def run(self, h0: torch.Tensor, c0: torch.Tensor, noise: torch.Tensor, ids: torch.Tensor, mask: StepMask | None) -> None:
        """Write the ids ``[T, rows]`` of the rows whose states are ``h0, c0 [L, rows, H]``, from
        their noise ``[T, rows, V]``."""
        mm, hs, weights, feedback = self.mm, self.hs, self.weights, self.feedback
        layers = len(weights)
        h = [x.clone() for x in h0.unbind(0)]
        c = [x.clone() for x in c0.unbind(0)]
        # h is only ever a product's operand: in bfloat16 mode cast once per step into a twin
        # that both of its products read (casting into the cell's own output is slower).
        h_m = [x.to(mm.dtype) for x in h]  # h itself in float32
        n = h[0].shape[0]
        vocab = self.table.shape[0] - 1  # the table's last row: the zero vector of step 0
        prev = torch.full((n,), vocab, dtype=torch.long, device=h[0].device)
        y = None  # the soft vector fed back
        k = torch.empty((n, hs), dtype=self.b_o.dtype, device=h[0].device)
        c_new = torch.empty_like(k)
        for t in range(noise.shape[0]):
            for layer in range(layers):
                if layer == 0 and (feedback != "soft" or t == 0):
                    a = self.table[prev]
                elif layer == 0:
                    a = mm.addmm(weights[0][2], y, self.w_ih_t[0], out=torch.empty((n, 4 * hs), dtype=k.dtype, device=k.device))
                else:
                    a = mm.addmm(weights[layer][2], h_m[layer - 1], self.w_ih_t[layer], out=torch.empty((n, 4 * hs), dtype=k.dtype, device=k.device))
                a = mm.addmm(a, h_m[layer], self.w_hh_t[layer], out=a)
                _cell(a, c[layer], c_new, k, h[layer], hs, mm.fast_tanh)
                c[layer], c_new = c_new, c[layer]
                if mm.low:
                    h_m[layer].copy_(h[layer])
            scores = torch.add(noise[t], self.b_o)
            scores = mm.addmm(scores, h_m[-1], self.w_o_t, out=scores)
            if mask is not None:
                mask.apply(scores.t())
            top, idx = scores.max(dim=1, keepdim=True)
            ids[t] = idx[:, 0]
            if mask is not None:
                mask.advance(idx[:, 0])
            if feedback == "soft":
                # Shift before dividing by tau: tau may be tiny here.
                y = torch.softmax(scores.sub_(top).mul_(self.inv_tau), dim=1)
            else:
                prev = idx[:, 0]


class SequenceClassifier(_Weights):
    """Many-to-one ``L``-layer LSTM over ``[T, B, V]`` vectors, a linear head on the top
    layer's final state -> one logit per sequence: the ``v2`` discriminator. Its parameters are
    an ``nn.LSTM`` and an ``nn.Linear(H, 1)``, as the ``v1`` one's."""

    def __init__(self, vocab_size: int, hidden_size: int, layers: int = 1, matmul: str = "float32") -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.layers = layers
        self.matmul = matmul
        self.lstm = nn.LSTM(vocab_size, hidden_size, num_layers=layers)
        self.head = nn.Linear(hidden_size, 1)
        self._init_scale(hidden_size)

    def forward(self, x: torch.Tensor, *, param_grads: bool = True) -> torch.Tensor:
        """One logit per sequence of ``x [T, B, V]``. ``param_grads=False``: the weights are
        read detached, so a backward computes only the gradient w.r.t. ``x`` (the GAN's
        generator step), sparing the weight-gradient products."""
        steps, batch, vocab = x.shape
        mm = _MM(MATMUL_DTYPES[self.matmul])
        detach = not param_grads
        w_ih, _, b = self.layer_weights(0, detach=detach)
        # The first layer's input projection for all steps in one product.
        # w_ih.t() made contiguous: autograd's mm backward then computes the weight gradient
        # as x^T @ dP (fast) rather than (dP^T @ x) (slow for a narrow x). Narrow as it is, this
        # product and its two gradients cost ~25 ms of a GAN iteration at MOSES's sizes in
        # float32 (inner size V runs at half the speed of the recurrence's), ~9 in bfloat16.
        flat = x.reshape(steps * batch, vocab)
        if mm.low:
            # bfloat16 out, bias included: a cast or a mixed-dtype add over all T x B rows here
            # costs more than the product saves; each step adds its row block instead.
            p0 = torch.addmm(b.to(mm.dtype), flat.to(mm.dtype), mm.cast(w_ih.t()))
        else:
            p0 = torch.addmm(b, flat, w_ih.t().contiguous())
        z = torch.zeros((self.layers, batch, self.hidden_size), dtype=x.dtype, device=x.device)
        out = self.run_sequence(p0.view(steps, batch, -1), (z, z), mm, detach=detach)
        w_o, b_o = (self.head.weight, self.head.bias) if param_grads else (self.head.weight.detach(), self.head.bias.detach())
        return F.linear(out[-1], w_o, b_o).squeeze(-1)
