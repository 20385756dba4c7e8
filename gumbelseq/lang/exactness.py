"""When do derivation counts equal string counts of Lark's language? A static proof, or a reason.

``Language`` counts and draws *derivations* of the grammar's rules, with each terminal spelled
out by its regular expression. That is Lark's language exactly when writing a derivation's
tokens one after another gives a string that Lark's lexer cuts back into the same tokens, and
no string has two derivations. ``exactness(grammar)`` proves this for a grammar, or returns the
first reason it cannot:

- the parser is Earley (an ambiguous grammar: a string can have several derivations), or its
  lexer has callbacks or a post-lexer this analysis does not model;
- the grammar ``%ignore``s something: Lark's language then holds every string with ignorable
  text between tokens, which derivations do not spell;
- a terminal has infinitely many strings, more than ``MAX_TERMINAL_STRINGS`` of them, or
  characters outside a finite set (a negated class): the pairwise check below needs them all;
- a terminal's regular expression is ambiguous (its derivation count is not its string count);
- Lark's lexer, given one terminal string alone, reads another terminal or a shorter string
  (a keyword that is also a name, a lazy or first-alternative regex);
- a terminal string ``t`` of ``T`` is a proper prefix of another terminal string ``s`` whose next
  character can start a token that follows ``T`` somewhere in the grammar: then ``t`` followed
  by that token may be read as ``s`` (longest match merges adjacent tokens).

Why the last two suffice (no ``%ignore``, finite terminals, strict LALR with the contextual
lexer): at a token ``t`` of terminal ``T`` the lexer's scanner tries terminals in a fixed order
and returns the first regex match. A regex without look-around that matched nothing of ``t``
alone can only match something longer than ``t`` in context; one that matched ``t`` alone
matches ``t`` or something longer. Anything longer starts with ``t`` and the next token's first
character, which the prefix check rules out. A state's contextual lexer knows a subset of the
terminals, in the same order, so it reads the same. Then every derivation's string lexes to its
own tokens, the LALR parse of those tokens is that derivation, and derivations and strings are
in one-to-one correspondence.
"""

from __future__ import annotations

import re

import interegular

try:  # Python >= 3.11
    import re._parser as _sre_parse
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse  # type: ignore[no-redef]

from ..errors import GumbelseqError
from .first_token import FirstToken
from .grammar import Grammar, display_name
from .regex import RegexLanguage

#: Largest total number of terminal strings the pairwise check enumerates (json's STRING
#: terminal, the largest among the built-ins, has 18,279).
MAX_TERMINAL_STRINGS = 200_000


def exactness(grammar: Grammar) -> str | None:
    """``None`` when counts of ``grammar``'s derivations are string counts of Lark's language;
    otherwise the first reason they may not be (one line). Cached on the grammar."""
    cache = grammar._analysis
    if "exactness" not in cache:
        cache["exactness"] = _analyse(grammar)
    return cache["exactness"]


def terminal_strings(grammar: Grammar) -> dict[str, str]:
    """Every string of every terminal the rules use, mapped to its terminal, for a grammar whose
    ``exactness`` holds (call that first; empty otherwise)."""
    exactness(grammar)
    return grammar._analysis.get("terminal_strings", {})


