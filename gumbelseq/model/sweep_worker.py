"""A sweep worker process: ``python -m gumbelseq.model.sweep_worker DIR --index N ...``.

Started by ``run_sweep`` (never by hand): it reads the spec and data from the sweep folder
DIR, the storage URL from the environment (``sweep.STORAGE_ENV``: a URL may hold a password),
and runs trials until none is left. Exit status: 0 done, 130 stopped by SIGINT (its trial is
recorded as interrupted and queued again), 1 an error (one ``Error:`` line, in its log).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..parent_death import stop_with_parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gumbelseq-sweep-worker")
    parser.add_argument("out", type=Path)
    parser.add_argument("--index", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--plugins-dir", default=None)
    args = parser.parse_args(argv)
    import signal

    # SIGINT is how the command stops a worker; a SIG_IGN inherited from a background shell
    # must not swallow it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stop_with_parent(args.parent)
    try:
        import torch

        from ..errors import GumbelseqError
        from .sweep import work, worker_context

        torch.set_num_threads(max(1, args.threads))
        print(f"worker {args.index}: pid {__import__('os').getpid()}, {args.threads} torch threads", flush=True)
        try:
            ctx = worker_context(args.out, args.plugins_dir)
            ran = work(ctx, limit=args.limit, parent=args.parent)
        except GumbelseqError as e:
            print(f"Error: {e}", file=sys.stderr, flush=True)
            return 1
        print(f"worker {args.index}: done, {ran} trials", flush=True)
        return 0
    except KeyboardInterrupt:
        print(f"worker {args.index}: stopped (SIGINT)", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
