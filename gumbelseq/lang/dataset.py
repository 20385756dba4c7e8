"""Training data drawn from a grammar: ``draw_dataset``."""

from __future__ import annotations

import random
from typing import Callable

from ..errors import UnsupportedGrammarError
from .grammar import Grammar
from .language import MODES, Language
from .sampler import Sampler

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
    ignore: str = "minimal",
    on_notice: Callable[[str], None] | None = None,
) -> list[str]:
    """``n`` valid strings of the grammar's language with length <= ``max_len``, drawn with
    ``seed`` (a private ``random.Random``; global RNGs are untouched).

    ``uniform``: every string the sampler can write equally likely (see ``sampler.py``: for a
    grammar whose ``Language.exact`` holds, every string of the language up to ``max_len``).
    ``pcfg``: a random derivation, alternatives equally likely among those that still fit.
    ``ignore``: what to do with ``%ignore``d text (``none``, ``minimal``, ``random``).
    ``on_notice`` hears how many draws Lark read differently (and were drawn again), if any.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if n < 0:
        raise ValueError("n must be >= 0")
    lang = language if language is not None and language.max_len == max_len else Language(grammar, max_len)
    rng = random.Random(seed)
    sampler = Sampler(lang, mode, ignore)
    out = []
    for _ in range(n):
        try:
            out.append(sampler.draw(rng))
        except UnsupportedGrammarError:
            if not out and _derives_line_breaks(lang, mode, rng):
                raise UnsupportedGrammarError(
                    f"{grammar.path}: the grammar derives line breaks, which a one-string-per-line"
                    " file cannot hold"
                ) from None
            raise
    if on_notice is not None and grammar.algorithm != "lalr" and mode == "uniform":
        on_notice(
            f"{grammar.path}: the grammar is parsed with Earley (not strict LALR(1)), so uniform is over derivations:"
            " a string with several parses is drawn as often as it has parses"
        )
    if on_notice is not None and sampler.drawn > sampler.kept:
        on_notice(
            f"{sampler.drawn - sampler.kept} of {sampler.drawn} draws were read differently by"
            f" Lark's lexer and drawn again ({100 * (sampler.acceptance or 0):.1f}% kept)"
        )
    return out


def _derives_line_breaks(lang: Language, mode: str, rng: random.Random) -> bool:
    derive = lang.derive_uniform if mode == "uniform" else lang.derive_pcfg
    return any("\n" in t or "\r" in t for _ in range(20) for _, t in derive(rng))
