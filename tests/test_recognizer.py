"""The fast LALR recogniser must accept exactly what Lark.parse accepts, and fail at the same column."""

import functools

import pytest
from hypothesis import given, settings, strategies as st
from lark.exceptions import UnexpectedInput, UnexpectedToken

from gumbelseq.lang.dataset import draw_dataset
from gumbelseq.lang.grammar import builtin_grammars, load_grammar

ALPHABETS = {
    "arith": "x+-*/ y",
    "parens": "x+-*/() ",
    "dyck": "()[] x",
    "json": '"ab019-[]{},:truefalsn ',
}


@functools.lru_cache(maxsize=None)
def grammar(name):
    return load_grammar(name)


def lark_verdict(g, text):
    try:
        g.parser.parse(text)
    except UnexpectedInput as e:
        if isinstance(e, UnexpectedToken) and e.token.type == "$END":
            return False, len(text) + 1
        return False, e.column
    return True, None


@settings(max_examples=300)
@given(st.sampled_from(sorted(ALPHABETS)), st.data())
def test_recognizer_agrees_with_lark_on_random_strings(name, data):
    text = data.draw(st.text(alphabet=ALPHABETS[name], max_size=16))
    g = grammar(name)
    assert g._fast is not None
    ok, col = lark_verdict(g, text)
    v = g.validate(text)
    assert v.ok == ok
    if not ok:
        assert v.column == col


@pytest.mark.parametrize("name", [g.name for g in builtin_grammars()])
def test_recognizer_accepts_every_sampled_string(name):
    g = grammar(name)
    for s in draw_dataset(g, 300, max_len=20, seed=3):
        assert g.is_valid(s) and lark_verdict(g, s)[0]


def test_ignored_terminals_and_keyword_callbacks(tmp_path):
    p = tmp_path / "kw.lark"
    p.write_text('start: (NAME | "if")+\nNAME: /[a-z]+/\n%ignore " "\n')
    g = load_grammar(str(p))
    for text in ["if", "if x", "abc if  ifx", " ", "IF", "if 1"]:
        assert g.validate(text).ok == lark_verdict(g, text)[0], text
