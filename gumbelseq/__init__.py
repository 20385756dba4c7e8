"""gumbelseq: generative models of grammar-constrained discrete sequences."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "GumbelseqError",
    "Grammar",
    "Validation",
    "builtin_grammars",
    "load_grammar",
    "__version__",
]

# Loaded on first use (PEP 562), not at import: the grammar layer pulls in Lark, and the
# console script must be able to answer a Ctrl-C before that (see ``entry_point``).
_LAZY = {
    "GumbelseqError": "errors",
    "Grammar": "lang.grammar",
    "Validation": "lang.grammar",
    "builtin_grammars": "lang.grammar",
    "load_grammar": "lang.grammar",
}

if TYPE_CHECKING:
    from .errors import GumbelseqError
    from .lang.grammar import Grammar, Validation, builtin_grammars, load_grammar


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
