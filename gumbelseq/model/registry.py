"""The backend registry: pluggy plugins from the ``gumbelseq`` entry-point group and plugin dirs.

Built-in backends are ordinary plugins: they ship as their own packages and are listed in this
project's ``[project.entry-points.gumbelseq]``, exactly like a third-party package. Loose
``*.py`` files in ``--plugins-dir`` / ``$GUMBELSEQ_PLUGINS_DIR`` are loaded as plugins too
(``gumbelseq.plugin_loading``).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from . import hookspecs
from .backend import Backend

from ..errors import GumbelseqError, UnknownBackendError
from ..plugin_loading import collect, entry_point_manager, plugins_dir_key, register_loose

ENTRY_POINT_GROUP = "gumbelseq"


@dataclass(frozen=True)
class BackendEntry:
    backend: Backend
    source: str  # where it came from: "entry point gumbelseq_gan (gumbelseq 0.1.0)", a file path...

    @property
    def name(self) -> str:
        return self.backend.name


class Registry:
    """Backends known to one plugin manager."""

    def __init__(self, plugins_dir: str | Path | None = None) -> None:
        # A plugin that prints while it loads must not corrupt a command's results (--json).
        with contextlib.redirect_stdout(sys.stderr):
            self.pm, sources = entry_point_manager(ENTRY_POINT_GROUP, hookspecs, GumbelseqError)
            sources.update(register_loose(self.pm, plugins_dir, "register_backends", GumbelseqError))
            found = collect(self.pm, "register_backends", Backend, lambda b: b.name, sources, GumbelseqError, "backend")
        self._backends: dict[str, BackendEntry] = {name: BackendEntry(b, src) for name, (b, src) in found.items()}

    def entries(self) -> list[BackendEntry]:
        return sorted(self._backends.values(), key=lambda e: e.name)

    def source(self, name: str) -> str | None:
        """Where the backend ``name`` came from (for error messages), or ``None``."""
        entry = self._backends.get(name)
        return None if entry is None else entry.source

    def default(self) -> Backend:
        """The backend that declares itself the default (``Backend.default``)."""
        flagged = [e for e in self.entries() if getattr(e.backend, "default", False)]
        if len(flagged) == 1:
            return flagged[0].backend
        known = ", ".join(sorted(self._backends)) or "none"
        if not flagged:
            raise UnknownBackendError(f"no registered backend is the default; name one with --backend (known: {known})")
        names = ", ".join(f"{e.name} ({e.source})" for e in flagged)
        raise UnknownBackendError(f"several backends declare themselves the default: {names}; name one with --backend")

    def get(self, name: str) -> Backend:
        try:
            return self._backends[name].backend
        except KeyError:
            known = ", ".join(sorted(self._backends)) or "none"
            raise UnknownBackendError(f"unknown backend {name!r}; known backends: {known}") from None


_cache: dict[str | None, Registry] = {}


def get_registry(plugins_dir: str | Path | None = None) -> Registry:
    """The registry for ``plugins_dir`` (or ``$GUMBELSEQ_PLUGINS_DIR``), built once per process."""
    key = plugins_dir_key(plugins_dir)
    reg = _cache.get(key)
    if reg is None:
        reg = _cache[key] = Registry(key)
    return reg


def get_backend(name: str, plugins_dir: str | Path | None = None) -> Backend:
    return get_registry(plugins_dir).get(name)
