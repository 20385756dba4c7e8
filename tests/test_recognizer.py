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


# -- the lexer behaviours "valid" must copy from Lark (grammars in tests/corpus/) ---------------

CORPUS_CASES = {
    # An %ignore'd match is dropped before any keyword folding: " " is WS, never SP.
    "ignore_collide.lark": {"a b": False, "a  b": False, "c": True, " c ": True},
    # A rule regex's match renamed to the ignored string's terminal is not dropped.
    "ignore_string.lark": {"a b": False, "a  b": True, "ab": True, " ab ": True},
    # Keyword folding happens only where the keyword is expected (contextual lexer).
    "kwname.lark": {"if if;": True, "if;": False, "iff;": True, "if ;": False},
    "verilog.lark": {"in in;": True, "ini;": True, "in out;": True, "inout;": False, "in;": False},
    "config.lark": {"no=1": True, "a=no": True, "a=1;;": False},
    # Different flags: both terminals stay, NAME first, then folded by full match.
    "kw_case.lark": {"if": False, "ifx": True, "IFx": True, "If x": True},
    # Priority first, not longest match; first regex alternative, not longest; greedy, no backtracking.
    "priority.lark": {"ab": False, "ba": True, "a,b": True, "b,ab": False},
    "alternation.lark": {"abc": True, "abb": True},
    "adjacent.lark": {"1234": True, "123456": True, "1234567": False, "12 3": False},
    "lazy.lark": {"bb": True, "abbbc": True},
    "calc.lark": {"1e1": True, "1 e1": False, ".1": True, "(1)*-1": True},
    "collide_ctx.lark": {"xab": True, "ybc": True, "zaabc": True, "za": False},
}


@pytest.mark.parametrize("file", sorted(CORPUS_CASES))
def test_lexer_behaviours_match_lark(file):
    from oracle import CORPUS_DIR

    g = load_grammar(CORPUS_DIR / file)
    assert g._fast is not None
    for text, want in CORPUS_CASES[file].items():
        assert lark_verdict(g, text)[0] == want, (text, "the expectation itself is wrong")
        assert g.is_valid(text) == want and g.validate(text).ok == want, text


def test_recognizer_fails_at_larks_column_on_the_corpus():
    from oracle import CORPUS, all_strings

    for e in CORPUS:
        if e.algorithm != "lalr":
            continue
        g = load_grammar(e.path, start=e.start)
        for text in all_strings(e.alphabet, 4):
            ok, col = lark_verdict(g, text)
            v = g.validate(text)
            assert (v.ok, v.column) == (ok, col), (e.name, text)


def test_fast_path_only_when_it_is_an_exact_copy_of_lark():
    from lark import Lark

    from gumbelseq.lang.recognizer import LalrRecognizer

    text = 'start: NAME+\nNAME: /[a-z]+/\n%ignore " "\n'
    assert LalrRecognizer.for_parser(Lark(text, parser="lalr")) is not None
    # A user lexer callback can do anything: not copied, so no fast path.
    assert LalrRecognizer.for_parser(Lark(text, parser="lalr", lexer_callbacks={"NAME": lambda t: t})) is None
    assert LalrRecognizer.for_parser(Lark(text, parser="lalr", lexer="basic")) is None
    assert LalrRecognizer.for_parser(Lark(text, parser="earley")) is None


def test_scanner_split_over_several_regexes(tmp_path, monkeypatch):
    # Where Python's re refuses a pattern with many groups, Lark splits the scanner into several
    # regexes tried in order; force that split (2 terminals a regex) and compare.
    from lark.lexer import Scanner

    build = Scanner._build_mres
    monkeypatch.setattr(Scanner, "_build_mres", lambda self, terms, size: build(self, terms, min(size, 2)))
    p = tmp_path / "split.lark"
    p.write_text('start: ("if" | "in" | NAME | NUM)+\nNAME: /[a-z]+/\nNUM: /[0-9]+/\nSP: " "\n%ignore SP\n')
    g = load_grammar(p)
    assert g._fast is not None
    assert any(entry[0] is None for entry in g._fast._lexers.values())  # the split path is taken
    for text in ["if in x", "ifx 12", "in", "x1", "", " ", "IF", "1 if2"]:
        assert g.validate(text).ok == lark_verdict(g, text)[0], text
