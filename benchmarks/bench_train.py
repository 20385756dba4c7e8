"""Throughput of ``gumbel-lstm-gan`` and ``mle-lstm`` against a straightforward reference.

The reference is the algorithm written the way a typical user would: ``nn.LSTMCell`` stepped in
a Python loop. For the GAN (Algorithm 1): G and D as cell loops, per-step Gumbel noise, separate
D passes for real and fake, and a fresh G forward (new z) for the G step. For the MLE LSTM: the
teacher-forced cell loop with a cross-entropy per step, and ancestral sampling with
``torch.multinomial``. Both sides run at the same sizes with the same optimisers.

Sizes (``--preset``):

* ``paper`` (default): the GAN's ``paper`` preset: batch 200, state 10, length 12, vocabulary 6
  (arith data); the MLE LSTM at the same sizes.
* ``moses``: MOSES's shape: length 57, vocabulary 27, state 256, batch 64 (the first 50,000
  MOSES training SMILES when the data set is fetched, else random strings of lengths 20-57).

``--max-len``, ``--vocab``, ``--hidden``, ``--batch`` override a preset's sizes. ``--variants``
picks our kernels: ``v1`` (the default options, the kernels of the paper preset), ``v2``
(``-o kernel=v2``) and ``v2-bf16`` (``-o kernel=v2 -o matmul=bfloat16``); ``paper`` times ``v1``,
``moses`` all three. Prints training iterations/s and sampling strings/s for each and the
ratios to the reference; asserts nothing. Timings are the median of a few repeats after a
warm-up, interleaved (ours, reference, ours, ...) so that drift on a shared machine hits all
alike; ``--clock cpu`` times the process's CPU time instead of the wall clock (steadier on a
machine other jobs share: single-threaded work waiting for a core is not counted).

    python benchmarks/bench_train.py [--preset paper|moses] [--threads N] [--repeats R] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

import gumbelseq_gan
import gumbelseq_mle
from gumbelseq.datasets import dataset_dir
from gumbelseq.lang.dataset import draw_dataset
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.model.vocab import Vocabulary


@dataclass(frozen=True)
class Sizes:
    vocab: int
    max_len: int
    batch: int
    hidden: int
    iters: int  # training iterations per timed repeat
    samples: int  # strings per timed sampling repeat


PRESETS = {
    "paper": Sizes(vocab=6, max_len=12, batch=200, hidden=10, iters=200, samples=100_000),
    "moses": Sizes(vocab=27, max_len=57, batch=64, hidden=256, iters=5, samples=4096),
}


def arith_data(sizes: Sizes, n: int = 5000, seed: int = 0) -> tuple[torch.Tensor, str]:
    """The paper's training set: n uniform arith strings, as ids right-padded with 0."""
    strings = draw_dataset(load_grammar("arith"), n, max_len=sizes.max_len, seed=seed)
    return Vocabulary.from_strings(strings).encode(strings, sizes.max_len), f"{n} arith strings"


def moses_data(sizes: Sizes, n: int = 50_000, seed: int = 0) -> tuple[torch.Tensor, str]:
    """The first ``n`` MOSES training SMILES that fit, or random strings of MOSES-like lengths."""
    path = dataset_dir("moses") / "train.txt"
    if path.is_file():
        with open(path, encoding="ascii") as f:
            strings = [s for s in (next(f, "").rstrip("\n") for _ in range(n)) if s and len(s) <= sizes.max_len]
        vocab = Vocabulary.from_strings(strings)
        if vocab.size <= sizes.vocab:
            return vocab.encode(strings, sizes.max_len), f"{len(strings)} MOSES SMILES"
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min(20, sizes.max_len), sizes.max_len + 1, (n,), generator=g)
    ids = torch.randint(1, sizes.vocab, (n, sizes.max_len), generator=g)
    ids[torch.arange(sizes.max_len) >= lengths[:, None]] = 0
    return ids, f"{n} random strings (MOSES not fetched)"


# -- the reference, written plainly -------------------------------------------------------------


def ref_gumbel_softmax(logits: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(logits.shape, generator=gen).clamp(1e-10, 1 - 1e-7)
    return torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)


