"""gumbelseq/lang/longest_match.py against brute force: Python's ``re`` itself on every text up to
a length, and distinct-string counts against ``RegexLanguage``'s parse counts.

- ``short_match`` None: on every text, ``re.match`` returns the longest prefix in the language;
  a witness: it is in the language, ``re.match`` does not take it whole, and no shorter string is
  such a witness (BFS gives a shortest);
- ``ambiguous_match`` None: parse counts equal distinct-string counts at every length checked;
  a witness: at its length there are more parses than strings.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from lark import Lark

from gumbelseq.lang.longest_match import NotAnalysable, ambiguous_match, dfa, short_match
from gumbelseq.lang.regex import RegexLanguage
from oracle import all_strings

ALPHABET = "abc"
MAX_TEXT = 6


def _check_short(pattern: str, alphabet: str = ALPHABET, max_len: int = MAX_TEXT) -> str | None:
    w = short_match(pattern, None if alphabet == ALPHABET else alphabet)
    compiled = re.compile(pattern)
    if w is None:
        for text in all_strings(alphabet, max_len):
            longest = max((n for n in range(1, len(text) + 1) if compiled.fullmatch(text[:n])), default=None)
            m = compiled.match(text)
            got = m.end() if m is not None and m.end() > 0 else None
            assert got == longest, (pattern, text, got, longest)
    else:
        assert compiled.fullmatch(w) and compiled.match(w).group() != w, (pattern, w)
        for text in all_strings(alphabet, len(w) - 1):
            if text and compiled.fullmatch(text):
                assert compiled.match(text).group() == text, (pattern, w, "shorter witness", text)
    return w


def _check_ambiguous(pattern: str, max_len: int = MAX_TEXT) -> str | None:
    w = ambiguous_match(pattern)
    parses = RegexLanguage(pattern, max_len=max(max_len, len(w or ""))).counts
    compiled = re.compile(pattern)
    strings = [0] * (len(parses))
    for text in all_strings(ALPHABET, len(parses) - 1):
        if compiled.fullmatch(text):
            strings[len(text)] += 1
    if w is None:
        assert parses == strings, (pattern, parses, strings)
    else:
        assert compiled.fullmatch(w), (pattern, w)
        assert parses[len(w)] > strings[len(w)], (pattern, w, parses, strings)
        assert parses[: len(w)] == strings[: len(w)], (pattern, "a shorter ambiguity", parses, strings)
    return w


KNOWN = {
    # pattern: (short_match witness, ambiguous_match witness)
    "[ab]+": (None, None),
    "(a|ab)c?": ("ab", None),
    "a+?": ("aa", None),
    "a*?b": (None, None),  # lazy, but every string ends at its only b
    "a*ab": (None, None),
    "ab|b?a": (None, None),
    "(?:ab)+": (None, None),
    "a(bc|b)": (None, None),
    "a(b|bc)": ("abc", None),
    "a?a?": (None, "a"),
    "(a|a)": (None, "a"),
    "(a|b|ab)*": (None, "ab"),
    "a{1,3}a{0,2}": (None, "aa"),
}


@pytest.mark.parametrize("pattern", sorted(KNOWN))
def test_known_patterns(pattern):
    short, amb = KNOWN[pattern]
    assert _check_short(pattern) == short
    assert _check_ambiguous(pattern) == amb


def test_common_number_is_taken_whole_and_unambiguous():
    # Lark's common.NUMBER: FLOAT | INT, each with inner alternations and optional groups.
    parser = Lark("start: NUMBER\n%import common.NUMBER\n", parser="lalr")
    pattern = parser.get_terminal("NUMBER").pattern.to_regexp()
    assert short_match(pattern) is None and ambiguous_match(pattern) is None
    _check_short(pattern, alphabet="1.e+", max_len=7)


def test_first_alternative_of_common_signed_float_style():
    # An alternation whose first branch is a prefix of the second: re stops at the first.
    assert _check_short("[0-9]+|[0-9]+\\.[0-9]+", alphabet="1.", max_len=5) == "1.1"


def test_over_an_alphabet_classes_and_categories_are_read_by_re():
    # \d is refused without an alphabet (Unicode digits), read over a given one.
    with pytest.raises(NotAnalysable, match="category"):
        short_match("\\d+")
    assert short_match("\\d+", "12a") is None
    assert short_match("[^b]+?", "ab") == "aa"


@pytest.mark.parametrize(
    "pattern,why",
    [
        ("(?=a)a", "look-ahead"),
        ("^a", "anchor"),
        ("(a)\\1", "back-reference"),
        ("a++", "possessive"),
        ("(?>ab)", "atomic"),
        ("(a*)*", "empty string"),
        ("(?i:a)", "inline flags"),
        ("a{1,5000}", "states"),
    ],
)
def test_outside_constructs_are_refused_in_one_line(pattern, why):
    with pytest.raises(NotAnalysable, match=why) as e:
        short_match(pattern)
    assert "\n" not in str(e.value)


ATOMS = ["a", "b", "[ab]", "[bc]", "c", "(?:ab)", "(?:a|ab)", "(?:b|a)", "(?:ab|b)"]
QUANTS = ["", "?", "*", "+", "{1,2}", "{0,2}", "{2}", "??", "*?", "+?", "{1,2}?"]
PIECE = st.tuples(st.sampled_from(ATOMS), st.sampled_from(QUANTS)).map("".join)
BRANCH = st.lists(PIECE, min_size=1, max_size=3).map("".join)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(BRANCH, min_size=1, max_size=3).map("|".join), st.booleans())
def test_generated_patterns_against_python_re(pattern, wrap):
    if wrap:
        pattern = f"(?:{pattern})c?"
    _check_short(pattern, max_len=5)
    _check_ambiguous(pattern, max_len=7)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(BRANCH, min_size=1, max_size=3).map("|".join))
def test_dfa_accepts_exactly_what_re_fullmatch_accepts(pattern):
    step, finals = dfa(pattern, ALPHABET)
    compiled = re.compile(pattern)
    for text in all_strings(ALPHABET, 5):
        q = 0
        for c in text:
            q = step[q].get(c)
            if q is None:
                break
        assert (q is not None and q in finals) == bool(compiled.fullmatch(text)), (pattern, text)
