"""Throughput of ``gumbel-lstm-gan`` (preset ``paper``) against a straightforward reference.

The reference is Algorithm 1 written the way a typical user would: ``nn.LSTMCell`` stepped in a
Python loop for G and for D, per-step Gumbel noise, separate D passes for real and fake, and a
fresh G forward (new z) for the G step. Same sizes: batch 200, state 10, length 12, vocabulary 6.

Prints training iterations/s and sampling strings/s for both, and the ratios; asserts nothing.
Timings are the median of a few repeats after a warm-up, interleaved (ours, reference, ours, ...)
so that drift on a shared machine hits both alike.

    python benchmarks/bench_train.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

import gumbelseq_gan
from gumbelseq.lang.dataset import draw_dataset
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.model.vocab import Vocabulary

VOCAB, MAX_LEN, BATCH, HIDDEN = 6, 12, 200, 10


def arith_like_data(n: int = 5000, seed: int = 0) -> torch.Tensor:
    """The paper's training set: n uniform arith strings, as ids right-padded with 0."""
    strings = draw_dataset(load_grammar("arith"), n, max_len=MAX_LEN, seed=seed)
    return Vocabulary.from_strings(strings).encode(strings, MAX_LEN)


# -- the reference: Algorithm 1, written plainly ----------------------------------------------


def ref_gumbel_softmax(logits: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(logits.shape, generator=gen).clamp(1e-10, 1 - 1e-7)
    return torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)


class RefG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(VOCAB, HIDDEN)
        self.out = nn.Linear(HIDDEN, VOCAB)

    def forward(self, n: int, tau: float, gen: torch.Generator) -> torch.Tensor:
        h = torch.rand(n, HIDDEN, generator=gen)
        c = torch.rand(n, HIDDEN, generator=gen)
        y = torch.zeros(n, VOCAB)
        ys = []
        for _ in range(MAX_LEN):
            h, c = self.cell(y, (h, c))
            y = ref_gumbel_softmax(self.out(h), tau, gen)
            ys.append(y)
        return torch.stack(ys, dim=1)  # [B, T, V]

    @torch.no_grad()
    def sample(self, n: int, tau: float, gen: torch.Generator) -> torch.Tensor:
        return self.forward(n, tau, gen).argmax(-1)


class RefD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(VOCAB, HIDDEN)
        self.out = nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], HIDDEN)
        c = torch.zeros(x.shape[0], HIDDEN)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return self.out(h).squeeze(-1)


class Reference:
    def __init__(self, data: torch.Tensor, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.data, self.gen = data, torch.Generator().manual_seed(seed)
        self.G, self.D = RefG(), RefD()
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=1e-3, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=1e-3, betas=(0.5, 0.999))
        peak = torch.full((VOCAB, VOCAB), 0.1 / (VOCAB - 1))
        self.log_table = peak.fill_diagonal_(0.9).log()

    def step(self, iteration: int) -> None:
        tau = max(5.0 - 4.0 * iteration / 9999, 1.0)
        ids = self.data[torch.randint(len(self.data), (BATCH,), generator=self.gen)]
        real = ref_gumbel_softmax(self.log_table[ids], tau, self.gen)
        fake = self.G(BATCH, tau, self.gen)
        d_real, d_fake = self.D(real), self.D(fake.detach())
        d_loss = F.binary_cross_entropy_with_logits(
            d_real, torch.ones_like(d_real)
        ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        g_loss = -self.D(self.G(BATCH, tau, self.gen)).mean()
        self.opt_g.zero_grad()
        g_loss.backward()
        self.opt_g.step()


# -- timing -----------------------------------------------------------------------------------


def rate(fn: Callable[[], None], units: int) -> float:
    start = time.perf_counter()
    fn()
    return units / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=200, help="training iterations per repeat")
    parser.add_argument("--samples", type=int, default=100_000)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    data = arith_like_data()
    backend = gumbelseq_gan.GumbelLSTMGAN()
    options = backend.make_options({"preset": "paper"})
    ours = backend.create(
        vocab_size=VOCAB, max_len=MAX_LEN, data=data, options=options,
        device=torch.device("cpu"), seed=0,
    )
    ref = Reference(data)

    it = {"ours": 0, "ref": 0}

    def train(trainer: object, key: str) -> Callable[[], None]:
        def run() -> None:
            for _ in range(args.iters):
                trainer.step(it[key])  # type: ignore[attr-defined]
                it[key] += 1
        return run

    n = args.samples
    sample_ours = lambda: ours.sample_ids(n, 1.0, torch.Generator().manual_seed(1))  # noqa: E731
    sample_ref = lambda: ref.G.sample(n, 1.0, torch.Generator().manual_seed(1))  # noqa: E731

    # Warm-up (allocator, oneDNN primitive caches, lazy init).
    train(ours, "ours")(), train(ref, "ref")(), sample_ours(), sample_ref()

    keys = ("train_ours", "train_ref", "samp_ours", "samp_ref")
    results: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(args.repeats):
        results["train_ours"].append(rate(train(ours, "ours"), args.iters))
        results["train_ref"].append(rate(train(ref, "ref"), args.iters))
        results["samp_ours"].append(rate(sample_ours, n))
        results["samp_ref"].append(rate(sample_ref, n))
    med = {k: statistics.median(v) for k, v in results.items()}

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"median of {args.repeats} repeats")
    sizes = f"batch {BATCH}, state {HIDDEN}, length {MAX_LEN}, vocab {VOCAB}"
    print(f"training (paper preset, {sizes}):")
    print(f"  gumbel-lstm-gan  {med['train_ours']:10.1f} it/s")
    print(f"  reference        {med['train_ref']:10.1f} it/s")
    print(f"  ratio            {med['train_ours'] / med['train_ref']:10.2f}x")
    print(f"sampling ({n} strings of length {MAX_LEN}):")
    print(f"  gumbel-lstm-gan  {med['samp_ours']:10.0f} strings/s")
    print(f"  reference        {med['samp_ref']:10.0f} strings/s")
    print(f"  ratio            {med['samp_ours'] / med['samp_ref']:10.2f}x")


if __name__ == "__main__":
    main()
