"""Grammar.validate / is_valid agree exactly with Lark.parse (tests/oracle.py) on the test corpus.

Exhaustively over each grammar's small alphabet up to its brute-force length, on 50,000
deterministic mutants of valid strings across the corpus, and on arbitrary text (Hypothesis).
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gumbelseq.lang.grammar import Validation, load_grammar
from oracle import CORPUS, CORPUS_DIR, all_strings, lark_accepts, mutants, oracle_lark, oracle_language

IDS = [e.name for e in CORPUS]
MUTANTS_TOTAL = 50_000
EARLEY_MUTANTS = 1_000  # Earley parses are slow; the LALR grammars share the rest
EXTRA_CHARS = "Z\n\u00e9"  # outside every alphabet: the lexer must fail on them cleanly


@functools.lru_cache(maxsize=None)
def grammar(name):
    e = next(e for e in CORPUS if e.name == name)
    return load_grammar(e.path, start=e.start)


def _mutant_counts() -> dict[str, int]:
    earley = [e.name for e in CORPUS if e.algorithm == "earley"]
    lalr = [e.name for e in CORPUS if e.algorithm == "lalr"]
    rest = MUTANTS_TOTAL - EARLEY_MUTANTS * len(earley)
    counts = {n: EARLEY_MUTANTS for n in earley}
    for i, n in enumerate(lalr):
        counts[n] = rest // len(lalr) + (1 if i < rest % len(lalr) else 0)
    assert sum(counts.values()) == MUTANTS_TOTAL
    return counts


MUTANT_COUNTS = _mutant_counts()


def _disagreements(g, parser, strings, truth=None):
    bad = []
    for s in strings:
        want = (s in truth) if truth is not None else lark_accepts(parser, s)
        got_fast = g.is_valid(s)
        got = g.validate(s)
        if got_fast != want or got.ok != want:
            bad.append((s, want, got_fast, got.ok))
    return bad


def test_corpus_is_documented_and_large_enough():
    files = sorted(p for p in CORPUS_DIR.rglob("*.lark"))
    assert len(CORPUS) >= 12 and len(files) >= 12
    for p in files:
        first = p.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("// ") and len(first) > 10, p
    assert {e.algorithm for e in CORPUS} == {"lalr", "earley"}
    assert any(e.start != "start" for e in CORPUS)


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_oracle_is_built_like_load_grammar(entry):
    g = grammar(entry.name)
    parser = oracle_lark(str(entry.path), entry.start)
    assert g.algorithm == entry.algorithm == parser.options.parser
    assert parser is not g.parser
    for option in ("parser", "lexer", "strict", "start", "postlex", "lexer_callbacks", "priority", "ambiguity"):
        assert getattr(g.parser.options, option) == getattr(parser.options, option), option
    assert (g._fast is not None) == (entry.algorithm == "lalr")


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_exhaustive_agreement_with_lark(entry):
    g = grammar(entry.name)
    truth = oracle_language(entry.name)
    assert truth, "every corpus language has short strings"
    bad = _disagreements(g, None, all_strings(entry.alphabet, entry.max_len), truth)
    assert not bad, f"{len(bad)} disagreements (text, lark, is_valid, validate): {bad[:10]}"


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_mutants_agree_with_lark(entry):
    g = grammar(entry.name)
    parser = oracle_lark(str(entry.path), entry.start)
    verdicts: dict[str, bool] = {}

    def lark_ok(s):
        if s not in verdicts:
            verdicts[s] = lark_accepts(parser, s)
        return verdicts[s]

    seed = sum(map(ord, entry.name))  # deterministic per grammar
    strings = mutants(
        oracle_language(entry.name), entry.alphabet + EXTRA_CHARS, MUTANT_COUNTS[entry.name], seed, keep=lark_ok
    )
    assert len(strings) == MUTANT_COUNTS[entry.name]
    bad = [
        (s, lark_ok(s), g.is_valid(s), g.validate(s).ok)
        for s in strings
        if not g.is_valid(s) == g.validate(s).ok == lark_ok(s)
    ]
    assert not bad, f"{len(bad)} disagreements (text, lark, is_valid, validate): {bad[:10]}"
    # The pool grew: mutants reach valid strings longer than the brute-force length (adjacent's
    # language is finite: at most two 3-digit numbers).
    assert entry.name == "adjacent" or any(ok and len(s) > entry.max_len for s, ok in verdicts.items())


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text())
def test_validate_never_raises_and_agrees_on_arbitrary_text(entry, text):
    g = grammar(entry.name)
    v = g.validate(text)
    assert isinstance(v, Validation)
    assert v.ok == g.is_valid(text) == lark_accepts(oracle_lark(str(entry.path), entry.start), text)
    if not v.ok:
        assert isinstance(v.column, int) and 1 <= v.column <= len(text) + 1
