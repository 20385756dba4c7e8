"""The v2 kernels' buffer recycling (``stacked._Pool``): results bit for bit as with fresh
buffers, gradients still right (``gradcheck``, ``retain_graph``), buffers reused only after the
autograd node that saved them is gone. CPU only; every path is device-agnostic (no CUDA test)."""

from __future__ import annotations

import gc

import pytest
import torch
from torch.autograd import gradcheck

from gumbelseq.model import stacked
from gumbelseq.model.stacked import SequenceClassifier, StackedLSTM


def _train_and_sample(matmul: str, layers: int) -> list[torch.Tensor]:
    """A few steps of relaxed (GAN-like) and teacher-forced training, then samples."""
    torch.manual_seed(0)
    g = StackedLSTM(7, 12, layers, matmul)
    d = SequenceClassifier(7, 10, layers, matmul)
    opt = torch.optim.Adam([*g.parameters(), *d.parameters()], lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(3):
        state = (torch.rand(layers, 5, 12, generator=gen), torch.rand(layers, 5, 12, generator=gen))
        noise = -torch.log(-torch.log(torch.rand(9, 5, 7, generator=gen)))
        y = g.relaxed(state, noise, 0.7, hard=True)
        ids = torch.randint(7, (5, 9), generator=gen)
        loss = -d(y).mean() + g.mle_loss(ids) + d(y.detach(), param_grads=False).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.detach())
    out.extend(p.detach().clone() for p in [*g.parameters(), *d.parameters()])
    out.append(g.sample(g.zero_state(6), 9, 1.0, torch.Generator().manual_seed(2), feedback="ancestral"))
    return out


@pytest.mark.parametrize("matmul", ["float32", "bfloat16"])
@pytest.mark.parametrize("layers", [1, 2])
def test_recycled_buffers_give_the_same_bits(monkeypatch: pytest.MonkeyPatch, matmul: str, layers: int) -> None:
    pooled = _train_and_sample(matmul, layers)
    monkeypatch.setattr(stacked, "_POOL", stacked._Pool(keep=0))  # keep nothing: always fresh
    fresh = _train_and_sample(matmul, layers)
    for a, b in zip(pooled, fresh):
        assert torch.equal(a, b)


def test_buffers_return_only_when_the_node_is_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = stacked._Pool()
    monkeypatch.setattr(stacked, "_POOL", pool)
    net = StackedLSTM(5, 8)
    ids = torch.randint(5, (3, 6))
    loss = net.mle_loss(ids)
    assert not any(pool.free.values())  # saved for backward: not free
    loss.backward(retain_graph=True)
    assert not any(pool.free.values())  # the graph is kept: a second backward may read them
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    loss.backward()
    for p, g in zip(net.parameters(), grads):
        assert torch.equal(p.grad, g)
    del loss
    gc.collect()
    assert any(pool.free.values())
    with torch.no_grad():
        net.mle_loss(ids)  # no graph: recycled at once
    assert sum(len(v) for v in pool.free.values()) > 0


def test_recycled_kernels_pass_gradcheck() -> None:
    torch.manual_seed(0)
    net = StackedLSTM(4, 3, layers=2).double()
    state = (torch.rand(2, 2, 3, dtype=torch.float64, requires_grad=True),
             torch.rand(2, 2, 3, dtype=torch.float64, requires_grad=True))
    noise = torch.randn(5, 2, 4, dtype=torch.float64)
    ids = torch.randint(4, (2, 5))
    for _ in range(2):  # the second round runs on recycled buffers
        assert gradcheck(lambda h, c: net.relaxed((h, c), noise, 0.8), state)
        assert gradcheck(lambda h, c: net.teacher_forced_logits(ids, (h, c)), state)
        gc.collect()


def test_same_seed_same_samples() -> None:
    torch.manual_seed(0)
    net = StackedLSTM(6, 16)
    state = net.zero_state(40)
    a = net.sample(state, 12, 1.0, torch.Generator().manual_seed(3), feedback="soft")
    b = net.sample(state, 12, 1.0, torch.Generator().manual_seed(3), feedback="soft")
    assert torch.equal(a, b)


@pytest.mark.parametrize("matmul", ["float32", "bfloat16"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("feedback", ["soft", "hard", "ancestral"])
def test_sampling_in_row_blocks_draws_what_one_block_draws(
    monkeypatch: pytest.MonkeyPatch, matmul: str, layers: int, feedback: str
) -> None:
    # Blocks are a cache layout: a row's draws must not depend on which block it ran in, nor on
    # the block size (uneven last block included).
    torch.manual_seed(0)
    net = StackedLSTM(9, 16, layers, matmul)
    state = (torch.rand(layers, 700, 16), torch.rand(layers, 700, 16))

    def draw(rows: int) -> torch.Tensor:
        monkeypatch.setattr(stacked, "_sample_block_rows", lambda hidden, layers: rows)
        return net.sample(state, 11, 0.7, torch.Generator().manual_seed(4), feedback=feedback)

    whole = draw(10_000)
    for rows in (1, 64, 256, 699):
        assert torch.equal(draw(rows), whole)
    assert whole.shape == (700, 11) and len(set(whole[:, 3].tolist())) > 1
