"""Drawing and counting agree with Lark (tests/oracle.py) on the test corpus and the built-ins.

- every string ``data`` draws, in every ``--ignore`` mode and both modes, is accepted by a fresh
  ``Lark.parse`` and fits the length bound;
- where nothing but spaces is ``%ignore``d, ``--ignore none`` draws exactly the valid strings
  without spaces, each equally often (chi-square), however the lexer merges or splits tokens;
- ``Language.exact`` is a proof: where it holds (ignore-separable grammars with ``%ignore``
  included), counts equal the brute-force count of Lark's language; where it does not, a reason
  is given and (for grammars without ``%ignore``) the count is an upper bound of the brute-force
  count;
- ``score`` never reports a coverage above 1, and computes none when counts are not exact.
"""

from __future__ import annotations

import functools
import random
from collections import Counter

import pytest
from lark import Lark

from gumbelseq.lang.dataset import draw_dataset
from gumbelseq.lang.exactness import ignore_runs, terminal_strings
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.language import Language
from gumbelseq.lang.sampler import IGNORE_MODES
from gumbelseq.lang.score import score_samples
from oracle import BY_NAME, CORPUS, all_strings, chi2_bound, lark_accepts, oracle_lark, oracle_language

IDS = [e.name for e in CORPUS]


@functools.lru_cache(maxsize=None)
def grammar(name):
    e = BY_NAME[name]
    return load_grammar(e.path, start=e.start)


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("ignore", IGNORE_MODES)
def test_every_draw_is_valid_by_lark(name, ignore):
    e = BY_NAME[name]
    parser = oracle_lark(str(e.path), e.start)
    max_len = e.max_len + 2
    n = 40 if e.algorithm == "earley" else 150
    for mode in ("uniform", "pcfg"):
        draws = draw_dataset(grammar(name), n, max_len=max_len, mode=mode, seed=7, ignore=ignore)
        assert len(draws) == n
        for s in set(draws):
            assert len(s) <= max_len, s
            assert lark_accepts(parser, s), (name, ignore, mode, s)


# Grammars whose %ignore (if any) is spaces only, no rule terminal contains a space, and whose
# brute-force alphabet holds every character their terminals use, so that "valid strings
# without ignorable text" is exactly "oracle strings without a space".
UNIFORM_CASES = [("kwname", 5), ("alternation", 4), ("lazy", 5), ("priority", 4), ("collide_ctx", 4)]


@pytest.mark.parametrize("name,max_len", UNIFORM_CASES, ids=[c[0] for c in UNIFORM_CASES])
def test_ignore_none_is_uniform_over_valid_strings_without_ignorable_text(name, max_len):
    support = {s for s in oracle_language(name, max_len) if " " not in s}
    assert len(support) >= 5, name
    per = 40
    draws = draw_dataset(grammar(name), per * len(support), max_len=max_len, seed=11, ignore="none")
    counts = Counter(draws)
    assert set(counts) == support, (sorted(set(counts) - support)[:5], sorted(support - set(counts))[:5])
    expected = len(draws) / len(support)
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < chi2_bound(len(support) - 1), (name, chi2)


BUILTIN_ALPHABETS = {"arith": ("x+-*/", 7), "parens": ("x+-*/()", 5), "dyck": ("()[]", 8)}


@pytest.mark.parametrize("name", sorted(BUILTIN_ALPHABETS))
def test_exact_builtins_count_exactly_what_lark_accepts(name):
    g = load_grammar(name)
    alphabet, max_len = BUILTIN_ALPHABETS[name]
    lang = Language(g, max_len)
    assert lang.exact and lang.reason is None
    from lark import Lark

    parser = Lark(g.text, parser="lalr")
    by_len = Counter(len(s) for s in all_strings(alphabet, max_len) if lark_accepts(parser, s))
    assert [lang.count(n) for n in range(max_len + 1)] == [by_len.get(n, 0) for n in range(max_len + 1)]


@pytest.mark.parametrize("name", IDS)
def test_counts_are_exact_or_say_why_and_bound_lark_from_above(name):
    e = BY_NAME[name]
    lang = Language(grammar(name), e.max_len)
    # The corpus marks the grammars whose counts must be exact (the ignore-separable ones);
    # every other grammar exercises a lexer interaction (or ambiguity) on purpose.
    assert lang.exact == (e.counts is not None), lang.reason
    if lang.exact:
        alphabet, max_len = e.counts
        assert len(set(alphabet)) == len(alphabet)  # each string once
        runs = ignore_runs(grammar(name))
        used = {c for t in terminal_strings(grammar(name)) for c in t} | (runs.chars if runs else set())
        assert used <= set(alphabet), sorted(used - set(alphabet))
        # The alphabet holds every character of the language: brute force is every string.
        parser = oracle_lark(str(e.path), e.start)
        strings = oracle_language(name, max_len) if alphabet == e.alphabet else [
            s for s in all_strings(alphabet, max_len) if lark_accepts(parser, s)
        ]
        by_len = Counter(len(s) for s in strings)
        counted = Language(grammar(name), max_len)
        assert [counted.count(n) for n in range(max_len + 1)] == [by_len.get(n, 0) for n in range(max_len + 1)]
        return
    assert lang.reason and "\n" not in lang.reason
    if not grammar(name).parser.ignore_tokens:
        # Every valid string is Lark's derivation of it, so derivations are at least as many.
        assert lang.count_upto(e.max_len) >= len(oracle_language(name))


