"""Tests for gumbelseq.lang.regex: exact per-length counts and uniform sampling of regex terminals."""

from __future__ import annotations

import itertools
import math
import random
import re
import subprocess
import sys
from collections import Counter
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gumbelseq.errors import GrammarSyntaxError, UnsupportedGrammarError
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.language import Language
from gumbelseq.lang.regex import UNIVERSE, RegexLanguage, refers_to_group_by_number

PRINTABLE = "".join(chr(c) for c in range(UNIVERSE[0], UNIVERSE[1] + 1))
WORD = "".join(c for c in PRINTABLE if c.isalnum() or c == "_")

# (pattern, lark-style flags, brute-force alphabet, largest n to enumerate).
# Every pattern here is UNAMBIGUOUS, so derivation counts must equal string counts.
# Each alphabet contains every character the pattern can match (within the
# documented universe) plus at least one it cannot, so enumeration is exhaustive.
UNAMBIGUOUS = [
    ("x", (), "xy", 3),
    (r"(?:\+|\-)", (), "+-x", 3),  # as Lark writes ADD: "+" | "-"
    ("[a-c]{0,3}", (), "abcd", 5),
    (r"-?(0|[1-9][0-9]{0,2})", (), "-0123456789a", 5),
    ('"[a-z]{0,3}"', (), '"abcdefghijklmnopqrstuvwxyz0', 4),
    ("(ab|c)+", (), "abcd", 6),
    # Complements are taken within the documented universe (printable ASCII), so
    # enumerate exactly that: re itself would also accept "\n" or "\u00e9".
    ("[^a-y]", (), PRINTABLE, 2),
    (r"\d{2,3}", (), "0123456789a", 4),
    ("abc", ("i",), "abcABCd", 4),  # case-insensitive via the lark flag
    ("(?i)k", (), "kK\u212ax", 2),  # re also folds the Kelvin sign to k
    ("[a-b]*?c", (), "abcd", 5),  # lazy quantifier: same language as greedy
    ("(?:a|b)+?", (), "abc", 5),
    ("[aa-c]", (), "abcd", 2),  # duplicate class members count once
    ("a|b|c", (), "abcd", 2),
    ("(a|)*", (), "ab", 5),  # nullable body: counted once per string
    ("(?:(?:\r)?\n)+", (), "\r\na", 4),  # Lark's common NEWLINE
    (r"[a-c_]\w?", (), WORD + "-", 2),  # \w read as ASCII [A-Za-z0-9_]
]


def brute_force(pattern: str, flags: int, alphabet: str, n: int) -> int:
    rx = re.compile(pattern, flags)
    return sum(1 for t in itertools.product(alphabet, repeat=n) if rx.fullmatch("".join(t)))


def re_flags(lark_flags: tuple[str, ...]) -> int:
    return re.IGNORECASE if "i" in lark_flags else 0


@pytest.mark.parametrize("pattern, flags, alphabet, top", UNAMBIGUOUS)
def test_counts_match_brute_force(pattern, flags, alphabet, top):
    lang = RegexLanguage(pattern, flags, max_len=top + 2)
    for n in range(top + 1):
        assert lang.count(n) == brute_force(pattern, re_flags(flags), alphabet, n), n


def test_known_counts():
    assert RegexLanguage('"[a-z]{0,3}"', max_len=7).counts == [0, 0, 1, 26, 26**2, 26**3, 0, 0]
    assert RegexLanguage(r"-?(0|[1-9][0-9]{0,2})", max_len=5).counts == [0, 10, 100, 990, 900, 0]
    assert RegexLanguage("(ab|c)+", max_len=8).counts[1:] == [1, 2, 3, 5, 8, 13, 21, 34]  # Fibonacci
    assert RegexLanguage("[^a-y]", max_len=1).count(1) == 95 - 25
    assert RegexLanguage(".", max_len=1).count(1) == 95
    assert RegexLanguage(r"\W", max_len=1).count(1) == 95 - 63


def test_ambiguous_patterns_count_derivations():
    # Documented: a*a* is ambiguous, so "aa" is counted once per split (3 ways).
    assert RegexLanguage("a*a*", max_len=4).counts == [1, 2, 3, 4, 5]
    # ...but empty iterations of a nullable repeat body are not counted.
    assert RegexLanguage("(a?){2}", max_len=3).counts == [1, 1, 1, 0]
    assert RegexLanguage("(a|)*", max_len=3).counts == [1, 1, 1, 1]


def test_api_basics():
    lang = RegexLanguage(r"\d{2,3}", max_len=5)
    assert lang.counts == [0, 0, 100, 1000, 0, 0]
    assert lang.min_len == 2
    assert lang.count(-1) == 0 and lang.count(6) == 0 and lang.count(10**6) == 0
    lang.counts[2] = 7  # counts is a copy
    assert lang.count(2) == 100
    assert RegexLanguage("abc", max_len=2).min_len is None
    assert RegexLanguage("", max_len=2).counts == [1, 0, 0]
    assert RegexLanguage("a{5}", max_len=3).counts == [0, 0, 0, 0]
    with pytest.raises(ValueError):
        RegexLanguage("a", max_len=-1)
    with pytest.raises(ValueError):
        lang.sample(4, random.Random(0))
    with pytest.raises(ValueError):
        lang.sample(99, random.Random(0))


