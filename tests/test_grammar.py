import re
import subprocess
import sys

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


# -- CLI helpers: the real CLI in a subprocess, in tmp_path ------------------------------------


def _cli(cwd, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "gumbelseq", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _assert_one_line_error(r):
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.stderr
    return lines[0]


# -- the spec rule: a path exactly when it has a separator or ends in .lark --------------------


def test_local_folder_or_file_named_like_a_builtin_does_not_hijack_it(tmp_path):
    (tmp_path / "arith").mkdir()
    (tmp_path / "json").write_text('start: "q"\n')
    r = _cli(tmp_path, "data", "--grammar", "arith", "-n", "20", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() and all(ARITH_RE.fullmatch(s) for s in r.stdout.splitlines())
    r = _cli(tmp_path, "data", "--grammar", "json", "-n", "5")
    assert r.returncode == 0, r.stderr
    assert "q" not in r.stdout.split()
    # ... and a local file is reached with a separator or the .lark suffix.
    r = _cli(tmp_path, "data", "--grammar", "./json", "-n", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["q", "q", "q"]


def test_spec_rule_in_api_and_unknown_name_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "arith").mkdir()
    (tmp_path / "mine.lark").write_text('start: "m"\n')
    assert load_grammar("arith").is_valid("x+x")
    assert load_grammar("mine.lark").is_valid("m")
    with pytest.raises(UnknownGrammarError) as e:
        load_grammar("mine")
    assert "path separator" in str(e.value) and ".lark" in str(e.value)
    line = _assert_one_line_error(_cli(tmp_path, "data", "--grammar", "mine"))
    assert "unknown grammar 'mine'" in line and "mine.lark" in line


# -- %import ----------------------------------------------------------------------------------


def _composed(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "main.lark").write_text('start: item+\n%import .other.item\n')
    (sub / "other.lark").write_text('item: "a" | "b"\n')
    return sub


def test_relative_import_resolves_from_the_grammar_files_folder(tmp_path):
    sub = _composed(tmp_path)
    g = load_grammar(sub / "main.lark")
    assert g.is_valid("abba") and not g.is_valid("abc")
    # The CLI runs from tmp_path, not from sub/: the import must still find sub/other.lark.
    r = _cli(tmp_path, "data", "--grammar", "sub/main.lark", "-n", "10", "--max-len", "4")
    assert r.returncode == 0, r.stderr
    assert all(re.fullmatch(r"[ab]{1,4}", s) for s in r.stdout.splitlines())


@pytest.mark.parametrize("stmt", ["%import .nosuch.X", "%import nosuch.X"])
def test_import_of_a_missing_module_is_a_one_line_error(tmp_path, stmt):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "m.lark").write_text(f"start: X\n{stmt}\n")
    with pytest.raises(GrammarSyntaxError, match=r"m.lark:2:1: cannot import 'nosuch'"):
        load_grammar(sub / "m.lark")
    line = _assert_one_line_error(_cli(tmp_path, "score", "-", "--grammar", "sub/m.lark"))
    assert line.startswith("Error: sub/m.lark:2:1: cannot import 'nosuch'")


# -- validate() never raises ---------------------------------------------------------------------


def test_validate_never_raises_on_lark_internal_errors(tmp_path):
    # Ambiguous, so Earley; Earley's parser trips on the %declare'd terminal with a KeyError.
    p = tmp_path / "decl.lark"
    p.write_text('start: e\ne: e "+" e | X\n%declare X\n')
    g = load_grammar(p)
    assert g.algorithm == "earley"
    for s in ["x", "x+x", ""]:
        v = g.validate(s)
        assert not v.ok and v.column == 1
        assert not g.is_valid(s)
    assert "KeyError" in g.validate("x").context
    r = _cli(tmp_path, "score", "-", "--grammar", "decl.lark", "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr


def test_expected_tokens_are_listed_once(tmp_path):
    p = tmp_path / "two.lark"
    p.write_text('start: a | b\na: "c"\nb: "c"\n')
    v = load_grammar(p).validate("")
    assert not v.ok and v.expected == ("'c'",)


# -- the start rule --------------------------------------------------------------------------------


def test_unknown_start_rule_is_a_one_line_error_listing_the_rules(tmp_path):
    p = tmp_path / "g.lark"
    p.write_text('start: item+\nitem: "a" | pair\npair: "(" item ")"\n')
    with pytest.raises(GrammarSyntaxError) as e:
        load_grammar(p, start="nope")
    msg = str(e.value)
    assert "\n" not in msg
    assert "unknown start rule 'nope'" in msg and msg.endswith("rules are: item, pair, start")
    # Also on the Earley path, and for a grammar without any rule named start.
    amb = tmp_path / "amb.lark"
    amb.write_text('s: s "+" s | "x"\n')
    with pytest.raises(GrammarSyntaxError, match=r"unknown start rule 'start'; the grammar's rules are: s$"):
        load_grammar(amb)
    g = load_grammar(amb, start="s")
    assert g.algorithm == "earley" and g.is_valid("x+x") and not g.is_valid("x+")


def test_start_rule_not_named_start_with_imports():
    from oracle import CORPUS_DIR

    lists = CORPUS_DIR / "composed" / "lists.lark"
    expected = "unknown start rule 'start'; the grammar's rules are: atom, item, list"
    with pytest.raises(GrammarSyntaxError, match=expected):
        load_grammar(lists)
    g = load_grammar(lists, start="list")
    assert g.start == "list" and g._fast is not None
    assert g.is_valid("[1,[x,[]]]") and not g.is_valid("[ 1]") and not g.is_valid("x")


def test_score_start_option(tmp_path):
    from oracle import CORPUS_DIR

    lists = str(CORPUS_DIR / "composed" / "lists.lark")
    data = tmp_path / "s.txt"
    data.write_text("[1,x]\n[[]]\n[ ]\nx\n")
    r = _cli(tmp_path, "score", str(data), "--grammar", lists, "--start", "list", "--json")
    assert r.returncode == 0, r.stderr
    import json

    rep = json.loads(r.stdout)
    assert (rep["total"], rep["valid"]) == (4, 2)
    line = _assert_one_line_error(_cli(tmp_path, "score", str(data), "--grammar", lists))
    assert "unknown start rule 'start'" in line and "atom, item, list" in line
    line = _assert_one_line_error(_cli(tmp_path, "score", str(data), "--grammar", "arith", "--start", "expr"))
    assert "unknown start rule 'expr'" in line and "start" in line


def test_score_rejects_what_lark_rejects_with_an_ignored_terminal(tmp_path):
    # The reported bug: " " is the %ignore'd WS, never the rule terminal SP, so "a b" is invalid.
    from oracle import CORPUS_DIR

    data = tmp_path / "s.txt"
    data.write_text("a b\nc\n c\nab\n")
    r = _cli(tmp_path, "score", str(data), "--grammar", str(CORPUS_DIR / "ignore_collide.lark"), "--json")
    assert r.returncode == 0, r.stderr
    import json

    rep = json.loads(r.stdout)
    assert (rep["total"], rep["valid"]) == (4, 2)
    assert "a b" in [e["text"] for e in rep["invalid_examples"]]


def test_a_grammar_lark_cannot_load_for_depth_or_a_nul_is_one_line(tmp_path):
    from gumbelseq.lang.grammar import GrammarSyntaxError

    me = tmp_path / "self.lark"
    me.write_text('%import .self.start\nstart: "a"\n')
    with pytest.raises(GrammarSyntaxError, match=r"self\.lark: nests too deeply for Lark to load") as e:
        load_grammar(str(me))
    assert "\n" not in str(e.value)
    nul = tmp_path / "nul.lark"
    nul.write_text('start: "ab"\n  | "a\0"\n')
    with pytest.raises(GrammarSyntaxError, match=r"nul\.lark:2:7: a NUL character; a grammar is text$"):
        load_grammar(str(nul))
