"""Hypothesis strategies for your own tests: valid strings of a grammar, bounded in length.

    from hypothesis import given
    from gumbelseq.testing import strings

    @given(strings("grammars/arith.lark", max_len=12))
    def test_my_parser_takes_every_valid_string(s):
        ...

Unlike ``hypothesis.extra.lark.from_lark``, every string is valid by ``Lark.parse`` with the
lexer included (keywords, longest match, ``%ignore``: see ``gumbelseq.lang.sampler``), never
longer than ``max_len``, and failures shrink toward short strings: the length is drawn first,
shortest lengths first, then the derivation from a random stream Hypothesis controls.
"""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import strategies as st

from .lang.grammar import Grammar, load_grammar
from .lang.language import Language
from .lang.sampler import Sampler


def strings(
    grammar: Grammar | str | Path,
    *,
    max_len: int = 12,
    min_len: int = 0,
    start: str = "start",
    ignore: str = "minimal",
) -> st.SearchStrategy[str]:
    """Valid strings of ``grammar`` (a ``Grammar``, a path or a built-in name) with
    ``min_len <= len <= max_len``. The grammar is loaded and counted once, here."""
    g = grammar if isinstance(grammar, Grammar) else load_grammar(grammar, start=start)
    language = Language(g, max_len)
    # Lengths of derivations (what is drawn), not of strings: with %ignore, count(n) also
    # counts strings with ignorable text, which no derivation of length n spells.
    lengths = [n for n in range(min_len, max_len + 1) if language.derivations(n)]
    if not lengths:
        raise ValueError(f"{g.path}: no string of length {min_len}..{max_len} in this language")
    # One sampler per length, so a drawn length is kept whatever the derivation. The first
    # length is tried now with a fixed stream: a bad ``ignore`` or a grammar nothing can be
    # drawn from fails here, in one line, not inside Hypothesis.
    samplers: dict[int, Sampler] = {}
    samplers[lengths[0]] = Sampler(_AtLength(language, lengths[0]), "uniform", ignore)
    samplers[lengths[0]].draw(random.Random(0))

    @st.composite
    def _strings(draw: st.DrawFn) -> str:
        n = draw(st.sampled_from(lengths))
        rng = draw(st.randoms(use_true_random=False))
        sampler = samplers.get(n)
        if sampler is None:
            sampler = samplers[n] = Sampler(_AtLength(language, n), "uniform", ignore)
        return sampler.draw(rng)

    return _strings()


class _AtLength:
    """A ``Language`` view whose uniform derivations all have length ``n`` (written strings
    may be longer by ignorable text and are then drawn again)."""

    def __init__(self, language: Language, n: int) -> None:
        self._language = language
        self._n = n
        self.grammar = language.grammar
        self.max_len = language.max_len

    def derive_uniform(self, rng):  # noqa: ANN001 - random.Random-like (Hypothesis's)
        return self._language._expand(self.grammar.start, self._n, rng)

    def derive_pcfg(self, rng):  # noqa: ANN001
        return self.derive_uniform(rng)
