"""gumbelseq: generative models of grammar-constrained discrete sequences."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import GumbelseqError  # noqa: E402
from .lang.grammar import Grammar, Validation, builtin_grammars, load_grammar  # noqa: E402

__all__ = [
    "GumbelseqError",
    "Grammar",
    "Validation",
    "builtin_grammars",
    "load_grammar",
    "__version__",
]
