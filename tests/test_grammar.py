import re

import pytest
from hypothesis import given, strategies as st

from gumbelseq.errors import GrammarSyntaxError, InputFileError, UnknownGrammarError
from gumbelseq.lang.grammar import builtin_grammars, load_grammar

ARITH_RE = re.compile(r"x([-+*/]x)*")


def test_builtins_listed_and_all_lalr():
    names = [g.name for g in builtin_grammars()]
    assert {"arith", "parens", "json", "dyck"} <= set(names)
    for name in names:
        g = load_grammar(name)
        assert g.algorithm == "lalr", name


def test_arith_file_path_and_name_agree():
    a = load_grammar("arith")
    b = load_grammar("grammars/arith.lark")
    for s in ["x", "x+x", "x*x/x-x", "x + x", "", "xx", "x+"]:
        assert a.is_valid(s) == b.is_valid(s)


@pytest.mark.parametrize(
    "text,column,expected",
    [
        ("x+", 3, ("'x'",)),
        ("x+y", 3, ("'x'",)),
        ("", 1, ("'x'",)),
        ("x + x", 2, ("ADD", "MUL", "end of input")),
        ("xx", 2, ("ADD", "MUL", "end of input")),
        ("+x", 1, ("'x'",)),
    ],
)
def test_validate_reports_column_and_expected(text, column, expected):
    v = load_grammar("arith").validate(text)
    assert not v.ok
    assert v.column == column
    assert set(v.expected) <= set(expected) and v.expected


@given(st.text(alphabet="x+-*/ y", max_size=14))
def test_arith_validity_matches_regex(s):
    assert load_grammar("arith").is_valid(s) == bool(ARITH_RE.fullmatch(s))


def test_json_multichar_terminals():
    g = load_grammar("json")
    assert g.is_valid('{"ab":[1,-20,true],"":null}')
    assert not g.is_valid('{"AB":1}')
    assert not g.is_valid("[01]")
    assert not g.validate("[tru]").ok


def test_unknown_grammar_lists_known():
    with pytest.raises(UnknownGrammarError, match="arith.*json"):
        load_grammar("nope")


def test_syntax_error_names_file_line_column(tmp_path):
    p = tmp_path / "bad.lark"
    p.write_text('start: s\ns: s "+" s | "x\n')
    with pytest.raises(GrammarSyntaxError) as e:
        load_grammar(str(p))
    assert re.match(rf"{re.escape(str(p))}:2:\d+: ", str(e.value))
    assert "\n" not in str(e.value)


def test_missing_and_directory_and_binary(tmp_path):
    with pytest.raises(InputFileError, match="no such grammar file"):
        load_grammar(str(tmp_path / "none.lark"))
    with pytest.raises(InputFileError, match="directory"):
        load_grammar(str(tmp_path) + "/")
    p = tmp_path / "bin.lark"
    p.write_bytes(b"start: \xff\n")
    with pytest.raises(InputFileError, match=r"bin.lark:1:8: not valid UTF-8"):
        load_grammar(str(p))


def test_ambiguous_grammar_falls_back_to_earley_with_notice(tmp_path):
    p = tmp_path / "amb.lark"
    p.write_text('start: s\ns: s "+" s | "x"\n')
    notices = []
    g = load_grammar(str(p), on_notice=notices.append)
    assert g.algorithm == "earley"
    assert len(notices) == 1 and "Earley" in notices[0]
    assert g.is_valid("x+x+x") and not g.is_valid("x+")
