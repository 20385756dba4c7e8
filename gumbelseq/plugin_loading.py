"""Loading pluggy plugins from an entry-point group and collecting what their hook registers.

Backends (``gumbelseq``) and validators (``gumbelseq.validators``) are both plugins whose hook
is called with a ``register`` function. Loading and collecting are the same for both, and so
are the failures a user must see as one line naming the plugin, never a traceback: a package
that fails to import, a hook that raises, an object of the wrong type, a name registered twice.

Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

import pluggy

from .errors import GumbelseqError, first_line

T = TypeVar("T")


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
            if name in found:
                raise error(f"{what} {name!r} is registered twice: by {found[name][1]} and by {_source}")
            found[name] = (obj, _source)

        try:
            impl.function(register=register)
        except GumbelseqError:
            raise
        except Exception as e:  # a broken plugin is named, never a traceback
            raise error(f"plugin {source}: {hook} failed: {type(e).__name__}: {first_line(e)}") from None
    return found


class NamedPlugins(Generic[T]):
    """What the plugins of entry-point group ``group`` register through ``hook``, by name: loaded
    once per process on first use; an unknown name is a one-line ``error`` listing the known."""

    def __init__(self, group: str, hookspecs: object, hook: str, kind: type[T], error: type[GumbelseqError],
                 what: str, plural: str) -> None:
        self.group, self.hookspecs, self.hook, self.kind = group, hookspecs, hook, kind
        self.error, self.what, self.plural = error, what, plural
        self._found: dict[str, tuple[T, str]] | None = None

    def all(self) -> dict[str, tuple[T, str]]:
        """Every registered one by name, with where it came from."""
        if self._found is None:
            pm, sources = entry_point_manager(self.group, self.hookspecs, self.error)
            name_of: Callable[[Any], str] = lambda obj: obj.name  # noqa: E731
            self._found = collect(pm, self.hook, self.kind, name_of, sources, self.error, self.what)
        return self._found

    def get(self, name: str) -> T:
        known = self.all()
        if name not in known:
            listed = ", ".join(sorted(known)) or "none installed"
            raise self.error(f"unknown {self.what} {name!r}; known {self.plural}: {listed}")
        return known[name][0]
