"""What makes the `best` preset work: train it with one ingredient removed at a time, and the
paper's recipe with one ingredient added, all on the training set of `gumbelseq reproduce`.

    python experiments/ablate_best.py --out ablation [--seed 0] [--only KEY ...]

The rows are those of ``experiments/ablation.toml``; over several seeds, use that suite file:
``gumbelseq reproduce --suite experiments/ablation.toml --seeds 0-4 --out ablation-seeds``.

Prints a markdown table (the one in the README) and writes ablation/ablation.json. Re-running
reuses finished runs. Every row is a real run; nothing is copied from elsewhere.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gumbelseq.lang.dataset import draw_dataset
from gumbelseq.outputs import write_lines
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.model.reproduce import COLUMNS, MAX_LEN, N_TRAIN, Reproduction, _environment, run_model, table_rows
from gumbelseq.model.suite_file import get_suite
from gumbelseq.model.train import read_data

#: The rows are declared once, in the suite file beside this script (which `gumbelseq reproduce
#: --suite experiments/ablation.toml --seeds ...` runs over several seeds).
SUITE = Path(__file__).with_name("ablation.toml")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="ablation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grammar = load_grammar("arith")
    train_path = out / "train.txt"
    if train_path.exists():
        train_set = read_data(train_path)
    else:
        train_set = draw_dataset(grammar, N_TRAIN, max_len=MAX_LEN, seed=args.seed)  # same as reproduce
        write_lines(train_path, train_set)
    rows = []
    for spec in get_suite(str(SUITE)).rows or ():
        if args.only and spec.key not in args.only:
            continue
        rows.append(run_model(spec, out / "runs" / spec.key, train_set, grammar, seed=args.seed,
                              on_message=lambda m: print(m, flush=True)))
    rep = Reproduction(out, args.seed, False, 10_000, rows, _environment())
    (out / "ablation.json").write_text(json.dumps(rep.to_dict(), indent=2) + "\n")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "|".join("---" for _ in COLUMNS) + "|")
    for r in table_rows(rep):
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
