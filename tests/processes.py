"""Helpers for tests that stop real processes: is a process still running, kill leftovers."""

from __future__ import annotations

import os
import signal
from typing import Iterable


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL each of ``pids`` that still exists (cleanup after a failed test)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
