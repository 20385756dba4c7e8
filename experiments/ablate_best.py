"""What makes the `best` preset work: train it with one ingredient removed at a time, and the
paper's recipe with one ingredient added, all on the training set of `gumbelseq reproduce`.

    python experiments/ablate_best.py --out ablation [--seed 0] [--only KEY ...]

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
from gumbelseq.model.reproduce import COLUMNS, MAX_LEN, N_TRAIN, ModelSpec, Reproduction, _environment, run_model, table_rows
from gumbelseq.model.train import read_data

GAN = "gumbel-lstm-gan"
VARIANTS = [
    ModelSpec("best", "best", GAN, {"preset": "best"}, "the preset"),
    ModelSpec("best-no-pretrain", "best, no MLE pre-training", GAN, {"preset": "best", "pretrain_iters": 0}, "-pretrain"),
    ModelSpec("best-soft", "best, soft (no straight-through), real_peak 0.9", GAN,
              {"preset": "best", "hard": False, "real_peak": 0.9}, "-hard"),
    ModelSpec("best-small", "best, state 10 (paper size)", GAN, {"preset": "best", "hidden_g": 10, "hidden_d": 10}, "-size"),
    ModelSpec("best-1d", "best, 1 D step", GAN, {"preset": "best", "d_steps": 1}, "-d_steps"),
    ModelSpec("best-mle-only", "best, MLE for all iterations (no adversarial phase)", GAN,
              {"preset": "best", "pretrain_iters": 20000}, "pretrain only"),
    ModelSpec("paper-relgan", "paper + RelGAN temperature (exp. 1 -> 0.01)", GAN,
              {"preset": "paper", "schedule": "exponential", "tau_start": 1.0, "tau_end": 0.01}, "+large inverse temperature"),
    ModelSpec("paper-5d", "paper + 5 D steps", GAN, {"preset": "paper", "d_steps": 5}, "+d_steps"),
    ModelSpec("paper-hard", "paper + straight-through", GAN, {"preset": "paper", "hard": True}, "+hard"),
    ModelSpec("paper-pretrain", "paper + 2000 MLE pre-training iterations", GAN,
              {"preset": "paper", "pretrain_iters": 2000}, "+pretrain"),
]


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
    for spec in VARIANTS:
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