def test_flags_forms():
    assert RegexLanguage("ab", ("i",), max_len=2).count(2) == 4
    assert RegexLanguage("ab", "i", max_len=2).count(2) == 4
    assert RegexLanguage("ab", re.IGNORECASE, max_len=2).count(2) == 4
    assert RegexLanguage("a(?i:b)", max_len=2).count(2) == 2
    assert RegexLanguage("(?i)a(?-i:b)", max_len=2).count(2) == 2
    assert RegexLanguage("[^a]", ("i",), max_len=1).count(1) == 93
    assert RegexLanguage("a b # comment", ("x",), max_len=2).count(2) == 1
    for flag in ("m", "s", "u"):
        assert RegexLanguage("ab", (flag,), max_len=2).count(2) == 1
    with pytest.raises(UnsupportedGrammarError, match="flag"):
        RegexLanguage("a", ("l",), max_len=1)
    with pytest.raises(UnsupportedGrammarError, match="flag"):
        RegexLanguage("a", ("q",), max_len=1)


def test_big_lengths_are_exact_and_fast():
    lang = RegexLanguage("[a-c]*", max_len=200)
    assert lang.count(200) == 3**200
    s = lang.sample(200, random.Random(1))
    assert len(s) == 200 and re.fullmatch("[a-c]*", s)
    fib = RegexLanguage("(ab|c)+", max_len=200)
    a, b = 1, 1  # F(n+1) strings of length n
    for _ in range(199):
        a, b = b, a + b
    assert fib.count(200) == b


@lru_cache(maxsize=None)
def lang_for(pattern: str, flags: tuple[str, ...]) -> RegexLanguage:
    return RegexLanguage(pattern, flags, max_len=MAX)


MAX = 12
SAMPLED = [(p, f) for p, f, _, _ in UNAMBIGUOUS] + [
    ("a*a*", ()),
    ("(a?){2}", ()),
    (r'"(?:[^"\\]|\\.)*"', ()),
    (r"(?:[ \t\x0c\r\n])+", ()),
    (r"[\s\S]\D\W.", ()),
    (r"(?i)[a-z\u212a]{1,3}", ()),
    ("(ab|c)+(de|f){2,4}x*", ()),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLED), st.integers(0, MAX), st.integers(0, 2**64))
def test_samples_match_and_have_length(case, n, seed):
    pattern, flags = case
    lang = lang_for(pattern, flags)
    if lang.count(n) == 0:
        with pytest.raises(ValueError):
            lang.sample(n, random.Random(seed))
        return
    s = lang.sample(n, random.Random(seed))
    assert len(s) == n
    assert re.fullmatch(pattern, s, re_flags(flags)), s