class RefG(nn.Module):
    def __init__(self, s: Sizes) -> None:
        super().__init__()
        self.s = s
        self.cell = nn.LSTMCell(s.vocab, s.hidden)
        self.out = nn.Linear(s.hidden, s.vocab)

    def forward(self, n: int, tau: float, gen: torch.Generator) -> torch.Tensor:
        h = torch.rand(n, self.s.hidden, generator=gen)
        c = torch.rand(n, self.s.hidden, generator=gen)
        y = torch.zeros(n, self.s.vocab)
        ys = []
        for _ in range(self.s.max_len):
            h, c = self.cell(y, (h, c))
            y = ref_gumbel_softmax(self.out(h), tau, gen)
            ys.append(y)
        return torch.stack(ys, dim=1)  # [B, T, V]

    @torch.no_grad()
    def sample(self, n: int, tau: float, gen: torch.Generator) -> torch.Tensor:
        return self.forward(n, tau, gen).argmax(-1)


class RefD(nn.Module):
    def __init__(self, s: Sizes) -> None:
        super().__init__()
        self.s = s
        self.cell = nn.LSTMCell(s.vocab, s.hidden)
        self.out = nn.Linear(s.hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], self.s.hidden)
        c = torch.zeros(x.shape[0], self.s.hidden)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return self.out(h).squeeze(-1)


