"""gumbelseq.testing.strings: valid by a fresh Lark, length-bounded, shrinks toward short."""

from __future__ import annotations

import pytest
from hypothesis import find, given, settings

from gumbelseq.testing import strings
from oracle import BY_NAME, lark_accepts, oracle_lark

CALC = BY_NAME["calc"]
KWNAME = BY_NAME["kwname"]


@settings(max_examples=200, deadline=None)
@given(strings(str(CALC.path), max_len=20))
def test_calc_strings_are_valid_and_bounded(s):
    assert len(s) <= 20
    assert lark_accepts(oracle_lark(str(CALC.path)), s)


@settings(max_examples=200, deadline=None)
@given(strings(str(KWNAME.path), max_len=9, ignore="random"))
def test_keyword_grammar_strings_are_valid(s):
    assert len(s) <= 9
    assert lark_accepts(oracle_lark(str(KWNAME.path)), s)


def test_shrinks_to_the_shortest_counterexample():
    # The shortest arith strings longer than 4 characters have 5 (x op x op x).
    s = find(strings("arith", max_len=12), lambda s: len(s) > 4, settings=settings(database=None))
    assert len(s) == 5


def test_min_len_and_an_empty_range():
    s = find(strings("arith", max_len=9, min_len=7), lambda s: True, settings=settings(database=None))
    assert len(s) == 7
    with pytest.raises(ValueError, match="no string of length"):
        strings("arith", max_len=2, min_len=2)  # arith has only odd lengths


def test_readme_example_runs_as_written(tmp_path, monkeypatch):
    import importlib
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "gumbelseq.testing" in b)
    # A real module file: Hypothesis reads the test's source (for its example database key).
    (tmp_path / "readme_example.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("readme_example")
    tests = [v for k, v in vars(module).items() if k.startswith("test_")]
    assert tests
    for t in tests:
        t()
