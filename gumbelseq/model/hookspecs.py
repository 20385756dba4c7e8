"""Plugin hook specifications (pluggy). Built-in and third-party backends use the same hook."""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("gumbelseq")
hookimpl = pluggy.HookimplMarker("gumbelseq")


@hookspec
def register_backends(register: Callable[[object], None]) -> None:
    """Call ``register(backend)`` once for each ``gumbelseq.model.backend.Backend`` instance you provide."""
