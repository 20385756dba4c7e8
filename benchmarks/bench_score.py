"""Benchmark: `gumbelseq score` throughput against a plain loop of Lark.parse, same lines, same run.

The input is shaped like a model's output: 200,000 lines padded to 12 characters, drawn from the
arith language (mostly valid, many repeats: the language has only 1365 strings of length <= 12)
with 10% corrupted by one random character edit. Prints figures; asserts nothing.

    python benchmarks/bench_score.py [--lines 200000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from gumbelseq.lang.dataset import draw_dataset
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.score import score_file


def make_file(path: Path, lines: int, seed: int = 0) -> None:
    g = load_grammar("arith")
    rng = random.Random(seed)
    base = draw_dataset(g, lines, max_len=12, seed=seed)
    with open(path, "w") as f:
        for s in base:
            if rng.random() < 0.10:
                i = rng.randrange(12)
                s = (s.ljust(12)[:i] + rng.choice("x+-*/ ") + s.ljust(12)[i + 1 :]).rstrip()
            f.write(s.ljust(12) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()
    g = load_grammar("arith")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "samples.txt"
        make_file(path, args.lines)

        t0 = time.perf_counter()
        valid_plain = 0
        with open(path) as f:
            for line in f:
                try:
                    g.parser.parse(line.rstrip("\n").rstrip(" "))
                    valid_plain += 1
                except Exception:
                    pass
        plain = time.perf_counter() - t0

        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            rep = score_file(path, g, max_len=12)
            best = min(best, time.perf_counter() - t0)
        assert rep.valid == valid_plain, (rep.valid, valid_plain)

        # Memory is O(distinct lines): compare peak for N and 4N lines of the same shape.
        peaks = []
        for n in (args.lines // 4, args.lines):
            p = Path(d) / f"m{n}.txt"
            make_file(p, n, seed=1)
            tracemalloc.start()
            r = score_file(p, g, max_len=12)
            peaks.append((tracemalloc.get_traced_memory()[1], r.unique))
            tracemalloc.stop()

    n = args.lines
    print(f"lines                      {n}")
    print(f"valid                      {rep.valid} ({100 * rep.validity:.1f}%), distinct {rep.unique}")
    print(f"plain Lark.parse loop      {n / plain:12,.0f} lines/s  ({plain:.2f} s)")
    print(f"gumbelseq score            {n / best:12,.0f} lines/s  ({best:.3f} s, best of 3)")
    print(f"speed-up                   {plain / best:12.1f}x")
    for (peak, distinct), lines in zip(peaks, (n // 4, n)):
        print(f"peak traced memory         {peak / 1e6:.1f} MB at {lines} lines ({distinct} distinct)")


if __name__ == "__main__":
    main()
