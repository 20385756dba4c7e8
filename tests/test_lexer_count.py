"""Exact counts of Lark's strings where the lexer interacts (``gumbelseq/lang/lexer_count.py``),
against brute force over Lark itself and against ``Language``'s counts where those are exact."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.language import Language
from gumbelseq.lang.lexer_count import language_alphabet, lexer_count
from gumbelseq.lang.score import score_samples
from oracle import BY_NAME, CORPUS, all_strings, lark_accepts, oracle_lark, oracle_language

# The LALR grammars whose derivations are not strings (the others: see the agreement test below).
LALR = [e.name for e in CORPUS if e.algorithm == "lalr" and e.counts is None]


def _by_length(strings, max_len):
    out = [0] * (max_len + 1)
    for s in strings:
        out[len(s)] += 1
    return out


@pytest.mark.parametrize("name", LALR)
def test_counts_over_an_alphabet_equal_brute_force(name):
    # Over the entry's small alphabet: every string Lark accepts, counted by length.
    e = BY_NAME[name]
    g = load_grammar(str(e.path), start=e.start)
    got = lexer_count(g, e.max_len, alphabet=e.alphabet)
    assert got.reason is None
    assert got.counts == _by_length(oracle_language(name), e.max_len)


# Grammars whose whole alphabet is small enough to enumerate: the full count, by brute force.
WHOLE = [("kwname", 6), ("collide_ctx", 5), ("alternation", 5), ("lazy", 7), ("priority", 5),
         ("ignore_collide", 7), ("ignore_string", 7), ("ignore_greedy", 5), ("adjacent", 4)]


@pytest.mark.parametrize("name,max_len", WHOLE)
def test_whole_language_counts_equal_brute_force(name, max_len):
    e = BY_NAME[name]
    g = load_grammar(str(e.path), start=e.start)
    alphabet = language_alphabet(g)
    parser = oracle_lark(str(e.path), e.start)
    got = lexer_count(g, max_len)
    assert got.alphabet == alphabet
    assert got.counts == _by_length((s for s in all_strings(alphabet, max_len) if lark_accepts(parser, s)), max_len)
    # No accepted string uses a character outside the alphabet: try each other printable one.
    outside = [chr(c) for c in range(32, 127) if chr(c) not in alphabet]
    for s in sorted(oracle_language(name))[::7]:
        for i in range(len(s)):
            assert not any(lark_accepts(parser, s[:i] + c + s[i + 1:]) for c in outside), (name, s)


@pytest.mark.parametrize("name", [e.name for e in CORPUS if e.counts is not None] + ["arith", "parens", "dyck"])
def test_where_derivations_are_strings_both_counts_agree(name):
    # Two independent engines: Language (derivations, proved one to one) and the lexer walk.
    g = load_grammar(str(BY_NAME[name].path), start=BY_NAME[name].start) if name in BY_NAME else load_grammar(name)
    lang = Language(g, 7)
    assert lang.exact
    assert lexer_count(g, 7).counts == lang.counts


@pytest.mark.parametrize(
    "text,needle",
    [
        ('start: STR\nSTR: /"[^"]*"/\n', "negated"),
        ("start: D+\nD: /\\d/\n", "\\d"),
        ('start: "if"i\n', "case-insensitive"),
        ('start: "a" B\nB: /./\n', "."),
    ],
)
def test_an_alphabet_that_is_not_finite_and_known_is_a_reason(tmp_path, text, needle):
    path = tmp_path / "g.lark"
    path.write_text(text)
    got = lexer_count(load_grammar(str(path)), 5)
    assert got.counts is None and needle in got.reason and "\n" not in got.reason


def test_earley_and_oversized_grammars_get_a_reason():
    assert "LALR" in lexer_count(load_grammar(str(BY_NAME["ambiguous"].path)), 5).reason
    got = lexer_count(load_grammar(str(BY_NAME["calc"].path)), 12, max_configs=2_000)
    assert got.counts is None and "2,000 lexer configurations" in got.reason


def test_score_counts_keyword_grammars_exactly(tmp_path):
    # Keywords that are also names: Lark accepts 45 strings of length <= 5 (the count of
    # derivations, 56, is not a size of anything).
    path = tmp_path / "kw.lark"
    path.write_text('start: stmt+\nstmt: "if" NAME ";" | NAME ";"\nNAME: /[if]+/\n')
    g = load_grammar(str(path))
    assert Language(g, 5).count_upto(5) == 56 and not Language(g, 5).exact
    lark = oracle_lark(str(path))
    accepted = [s for s in all_strings(language_alphabet(g), 5) if lark_accepts(lark, s)]
    assert len(accepted) == 45
    rep = score_samples(accepted[:30] + ["if;;"], g, max_len=5)
    assert rep.language_size == 45 and rep.language_size_exact and rep.language_size_reason is None
    assert rep.coverage == pytest.approx(30 / 45)
    samples = tmp_path / "s.txt"
    samples.write_text("\n".join(accepted) + "\n")
    out = subprocess.run([sys.executable, "-m", "gumbelseq", "score", str(samples), "--grammar", str(path), "--max-len", "5", "--json"],
                         capture_output=True, text=True, check=True).stdout
    rep = json.loads(out)
    assert rep["coverage"] == 1.0 and rep["language_size_exact"] is True