def chi2_sf_even_df(x: float, df: int) -> float:
    """Chi-square survival function, exact closed form for even df."""
    half = x / 2
    return math.exp(-half) * sum(half**k / math.factorial(k) for k in range(df // 2))


def chi2_bound(df: int, alpha: float) -> float:
    lo, hi = 0.0, 1000.0
    for _ in range(200):  # bisection: sf is decreasing
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi2_sf_even_df(mid, df) > alpha else (lo, mid)
    return hi


def test_uniform_chi_square():
    lang = RegexLanguage("[a-c]{1,2}", max_len=3)
    assert lang.count(2) == 9
    rng = random.Random(12345)
    draws = 18_000
    freq = Counter(lang.sample(2, rng) for _ in range(draws))
    assert set(freq) == {a + b for a in "abc" for b in "abc"}
    expected = draws / 9
    stat = sum((c - expected) ** 2 / expected for c in freq.values())
    bound = chi2_bound(df=8, alpha=1e-6)  # about 41.4: a false alarm is a one-in-a-million event
    assert 40 < bound < 43
    assert stat < bound, (stat, bound, freq)


def test_uniform_across_branches_of_different_sizes():
    # n=2 in -?(0|[1-9][0-9]{0,2}): "-0".."-9" (10) and "10".."99" (90): weights must follow counts.
    lang = RegexLanguage(r"-?(0|[1-9][0-9]{0,2})", max_len=4)
    rng = random.Random(7)
    draws = 20_000
    neg = sum(lang.sample(2, rng).startswith("-") for _ in range(draws))
    # Binomial(20000, 0.1): sd ~ 42; allow 6 sd.
    assert abs(neg - 2000) < 6 * math.sqrt(draws * 0.1 * 0.9)


@pytest.mark.parametrize(
    "pattern, words",
    [
        (r"(a)\1", "backreference"),
        (r"(?=a)a", "lookahead"),
        (r"(?!a)b", "negative lookahead"),
        (r"(?<=a)b", "lookbehind"),
        (r"(?<!a)b", "negative lookbehind"),
        ("^a", "anchor '^'"),
        ("a$", "anchor '$'"),
        (r"\Aa", "anchor"),
        (r"a\b", "word boundary"),
        (r"a\B", "boundary"),
        (r"(a)?(?(1)b|c)", "conditional"),
        (r"a*+", "possessive"),
        (r"(?>a)", "atomic group"),
    ],
)
def test_unsupported_constructs(pattern, words):
    if words in ("possessive", "atomic group"):
        try:
            re.compile(pattern)
        except re.error:
            pytest.skip("syntax needs Python 3.11+")
    with pytest.raises(UnsupportedGrammarError, match=re.escape(words)) as info:
        RegexLanguage(pattern, max_len=5)
    assert "\n" not in str(info.value)


def test_invalid_regex_is_a_syntax_error():
    with pytest.raises(GrammarSyntaxError):
        RegexLanguage("(a", max_len=3)


def test_same_seed_same_samples():
    lang = RegexLanguage(r"-?(0|[1-9][0-9]{0,2})|(ab|c)+", max_len=10)
    runs = []
    for _ in range(2):
        rng = random.Random(2024)
        runs.append([lang.sample(n, rng) for n in range(1, 11) for _ in range(5)])
    assert runs[0] == runs[1]
    other = random.Random(2025)
    assert runs[0] != [lang.sample(n, other) for n in range(1, 11) for _ in range(5)]


def test_lark_common_terminals():
    lark = pytest.importorskip("lark")
    names = ["NUMBER", "SIGNED_NUMBER", "ESCAPED_STRING", "CNAME", "WS", "INT", "WORD", "NEWLINE", "HEXDIGIT"]
    grammar = "start: " + " | ".join(names) + "\n" + "\n".join(f"%import common.{n}" for n in names)
    parser = lark.Lark(grammar, parser="earley", lexer="basic")
    built = 0
    for term in parser.terminals:
        pattern = term.pattern.to_regexp()
        try:
            lang = RegexLanguage(pattern, term.pattern.flags, max_len=8)
        except UnsupportedGrammarError:
            assert term.name == "ESCAPED_STRING"  # uses a lookbehind
            continue
        built += 1
        rng = random.Random(0)
        for n in range(9):
            if lang.count(n):
                assert re.fullmatch(pattern, lang.sample(n, rng))
    assert built == len(names) - 1


# -- inline flags and back-references in grammar terminals (through Lark and the CLI) ---------


def _cli(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "gumbelseq", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_inline_flags_in_a_terminal_mean_the_same_as_lark_flags(tmp_path):
    (tmp_path / "inline.lark").write_text("start: X Y\nX: /(?i)ab/\nY: /(?s)c/\n")
    (tmp_path / "suffix.lark").write_text("start: X Y\nX: /ab/i\nY: /c/s\n")
    inline, suffix = (load_grammar(tmp_path / f"{n}.lark") for n in ("inline", "suffix"))
    for s in ["abc", "ABc", "aBc", "abC", "ab", "abcc"]:
        assert inline.validate(s).ok == suffix.validate(s).ok == bool(re.fullmatch("(?i:ab)c", s)), s
    assert Language(inline, 3).counts == Language(suffix, 3).counts == [0, 0, 0, 4]
    r = _cli(tmp_path, "data", "--grammar", "inline.lark", "-n", "40", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == {"abc", "Abc", "aBc", "ABc"}


@pytest.mark.parametrize("command", ["data", "score"])
@pytest.mark.parametrize("pattern", [r"(a|b)\1", r"(a)(?(1)b|c)"])
def test_numbered_backreference_is_a_one_line_error_naming_the_terminal(tmp_path, command, pattern):
    (tmp_path / "g.lark").write_text(f"start: PAIR\nPAIR: /{pattern}/\n")
    args = ["data", "-n", "3"] if command == "data" else ["score", "-"]
    r = _cli(tmp_path, *args, "--grammar", "g.lark")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: g.lark: terminal PAIR"), r.stderr
    assert "back-reference" in lines[0]


def test_named_backreference_still_validates(tmp_path):
    (tmp_path / "g.lark").write_text("start: PAIR\nPAIR: /(?P<c>a|b)(?P=c)/\n")
    g = load_grammar(tmp_path / "g.lark")
    assert g.is_valid("aa") and g.is_valid("bb") and not g.is_valid("ab")
    with pytest.raises(UnsupportedGrammarError, match="PAIR.*backreference"):
        Language(g, 2)  # counting cannot do back-references: a clear error, not a crash


def test_refers_to_group_by_number():
    assert refers_to_group_by_number(r"(a|b)\1")
    assert refers_to_group_by_number(r"(a)(b)\2")
    assert refers_to_group_by_number(r"(a)?(?(1)b|c)")
    assert not refers_to_group_by_number(r"(?P<q>a)(?P=q)")
    assert not refers_to_group_by_number(r"(?P<q>a)?(?(q)b|c)")
    assert not refers_to_group_by_number(r"[\1](a|b)")
    assert not refers_to_group_by_number(r"(?i:x)")