def _analyse(grammar: Grammar) -> str | None:
    if grammar.algorithm != "lalr":
        return "the grammar is not strict LALR(1) (parsed with Earley): a string may have several derivations"
    if grammar._fast is None:
        return "the parser has lexer callbacks or a post-lexer, which this analysis does not model"
    parser = grammar.parser
    if parser.ignore_tokens:
        names = ", ".join(sorted(display_name(parser, n) for n in parser.ignore_tokens))
        return (
            f"the grammar %ignores {names}: Lark also accepts strings with ignorable text between"
            " tokens, and adjacent tokens written without it may be read differently"
        )
    used = {s.name for r in parser.rules for s in r.expansion if s.is_term}
    strings: dict[str, str] = {}  # every string of every used terminal -> its terminal
    first_chars: dict[str, set[str]] = {}
    total = 0
    for term in parser.terminals:
        if term.name not in used:
            continue
        wide = _unicode_construct(term.pattern.to_regexp(), term.pattern.flags)
        if wide is not None:
            return (
                f"terminal {term.name} uses {wide}, which Lark (Python's re) matches for Unicode"
                " characters too, while counts are over ASCII"
            )
        try:
            fsm = interegular.parse_pattern(term.pattern.to_regexp()).to_fsm()
            size = len(fsm)
        except OverflowError:
            return f"terminal {term.name} has infinitely many strings"
        except Exception:  # noqa: BLE001 - a regex interegular cannot take
            return f"terminal {term.name}'s regular expression is beyond this analysis"
        total += size
        if total > MAX_TERMINAL_STRINGS:
            return f"the terminals have more than {MAX_TERMINAL_STRINGS:,} strings in all"
        firsts = first_chars.setdefault(term.name, set())
        by_length: dict[int, int] = {}
        for chars in fsm.strings():
            if not all(isinstance(c, str) for c in chars):
                return f"terminal {term.name} matches characters outside a finite set"
            s = "".join(chars)
            other = strings.get(s)
            if other is not None:
                return f"{s!r} is both a {other} and a {term.name}"
            strings[s] = term.name
            firsts.add(s[:1])
            by_length[len(s)] = by_length.get(len(s), 0) + 1
        try:
            counted = RegexLanguage(term.pattern.to_regexp(), term.pattern.flags, max_len=max(by_length, default=0)).counts
        except GumbelseqError as e:
            return f"terminal {term.name}: {e}"
        for n, c in enumerate(counted):
            if c != by_length.get(n, 0):
                return (
                    f"terminal {term.name}'s regular expression is ambiguous: it has {c}"
                    f" derivations but {by_length.get(n, 0)} strings of length {n}"
                )
    reader = FirstToken(parser)
    for s, name in strings.items():
        read = reader.read(s)
        if read != (name, s):
            what = "nothing" if read is None else f"{read[0]} {read[1]!r}"
            return f"Lark's lexer reads the {name} {s!r} alone as {what}"
    follow = _follow_terminals(grammar)
    for s, name in strings.items():
        for k in range(1, len(s)):
            shorter = strings.get(s[:k])
            if shorter is None:
                continue
            for nxt in follow.get(shorter, ()):
                if s[k] in first_chars.get(nxt, ()):
                    return (
                        f"a {shorter} {s[:k]!r} followed by a {nxt} starting with {s[k]!r} can be"
                        f" read as the {name} {s!r}"
                    )
    grammar._analysis["terminal_strings"] = strings
    return None


def _unicode_construct(pattern: str, flags) -> str | None:
    """The first construct of ``pattern`` whose matches under Python's re reach past ASCII
    (``\\d``, ``\\w``, ``\\s``, ``.``, a negated class or character), unless the ASCII flag is on;
    None if there is none."""
    try:
        parsed = _sre_parse.parse(pattern)
    except Exception:  # noqa: BLE001 - Lark compiled it; an odd pattern is not exact
        return "a construct this analysis does not read"
    state = getattr(parsed, "state", None)
    if getattr(state, "flags", 0) & re.ASCII or "a" in tuple(flags or ()):
        return None
    names = {"CATEGORY": None, "ANY": ".", "NOT_LITERAL": "a negated character", "NEGATE": "a negated class"}
    found: list[str] = []

    def walk(items) -> None:  # noqa: ANN001
        for op, av in items:
            name = str(op)
            if name == "CATEGORY":
                found.append({"CATEGORY_DIGIT": r"\d", "CATEGORY_WORD": r"\w", "CATEGORY_SPACE": r"\s"}.get(str(av), r"\D, \W or \S"))
            elif name in names and names[name]:
                found.append(names[name])
            elif name == "IN":
                walk(av)
            elif name in ("SUBPATTERN",):
                walk(av[-1])
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                walk(av[2])
            elif name == "BRANCH":
                for branch in av[1]:
                    walk(branch)
            elif name in ("ATOMIC_GROUP", "ASSERT", "ASSERT_NOT"):
                walk(av[-1])

    walk(parsed)
    return found[0] if found else None


def _follow_terminals(grammar: Grammar) -> dict[str, set[str]]:
    """For each terminal, the terminals that can come right after it in some rule's expansion
    (through nullable symbols and rule ends). Computed over every rule, so it can only over-
    approximate what the start rule derives, which keeps the proof conservative."""
    rules = [(r.origin.name, [s.name for s in r.expansion]) for r in grammar.parser.rules]
    terms = {s.name for r in grammar.parser.rules for s in r.expansion if s.is_term}
    nts = {o for o, _ in rules}
    nullable: set[str] = set()
    first: dict[str, set[str]] = {a: set() for a in nts}
    for t in terms:
        first[t] = {t}
    changed = True
    while changed:
        changed = False
        for origin, exp in rules:
            if origin not in nullable and all(s in nullable for s in exp):
                nullable.add(origin)
                changed = True
            for s in exp:
                new = first[s] - first[origin]
                if new:
                    first[origin] |= new
                    changed = True
                if s not in nullable:
                    break
    follow: dict[str, set[str]] = {s: set() for s in first}
    changed = True
    while changed:
        changed = False
        for origin, exp in rules:
            trailer = set(follow[origin])
            for s in reversed(exp):
                new = trailer - follow[s]
                if new:
                    follow[s] |= new
                    changed = True
                if s in nullable:
                    trailer = trailer | first[s]
                else:
                    trailer = set(first[s])
    return {t: follow[t] & terms for t in terms}
