"""Ignore-separable grammars (gumbelseq/lang/exactness.py): exact counts and masks with %ignore.

- what Lark does with ignorable text (both ends, between tokens, runs of several terminals,
  greedy runs that fail), checked on a fresh Lark;
- the runs' DFA counts each distinct run once;
- each reason a grammar falls outside the class is one line naming the construct;
- soundness, by Hypothesis over generated grammars: whenever the proof says exact, counts equal
  a brute-force count of what a fresh Lark accepts;
- drawing, scoring and constrained sampling on these grammars.
"""

from __future__ import annotations

import functools
import itertools
import json
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from lark import Lark

from gumbelseq.lang.dataset import draw_dataset
from gumbelseq.lang.exactness import exactness, ignore_runs
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.language import Language
from gumbelseq.lang.score import score_samples
from gumbelseq.testing import strings
from oracle import BY_NAME, all_strings, lark_accepts, oracle_lark, oracle_language


def _grammar(tmp_path, text: str, name: str = "g"):
    p = tmp_path / f"{name}.lark"
    p.write_text(text)
    return load_grammar(str(p))


@functools.lru_cache(maxsize=None)
def corpus(name):
    e = BY_NAME[name]
    return load_grammar(e.path, start=e.start)


# -- Lark's behaviour the proof relies on ---------------------------------------------------------


def test_lark_skips_ignorable_text_at_both_ends_and_between_tokens():
    parser = oracle_lark(str(BY_NAME["json_ws"].path))
    for text in ["1", " 1", "1 ", "\n1\t", ' [ 1 , "a" ] ', "{\n}", '{"":1}', "\r\n[\f]\r\n"]:
        assert lark_accepts(parser, text), text
    # Ignorable text alone is no value; inside a token it is not ignorable.
    for text in ["", " ", "\n", '"a b"', "tr ue", "- 1"]:
        assert not lark_accepts(parser, text), text


def test_lark_reads_a_run_of_several_ignored_terminals_whole():
    parser = oracle_lark(str(BY_NAME["ignore_runs"].path))
    for text in ["[~~a]", "[a~~~~ ,b]", "~~ ~~[]  ", "[ ~~ a~~]"]:
        assert lark_accepts(parser, text), text
    for text in ["[~a]", "[a~~~]", "~[]"]:  # a lone "~" is not ignorable
        assert not lark_accepts(parser, text), text


def test_a_greedy_ignored_terminal_makes_runs_fail_as_the_proof_says():
    # /xy?/ and "yz": "xyz" is "x" + "yz", but Lark takes "xy" and cannot go on with "z".
    parser = oracle_lark(str(BY_NAME["ignore_greedy"].path))
    assert lark_accepts(parser, "axya") and lark_accepts(parser, "ayza")
    assert not lark_accepts(parser, "axyza")
    reason = exactness(corpus("ignore_greedy"))
    assert reason and "not ignorable" in reason and "\n" not in reason


# -- the runs of ignorable text ---------------------------------------------------------------------

RUNS = {
    # Overlapping terminals: each run of spaces is one string, counted once.
    '%ignore " "\n%ignore / +/\n': [1, 1, 1, 1, 1, 1, 1],
    '%ignore " "\n%ignore "~~"\n': [1, 1, 2, 3, 5, 8, 13],
    '%ignore "  "\n': [1, 0, 1, 0, 1, 0, 1],
    "%import common.WS\n%ignore WS\n": [5**n for n in range(7)],
    "%import common.WS_INLINE\n%ignore WS_INLINE\n": [2**n for n in range(7)],
    "%ignore /(\\r?\\n)+/\n": [1, 1, 2, 3, 5, 8, 13],
}


