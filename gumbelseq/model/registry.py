"""The backend registry: pluggy plugins from the ``gumbelseq`` entry-point group and plugin dirs.

Built-in backends are ordinary plugins: they ship as their own packages and are listed in this
project's ``[project.entry-points.gumbelseq]``, exactly like a third-party package. Loose
``*.py`` files in ``--plugins-dir`` / ``$GUMBELSEQ_PLUGINS_DIR`` are loaded as plugins too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from . import hookspecs
from .backend import Backend
import pluggy

from ..errors import GumbelseqError, UnknownBackendError, first_line
from ..plugin_loading import collect, entry_point_manager

ENTRY_POINT_GROUP = "gumbelseq"
PLUGINS_DIR_ENV = "GUMBELSEQ_PLUGINS_DIR"


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
            if plugins_dir is None:
                plugins_dir = os.environ.get(PLUGINS_DIR_ENV) or None
            if plugins_dir is not None:
                for path in _plugin_files(Path(plugins_dir)):
                    module = _load_module(path)
                    try:
                        self.pm.register(module, name=f"file:{path}")
                        # A hook name no spec knows (register_backend, a typo) registers nothing, silently.
                        self.pm.check_pending()
                    except pluggy.PluginValidationError as e:
                        raise GumbelseqError(f"{path}: not a valid plugin: {' '.join(str(e).split())}") from None
                    sources[f"file:{path}"] = str(path)
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


def _plugin_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise GumbelseqError(f"{directory}: plugins dir is not a directory")
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


def _load_module(path: Path):
    name = f"gumbelseq_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise GumbelseqError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise GumbelseqError(f"{path}:{e.lineno}:{e.offset}: plugin has a syntax error: {e.msg}") from None
    except SystemExit as e:  # the command's exit is not a plugin's to decide
        raise GumbelseqError(f"{path}: plugin failed to load: it called sys.exit({e.code!r})") from None
    except Exception as e:  # a broken third-party plugin must not crash the CLI with a traceback
        raise GumbelseqError(f"{path}: plugin failed to load: {type(e).__name__}: {first_line(e)}") from None
    return module


_cache: dict[str | None, Registry] = {}


def get_registry(plugins_dir: str | Path | None = None) -> Registry:
    """The registry for ``plugins_dir`` (or ``$GUMBELSEQ_PLUGINS_DIR``), built once per process."""
    key = str(plugins_dir) if plugins_dir is not None else os.environ.get(PLUGINS_DIR_ENV) or None
    reg = _cache.get(key)
    if reg is None:
        reg = _cache[key] = Registry(key)
    return reg


def get_backend(name: str, plugins_dir: str | Path | None = None) -> Backend:
    return get_registry(plugins_dir).get(name)
