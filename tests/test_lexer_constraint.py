"""``LexerConstraint``: exact masks for LALR grammars whose lexer interacts, against Lark itself.

The oracle is a fresh ``lark.Lark`` (``tests/oracle.py``) run on every string over a small
alphabet up to a length: for every prefix, the mask must be exactly the characters that some
accepted string of at most ``max_len`` characters has next, and ``can_end`` exactly whether Lark
accepts the prefix; a prefix with no accepted extension must be unreachable.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gumbelseq.errors import UnsupportedGrammarError
from gumbelseq.lang.constraint import Constraint
from gumbelseq.lang.exactness import exactness
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.lark_scanner import greedy_over
from gumbelseq.lang.lexer_constraint import LexerConstraint
from gumbelseq.lang.masks import grammar_masks
from oracle import BY_NAME, all_strings, assert_masks_equal, lark_accepts, oracle_lark, oracle_language

#: The corpus grammars that are LALR but not exact for ``Constraint``: LexerConstraint's.
LEXER = [
    "adjacent", "alternation", "collide_ctx", "comments", "config", "ignore_collide",
    "ignore_greedy", "ignore_string", "kw_case", "kwname", "lazy", "priority", "verilog",
]

#: Exact grammars (grammar_masks gives them Constraint) on which this engine must agree with Lark
#: too: calc's common.NUMBER (float | int) is the hardest lexing in the corpus.
ALSO = ["calc"]

#: Longer or different alphabets than the oracle corpus's (name, alphabet, max_len).
LONGER = [
    ("kwname", "if; ", 8),
    ("kwname", "if;", 8),  # no space: a keyword then a name can never be written
    ("verilog", "inout ;,", 6),
    ("verilog", "inotu;", 7),  # no space: "in" then a name merges into one NAME
    ("priority", "ab, ", 8),
    ("comments", "ab,# ", 7),
    ("alternation", "abc ", 8),
    ("lazy", "abc", 9),
    ("adjacent", "01 x", 8),
    ("ignore_greedy", "axyz ", 7),
    ("kw_case", "ifF x", 7),
    ("collide_ctx", "xyzabc", 6),
    ("config", 'ano1=;" ', 6),
    ("calc", "1.e+-() ", 5),
]

#: Grammars Constraint serves: grammar_masks must keep giving them Constraint.
EXACT = [e.name for e in BY_NAME.values() if e.counts is not None] + ["arith", "json"]


def _masks(name, alphabet, L):
    e = BY_NAME[name]
    g = load_grammar(e.path, start=e.start)
    if name in ALSO:
        return g, LexerConstraint(g, L, alphabet, "served by Constraint")
    con = grammar_masks(g, L, alphabet)
    assert isinstance(con, LexerConstraint)
    return g, con


@pytest.mark.parametrize("name", LEXER)
def test_every_lexer_grammar_is_refused_by_constraint_and_served_here(name):
    e = BY_NAME[name]
    g = load_grammar(e.path, start=e.start)
    assert g.algorithm == "lalr" and exactness(g) is not None
    with pytest.raises(UnsupportedGrammarError):
        Constraint(g, e.max_len, e.alphabet)
    _masks(name, e.alphabet, e.max_len)


@pytest.mark.parametrize("name", LEXER + ALSO)
def test_masks_equal_lark_on_every_prefix(name):
    e = BY_NAME[name]
    _, con = _masks(name, e.alphabet, e.max_len)
    assert_masks_equal(con, e.alphabet, e.max_len, oracle_language(name))


@pytest.mark.parametrize("name,alphabet,L", LONGER, ids=[f"{c[0]}-{c[1]!r}-{c[2]}" for c in LONGER])
def test_masks_equal_lark_longer(name, alphabet, L):
    e = BY_NAME[name]
    parser = oracle_lark(str(e.path), e.start)
    valid = {s for s in all_strings(alphabet, L) if lark_accepts(parser, s)}
    _, con = _masks(name, alphabet, L)
    assert_masks_equal(con, alphabet, L, valid)


def test_keyword_then_name_needs_the_space():
    g, con = _masks("kwname", "if; ", 8)
    # After the keyword "if", a name must be separated: "iff" is one NAME, never "if" "f".
    s = con.state_of("if")
    assert s is not None and " " in con.allowed(s) and "f" in con.allowed(s)
    assert con.state_of("iff;") is not None and g.is_valid("iff;")  # the NAME "iff", then ";"
    assert con.state_of("if f;") is not None and g.is_valid("if f;")
    # "if" where the keyword can come is the keyword, so "if;" is invalid; "if if;" is valid
    # (a NAME "if" where only NAME can come).
    assert con.state_of("if;") is None and not g.is_valid("if;")
    assert con.can_end(con.state_of("if if;")) and g.is_valid("if if;")
    # Without a space, a statement starting with the keyword cannot be written at all: after
    # "if" only more name letters may follow (then it is a NAME), never ";".
    g2, con2 = _masks("kwname", "if;", 8)
    assert con2.allowed(con2.state_of("if")) == {"i", "f"}
    assert con2.can_end(con2.state_of("iff;")) and g2.is_valid("iff;")


def _walk(con, alphabet, rng):
    state, out = con.start, []
    while True:
        allowed = sorted(con.allowed(state))
        assert allowed or con.can_end(state)
        if not allowed or (con.can_end(state) and rng.random() < 0.3):
            return "".join(out)
        c = rng.choice(allowed)
        out.append(c)
        state = con.next(state, c)


WALKS = [
    ("verilog", "abcdinout0123 ;,", 20),
    ("kwname", "if; ", 24),
    ("kw_case", "ifIFx ", 18),
    ("config", 'abcno1_=;" ', 14),
    ("comments", "ab,#cz \t", 18),
    ("priority", "ab, ", 20),
    ("lazy", "abc", 20),
    ("alternation", "abc", 20),
    ("ignore_string", "abc ", 16),
    ("calc", "12.e+-*() ", 9),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(WALKS), seed=st.integers(0, 2**32 - 1))
def test_random_walks_end_in_strings_lark_accepts(case, seed):
    name, alphabet, L = case
    e = BY_NAME[name]
    g = load_grammar(e.path, start=e.start)
    con = _cached(name, alphabet, L)
    parser = oracle_lark(str(e.path), e.start)
    rng = random.Random(seed)
    for _ in range(5):
        s = _walk(con, alphabet, rng)
        assert len(s) <= L
        assert lark_accepts(parser, s), s
        assert g.is_valid(s)


_CACHE: dict = {}


def _cached(name, alphabet, L):
    key = (name, alphabet, L)
    if key not in _CACHE:
        _CACHE[key] = _masks(name, alphabet, L)[1]
    return _CACHE[key]


@pytest.mark.parametrize("name", EXACT)
def test_grammars_constraint_serves_still_get_constraint(name):
    if name in BY_NAME:
        e = BY_NAME[name]
        g = load_grammar(e.path, start=e.start)
        alphabet, L = e.alphabet, e.max_len
    else:
        g = load_grammar(name)
        alphabet, L = "x+-*/()[]{}:,\"a1", 6
    assert exactness(g) is None
    assert isinstance(grammar_masks(g, L, alphabet), Constraint)


def test_an_alphabet_that_cannot_write_the_language_is_one_line():
    g = load_grammar(BY_NAME["kwname"].path)
    with pytest.raises(UnsupportedGrammarError) as info:
        grammar_masks(g, 8, "if ")  # no ";": nothing can be finished
    assert "\n" not in str(info.value) and "no valid string" in str(info.value)


def test_a_grammar_too_large_for_the_search_is_refused_in_one_line():
    g = load_grammar(BY_NAME["calc"].path)
    with pytest.raises(UnsupportedGrammarError) as info:
        LexerConstraint(g, 14, "0123456789.eE+-*() ", "why Constraint refused", max_configs=2_000).table()
    msg = str(info.value)
    assert "\n" not in msg and "too large for exact masks" in msg and "why Constraint refused" in msg
    assert "does not support this grammar" in msg


REFUSED = {
    "anchor": ('start: A\nA: /a$/\n', "an anchor"),
    "lookahead": ('start: A+\nA: /a(?=b)/ | "b"\n', "look-around"),
    "backref": ('start: A\nA: /(?P<x>a)(?P=x)/\n', "back-reference"),
    "possessive": ('start: A+\nA: /a++b/\n', "possessive repeat"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_constructs_this_engine_cannot_follow_are_one_line_errors(tmp_path, case):
    text, words = REFUSED[case]
    path = tmp_path / f"{case}.lark"
    path.write_text(text)
    g = load_grammar(str(path))
    reason = exactness(g)
    assert reason is not None and g.algorithm == "lalr"
    with pytest.raises(UnsupportedGrammarError) as info:
        grammar_masks(g, 4, "ab")
    msg = str(info.value)
    assert "\n" not in msg and words in msg and reason in msg and "does not support this grammar" in msg


def test_greedy_over_reads_classes_over_the_alphabet():
    A = list('abc"; 0123')
    assert greedy_over(r'"[^"]*"', A)  # a negated class is a finite set over the alphabet
    assert greedy_over(r"\d+", A)
    assert not greedy_over(r"(a|ab)c?", A)  # Python takes the first branch
    assert not greedy_over(r"b+?", A)  # lazy
    assert greedy_over(r"a+a", A)  # a+ gives back one "a": still the longest match
    assert not greedy_over(r"a|ab", A)  # the first branch
    assert not greedy_over(r"[0-9]+|[0-9]+;", A)
    assert not greedy_over(r"(?i:if)", A)
