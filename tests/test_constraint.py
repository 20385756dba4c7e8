"""Constraint (next-character masks) against brute force over a fresh Lark.

For every string over an alphabet up to a length: a prefix has a state exactly when some valid
string of length <= L extends it; its allowed characters are exactly the next characters of
those strings, and it may end exactly when it is valid itself. On the built-ins and on every
grammar of the corpus whose counts are exact (the ignore-separable ones, with ignorable
characters in the alphabet); and, by Hypothesis, on longer valid strings with ignorable text
and their mutants.
"""

from __future__ import annotations


import pytest
from lark import Lark

import functools
import random

from hypothesis import HealthCheck, given, settings, strategies as st

from gumbelseq.errors import UnsupportedGrammarError
from gumbelseq.lang.constraint import Constraint
from gumbelseq.lang.exactness import ignore_runs, terminal_dfas, terminal_strings
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.testing import strings
from oracle import BY_NAME, CORPUS, all_strings, assert_masks_equal, lark_accepts, mutate, oracle_lark, oracle_language

CASES = [
    ("arith", "x+-*/", 7),
    ("parens", "x+*()", 7),
    ("dyck", "()[]", 8),
    ("json", '[]{}:,"a1-0tru', 4),  # no 'e': "true" cannot be written, so it must never start
]


def _brute(grammar, alphabet, L):
    parser = Lark(grammar.text, parser="lalr")
    return {s for s in all_strings(alphabet, L) if lark_accepts(parser, s)}


@pytest.mark.parametrize("name,alphabet,L", CASES, ids=[c[0] for c in CASES])
def test_masks_equal_brute_force(name, alphabet, L):
    g = load_grammar(name)
    assert_masks_equal(Constraint(g, L, alphabet), alphabet, L, _brute(g, alphabet, L))


# Every corpus grammar whose counts are exact (with %ignore: the ignore-separable ones), over
# its brute-force alphabet, which holds its ignorable characters; and a few longer runs.
SEPARABLE = [e.name for e in CORPUS if e.counts is not None]
LONGER = [
    ("int_sum", "012+ ", 7),  # infinite terminals (the regular class)
    ("name_list", "ab[], ", 7),
    ("calc_int", "12+() ", 7),
    ("ignore_runs", "[]a, ~", 7),
    ("ignore_runs", "[]a,~", 7),  # no space: runs are "~~" pairs, so a lone "~" must be finished
    ("config_kv", "a1=\n ", 7),
    ("calc_ws", "1+() ", 7),
]


@pytest.mark.parametrize("name", SEPARABLE)
def test_masks_equal_brute_force_on_the_exact_corpus(name):
    e = BY_NAME[name]
    g = load_grammar(e.path, start=e.start)
    if g.parser.ignore_tokens:
        assert ignore_runs(g) is not None and ignore_runs(g).chars & set(e.alphabet)
    assert_masks_equal(Constraint(g, e.max_len, e.alphabet), e.alphabet, e.max_len, oracle_language(name))


@pytest.mark.parametrize("name,alphabet,L", LONGER, ids=[f"{c[0]}-{len(c[1])}-{c[2]}" for c in LONGER])
def test_masks_equal_brute_force_with_ignorable_text_longer(name, alphabet, L):
    e = BY_NAME[name]
    g = load_grammar(e.path, start=e.start)
    parser = oracle_lark(str(e.path), e.start)
    valid = {s for s in all_strings(alphabet, L) if lark_accepts(parser, s)}
    assert_masks_equal(Constraint(g, L, alphabet), alphabet, L, valid)


def test_table_builds_every_state_and_respects_its_bound():
    con = Constraint(load_grammar("arith"), 12, "x+-*/")
    assert con.table()
    built = con.states
    assert built > 12
    con2 = Constraint(load_grammar("dyck"), 40, "()[]")
    assert con2.table(max_states=50) is False


