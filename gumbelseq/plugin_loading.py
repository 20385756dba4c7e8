"""Loading pluggy plugins and collecting what their hooks register.

Backends (entry-point group ``gumbelseq``), validators (``gumbelseq.validators``) and character
automata (``gumbelseq.automata``) are all plugins whose hook is called with a ``register``
function. Loading and collecting are the same for all three, and so are the failures a user
must see as one line naming the plugin, never a traceback: a package that fails to import, a
hook that raises, an object of the wrong type, a name registered twice.

Loose ``*.py`` files in ``--plugins-dir`` / ``$GUMBELSEQ_PLUGINS_DIR`` may implement any of the
three hooks: each file is imported once per process, and each kind's plugin manager takes the
files that implement its hook.

Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import stat
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Generic, Iterator, TypeVar

import pluggy

from .errors import GumbelseqError, first_line, shown

T = TypeVar("T")

PLUGINS_DIR_ENV = "GUMBELSEQ_PLUGINS_DIR"
#: Every hook a plugin may implement; any other hook name in a loose file is a typo, which
#: pluggy would register silently and never call.
HOOKS = ("register_backends", "register_validators", "register_automata")
# pluggy's marker sets this attribute on a hook implementation (project name "gumbelseq").
_IMPL_ATTR = "gumbelseq_impl"


def plugins_dir_key(plugins_dir: str | Path | None) -> str | None:
    """The loose-plugins folder asked for: ``plugins_dir``, else ``$GUMBELSEQ_PLUGINS_DIR``, else
    none. An empty path given is an error: it would name the current folder."""
    if plugins_dir is not None:
        if str(plugins_dir) == "":
            raise GumbelseqError("'': an empty path names no plugins folder")
        return str(plugins_dir)
    return os.environ.get(PLUGINS_DIR_ENV) or None


class PluginFailure(Exception):
    """A plugin's code failed while it ran, said in one line: ``TypeName: message``, or ``it
    called sys.exit(...)``. It keeps the original traceback (whose frames say which plugin's
    code it was) and pickles by its message, so a worker process can send it back as it is."""


@contextlib.contextmanager
def plugin_code() -> Iterator[None]:
    """Around a call into a plugin at run time: what it prints goes to stderr (stdout holds the
    command's results), and what it raises, ``sys.exit`` included, is a ``PluginFailure``
    (this project's own errors and ``MemoryError`` pass as they are)."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    except (GumbelseqError, MemoryError):
        raise
    except SystemExit as e:  # the command's exit is not a plugin's to decide
        raise PluginFailure(f"it called sys.exit({e.code!r})").with_traceback(e.__traceback__) from None
    except Exception as e:  # noqa: BLE001 - a plugin's failure, which may not even pickle
        raise PluginFailure(f"{type(e).__name__}: {first_line(e)}").with_traceback(e.__traceback__) from None


def _hook_names(module: ModuleType) -> frozenset[str]:
    """The hooks a module implements: each marked function's name, or the ``specname`` it gives."""
    names = set()
    for name, obj in vars(module).items():
        opts = getattr(obj, _IMPL_ATTR, None)
        if opts is not None:
            names.add((opts.get("specname") if isinstance(opts, dict) else None) or name)
    return frozenset(names)


_loose: dict[str, list[tuple[Path, ModuleType, frozenset[str]]]] = {}


def loose_plugins(plugins_dir: str | Path | None) -> list[tuple[Path, ModuleType, frozenset[str]]]:
    """The loose plugin files of ``plugins_dir`` (or the environment's), each imported once per
    process: ``(path, module, the hooks it implements)``. A folder that is not one, a file that
    fails to import, or a hook name no plugin kind has is a one-line ``GumbelseqError``."""
    key = plugins_dir_key(plugins_dir)
    if key is None:
        return []
    if key not in _loose:
        found = []
        # A plugin that prints while it loads must not corrupt a command's results (--json).
        with contextlib.redirect_stdout(sys.stderr):
            for path in _plugin_files(Path(key)):
                module = _load_module(path)
                hooks = _hook_names(module)
                for name in sorted(hooks - set(HOOKS)):
                    raise GumbelseqError(
                        f"{shown(path)}: not a valid plugin: unknown hook {name!r} (plugins implement {', '.join(HOOKS)})"
                    )
                found.append((path, module, hooks))
        _loose[key] = found
    return _loose[key]


def register_loose(pm: pluggy.PluginManager, plugins_dir: str | Path | None, hook: str,
                   error: type[GumbelseqError]) -> dict[str, str]:
    """Register with ``pm`` the loose plugin files that implement ``hook``; return where each
    came from, by plugin name. A hook with the wrong arguments is a one-line ``error``."""
    sources = {}
    for path, module, hooks in loose_plugins(plugins_dir):
        if hook not in hooks:
            continue
        name = f"file:{path}"
        try:
            pm.register(module, name=name)
        except pluggy.PluginValidationError as e:
            raise error(f"{shown(path)}: not a valid plugin: {' '.join(str(e).split())}") from None
        sources[name] = str(path)
    return sources


def _plugin_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise GumbelseqError(f"{shown(directory)}: plugins dir is not a directory")
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:  # glob would say nothing: an unreadable folder looked empty
        raise GumbelseqError(f"{shown(directory)}: cannot read the plugins folder ({e.strerror})") from None
    files = [directory / n for n in names if n.endswith(".py") and not n.startswith(("_", "."))]
    for path in files:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # a broken link or a loop: the import names it
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a FIFO would block the import for good
            raise GumbelseqError(f"{shown(path)}: a plugin file must be a regular file")
    return files


def _load_module(path: Path) -> ModuleType:
    name = f"gumbelseq_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise GumbelseqError(f"{shown(path)}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise GumbelseqError(f"{shown(path)}:{e.lineno}:{e.offset}: plugin has a syntax error: {e.msg}") from None
    except SystemExit as e:  # the command's exit is not a plugin's to decide
        raise GumbelseqError(f"{shown(path)}: plugin failed to load: it called sys.exit({e.code!r})") from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # a broken third-party plugin must not crash the CLI with a traceback
        raise GumbelseqError(f"{shown(path)}: plugin failed to load: {type(e).__name__}: {first_line(e)}") from None
    return module


def entry_point_manager(group: str, hookspecs: object, error: type[GumbelseqError]) -> tuple[pluggy.PluginManager, dict[str, str]]:
    """A plugin manager of project ``gumbelseq`` with ``group``'s entry points loaded, and where
    each plugin came from (``{plugin name: "entry point NAME = MODULE (DIST VERSION)"}``)."""
    pm = pluggy.PluginManager("gumbelseq")
    pm.add_hookspecs(hookspecs)
    try:
        pm.load_setuptools_entrypoints(group)
    except Exception as e:  # an installed plugin package that fails to import
        raise error(f"a plugin of entry-point group {group!r} failed to load: {type(e).__name__}: {first_line(e)}") from None
    sources = {}
    for plugin, dist in pm.list_plugin_distinfo():
        name = pm.get_name(plugin)
        sources[name] = f"entry point {name} = {getattr(plugin, '__name__', plugin)} ({dist.project_name} {dist.version})"
    return pm, sources


def collect(
    pm: pluggy.PluginManager,
    hook: str,
    kind: type[T],
    name_of: Callable[[T], str],
    sources: dict[str, str],
    error: type[GumbelseqError],
    what: str,
) -> dict[str, tuple[T, str]]:
    """Call every implementation of ``hook`` with a ``register`` function; return what was
    registered by name, with its source. ``what`` names the thing in messages ("backend")."""
    found: dict[str, tuple[T, str]] = {}
    for impl in getattr(pm.hook, hook).get_hookimpls():
        source = sources.get(impl.plugin_name, impl.plugin_name)

        def register(obj: T, _source: str = source) -> None:
            if not isinstance(obj, kind):
                raise error(f"{_source}: register() expects a {kind.__module__}.{kind.__qualname__}, got {obj!r}")
            name = name_of(obj)
            # Names are typed on command lines and listed in one-line messages.
            if not isinstance(name, str) or not name or not name.isprintable():
                raise error(f"{_source}: the {what} name {name!r} is not a non-empty line of text")
            if not isinstance(getattr(obj, "description", ""), str):
                raise error(f"{_source}: {what} {name!r}: its description must be a string, got {obj.description!r}")  # type: ignore[attr-defined]
            if name in found:
                raise error(f"{what} {name!r} is registered twice: by {found[name][1]} and by {_source}")
            found[name] = (obj, _source)

        if impl.hookwrapper or getattr(impl, "wrapper", False):  # it would be called as a plain hook
            raise error(f"plugin {source}: {hook} must be a plain hook implementation, not a wrapper")
        try:
            impl.function(register=register)
        except GumbelseqError:
            raise
        except SystemExit as e:
            raise error(f"plugin {source}: {hook} called sys.exit({e.code!r})") from None
        except Exception as e:  # a broken plugin is named, never a traceback
            raise error(f"plugin {source}: {hook} failed: {type(e).__name__}: {first_line(e)}") from None
    return found


class NamedPlugins(Generic[T]):
    """What the plugins of entry-point group ``group`` and loose plugin files register through
    ``hook``, by name: loaded once per process and plugins folder on first use; an unknown name
    is a one-line ``error`` listing the known."""

    def __init__(self, group: str, hookspecs: object, hook: str, kind: type[T], error: type[GumbelseqError],
                 what: str, plural: str) -> None:
        self.group, self.hookspecs, self.hook, self.kind = group, hookspecs, hook, kind
        self.error, self.what, self.plural = error, what, plural
        self._found: dict[str | None, dict[str, tuple[T, str]]] = {}

    def all(self, plugins_dir: str | Path | None = None) -> dict[str, tuple[T, str]]:
        """Every registered one by name, with where it came from."""
        key = plugins_dir_key(plugins_dir)
        if key not in self._found:
            with contextlib.redirect_stdout(sys.stderr):  # as for backends: stdout is for results
                pm, sources = entry_point_manager(self.group, self.hookspecs, self.error)
                sources.update(register_loose(pm, key, self.hook, self.error))
                name_of: Callable[[Any], str] = lambda obj: obj.name  # noqa: E731
                self._found[key] = collect(pm, self.hook, self.kind, name_of, sources, self.error, self.what)
        return self._found[key]

    def get(self, name: str, plugins_dir: str | Path | None = None) -> T:
        known = self.all(plugins_dir)
        if name not in known:
            listed = ", ".join(sorted(known)) or "none installed"
            raise self.error(f"unknown {self.what} {name!r}; known {self.plural}: {listed}")
        return known[name][0]
