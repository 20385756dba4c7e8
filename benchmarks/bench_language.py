"""Benchmark: counting and drawing at --max-len 100 on calculator-sized grammars.

For each grammar: the time to count (``Language(grammar, 100)``) and to draw ``--strings``
checked strings (``draw_dataset``: derivation, text, Lark's lexer and parser read it back), next
to a straightforward sampler run in the same process on the same tables and seed: every choice
recomputes its weights over big integers, draws with ``rng.randrange`` and scans them linearly
(how ``Language`` drew before its choices were cached and its draws inlined). The two must give
the same derivations; the benchmark checks that, then prints figures. It asserts nothing about time. The baseline only derives (it does not write or
check), so the ratio understates the gain.

Then the same draw with ``--workers`` processes (default: one per usable CPU; the strings are the
same, which the script checks), as ``gumbelseq data`` does by default.

    python benchmarks/bench_language.py [--strings 100000] [--baseline-strings 2000] [--workers N]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from gumbelseq.cpus import usable_cpus
from gumbelseq.lang.dataset import draw_dataset
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.language import Language

ROOT = Path(__file__).resolve().parent.parent
GRAMMARS = {
    "calc (tests/corpus/calc.lark)": ROOT / "tests/corpus/calc.lark",
    "config (tests/corpus/config.lark)": ROOT / "tests/corpus/config.lark",
    "composed (tests/corpus/composed/main.lark)": ROOT / "tests/corpus/composed/main.lark",
    "json (built-in)": "json",
}


def _choose(rng: random.Random, weights: list[int]) -> int:
    x = rng.randrange(sum(weights))
    for i, w in enumerate(weights):
        if x < w:
            return i
        x -= w
    raise AssertionError


def straightforward_tokens(lang: Language, rng: random.Random) -> list[tuple[str, str]]:
    """The derivation ``Language.derive_uniform`` draws, without its caches."""
    n = _choose(rng, lang._derivations)  # derivations by length (counts differ under %ignore)
    out: list[tuple[str, str]] = []
    stack = [(lang.grammar.start, n)]
    while stack:
        sym, length = stack.pop()
        term = lang._terminals.get(sym)
        if term is not None:
            out.append((sym, term.sample(length, rng)))
            continue
        rules = lang._rules[sym]
        r = rules[_choose(rng, [lang._suffix[x][0][length] for x in rules])]
        tabs = lang._suffix[r]
        parts = []
        rest = length
        for i, s in enumerate(r.symbols):
            c = lang._sym(s)
            nxt = tabs[i + 1]
            m = _choose(rng, [c[m] * nxt[rest - m] for m in range(rest + 1)])
            parts.append((s, m))
            rest -= m
        stack.extend(reversed(parts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strings", type=int, default=100_000)
    ap.add_argument("--baseline-strings", type=int, default=2_000)
    ap.add_argument("--max-len", type=int, default=100)
    ap.add_argument("--workers", type=int, default=usable_cpus())
    args = ap.parse_args()
    L = args.max_len
    print(f"max_len {L}; {args.strings:,} checked strings; baseline on {args.baseline_strings:,} derivations")
    print(f"{'grammar':44} {'count s':>8} {'draw s':>8} {'strings/s':>10} {'kept':>6} {'baseline/s':>10} {'ratio':>6}"
          f" {f'{args.workers} workers s':>12}")
    for label, spec in GRAMMARS.items():
        g = load_grammar(str(spec))
        t = time.perf_counter()
        lang = Language(g, L)
        count_s = time.perf_counter() - t

        # Same tables, same seed: the cached sampler must draw exactly what the plain one draws.
        a, b = random.Random(1), random.Random(1)
        check = min(200, args.baseline_strings)
        assert [lang.derive_uniform(a) for _ in range(check)] == [straightforward_tokens(lang, b) for _ in range(check)]

        fresh = Language(g, L)  # no warm caches from the check above
        t = time.perf_counter()
        for _ in range(args.baseline_strings):
            straightforward_tokens(fresh, b)
        base_rate = args.baseline_strings / (time.perf_counter() - t)

        fresh = Language(g, L)
        notes: list[str] = []
        t = time.perf_counter()
        lines = draw_dataset(g, args.strings, max_len=L, seed=0, language=fresh, on_notice=notes.append)
        draw_s = time.perf_counter() - t
        rate = len(lines) / draw_s
        kept = notes[0].split("(")[-1].split("%")[0] + "%" if notes else "100%"
        t = time.perf_counter()
        parallel = draw_dataset(g, args.strings, max_len=L, seed=0, workers=args.workers)
        parallel_s = time.perf_counter() - t
        assert parallel == lines
        print(
            f"{label:44} {count_s:8.2f} {draw_s:8.1f} {rate:10,.0f} {kept:>6} {base_rate:10,.0f}"
            f" {rate / base_rate:5.1f}x {parallel_s:12.1f}"
        )


if __name__ == "__main__":
    main()