@pytest.mark.parametrize("ignores", sorted(RUNS), ids=range(len(RUNS)))
def test_runs_are_counted_once_each_and_agree_with_lark(tmp_path, ignores):
    text = 'start: A*\nA: "a"\n' + ignores
    g = _grammar(tmp_path, text)
    assert exactness(g) is None
    runs = ignore_runs(g)
    assert runs.counts(6) == RUNS[ignores]
    # Brute force: every string over "a" and the ignorable characters, by a fresh Lark.
    parser = Lark(text, parser="lalr", strict=True)
    alphabet = "a" + "".join(sorted(runs.chars))
    L = 5 if len(alphabet) > 3 else 6
    by_len = Counter(len(s) for s in all_strings(alphabet, L) if lark_accepts(parser, s))
    assert Language(g, L).counts == [by_len.get(n, 0) for n in range(L + 1)]


# -- outside the class: one line naming the construct -----------------------------------------------

OUTSIDE = [
    ('start: "a"+\n%ignore /\\s+/\n', "\\s"),
    ('start: "a"+\n%ignore /[^a]/\n', "negated"),
    ('start: "a"+\n%ignore / (?=a)/\n', "lookahead"),
    ('start: "a"+\n%ignore /k/i\n', "case-insensitive"),
    ('start: "if"i\n', "case-insensitive"),  # Python's re also matches "\u0130f"
    ('start: "a-b"+\n%ignore "-"\n', "'-'"),  # a character of a token
    ('start: "a" SP "b"\nSP: " "\n%ignore " "\n', "' '"),
    ('start: "a"+\n%ignore /xy?/\n%ignore "yz"\n', "not ignorable"),
    ('start: NAME+\nNAME: /[a-z]+/\n%ignore " "\n', "can be read as the NAME 'aa'"),  # NAME NAME merges
]


@pytest.mark.parametrize("text,why", OUTSIDE, ids=range(len(OUTSIDE)))
def test_outside_the_class_is_inexact_with_a_one_line_reason(tmp_path, text, why):
    g = _grammar(tmp_path, text)
    reason = exactness(g)
    assert reason is not None and why in reason and "\n" not in reason, reason
    assert ignore_runs(g) is None
    lang = Language(g, 4)
    assert not lang.exact and lang.reason == reason


def test_case_insensitive_letters_really_match_more_in_lark():
    # Why "if"i is not exact: Lark (Python's re) reads U+0130 as "i" case-insensitively.
    assert lark_accepts(Lark('start: "if"i\n', parser="lalr"), "\u0130f")


# -- soundness: whenever the proof says exact, counts are Lark's ----------------------------------

PATTERNS = ['"x"', '"y"', '"xy"', '"yx"', '"xx"', '"xyx"', "/x+/", "/xy?/", "/(xy)+/", "/y|xx/", "/x{2,3}/", '"yy"']


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ignores=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True))
def test_exact_means_brute_force_counts_for_generated_ignores(tmp_path_factory, ignores):
    text = 'start: (A | B)*\nA: "a"\nB: "ab"\n' + "".join(f"%ignore {p}\n" for p in ignores)
    path = tmp_path_factory.mktemp("g") / "g.lark"
    path.write_text(text)
    g = load_grammar(str(path))
    reason = exactness(g)
    if reason is not None:
        assert "\n" not in reason
        return
    parser = oracle_lark(str(path))
    L = 6
    by_len = Counter(len(s) for s in all_strings("abxy", L) if lark_accepts(parser, s))
    assert Language(g, L).counts == [by_len.get(n, 0) for n in range(L + 1)], ignores


def test_generated_ignores_are_often_inside_the_class(tmp_path):
    # The property test above would prove little if nearly everything were refused.
    inside = 0
    for i, pair in enumerate(itertools.combinations(PATTERNS, 2)):
        text = 'start: (A | B)*\nA: "a"\nB: "ab"\n' + "".join(f"%ignore {p}\n" for p in pair)
        inside += exactness(_grammar(tmp_path, text, f"g{i}")) is None
    assert inside >= 20


# -- the Language API -------------------------------------------------------------------------------


def test_counts_include_ignorable_text_and_derivations_do_not():
    lang = Language(corpus("ignore_runs"), 6)
    assert lang.exact and lang.reason is None
    assert [lang.derivations(n) for n in range(7)] == [0, 0, 1, 2, 4, 4, 16]
    assert lang.counts == [0, 0, 1, 5, 21, 70, 227]
    # Ignore-free valid strings are exactly the derivations.
    free = [s for s in oracle_language("ignore_runs") if " " not in s and "~" not in s]
    assert Counter(map(len, free)) == Counter({n: lang.derivations(n) for n in range(7) if lang.derivations(n)})


