"""Refusing sizes that cannot fit, before allocating them.

``-o hidden_g=100000`` or ``--batch-size 1000000000`` would otherwise die minutes later in the
allocator (or be killed by the kernel's OOM killer, leaving a half-made run). A backend gives a
rough upper estimate of what one training step needs (``Backend.memory_estimate``); the core
compares it with the memory the device has free now and refuses plainly what is far out of
reach. The estimate is deliberately generous in what it allows: it only stops sizes that are
impossible, and out-of-memory errors that still happen are caught and reported in one line.
"""

from __future__ import annotations

import os

import torch

from ..errors import GumbelseqError


class OutOfMemory(GumbelseqError):
    """A size that cannot fit in the device's memory."""


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` now, or ``None`` when it cannot be told."""
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
            return int(free)
        except Exception:
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(needed: int | None, device: torch.device, what: str) -> None:
    """Raise ``OutOfMemory`` when ``needed`` bytes exceed what ``device`` has free."""
    if needed is None:
        return
    free = available_bytes(device)
    if free is not None and needed > free:
        raise OutOfMemory(f"{what} needs about {_gib(needed)} on {device}, which has {_gib(free)} free; use smaller sizes")


def is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    # CPU allocation failures are plain RuntimeErrors.
    return isinstance(e, RuntimeError) and ("can't allocate memory" in str(e) or "out of memory" in str(e))
