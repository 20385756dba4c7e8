"""Stop a child process as on Ctrl-C when the command that started it dies.

``sweep`` workers and ``reproduce --seeds`` children run in their own sessions (so a terminal's
Ctrl-C reaches only the command, which passes one SIGINT on). If the command itself is killed
(``kill -9``), nobody would stop them: they would go on training into folders that a new
command may then take over. ``stop_with_parent(pid)`` asks Linux to send SIGINT to this process
when its parent dies, so it checkpoints and exits as on Ctrl-C. Elsewhere it does nothing (a
sweep worker also checks its parent between trials). ``data``'s drawing workers, which keep
nothing, ask for SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys

#: How ``reproduce --seeds`` tells a child ``gumbelseq reproduce`` its parent's pid.
PARENT_ENV = "GUMBELSEQ_PARENT_PID"


def stop_with_parent(parent: int | None, sig: int = signal.SIGINT) -> None:
    """Get ``sig`` (SIGINT: stop as on Ctrl-C) when ``parent`` (this process's parent now) dies;
    at once if it already has."""
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request was made
        os.kill(os.getpid(), sig)


def stop_with_parent_from_env() -> None:
    """``stop_with_parent`` for the pid in ``PARENT_ENV``, if set (and not passed further on)."""
    value = os.environ.pop(PARENT_ENV, None)
    if value is not None and value.isdigit():
        stop_with_parent(int(value))
