"""Training data drawn from a grammar: ``draw_dataset``."""

from __future__ import annotations

import random

from ..errors import UnsupportedGrammarError
from .grammar import Grammar
from .language import MODES, Language

#: Why uniform is the default: the paper's 5000 strings "up to length 12" are read as a uniform
#: draw over the language, which makes coverage and distribution distances well defined
#: (every string of the 1365 has probability 1/1365). A PCFG with equal alternatives instead
#: piles its mass on the shortest strings (half of arith's draws would be "x").
DEFAULT_MODE = "uniform"


def draw_dataset(
    grammar: Grammar,
    n: int,
    *,
    max_len: int = 12,
    mode: str = DEFAULT_MODE,
    seed: int = 0,
    language: Language | None = None,
) -> list[str]:
    """``n`` strings of the grammar's language with length <= ``max_len``, drawn with ``seed``.

    ``uniform``: every distinct string (derivation, for ambiguous grammars) equally likely.
    ``pcfg``: a random derivation, alternatives equally likely among those that still fit.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if n < 0:
        raise ValueError("n must be >= 0")
    lang = language if language is not None and language.max_len == max_len else Language(grammar, max_len)
    rng = random.Random(seed)
    draw = lang.sample_uniform if mode == "uniform" else lang.sample_pcfg
    out = [draw(rng) for _ in range(n)]
    for s in out:
        if "\n" in s or "\r" in s:
            raise UnsupportedGrammarError(
                f"{grammar.path}: the grammar derives line breaks ({s!r}), which a"
                " one-string-per-line file cannot hold"
            )
    return out
