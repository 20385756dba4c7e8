import functools
import itertools
import random
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from gumbelseq.lang.dataset import draw_dataset
from gumbelseq.errors import UnsupportedGrammarError
from gumbelseq.lang.grammar import builtin_grammars, load_grammar
from gumbelseq.lang.language import LANGUAGE_MAX_LEN, Language, LengthLimitError
from oracle import chi2_bound

GRAMMARS = [g.name for g in builtin_grammars()]


@functools.lru_cache(maxsize=None)
def grammar(name):
    return load_grammar(name)


@functools.lru_cache(maxsize=None)
def language(name, max_len):
    return Language(grammar(name), max_len)


def test_arith_counts_are_the_papers():
    lang = language("arith", 12)
    assert [lang.count(n) for n in range(13)] == [0, 1, 0, 4, 0, 16, 0, 64, 0, 256, 0, 1024, 0]
    assert lang.count_upto(12) == 1365
    assert lang.count_upto(5) == 21
    assert lang.exact


# Brute force: every string over an alphabet that contains every character the language uses,
# plus one it doesn't, checked by the parser. Small bounds keep it to a few 10^4 parses.
BRUTE = {
    "arith": ("x+-*/ ", 6),
    "parens": ("x+-*/() ", 5),
    "dyck": ("()[]x", 8),
    "json": ('"abcdefghijklmnopqrstuvwxyz0123456789-[]{},:!', 2),
}


@pytest.mark.parametrize("name", sorted(BRUTE))
def test_counts_agree_with_brute_force(name):
    alphabet, L = BRUTE[name]
    g = grammar(name)
    lang = language(name, L)
    for n in range(L + 1):
        brute = sum(1 for t in itertools.product(alphabet, repeat=n) if g.is_valid("".join(t)))
        assert lang.count(n) == brute, (name, n)


def test_json_counts_small_lengths_exact():
    lang = language("json", 3)
    # length 1: 10 digits; length 2: '""', 90 two-digit, -0..-9 (10), [] , {}
    assert lang.count(1) == 10
    assert lang.count(2) == 1 + 90 + 10 + 2
    # length 3: '"a"' (26), 900 three-digit, '-' + 90 two-digit, [d] (10)
    assert lang.count(3) == 26 + 900 + 90 + 10


@settings(max_examples=60)
@given(
    name=st.sampled_from(GRAMMARS),
    max_len=st.integers(0, 24),
    seed=st.integers(0, 2**32),
    mode=st.sampled_from(["uniform", "pcfg"]),
)
def test_samples_parse_and_respect_bound(name, max_len, seed, mode):
    g = grammar(name)
    lang = language(name, max_len)
    if lang.count_upto() == 0:
        with pytest.raises(UnsupportedGrammarError):
            draw_dataset(g, 1, max_len=max_len, mode=mode, seed=seed, language=lang)
        return
    out = draw_dataset(g, 20, max_len=max_len, mode=mode, seed=seed, language=lang)
    assert len(out) == 20
    for s in out:
        assert len(s) <= max_len
        assert g.is_valid(s), (name, s)


def test_same_seed_same_output():
    g = grammar("json")
    a = draw_dataset(g, 50, max_len=20, seed=7)
    b = draw_dataset(g, 50, max_len=20, seed=7)
    c = draw_dataset(g, 50, max_len=20, seed=8)
    assert a == b and a != c


def test_uniform_mode_is_uniform_arith_L5():
    lang = language("arith", 5)
    rng = random.Random(12345)
    n = 21 * 1000
    counts = Counter(lang.sample_uniform(rng) for _ in range(n))
    assert len(counts) == 21
    expected = n / 21
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < chi2_bound(20)


def test_pcfg_mode_favours_short_strings():
    g = grammar("arith")
    out = draw_dataset(g, 4000, max_len=12, mode="pcfg", seed=1)
    lengths = Counter(len(s) for s in out)
    # Equal alternatives: "x" needs sum -> product and product -> atom, so P = 1/2 * 1/2 = 1/4
    # (sd 0.007 at 4000 draws), where uniform mode gives it 1/1365.
    assert 0.2 < lengths[1] / 4000 < 0.3


def test_cyclic_grammar_is_a_clear_error(tmp_path):
    p = tmp_path / "cyc.lark"
    p.write_text('start: a\na: b | "x"\nb: a\n')
    g = load_grammar(str(p))
    with pytest.raises(UnsupportedGrammarError, match="infinitely many derivations"):
        Language(g, 3)


def test_unsupported_terminal_is_named(tmp_path):
    p = tmp_path / "look.lark"
    p.write_text("start: WORD\nWORD: /a(?=b)b/\n")
    g = load_grammar(str(p))
    with pytest.raises(UnsupportedGrammarError, match="WORD"):
        Language(g, 4)


def test_length_bound_past_the_limit_is_a_clear_error():
    g = grammar("arith")
    with pytest.raises(LengthLimitError, match=f"limit of {LANGUAGE_MAX_LEN}"):
        Language(g, LANGUAGE_MAX_LEN + 1)
    with pytest.raises(LengthLimitError):
        draw_dataset(g, 1, max_len=10**9)


def test_data_with_a_huge_max_len_is_a_one_line_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "gumbelseq", "data", "--max-len", str(10**9)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr  # was a MemoryError traceback
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and str(LANGUAGE_MAX_LEN) in lines[0]


@pytest.mark.parametrize("name", GRAMMARS)
def test_without_ignore_string_counts_are_derivation_counts(name):
    # Only an ignore-separable grammar's counts add ignorable text (tests/test_exactness_ignore.py).
    lang = language(name, 10)
    assert lang.exact
    assert lang.counts == [lang.derivations(n) for n in range(11)]