def test_adjacent_numbers_are_drawn_once_each():
    # The example: start: NUMBER NUMBER?, NUMBER /[0-9]{1,3}/. All 110 strings of length
    # <= 2 are valid; "12" must not come twice as often as "1" (once as one NUMBER, once as two).
    draws = draw_dataset(grammar("adjacent"), 110 * 60, max_len=2, seed=3, ignore="none")
    counts = Counter(draws)
    assert set(counts) == {str(i) for i in range(10)} | {f"{i}{j}" for i in range(10) for j in range(10)}
    expected = len(draws) / 110
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < chi2_bound(109)


def test_keywords_get_a_separator_only_where_lark_needs_one():
    draws = draw_dataset(grammar("kwname"), 2000, max_len=9, seed=5, ignore="minimal")
    parser = oracle_lark(str(BY_NAME["kwname"].path))
    assert all(lark_accepts(parser, s) for s in set(draws))
    spaced = [s for s in draws if " " in s]
    assert spaced, "a keyword followed by a name needs a space"
    # Each space is needed: without it Lark reads other tokens (or rejects the string).
    tokens = grammar("kwname")._fast.tokens
    for s in set(spaced):
        for i, c in enumerate(s):
            if c == " ":
                assert tokens(s[:i] + s[i + 1 :]) != tokens(s), (s, i)


def test_coverage_is_never_above_one_and_needs_exact_counts():
    g = grammar("kwname")
    lines = draw_dataset(g, 500, max_len=8, seed=1, ignore="random")
    rep = score_samples(lines, g, max_len=8)
    # Lark's strings, spaces included, counted by following its lexer: a true size.
    assert rep.language_size_exact is True and 0 < rep.coverage <= 1
    calc = grammar("calc")  # common.NUMBER and %ignore WS: counted exactly (exactness.py)
    rep = score_samples(draw_dataset(calc, 300, max_len=12, seed=1, ignore="random"), calc, max_len=12)
    assert rep.language_size_exact is True and 0 < rep.coverage <= 1
    config = grammar("config")  # a negated class: not a finite alphabet, so no count
    rep = score_samples(draw_dataset(config, 300, max_len=12, seed=1, ignore="random"), config, max_len=12)
    assert rep.language_size_exact is False and rep.coverage is None
    assert "negated" in rep.language_size_reason
    arith = load_grammar("arith")
    rep = score_samples(draw_dataset(arith, 3000, max_len=5, seed=1), arith, max_len=5)
    assert rep.language_size_exact is True and 0 < rep.coverage <= 1


def test_same_seed_same_draws_in_every_mode():
    g = grammar("calc")
    for ignore in IGNORE_MODES:
        a = draw_dataset(g, 50, max_len=15, seed=9, ignore=ignore)
        b = draw_dataset(g, 50, max_len=15, seed=9, ignore=ignore)
        assert a == b
    state = random.getstate()
    draw_dataset(g, 10, max_len=15, seed=9, ignore="random")
    assert random.getstate() == state


def test_unicode_classes_are_not_exact(tmp_path):
    # Lark (Python's re) matches \d for every Unicode digit: counting 0-9 only is not exact,
    # and a coverage over it could pass 1.
    (tmp_path / "d.lark").write_text("start: D+\nD: /\\d/\n")
    g = load_grammar(str(tmp_path / "d.lark"))
    lang = Language(g, 3)
    assert not lang.exact and "\\d" in lang.reason
    rep = score_samples(["1", "\u0661", "\u0662", "12"], g, max_len=3)
    assert rep.valid == 4 and rep.coverage is None
    (tmp_path / "a.lark").write_text("start: D+\nD: /[0-9]/\n")
    assert Language(load_grammar(str(tmp_path / "a.lark")), 3).exact


def test_a_comment_opener_is_never_a_separator(tmp_path):
    (tmp_path / "c.lark").write_text(
        'start: stmt+\nstmt: NAME "=" NUMBER ";"\nNAME: /[a-z]+/\nNUMBER: /[0-9]+/\n'
        "COMMENT: /#[^\\n]*/\n%ignore COMMENT\n%ignore \" \"\n"
    )
    g = load_grammar(str(tmp_path / "c.lark"))
    draws = draw_dataset(g, 300, max_len=16, seed=1, ignore="random")
    assert sum(" " in s for s in draws) > 10  # random spacing happens
    assert not any("#" in s for s in draws)
    parser = Lark((tmp_path / "c.lark").read_text(), parser="lalr")
    assert all(lark_accepts(parser, s) for s in set(draws))
