"""Check: every molecule of the MOSES data set is a string each built-in SMILES automaton accepts.

An automaton that refused a real molecule would forbid it at sampling time; the unit tests check
the automata against RDKit on short strings and edits of a few molecules, this script on all of
MOSES (training and test splits, 1,760,737 molecules; `gumbelseq datasets fetch moses` first).
Prints, per automaton, how many molecules it refuses (the first few, if any), its distinct
states and the time per molecule; exits 1 if any is refused.

    python benchmarks/automata_moses.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time

from gumbelseq.datasets import fetch_dataset
from gumbelseq.lang.automaton import get_automaton


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N molecules of each split")
    args = parser.parse_args()
    folder = fetch_dataset("moses")
    molecules = []
    for split in ("train", "test"):
        with open(folder / f"{split}.txt", encoding="utf-8") as f:
            molecules += [line.rstrip("\n") for line in f][: args.limit]
    failed = False
    for name in ("smiles-rings", "smiles-valence"):
        automaton = get_automaton(name)
        t = time.perf_counter()
        refused = [m for m in molecules if not automaton.accepts_string(m)]
        seconds = time.perf_counter() - t
        states = len(getattr(automaton, "_interned", ()))
        print(f"{name}: refused {len(refused):,} of {len(molecules):,} MOSES molecules {refused[:5]}; "
              f"{states:,} states; {1e6 * seconds / len(molecules):.1f} us per molecule")
        failed |= bool(refused)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
