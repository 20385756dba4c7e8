"""EarleyConstraint (masks for Earley grammars, dynamic lexer) against brute force over Lark.

For every string over a small alphabet up to a length, judged by a fresh ``Lark``: a prefix has
a state exactly when some accepted string of length <= L extends it; its allowed characters are
exactly the next characters of those strings, and it may end exactly when Lark accepts it. On
the corpus's Earley grammars and on grammars given to Lark's Earley parser directly, chosen where
the dynamic lexer's greedy matches matter. Random walks through the masks always end in strings
Lark accepts; refused grammars give one line.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from lark import Lark

from gumbelseq.errors import UnsupportedGrammarError
from gumbelseq.lang.earley_constraint import EarleyConstraint
from gumbelseq.lang.grammar import Grammar, load_grammar
from gumbelseq.lang.masks import grammar_masks
from oracle import CORPUS_DIR, all_strings, assert_masks_equal, lark_accepts, oracle_lark

CORPUS = [
    ("ambiguous.lark", "x+()", 7),
    ("collide_earley.lark", "ab1 ", 6),
]

# Grammars given to Lark's Earley parser (dynamic lexer) directly: greedy regex terminals next to
# terminals that could take the same characters, %ignore runs, nullable and left-recursive rules.
EARLEY = [
    ('start: WORD WORD\nWORD: /[a-c]+/\n%ignore " "', "ab ", 6),
    ('start: WORD ("a" | "1")\nWORD: /[a-c]+/', "abc1", 5),
    ('start: x+\nx: NUM | NUM "." NUM\nNUM: /[0-9]+/\n%ignore /[ ]+/', "12. ", 6),
    ('start: a*\na: "ab" | "a" | "b" "a"\n%ignore " "', "ab ", 6),
    ('start: (ID | KW)*\nID: /[a-z][a-z0-9]*/\nKW: "if"\n%ignore " "', "if1 ", 6),
    ('start: s\ns: s s | "(" s ")" | \n', "()", 8),
    ('start: e\ne: e "-" e | "a" | "-" e\n%ignore /[ ]+/', "a- ", 6),
    ("start: A B\nA: /a+/\nB: /a?b/", "ab", 6),
    ("start: A B?\nA: /ab*/\nB: /b+/", "ab", 6),
    ('start: X+\nX: /\\d+/ | /[^0-9 ]/\n%ignore " "', "1x ", 5),
    ("start: T+\nT: /a{1,2}/", "a", 7),
    ("start: T U\nT: /a{1,2}/\nU: /a+b/", "ab", 6),
    ('start: x | start start\nx: "a" | "ab"', "ab", 7),
    # Alternations and optional groups inside terminals that re still takes whole (common.DECIMAL:
    # INT "." INT? | "." INT; common.NUMBER is refused: after "1", "e" needs a digit too).
    ('start: e\ne: e "+" e | DECIMAL\n%import common.DECIMAL', "1.+", 6),
    ('start: T+\nT: /a(b|cb?)/', "abc", 6),
]


def _earley(text: str) -> Grammar:
    return Grammar(name="t", path="<test>", text=text, parser=Lark(text, parser="earley"), algorithm="earley")


def _check(con: EarleyConstraint, parser: Lark, alphabet: str, L: int) -> None:
    assert_masks_equal(con, alphabet, L, {s for s in all_strings(alphabet, L) if lark_accepts(parser, s)})


@pytest.mark.parametrize("name,alphabet,L", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_masks_equal_brute_force(name, alphabet, L):
    path = CORPUS_DIR / name
    g = load_grammar(str(path))
    assert g.algorithm == "earley"
    con = grammar_masks(g, L, alphabet)
    assert isinstance(con, EarleyConstraint)
    _check(con, oracle_lark(str(path)), alphabet, L)


@pytest.mark.parametrize("text,alphabet,L", EARLEY, ids=[f"g{i}" for i in range(len(EARLEY))])
def test_earley_masks_equal_brute_force(text, alphabet, L):
    _check(EarleyConstraint(_earley(text), L, alphabet, "test"), Lark(text, parser="earley"), alphabet, L)


def _walk(con: EarleyConstraint, rng: random.Random) -> str:
    state, out = con.start, []
    while True:
        choices = sorted(con.allowed(state)) + ([None] if con.can_end(state) else [])
        assert choices, "".join(out)
        c = rng.choice(choices)
        if c is None:
            return "".join(out)
        out.append(c)
        state = con.next(state, c)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from([(CORPUS_DIR / "ambiguous.lark", "x+()"), (CORPUS_DIR / "collide_earley.lark", "abc019 ")]),
    seed=st.integers(0, 2**32),
    max_len=st.integers(1, 24),
)
def test_random_walks_end_in_accepted_strings(case, seed, max_len):
    path, alphabet = case
    g = load_grammar(str(path))
    con = grammar_masks(g, max_len, alphabet)
    parser = oracle_lark(str(path))
    s = _walk(con, random.Random(seed))
    assert len(s) <= max_len
    assert lark_accepts(parser, s), s
    # Same seed, same walk (also through a fresh engine).
    assert _walk(con, random.Random(seed)) == s
    assert _walk(grammar_masks(g, max_len, alphabet), random.Random(seed)) == s


@pytest.mark.parametrize(
    "text,needle",
    [
        ("start: A\nA: /a+?/", "takes 'a' of 'aa'"),
        ("start: A\nA: /(ab)+/", "more than one character of lookahead"),
        ('start: "a" B\nB: /b/i', "flags"),
        ("start: A\nA: /[ab]*b/", "more than one character of lookahead"),
        ("start: A\nA: /a|ab/", "takes 'a' of 'ab'"),
        ("start: A\nA: /a(?=b)b/", "look-ahead"),
    ],
)
def test_refusals_are_one_line(text, needle):
    with pytest.raises(UnsupportedGrammarError) as e:
        EarleyConstraint(_earley(text), 6, "ab", "test")
    msg = str(e.value)
    assert "\n" not in msg and needle in msg, msg


def test_common_number_needs_two_characters_of_lookahead_and_is_refused():
    # After "1", an "e" continues a NUMBER ("1e5") without completing it: one character is not
    # enough to decide where the token ends.
    with pytest.raises(UnsupportedGrammarError, match="'e' may continue it without completing it") as e:
        EarleyConstraint(_earley('start: e\ne: e "+" e | NUMBER\n%import common.NUMBER'), 6, "1e+", "test")
    assert "\n" not in str(e.value)


def test_no_string_within_the_bound_is_refused():
    # WORD takes every letter greedily, so Lark accepts nothing: refused, not a dead start.
    with pytest.raises(UnsupportedGrammarError, match="no valid string"):
        EarleyConstraint(_earley('start: WORD "a"\nWORD: /[a-c]+/'), 5, "abc", "test")


def test_lalr_grammar_is_refused():
    with pytest.raises(UnsupportedGrammarError, match="Earley grammars only"):
        EarleyConstraint(load_grammar("arith"), 6, "x+", "test")
