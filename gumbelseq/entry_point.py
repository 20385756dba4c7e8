"""The ``gumbelseq`` console script: imports the CLI where a Ctrl-C can still be answered.

Importing the CLI (Lark, click, rich) takes about 0.2 s, and a Ctrl-C in that window used to
end in a ``KeyboardInterrupt`` traceback. The package's ``__init__`` is lazy, so importing this
module is nearly free and the window left is Python's own start-up."""

from __future__ import annotations

import sys


def main(prog_name: str | None = None) -> None:
    try:
        from .cli import main as cli
    except KeyboardInterrupt:
        # As click answers a Ctrl-C during a command.
        sys.stderr.write("\nAborted!\n")
        raise SystemExit(1) from None
    cli(prog_name=prog_name)
