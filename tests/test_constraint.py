"""Constraint (next-character masks) against brute force over a fresh Lark.

For every string over an alphabet up to a length: a prefix has a state exactly when some valid
string of length <= L extends it; its allowed characters are exactly the next characters of
those strings, and it may end exactly when it is valid itself.
"""

from __future__ import annotations

import itertools

import pytest
from lark import Lark

from gumbelseq.errors import UnsupportedGrammarError
from gumbelseq.lang.constraint import Constraint
from gumbelseq.lang.grammar import load_grammar
from oracle import BY_NAME, lark_accepts

CASES = [
    ("arith", "x+-*/", 7),
    ("parens", "x+*()", 7),
    ("dyck", "()[]", 8),
    ("json", '[]{}:,"a1-0tru', 4),  # no 'e': "true" cannot be written, so it must never start
]


def _brute(grammar, alphabet, L):
    parser = Lark(grammar.text, parser="lalr")
    valid = {
        "".join(t) for n in range(L + 1) for t in itertools.product(alphabet, repeat=n) if lark_accepts(parser, "".join(t))
    }
    nexts: dict[str, set[str]] = {}
    for s in valid:
        for i in range(len(s) + 1):
            nexts.setdefault(s[:i], set())
            if i < len(s):
                nexts[s[:i]].add(s[i])
    return valid, nexts


@pytest.mark.parametrize("name,alphabet,L", CASES, ids=[c[0] for c in CASES])
def test_masks_equal_brute_force(name, alphabet, L):
    g = load_grammar(name)
    valid, nexts = _brute(g, alphabet, L)
    con = Constraint(g, L, alphabet)
    for n in range(L + 1):
        for t in itertools.product(alphabet, repeat=n):
            p = "".join(t)
            state = con.state_of(p)
            if p not in nexts:
                assert state is None, p
                continue
            assert state is not None, p
            assert con.allowed(state) == nexts[p], p
            assert con.can_end(state) == (p in valid), p
            # Never stuck: a live prefix can always go on or end.
            assert con.allowed(state) or con.can_end(state)


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


@pytest.mark.parametrize("name", ["calc", "kwname", "adjacent", "ambiguous"])
def test_grammars_beyond_the_engine_are_one_line_errors(name):
    e = BY_NAME[name]
    with pytest.raises(UnsupportedGrammarError) as info:
        Constraint(load_grammar(e.path, start=e.start), 10, e.alphabet)
    assert "constrained sampling does not support this grammar" in str(info.value)
    assert "\n" not in str(info.value)


def test_an_alphabet_that_cannot_write_the_language():
    with pytest.raises(UnsupportedGrammarError, match="no valid string"):
        Constraint(load_grammar("arith"), 5, "+-")
