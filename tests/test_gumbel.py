"""Properties of the Gumbel machinery (``gumbelseq.model.gumbel``).

Invariants are Hypothesis properties; every torch draw comes from a ``torch.Generator`` seeded
by a Hypothesis-drawn integer (and torch's global RNG is registered with Hypothesis), so a
failing example replays exactly. The statistical claim (Gumbel-max frequencies match the
softmax) is a plain fixed-seed test with a conservative bound.
"""

from __future__ import annotations

import math

import hypothesis
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gumbelseq.model.gumbel import check_tau, gumbel_max, gumbel_noise, gumbel_softmax


# torch draws replay with each Hypothesis example: conftest.py registers torch's RNG.

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
TINY_TO_LARGE_TAU = st.one_of(
    st.sampled_from([1e-8, 1e-6, 1e-3, 1.0, 1e3]),
    st.floats(min_value=1e-8, max_value=1e4, allow_nan=False, allow_infinity=False),
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@st.composite
def logit_matrices(draw, bound: float = 1e30, width: int = 32, max_cols: int = 80):
    """``[rows, cols]`` lists of finite floats in ``[-bound, bound]``; columns up to 80 so both
    the short-row and long-row softmax layouts are exercised."""
    # Hypothesis wants bounds exactly representable at this width.
    bound = float(torch.tensor(bound, dtype=torch.float32 if width == 32 else torch.float16))
    rows = draw(st.integers(1, 6))
    cols = draw(st.integers(1, max_cols))
    values = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=width)
    special = st.sampled_from([0.0, bound, -bound, 1e-30, -1e-30])
    return draw(
        st.lists(
            st.lists(st.one_of(values, special), min_size=cols, max_size=cols),
            min_size=rows,
            max_size=rows,
        )
    )


# -- gumbel_noise -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_noise_is_finite_with_requested_dtype_and_shape(dtype: torch.dtype) -> None:
    g = gumbel_noise((300, 700), generator=_gen(0), dtype=dtype)
    assert g.shape == (300, 700) and g.dtype == dtype
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_noise_is_finite_when_uniform_hits_0_or_1(monkeypatch, dtype: torch.dtype) -> None:
    # The classic trap: U = 0 gives -log(-log 0) = -inf, U = 1 gives +inf.
    def rand_edges(shape, **kwargs):
        return torch.tensor([0.0, 1.0, 1.0 - 2**-24, 2**-149], dtype=torch.float32)

    monkeypatch.setattr(torch, "rand", rand_edges)
    g = gumbel_noise((4,), dtype=dtype)
    assert torch.isfinite(g).all(), g


def test_noise_moments_match_the_gumbel_distribution() -> None:
    # Mean = Euler-Mascheroni constant, variance = pi^2 / 6; 5-sigma bounds on 10^6 draws.
    n = 1_000_000
    g = gumbel_noise((n,), generator=_gen(1234), dtype=torch.float64)
    euler_gamma, var = 0.5772156649015329, math.pi**2 / 6
    assert abs(g.mean().item() - euler_gamma) < 5 * math.sqrt(var / n)
    assert abs(g.var().item() - var) < 0.02


def test_noise_is_replayable_from_the_generator() -> None:
    a, b = gumbel_noise((5, 6), generator=_gen(7)), gumbel_noise((5, 6), generator=_gen(7))
    assert torch.equal(a, b)


# -- tau validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.0, -1.0, -1e-12, math.nan, math.inf, -math.inf, "x", None])
def test_bad_tau_raises_value_error(tau: object) -> None:
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax(torch.zeros(2, 3), tau)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        check_tau(tau)  # type: ignore[arg-type]


# -- gumbel_softmax -----------------------------------------------------------------------------


@settings(deadline=None)
@given(logits=logit_matrices(), tau=TINY_TO_LARGE_TAU, seed=SEEDS, hard=st.booleans())
def test_rows_are_finite_and_on_the_simplex_float32(logits, tau, seed, hard) -> None:
    x = torch.tensor(logits, dtype=torch.float32)
    y = gumbel_softmax(x, tau, hard=hard, generator=_gen(seed))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert (y >= 0).all() and (y <= 1).all()
    assert torch.allclose(y.sum(-1), torch.ones(x.shape[0]), atol=1e-5)


@settings(deadline=None)
@given(
    logits=logit_matrices(bound=65504.0, width=16),
    tau=TINY_TO_LARGE_TAU,
    seed=SEEDS,
    hard=st.booleans(),
)
def test_rows_are_finite_and_on_the_simplex_float16(logits, tau, seed, hard) -> None:
    x = torch.tensor(logits, dtype=torch.float16)
    y = gumbel_softmax(x, tau, hard=hard, generator=_gen(seed))
    assert y.dtype == torch.float16
    assert torch.isfinite(y).all()
    assert (y >= 0).all() and (y <= 1).all()
    # float16 rounds each entry to ~5e-4 relative.
    assert torch.allclose(y.float().sum(-1), torch.ones(x.shape[0]), atol=2e-2)