class Reference:
    """Algorithm 1 with the paper's settings (instance noise 0.9, tau 5 -> 1, Adam 1e-3, 0.5)."""

    def __init__(self, data: torch.Tensor, s: Sizes, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.s, self.data, self.gen = s, data, torch.Generator().manual_seed(seed)
        self.G, self.D = RefG(s), RefD(s)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=1e-3, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=1e-3, betas=(0.5, 0.999))
        peak = torch.full((s.vocab, s.vocab), 0.1 / (s.vocab - 1))
        self.log_table = peak.fill_diagonal_(0.9).log()

    def step(self, iteration: int) -> None:
        b = self.s.batch
        tau = max(5.0 - 4.0 * iteration / 9999, 1.0)
        ids = self.data[torch.randint(len(self.data), (b,), generator=self.gen)]
        real = ref_gumbel_softmax(self.log_table[ids], tau, self.gen)
        fake = self.G(b, tau, self.gen)
        d_real, d_fake = self.D(real), self.D(fake.detach())
        d_loss = F.binary_cross_entropy_with_logits(
            d_real, torch.ones_like(d_real)
        ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        g_loss = -self.D(self.G(b, tau, self.gen)).mean()
        self.opt_g.zero_grad()
        g_loss.backward()
        self.opt_g.step()


class RefMLE(nn.Module):
    """The teacher-forced LSTM as a cell loop: one-hot of the previous character in, logits out."""

    def __init__(self, data: torch.Tensor, s: Sizes, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.s, self.data, self.gen = s, data, torch.Generator().manual_seed(seed)
        self.cell = nn.LSTMCell(s.vocab, s.hidden)
        self.out = nn.Linear(s.hidden, s.vocab)
        self.opt = torch.optim.Adam(self.parameters(), lr=1e-3)

    def step(self, iteration: int) -> None:
        b = self.s.batch
        ids = self.data[torch.randint(len(self.data), (b,), generator=self.gen)]
        onehot = F.one_hot(ids, self.s.vocab).float()
        h = torch.zeros(b, self.s.hidden)
        c = torch.zeros(b, self.s.hidden)
        y = torch.zeros(b, self.s.vocab)
        loss = torch.zeros(())
        for t in range(self.s.max_len):
            h, c = self.cell(y, (h, c))
            loss = loss + F.cross_entropy(self.out(h), ids[:, t])
            y = onehot[:, t]
        loss = loss / self.s.max_len
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    @torch.no_grad()
    def sample(self, n: int, tau: float, gen: torch.Generator) -> torch.Tensor:
        h = torch.zeros(n, self.s.hidden)
        c = torch.zeros(n, self.s.hidden)
        y = torch.zeros(n, self.s.vocab)
        out = []
        for _ in range(self.s.max_len):
            h, c = self.cell(y, (h, c))
            idx = torch.multinomial(torch.softmax(self.out(h) / tau, dim=-1), 1, generator=gen)
            y = torch.zeros(n, self.s.vocab).scatter_(1, idx, 1.0)
            out.append(idx)
        return torch.cat(out, dim=1)


# -- timing -----------------------------------------------------------------------------------


VARIANTS = {"v1": {}, "v2": {"kernel": "v2"}, "v2-bf16": {"kernel": "v2", "matmul": "bfloat16"}}


def rate(fn: Callable[[], None], units: int, clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    fn()
    return units / (clock() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=tuple(PRESETS), default="paper", help="sizes (see the module docstring)")
    parser.add_argument("--max-len", type=int, default=None)
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size, pad included")
    parser.add_argument("--hidden", type=int, default=None, help="LSTM state size (G, D and the MLE LSTM)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=None, help="training iterations per repeat")
    parser.add_argument("--samples", type=int, default=None, help="strings per sampling repeat")
    parser.add_argument("--only", choices=("gan", "mle"), default=None, help="time one backend")
    parser.add_argument("--variants", default=None, help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    s = PRESETS[args.preset]
    given = {"max_len": args.max_len, "vocab": args.vocab, "hidden": args.hidden, "batch": args.batch,
             "iters": args.iters, "samples": args.samples}
    s = replace(s, **{k: v for k, v in given.items() if v is not None})
    variants = (args.variants or ("v1" if args.preset == "paper" else ",".join(VARIANTS))).split(",")
    if any(v not in VARIANTS for v in variants):
        parser.error(f"--variants: expected some of {', '.join(VARIANTS)}")
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    data, source = arith_data(s) if args.preset == "paper" else moses_data(s)
    cpu = torch.device("cpu")
    backends = {"gan": gumbelseq_gan.GumbelLSTMGAN(), "mle": gumbelseq_mle.MLELSTM()}
    base = {"gan": {"preset": "paper", "batch_size": s.batch, "hidden_g": s.hidden, "hidden_d": s.hidden},
            "mle": {"batch_size": s.batch, "hidden": s.hidden}}
    refs = {"gan": lambda: Reference(data, s), "mle": lambda: RefMLE(data, s)}
    names = {"gan": "gumbel-lstm-gan (paper recipe)", "mle": "mle-lstm"}
    done: dict[int, int] = {}

    def train(trainer: object) -> Callable[[], None]:
        def run() -> None:
            for _ in range(s.iters):
                i = done.get(id(trainer), 0)
                trainer.step(i)  # type: ignore[attr-defined]
                done[id(trainer)] = i + 1
        return run

    def sampler(model: object, ours: bool) -> Callable[[], None]:
        if ours:
            return lambda: model.sample_ids(s.samples, 1.0, torch.Generator().manual_seed(1))  # type: ignore[attr-defined]
        g = model.G if isinstance(model, Reference) else model
        return lambda: g.sample(s.samples, 1.0, torch.Generator().manual_seed(1))  # type: ignore[attr-defined]

    jobs: dict[tuple[str, str, str], tuple[Callable[[], None], int]] = {}
    for name in ("gan", "mle"):
        if args.only not in (None, name):
            continue
        ref = refs[name]()
        jobs[(name, "train", "reference")] = (train(ref), s.iters)
        jobs[(name, "sample", "reference")] = (sampler(ref, False), s.samples)
        for v in variants:
            be = backends[name]
            options = be.make_options({**base[name], **VARIANTS[v]})
            ours = be.create(vocab_size=s.vocab, max_len=s.max_len, data=data, options=options, device=cpu, seed=0)
            jobs[(name, "train", v)] = (train(ours), s.iters)
            jobs[(name, "sample", v)] = (sampler(ours, True), s.samples)
    for fn, _ in jobs.values():  # warm-up (allocator, oneDNN primitive caches, lazy init)
        fn()
    results: dict[tuple[str, str, str], list[float]] = {k: [] for k in jobs}
    for _ in range(args.repeats):
        for key, (fn, units) in jobs.items():
            results[key].append(rate(fn, units, clock))
    med = {k: statistics.median(v) for k, v in results.items()}

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats} repeats"
          f" ({args.clock} clock), data: {source}")
    print(f"sizes: batch {s.batch}, state {s.hidden}, length {s.max_len}, vocab {s.vocab}")
    for name in ("gan", "mle"):
        if args.only not in (None, name):
            continue
        for what, unit, n in (("train", "it/s", s.iters), ("sample", "strings/s", s.samples)):
            ref = med[(name, what, "reference")]
            print(f"{names[name]}, {'training' if what == 'train' else 'sampling'} ({n} per repeat):")
            print(f"  reference  {ref:12.1f} {unit}")
            for v in variants:
                ours = med[(name, what, v)]
                print(f"  {v:<9}  {ours:12.1f} {unit}   {ours / ref:5.2f}x")


if __name__ == "__main__":
    main()
