"""Memory and time of constrained sampling, with and without dropping the masks between chunks.

Samples ``-n`` strings from a trained run with the given automata (``--automaton``, repeatable;
none: the grammar alone) and prints the time, the peak resident memory of this process, how
often the masks were dropped and rebuilt, and a hash of the samples (equal hashes: the same
samples). ``--limit N`` sets the states past which the masks are dropped (default: the
library's, a quarter of the available memory); ``--limit 0`` never drops them. Run each setting
in its own process (peak memory is per process).

    python benchmarks/mask_memory.py RUN_DIR -n 12000 --automaton smiles-valence --limit 1000000
    python benchmarks/mask_memory.py RUN_DIR -n 12000 --automaton smiles-valence --limit 0
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import time

from gumbelseq.model import run as run_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--automaton", action="append", default=[])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="states before the masks are dropped (0: never)")
    args = parser.parse_args()
    if args.limit is not None:
        limit = args.limit if args.limit > 0 else 1 << 62
        run_module.mask_states_limit = lambda: limit
    run = run_module.load_run(args.run_dir)
    start = time.perf_counter()
    samples = run.sample(args.n, seed=args.seed, constrained=True, automata=args.automaton)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    digest = hashlib.sha256("\n".join(samples).encode()).hexdigest()[:12]
    print(f"{len(samples)} samples in {seconds:.1f} s, peak RSS {peak:.2f} GiB, masks dropped {run.mask_resets} times,"
          f" search gave up {run.search_gave_up(args.automaton)} times, samples sha256 {digest}")


if __name__ == "__main__":
    main()