@settings(deadline=None)
@given(
    logits=logit_matrices(bound=5.0, max_cols=12),
    tau=st.floats(0.5, 10.0),
    seed=SEEDS,
)
def test_hard_is_exactly_one_hot_of_gumbel_max_and_passes_gradients(logits, tau, seed) -> None:
    x = torch.tensor(logits, dtype=torch.float32)
    hypothesis.assume(x.shape[1] > 1)
    noise = gumbel_noise(x.shape, generator=_gen(seed))
    x.requires_grad_(True)
    y = gumbel_softmax(x, tau, hard=True, noise=noise)
    choice = (x.detach() + noise).argmax(-1)
    expected = torch.nn.functional.one_hot(choice, x.shape[1]).float()
    assert torch.equal(y.detach(), expected)  # bit-exact one-hot
    # Distinct weights per column: the gradient of a non-saturated softmax is then non-zero.
    weights = torch.arange(x.shape[1], dtype=torch.float32).expand_as(x)
    (y * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


@settings(deadline=None)
@given(logits=logit_matrices(bound=1e6, max_cols=20), seed=SEEDS, tau=st.sampled_from([1e-6, 1e-8]))
def test_small_tau_sample_picks_the_gumbel_max_choice(logits, seed, tau) -> None:
    x = torch.tensor(logits, dtype=torch.float32)
    noise = gumbel_noise(x.shape, generator=_gen(seed))
    y = gumbel_softmax(x, tau, noise=noise)
    scores = x + noise
    choice = scores.argmax(-1, keepdim=True)
    # The Gumbel-max choice always carries the largest relaxed weight ...
    assert torch.equal(y.gather(-1, choice), y.amax(-1, keepdim=True))
    # ... and the relaxed sample is its one-hot wherever the top-2 gap is not within ~tau.
    if x.shape[1] > 1:
        top2 = scores.topk(2, dim=-1).values
        clear = (top2[:, 0] - top2[:, 1]) > 1e3 * tau
        one_hot = torch.nn.functional.one_hot(choice[:, 0], x.shape[1]).float()
        assert torch.allclose(y[clear], one_hot[clear], atol=1e-6)


def test_large_tau_tends_to_uniform() -> None:
    y = gumbel_softmax(torch.tensor([[3.0, -2.0, 0.5, 1.0]]), 1e6, generator=_gen(0))
    assert torch.allclose(y, torch.full_like(y, 0.25), atol=1e-4)


def test_minus_inf_logits_get_zero_probability() -> None:
    x = torch.tensor([[0.0, -math.inf, 1.0], [-math.inf, 2.0, -math.inf]])
    for hard in (False, True):
        y = gumbel_softmax(x, 0.5, hard=hard, generator=_gen(3))
        assert torch.isfinite(y).all()
        assert (y[x == -math.inf] == 0).all()
        assert torch.allclose(y.sum(-1), torch.ones(2))


def test_precomputed_noise_is_used_and_layout_does_not_matter() -> None:
    x = torch.randn(4, 3, 6, generator=_gen(5))
    noise = gumbel_noise((4, 3, 6), generator=_gen(6))
    a = gumbel_softmax(x, 0.7, noise=noise)
    b = gumbel_softmax(x, 0.7, noise=noise.transpose(0, 2).contiguous().transpose(0, 2))
    ref = torch.softmax((x + noise) / 0.7, dim=-1)
    assert torch.allclose(a, ref, atol=1e-6) and torch.equal(a, b)
    assert a.is_contiguous()


def test_soft_gradient_matches_plain_softmax() -> None:
    x = torch.randn(5, 7, dtype=torch.float32, generator=_gen(8), requires_grad=True)
    noise = gumbel_noise((5, 7), generator=_gen(9))
    w = torch.randn(5, 7, generator=_gen(10))
    (gumbel_softmax(x, 0.3, noise=noise) * w).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    (torch.softmax((x2 + noise) / 0.3, -1) * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)


# -- gumbel_max ---------------------------------------------------------------------------------


@settings(deadline=None)
@given(logits=logit_matrices(max_cols=20), seed=SEEDS)
def test_gumbel_max_ids_are_in_range(logits, seed) -> None:
    x = torch.tensor(logits, dtype=torch.float32)
    ids = gumbel_max(x, generator=_gen(seed))
    assert ids.dtype == torch.long and ids.shape == x.shape[:-1]
    assert ((ids >= 0) & (ids < x.shape[-1])).all()


def test_gumbel_max_frequencies_match_softmax() -> None:
    # Statistical, so a plain fixed-seed test: 200,000 draws, 5 sigma per category.
    logits = torch.tensor([2.0, 0.5, -1.0, 0.0, 1.0, -3.0])
    n = 200_000
    ids = gumbel_max(logits.expand(n, -1), generator=_gen(2016))
    counts = torch.bincount(ids, minlength=6).double()
    p = torch.softmax(logits.double(), -1)
    sigma = (n * p * (1 - p)).sqrt()
    assert ((counts - n * p).abs() <= 5 * sigma).all(), (counts / n, p)
    # Chi-square with 5 degrees of freedom: P(chi2 > 30) ~ 1.5e-5.
    assert (((counts - n * p) ** 2) / (n * p)).sum() < 30


def test_gumbel_softmax_argmax_frequencies_match_softmax() -> None:
    # The argmax of a relaxed sample is a Gumbel-max draw whatever tau is.
    logits = torch.tensor([0.3, -0.7, 1.2, 0.0])
    n = 200_000
    y = gumbel_softmax(logits.expand(n, -1), 2.5, generator=_gen(7))
    counts = torch.bincount(y.argmax(-1), minlength=4).double()
    p = torch.softmax(logits.double(), -1)
    assert ((counts - n * p).abs() <= 5 * (n * p * (1 - p)).sqrt()).all()