def test_walks_stay_valid_and_bounded():
    import random

    g = load_grammar("json")
    parser = Lark(g.text, parser="lalr")
    con = Constraint(g, 20, '[]{}:,"abc0123456789-truefalsn')
    rng = random.Random(0)
    for _ in range(300):
        state, out = con.start, []
        while True:
            options = sorted(con.allowed(state)) + (["$"] if con.can_end(state) else [])
            assert options
            c = rng.choice(options)
            if c == "$":
                break
            out.append(c)
            state = con.next(state, c)
        s = "".join(out)
        assert len(s) <= 20
        assert lark_accepts(parser, s), s


@pytest.mark.parametrize(
    "name", ["kwname", "adjacent", "ambiguous", "ignore_collide", "ignore_greedy", "comments", "lazy", "priority", "verilog"]
)
def test_grammars_beyond_the_engine_are_one_line_errors(name):
    e = BY_NAME[name]
    with pytest.raises(UnsupportedGrammarError) as info:
        Constraint(load_grammar(e.path, start=e.start), 10, e.alphabet)
    assert "constrained sampling does not support this grammar" in str(info.value)
    assert "\n" not in str(info.value)


def test_an_alphabet_that_cannot_write_the_language():
    with pytest.raises(UnsupportedGrammarError, match="no valid string"):
        Constraint(load_grammar("arith"), 5, "+-")


# -- ignore-separable grammars past brute-force lengths (Hypothesis) ---------------------------

LONG = 14


@functools.lru_cache(maxsize=None)
def _separable(name):
    """The grammar, its whole alphabet (every terminal and ignorable character), a Constraint
    at length LONG over it, and a strategy of valid strings with random ignorable text."""
    e = BY_NAME[name]
    g = load_grammar(e.path, start=e.start)
    runs = ignore_runs(g)
    chars = {c for t in terminal_strings(g) for c in t} | {c for d in terminal_dfas(g).values() for c in d.chars}
    alphabet = "".join(sorted(chars | (runs.chars if runs else set())))
    return g, alphabet, Constraint(g, LONG, alphabet), strings(g, max_len=LONG, ignore="random")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(SEPARABLE), edits=st.integers(0, 3), seed=st.integers(0, 2**32))
def test_masks_agree_with_lark_on_longer_strings_and_mutants(data, name, edits, seed):
    g, alphabet, con, valid_strings = _separable(name)
    parser = oracle_lark(str(BY_NAME[name].path), BY_NAME[name].start)
    text = data.draw(valid_strings)
    rng = random.Random(seed)
    # Ignorable text anywhere between tokens and at both ends, then random edits.
    for _ in range(rng.randint(0, 2) if ignore_runs(g) else 0):
        runs = sorted(ignore_runs(g).chars)
        i = rng.randint(0, len(text))
        text = text[:i] + rng.choice(runs) + text[i:]
    for _ in range(edits):
        text = mutate(text, alphabet, rng)
    text = text[:LONG]
    ok = lark_accepts(parser, text)
    state = con.state_of(text)
    assert (state is not None and con.can_end(state)) == ok, (name, text)
    if ok:
        # Every prefix of a valid string is live, allows its next character, and never gets stuck.
        for i in range(len(text)):
            s = con.state_of(text[:i])
            assert s is not None and text[i] in con.allowed(s), (name, text, i)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(SEPARABLE), seed=st.integers(0, 2**32), max_len=st.integers(0, LONG))
def test_random_walks_end_valid_within_the_bound(name, seed, max_len):
    g, alphabet, _, _ = _separable(name)
    parser = oracle_lark(str(BY_NAME[name].path), BY_NAME[name].start)
    try:
        con = Constraint(g, max_len, alphabet)
    except UnsupportedGrammarError as e:
        # Every grammar here has a valid string of length <= 2 ("1", "", "[]").
        assert "no valid string" in str(e) and max_len < 2 and not lark_accepts(parser, "")
        return
    rng = random.Random(seed)
    for _ in range(20):
        state, out = con.start, []
        while True:
            options = sorted(con.allowed(state)) + ([None] if con.can_end(state) else [])
            assert options  # never stuck
            c = rng.choice(options)
            if c is None:
                break
            out.append(c)
            state = con.next(state, c)
        s = "".join(out)
        assert len(s) <= max_len and lark_accepts(parser, s), (name, s)
