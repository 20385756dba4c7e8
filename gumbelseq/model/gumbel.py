"""Numerically safe Gumbel machinery: noise, Gumbel-max and the Gumbel-softmax relaxation.

Why not ``torch.nn.functional.gumbel_softmax``: it is documented as legacy, draws its noise
from the global RNG (so it cannot be replayed from a run's ``torch.Generator``), cannot take
precomputed noise, and divides by ``tau`` before removing the row maximum, so tiny
temperatures or huge logits overflow to ``inf``/``NaN``.

Facts used throughout:

* Gumbel-max: ``argmax_k(logits_k + g_k)`` with ``g ~ Gumbel(0, 1)`` is a draw from
  ``softmax(logits)``.
* Gumbel-softmax: ``softmax((logits + g) / tau)`` relaxes that argmax; ``tau -> 0`` gives the
  one-hot of the Gumbel-max draw, ``tau -> inf`` the uniform vector. Its argmax never depends
  on ``tau``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import TemperatureError

__all__ = [
    "gumbel_noise",
    "gumbel_softmax",
    "gumbel_max",
    "straight_through",
    "check_tau",
    "uniform",
]

# U must avoid 0 (log 0 = -inf) and 1 (log 1 = 0, then -log 0 = inf). torch.rand in float32
# never returns 1.0 but may return 0.0; clamp both ends anyway so any backend is safe.
# With these bounds g lies in about [-4.48, 16.6]: finite even after a cast to float16.
_U_MIN = torch.finfo(torch.float32).tiny
_U_MAX = 1.0 - torch.finfo(torch.float32).eps / 2  # the largest float32 below 1
_SHORT = 64  # category counts up to this use the leading-dimension softmax (see below)


def gumbel_noise(
    shape: Sequence[int] | torch.Size,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log U)``, always finite.

    Computed in float32 (float16 would round U to 0 or 1 far too often) and cast to ``dtype``
    at the end. ``device`` defaults to the generator's device; a generator on another device
    draws there and the result is moved (so a CPU generator gives the same numbers anywhere).
    """
    u = uniform(shape, generator=generator, device=device)
    # In place: this is on the hot path of every training step and every sampling chunk.
    g = u.clamp_(_U_MIN, _U_MAX).log_().neg_().log_().neg_()
    return g if dtype == torch.float32 else g.to(dtype)


def uniform(
    shape: Sequence[int] | torch.Size,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """float32 ``U[0, 1)`` drawn on the generator's device, then moved to ``device``."""
    source = generator.device if generator is not None else device
    u = torch.rand(tuple(shape), generator=generator, device=source, dtype=torch.float32)
    if device is not None and torch.device(device) != u.device:
        u = u.to(device)
    return u


#: The temperatures ``check_tau`` accepts. ``1 / tau`` and ``x / tau`` must stay finite in
#: float32 for the logit ranges a model produces (1e-39 already overflows); below 1e-8 the draw is the argmax
#: (greedy) and above 1e8 uniform to float32 precision, so nothing is lost.
TAU_MIN = 1e-8
TAU_MAX = 1e8


def check_tau(tau: float) -> float:
    """The one check of a temperature: ``tau`` as a float, or ``TemperatureError`` (a
    ``ValueError``) unless it is a number in [TAU_MIN, TAU_MAX]."""
    try:
        value = float(tau)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(tau, bool) or not TAU_MIN <= value <= TAU_MAX:
        raise TemperatureError(f"tau must be a number in [{TAU_MIN:g}, {TAU_MAX:g}], got {tau!r}")
    return value


def straight_through(soft: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Forward: exactly the one-hot of ``index`` (last dim). Backward: the gradient of ``soft``.

    ``soft - soft.detach()`` is exactly 0 for finite values, so the forward value is the one-hot
    bit for bit (unlike the usual ``hard - soft.detach() + soft``, which can round 1 to 1-ulp).
    """
    hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
    return hard + (soft - soft.detach())


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float,
    *,
    hard: bool = False,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Relaxed one-hot sample ``softmax((logits + g) / tau)`` over the last dimension.

    * Computed in float32 and returned in ``logits.dtype``; rows are finite and on the simplex
      for any finite logits (tested up to ``|x| = 1e30``) and any ``tau`` down to ``1e-8``.
      ``-inf`` logits (masked categories) get probability 0.
    * ``hard=True`` is straight-through: the forward value is exactly the one-hot of
      ``argmax(logits + g)`` (the Gumbel-max draw), the gradient is that of the soft sample.
    * ``noise`` supplies precomputed Gumbel noise (same shape as ``logits``); otherwise it is
      drawn from ``generator``.
    * ``tau <= 0`` or a non-finite ``tau`` raises ``ValueError``.
    """
    tau = check_tau(tau)
    x = logits.float()
    if noise is None:
        noise = gumbel_noise(x.shape, generator=generator, device=x.device)
    scores = x + noise.float()
    # CPU softmax over a short last dimension (a vocabulary of 6) is ~5x slower than over a
    # short leading one, so small category counts are moved to the front and back.
    dim = 0 if 1 < scores.shape[-1] <= _SHORT and scores.dim() > 1 else -1
    if dim == 0:
        scores = scores.movedim(-1, 0).contiguous()
    # Remove the row max BEFORE dividing by tau: then every entry is <= 0, the max entry is
    # exactly 0, and the division can only underflow to -inf (exp -> 0), never overflow to
    # +inf. The max is detached: softmax is shift-invariant, so the gradient is unchanged.
    shifted = scores - scores.amax(dim=dim, keepdim=True).detach()
    soft = torch.softmax(shifted / tau, dim=dim)
    if hard:
        # argmax of the shifted scores, not of `soft`: `soft` can tie at 1.0 after underflow.
        # (max().indices: the first maximum like argmax, and much faster on CPU.)
        index = shifted.max(dim=dim).indices
        soft = straight_through(soft.movedim(dim, -1), index)
    elif dim == 0:
        soft = soft.movedim(0, -1)
    return soft.contiguous().to(logits.dtype)


def gumbel_max(logits: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw from ``softmax(logits)`` per row: ``argmax(logits + g)``, a LongTensor."""
    x = logits.detach().float()
    return (x + gumbel_noise(x.shape, generator=generator, device=x.device)).max(dim=-1).indices
