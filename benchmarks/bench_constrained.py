"""Benchmark: constrained sampling against unconstrained sampling of the same run, and against a
straightforward per-character loop over Lark's interactive parser.

A run is trained here (by default the GAN's `paper` preset, state 10, on arith, length 12, for a
few hundred iterations: the speed of sampling does not depend on how well it is trained), then,
in the same process:
- unconstrained: ``run.sample(n)``;
- constrained: ``run.sample(n, constrained=True)`` (the masks' states are built during a warm-up
  call first, as they would be after the first chunk of any real use; the cold figure is printed
  too);
- the straightforward loop: for each string and each step, every character of the vocabulary is
  tried with Lark's interactive parser (``parse_interactive``, ``exhaust_lexer``, ``accepts()``),
  and one of the allowed ones (or the end, when ``$END`` is accepted) is taken at random; no
  model, no length budget, so it does strictly less than the masks do.
Then a grammar with ``%ignore`` (ignore-separable: ``tests/corpus/calc_ws.lark``, a calculator
that ignores spaces and tabs): a run of the same backend trained on 5000 strings drawn with
``--mode pcfg --ignore random`` (so spaces and tabs are in its vocabulary), length 16, sampled the
same three ways (without the Lark loop). Then training: the GAN's default (`paper`) and the MLE LSTM, each
with and without `-o mask=grammar`, iterations per second. Prints figures; asserts that
constrained samples are valid, nothing about time.

    python benchmarks/bench_constrained.py [--n 100000] [--reference-n 300] [--skip-training]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from lark import Lark
from lark.exceptions import UnexpectedInput

from gumbelseq.lang.dataset import draw_dataset
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.model.run import load_run
from gumbelseq.model.train import Callback, start_training


def lark_loop(parser: Lark, chars: list[str], max_len: int, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prefix = ""
        while True:
            allowed = []
            for c in chars:
                try:
                    ip = parser.parse_interactive(prefix + c)
                    ip.exhaust_lexer()
                    allowed.append(c)
                except UnexpectedInput:
                    pass
            try:
                ip = parser.parse_interactive(prefix)
                ip.exhaust_lexer()
                can_end = "$END" in ip.accepts()
            except UnexpectedInput:
                can_end = False
            if len(prefix) == max_len or not allowed:
                break
            options = allowed + ([None] if can_end else [])
            c = rng.choice(options)
            if c is None:
                break
            prefix += c
        out.append(prefix)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reference-n", type=int, default=300)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--backend", default="gumbel-lstm-gan")
    ap.add_argument("--train-iterations", type=int, default=600)
    ap.add_argument("--skip-training", action="store_true", help="leave out the masked-training rows")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        start_training(grammar="arith", backend=args.backend, out_dir=Path(tmp) / "run", options={"iterations": args.iterations},
                       seed=0, device="cpu", eval_every=0, final_samples=0)
        print(f"trained {args.backend} on arith ({args.iterations} iterations) in {time.perf_counter() - t:.1f} s")
        run = load_run(Path(tmp) / "run", device="cpu")
        g = load_grammar("arith")

        t = time.perf_counter()
        cold = run.sample(args.n, seed=1, constrained=True)
        cold_s = time.perf_counter() - t
        t = time.perf_counter()
        free = run.sample(args.n, seed=2)
        free_s = time.perf_counter() - t
        t = time.perf_counter()
        held = run.sample(args.n, seed=2, constrained=True)
        held_s = time.perf_counter() - t
        assert all(g.is_valid(s) and len(s) <= 12 for s in set(held) | set(cold))
        free_valid = sum(map(g.is_valid, free)) / len(free)

        parser = Lark(g.text, parser="lalr")
        t = time.perf_counter()
        ref = lark_loop(parser, list(run.vocab.chars), 12, args.reference_n, seed=3)
        ref_s = time.perf_counter() - t

    # An ignore-separable grammar: the masks also allow ignorable text between tokens.
    with tempfile.TemporaryDirectory() as tmp:
        ws_path = Path(__file__).resolve().parent.parent / "tests" / "corpus" / "calc_ws.lark"
        ws = load_grammar(str(ws_path))
        # pcfg: uniform derivations are mostly near 16 characters, where the random spacing of
        # --ignore random pushes 99.9% past the bound (drawn again: minutes for 5000).
        data = draw_dataset(ws, 5000, max_len=16, seed=0, mode="pcfg", ignore="random")
        start_training(grammar=ws, backend=args.backend, out_dir=Path(tmp) / "run", options={"iterations": args.iterations},
                       data=data, max_len=16, seed=0, device="cpu", eval_every=0, final_samples=0)
        ws_run = load_run(Path(tmp) / "run", device="cpu")
        t = time.perf_counter()
        ws_cold = ws_run.sample(args.n, seed=1, constrained=True)
        ws_cold_s = time.perf_counter() - t
        t = time.perf_counter()
        ws_free = ws_run.sample(args.n, seed=2)
        ws_free_s = time.perf_counter() - t
        t = time.perf_counter()
        ws_held = ws_run.sample(args.n, seed=2, constrained=True)
        ws_held_s = time.perf_counter() - t
        assert all(ws.is_valid(s) and len(s) <= 16 for s in set(ws_held) | set(ws_cold))
        ws_free_valid = sum(map(ws.is_valid, ws_free)) / len(ws_free)
        ws_spaced = sum(1 for s in ws_held if " " in s.rstrip(" ") or "\t" in s) / len(ws_held)
        ws_states = ws_run.constraint().states

    # Masked training: the same runs with and without -o mask=grammar, iterations per second
    # (after the first 20, which include building the masks' states).
    train_rates = {}
    for backend in ("gumbel-lstm-gan", "mle-lstm") if not args.skip_training else ():
        for mask in ("none", "grammar"):
            with tempfile.TemporaryDirectory() as tmp:
                marks: list[float] = []

                class Clock(Callback):
                    def on_step(self, iteration, metrics):  # noqa: ANN001
                        marks.append(time.perf_counter())

                start_training(grammar="arith", backend=backend, out_dir=Path(tmp) / "r",
                               options={"iterations": args.train_iterations, "mask": mask}, seed=0, device="cpu",
                               eval_every=0, final_samples=0, callbacks=[Clock()])
                train_rates[(backend, mask)] = (len(marks) - 21) / (marks[-1] - marks[20])

    rate = lambda k, s: k / s  # noqa: E731
    print(f"{'':34} {'strings/s':>12} {'valid':>7}")
    print(f"{'unconstrained':34} {rate(args.n, free_s):12,.0f} {100 * free_valid:6.1f}%")
    print(f"{'constrained (states built)':34} {rate(args.n, held_s):12,.0f} {100.0:6.1f}%")
    print(f"{'constrained (first call, cold)':34} {rate(args.n, cold_s):12,.0f} {100.0:6.1f}%")
    print(f"{'per-character Lark interactive':34} {rate(len(ref), ref_s):12,.0f}")
    print(f"constrained / unconstrained time: {held_s / free_s:.2f}x;"
          f" constrained vs Lark loop: {rate(args.n, held_s) / rate(len(ref), ref_s):,.0f}x;"
          f" mask states: {run.constraint().states}")
    print(f"calc_ws (%ignore WS_INLINE, length 16, vocabulary {ws_run.vocab.size - 1} characters):")
    print(f"{'  unconstrained':34} {rate(args.n, ws_free_s):12,.0f} {100 * ws_free_valid:6.1f}%")
    print(f"{'  constrained (states built)':34} {rate(args.n, ws_held_s):12,.0f} {100.0:6.1f}%")
    print(f"{'  constrained (first call, cold)':34} {rate(args.n, ws_cold_s):12,.0f} {100.0:6.1f}%")
    print(f"  constrained / unconstrained time: {ws_held_s / ws_free_s:.2f}x; mask states: {ws_states};"
          f" samples with ignorable text between tokens: {100 * ws_spaced:.1f}%")
    for backend in ("gumbel-lstm-gan", "mle-lstm") if not args.skip_training else ():
        plain, masked = train_rates[(backend, "none")], train_rates[(backend, "grammar")]
        print(f"training {backend} (arith, defaults): {plain:,.0f} it/s, with mask=grammar {masked:,.0f} it/s"
              f" ({plain / masked:.2f}x the time)")


if __name__ == "__main__":
    main()