def test_uniform_draws_are_uniform_over_the_strings_without_ignorable_text():
    support = {s for s in oracle_language("ignore_runs", 4) if " " not in s and "~" not in s}
    assert len(support) == 7
    for ignore in ("none", "minimal"):  # tokens never need a separator in this class
        draws = draw_dataset(corpus("ignore_runs"), 7 * 300, max_len=4, seed=2, ignore=ignore)
        counts = Counter(draws)
        assert set(counts) == support
        expected = len(draws) / len(support)
        chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
        assert chi2 < 35  # chi-square, 6 degrees of freedom: p < 1e-5
    spaced = draw_dataset(corpus("calc_ws"), 300, max_len=12, seed=2, ignore="random")
    parser = oracle_lark(str(BY_NAME["calc_ws"].path))
    assert any(" " in s or "\t" in s for s in spaced) and all(lark_accepts(parser, s) for s in set(spaced))


def test_hypothesis_strategy_works_where_strings_outnumber_derivations(tmp_path):
    # count(3) > 0 ("ab " and " ab"), but no derivation has length 3: strings() must draw
    # derivation lengths, not string lengths.
    g = _grammar(tmp_path, 'start: "ab"\n%ignore " "\n')
    lang = Language(g, 3)
    assert lang.count(3) == 2 and lang.derivations(3) == 0
    strat = strings(g, max_len=3, ignore="random")

    @settings(max_examples=20, deadline=None)
    @given(strat)
    def check(s):
        assert g.is_valid(s) and len(s) <= 3

    check()


def test_score_counts_the_whole_language_with_ignorable_text():
    g = corpus("ignore_runs")
    language = sorted(oracle_language("ignore_runs", 5))
    rep = score_samples(language, g, max_len=5)
    assert rep.language_size_exact is True and rep.language_size_reason is None
    assert rep.language_size == len(language)
    # score strips trailing spaces (the padding), so strings ending in ignorable spaces are
    # never seen as themselves: coverage reaches the share of those that do not.
    visible = {s.rstrip(" ") for s in language}
    assert rep.unique_valid == len(visible) and rep.coverage == len(visible) / len(language) < 1


def test_score_cli_reports_exact_size(tmp_path):
    data = tmp_path / "s.txt"
    data.write_text("[a]\n[ a ]\n[~~a]\n[~a]\n")
    r = subprocess.run(
        [sys.executable, "-m", "gumbelseq", "score", str(data), "--grammar", str(BY_NAME["ignore_runs"].path),
         "--max-len", "5", "--json"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["valid"] == 3 and rep["language_size_exact"] is True and rep["language_size"] == 97
    assert rep["coverage"] == pytest.approx(3 / 97)


# -- constrained sampling through a real run ------------------------------------------------------


def test_constrained_samples_of_a_run_trained_with_spaces_are_valid(tmp_path):
    from gumbelseq.model.run import load_run
    from gumbelseq.model.train import start_training

    e = BY_NAME["calc_ws"]
    g = corpus("calc_ws")
    data = draw_dataset(g, 300, max_len=12, seed=1, ignore="random")
    assert any(" " in s for s in data)  # the vocabulary gets the ignorable characters
    start_training(grammar=g, backend="mle-lstm", out_dir=tmp_path / "r", options={"hidden": 8, "iterations": 3},
                   data=data, max_len=12, seed=1, device="cpu", eval_every=0, final_samples=0)
    run = load_run(tmp_path / "r", device="cpu")
    samples = run.sample(500, tau=1.0, seed=5, constrained=True)
    parser = oracle_lark(str(e.path))
    assert all(len(s) <= 12 and lark_accepts(parser, s) for s in set(samples))
    assert any(" " in s.strip() for s in samples)  # spaces between tokens, not only padding
