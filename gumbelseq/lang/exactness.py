"""When do counts equal string counts of Lark's language? A static proof, or a reason.

``Language`` counts and draws *derivations* of the grammar's rules, with each terminal spelled
out by its regular expression. ``exactness(grammar)`` proves, for a grammar, that these counts
give the string counts of Lark's language (``None``), or returns the first reason it cannot
(one line). Two classes of grammars are proved exact:

1. **Plain** (no ``%ignore``): writing a derivation's tokens one after another gives a string
   that Lark's lexer cuts back into the same tokens, and no string has two derivations; string
   counts are derivation counts.
2. **Ignore-separable**: the grammar without its ``%ignore`` is plain, and its ignorable text
   can never merge with or split a token. Lark's language is then every derivation's tokens with
   a *run* of ignorable text before the first token and after each token (any run may be
   empty), and string counts are derivation counts with each terminal's series multiplied by
   the runs' series, times one more runs' series for the leading run (``language.py``).
3. **Regular** (some terminal has infinitely many strings, ``/[0-9]+/``, ``common.INT``,
   ``NAME: /[a-z]+/``): the same two statements, with the conditions on terminal strings decided
   on each terminal's DFA instead of by enumeration (``_analyse_regular``, proof below), and
   string counts from each terminal's DFA (each distinct string once; ``TerminalDFA.counts``).

The reasons, in the order they are checked (for the regular class, see ``_analyse_regular``):

- the parser is Earley (a string may have several derivations), or its lexer has callbacks or
  a post-lexer this analysis does not model;
- a terminal has infinitely many strings, more than ``MAX_TERMINAL_STRINGS`` of them, or
  characters outside a finite set (a negated class): the pairwise check below needs them all;
- a terminal's regular expression is ambiguous (its derivation count is not its string count);
- Lark's lexer, given one terminal string alone, reads another terminal or a shorter string
  (a keyword that is also a name, a lazy or first-alternative regex);
- a terminal string ``t`` of ``T`` is a proper prefix of another terminal string ``s`` whose next
  character can start a token that follows ``T`` somewhere in the grammar: then ``t`` followed
  by that token may be read as ``s`` (longest match merges adjacent tokens);
- with ``%ignore``: an ignored terminal that is not a plain regular language over a finite set of
  characters as Python's ``re`` reads it (a Unicode class such as ``\\s``, a negated class,
  a look-around, an anchor, a possessive repeat, case-insensitive letters);
- the runs of ignorable text are not *right unitary*: some run ``u`` followed by some ``w`` is a
  run while ``w`` alone is not (``%ignore /xy?/`` with ``%ignore "yz"``: ``xyz`` is ``x`` then
  ``yz``, but Lark's greedy ``xy`` leaves ``z``);
- a character of some ignorable string occurs in some rule terminal's string.

Why the plain conditions suffice (no ``%ignore``, finite terminals, strict LALR with the
contextual lexer): at a token ``t`` of terminal ``T`` the lexer's scanner tries terminals in a
fixed order and returns the first regex match. A regex without look-around that matched nothing
of ``t`` alone can only match something longer than ``t`` in context; one that matched ``t`` alone
matches ``t`` or something longer. Anything longer starts with ``t`` and the next token's first
character, which the prefix check rules out. A state's contextual lexer knows a subset of the
terminals, in the same order, so it reads the same. Then every derivation's string lexes to its
own tokens, the LALR parse of those tokens is that derivation, and derivations and strings are
in one-to-one correspondence.

Why the ignore-separable conditions suffice. Let ``I`` be the set of strings of the ignored
terminals (each non-empty: Lark refuses zero-width terminals), ``R = I*`` the *runs*, ``A`` the
characters of ``I`` and ``B`` those of the rule terminals' strings, ``A`` and ``B`` disjoint.
Right unitary means: ``u`` in ``R`` and ``uw`` in ``R`` imply ``w`` in ``R``; equivalently, the
minimal DFA of ``R`` has its start state as its only accepting state (``u`` in ``R`` leads to the
state of ``u^-1 R``, which contains ``R``, and equals it exactly when it is the start state).

(a) Lark reads any run whole, as ignored tokens, whatever follows it. At a position where a
    non-empty run ``r`` starts, its first character is in ``A``; no rule terminal can match
    there (its strings have no character of ``A``, and none is empty). Some ignored terminal
    matches, since ``r`` has a prefix in ``I``; the scanner takes the first in its order, with
    the match Python's ``re`` picks: some ``u`` in ``I``, inside ``r`` (it cannot take the
    character after ``r``, which is in ``B`` or the end). Right unitarity leaves the rest of ``r``
    in ``R``; by induction the whole run is consumed as ignored tokens. Which terminals the
    state's contextual lexer also knows does not matter (only ignored ones match), and ignored
    tokens are dropped before any keyword callback, as Lark does.
(b) A rule token ``t`` followed by a run, or by the next token, or by the end, is read as ``t``:
    the plain argument, where the character after ``t`` is now either the next token's first
    character (covered by the prefix check, since tokens follow each other as in a derivation)
    or a character of ``A``, which no terminal string contains, so no match runs past ``t``.
(c) Hence ``r0 t1 r1 ... tk rk`` (runs ``ri``, a derivation's tokens ``ti``) lexes to the tokens
    ``t1 .. tk`` and the LALR parser accepts it. Conversely every string Lark accepts lexes into
    rule tokens, which form a derivation, separated by ignored tokens, whose texts join into
    runs. Deleting the characters of ``A`` from a string gives its tokens' text, which has one
    derivation (plain case), and the runs are then the blocks of ``A`` characters between the
    tokens: each string has exactly one ``(derivation, r0, ..., rk)``. Counting runs by length
    counts each distinct run once (a DFA has one path per string), however many ways the
    ignored terminals can spell it.

Why the regular conditions suffice (some terminal infinite; strict LALR, contextual lexer):

(1) *Longest-match terminals.* Each terminal's regex is one on which Python's ``re.match``
    returns, on any text, the longest prefix of the text in its language, and which parses each
    of its strings one way (``longest_match.py`` decides both for all texts, on an NFA whose
    empty moves are ordered as Python's backtracking tries them, with a shortest counterexample
    when there is one). No look-around, anchor, possessive repeat or flags. Then on any text that
    starts with a string ``s`` of the language, if no string of the language runs past ``s``
    (ensured by (2)), ``re.match`` takes exactly ``s``. ``common.NUMBER`` is such a regex;
    ``/(a|ab)c?/`` (the first alternative wins on ``ab``) and ``/b+?/`` are not. Unambiguity makes
    the regex's parse counts, which the sampler draws by, its string counts.
(2) *No merging.* For terminals ``T`` and ``V`` that one contextual lexer tries (``V = T``
    included), no string of ``V`` is ``t c y`` with ``t`` a string of ``T`` and ``c`` a first
    character of a terminal that can follow ``T`` (FOLLOW over every rule). Decided on the
    product of the two DFAs (``_extends``): a pair of states with ``T`` accepting and a
    ``c``-move of ``V`` into a live state is a counterexample. ``NUMBER NUMBER`` fails here.
(3) *No collision.* For terminals ``V`` before ``T`` in the order in which one of Lark's
    contextual lexers tries them (``lexer.terminals``), no non-empty string of ``V`` is a prefix
    of a string of ``T`` (``_prefix_of``, a DFA product; a string in both, a keyword that is also
    a NAME, is reported as such). Then Lark's keyword folding (``unless``), which needs a string
    terminal whose string is matched by a regex terminal of the same lexer, never applies.
Then at a token ``t`` of ``T`` in a derivation's string, in the lexer of the parser's state:
every terminal ``V`` before ``T`` fails (a match of ``V`` within ``t`` is a prefix of ``t``,
refused by (3); one past ``t`` is ``t`` followed by the next token's first character, or by an
ignorable character which no rule terminal has, refused by (2)), and ``T`` matches exactly
``t`` (by (1), given (2) for ``V = T``). So every derivation's string lexes to its own tokens,
and the ignore-separable argument (a)-(c) above holds unchanged with the alphabet ``B`` of the
rule terminals taken from their DFAs. A string has one ``(derivation, runs)``, and its tokens'
texts are strings of their terminals: counting each terminal's distinct strings by length from
its DFA gives string counts. Lark's ``unless`` keywords are refused, not emulated.

Soundness rests on interegular reading each pattern as Python's ``re`` does; the constructs
where they differ are refused (the Unicode classes, negation, look-arounds, anchors, possessive
repeats, case-insensitive letters, which Python also matches with non-ASCII characters).
"""

from __future__ import annotations

import functools
import re
from collections import deque
from dataclasses import dataclass
from typing import Container

import interegular
from interegular.fsm import anything_else

try:  # Python >= 3.11
    import re._parser as _sre_parse
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse  # type: ignore[no-redef]

from ..errors import GumbelseqError
from .first_token import FirstToken
from .grammar import Grammar, display_name
from .longest_match import NotAnalysable, ambiguous_match, short_match, what_re_takes
from .regex import RegexLanguage

#: Largest total number of terminal strings the pairwise check enumerates (json's STRING
#: terminal, the largest among the built-ins, has 18,279).
MAX_TERMINAL_STRINGS = 200_000


#: Characters that Python's ``re`` matches case-insensitively with a non-ASCII character too
#: (``i`` with U+0130 and U+0131, ``k`` with the Kelvin sign, ``s`` with the long s): found by
#: trying every code point against every printable ASCII character under ``re.IGNORECASE``.
_FOLDS_BEYOND_ASCII = frozenset("iIkKsS")


@dataclass(frozen=True)
class IgnoreRuns:
    """The runs of ignorable text of an ignore-separable grammar: the strings of ``I*``, where
    ``I`` is every string of every ``%ignore``d terminal, as a minimal DFA over explicit characters.

    State 0 is the start and the only accepting state (the grammar is right unitary), so a run
    is complete exactly when the DFA is back at 0. ``step[q]`` maps a character to the next
    state; a character missing there continues no run.
    """

    terminals: tuple[str, ...]  # the ignored terminals, as the user wrote them
    step: tuple[dict[str, int], ...]

    @property
    def chars(self) -> frozenset[str]:
        """Every character of every ignorable string."""
        return frozenset(c for row in self.step for c in row)

    def counts(self, max_len: int) -> list[int]:
        """Number of distinct runs of each length ``0..max_len`` (the empty run is one)."""
        out = [1]
        vec = {0: 1}  # state -> runs of the current length that reach it
        for _ in range(max_len):
            nxt: dict[int, int] = {}
            for q, k in vec.items():
                for r in self.step[q].values():
                    nxt[r] = nxt.get(r, 0) + k
            vec = nxt
            out.append(vec.get(0, 0))
        return out

    def to_end(self, chars: Container[str]) -> list[float]:
        """Per state, the fewest characters (from ``chars``) that complete the run; inf if none."""
        best = [float("inf")] * len(self.step)
        best[0] = 0
        # Backward breadth-first search from state 0 over the edges that ``chars`` allow.
        back: list[list[int]] = [[] for _ in self.step]
        for q, row in enumerate(self.step):
            for c, r in row.items():
                if c in chars:
                    back[r].append(q)
        queue = deque([0])
        while queue:
            r = queue.popleft()
            for q in back[r]:
                if best[q] == float("inf"):
                    best[q] = best[r] + 1
                    queue.append(q)
        return best


def exactness(grammar: Grammar) -> str | None:
    """``None`` when counts of ``grammar``'s derivations (with runs of ignorable text
    interleaved, for an ignore-separable grammar: see ``ignore_runs``) are string counts of
    Lark's language; otherwise the first reason they may not be (one line). Cached on the
    grammar."""
    cache = grammar._analysis
    if "exactness" not in cache:
        cache["exactness"] = _analyse(grammar)
    return cache["exactness"]


def terminal_strings(grammar: Grammar) -> dict[str, str]:
    """Every string of every terminal the rules use, mapped to its terminal, for a grammar whose
    ``exactness`` holds (call that first; empty otherwise)."""
    exactness(grammar)
    return grammar._analysis.get("terminal_strings", {})


def ignore_runs(grammar: Grammar) -> IgnoreRuns | None:
    """The runs of ignorable text of an exact grammar that ``%ignore``s something; ``None`` for
    a grammar without ``%ignore`` or one whose ``exactness`` fails."""
    if exactness(grammar) is not None:
        return None
    return grammar._analysis.get("ignore_runs")


def _analyse(grammar: Grammar) -> str | None:
    if grammar.algorithm != "lalr":
        return "the grammar is not strict LALR(1) (parsed with Earley): a string may have several derivations"
    if grammar._fast is None:
        return "the parser has lexer callbacks or a post-lexer, which this analysis does not model"
    parser = grammar.parser
    used = {s.name for r in parser.rules for s in r.expansion if s.is_term}
    if any(_infinite(t) for t in parser.terminals if t.name in used):
        # Infinitely many strings: the pairwise checks below cannot enumerate them; the regular
        # class decides the same questions on automata instead.
        return _analyse_regular(grammar, used)
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
        term_chars: set[str] = set()
        for chars in fsm.strings():
            if not all(isinstance(c, str) for c in chars):
                return f"terminal {term.name} matches characters outside a finite set"
            s = "".join(chars)
            other = strings.get(s)
            if other is not None:
                return f"{s!r} is both a {other} and a {term.name}"
            strings[s] = term.name
            firsts.add(s[:1])
            term_chars.update(s)
            by_length[len(s)] = by_length.get(len(s), 0) + 1
        folds = _case_folding(term.pattern.to_regexp(), term.pattern.flags, term_chars)
        if folds:
            return f"terminal {term.name} {folds}"
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
            what = "nothing" if read is None else f"{display_name(parser, read[0])} {read[1]!r}"
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
    if parser.ignore_tokens:
        runs = _ignore_runs(grammar)
        if isinstance(runs, str):
            return runs
        token_chars: dict[str, str] = {}  # a character of a rule terminal string -> that string
        for s in strings:
            for c in s:
                token_chars.setdefault(c, s)
        shared = sorted(runs.chars & token_chars.keys())
        if shared:
            c = shared[0]
            t = token_chars[c]
            return (
                f"the %ignore'd {' | '.join(runs.terminals)} can match {c!r}, which the"
                f" {strings[t]} {t!r} contains: ignorable text could merge with or split a token"
            )
        grammar._analysis["ignore_runs"] = runs
    grammar._analysis["terminal_strings"] = strings
    return None


@dataclass(frozen=True)
class TerminalDFA:
    """The strings of one terminal as a DFA over explicit characters, live states only (each
    reachable and able to reach an accepting one), so every path spells a prefix of a string."""

    name: str
    initial: int
    finals: frozenset[int]
    step: dict[int, dict[str, int]]

    @property
    def chars(self) -> frozenset[str]:
        """Every character of every string of the terminal."""
        return frozenset(c for row in self.step.values() for c in row)

    def counts(self, max_len: int) -> list[int]:
        """Number of distinct strings of each length ``0..max_len`` (one DFA path per string)."""
        out = []
        vec = {self.initial: 1}
        for n in range(max_len + 1):
            if n:
                nxt: dict[int, int] = {}
                for q, k in vec.items():
                    for r in self.step[q].values():
                        nxt[r] = nxt.get(r, 0) + k
                vec = nxt
            out.append(sum(k for q, k in vec.items() if q in self.finals))
        return out


def terminal_dfas(grammar: Grammar) -> dict[str, TerminalDFA]:
    """Each used terminal's DFA, for an exact grammar with infinitely many terminal strings (the
    regular class); empty for every other grammar (``terminal_strings`` has its strings then)."""
    if exactness(grammar) is not None:
        return {}
    return grammar._analysis.get("terminal_dfas", {})


def _infinite(term) -> bool:  # noqa: ANN001
    """Whether interegular reads ``term`` as infinitely many strings (False when it cannot read
    it at all: the finite analysis then gives the reason)."""
    try:
        len(interegular.parse_pattern(term.pattern.to_regexp()).to_fsm())
    except OverflowError:
        return True
    except Exception:  # noqa: BLE001
        return False
    return False


def _analyse_regular(grammar: Grammar, used: set[str]) -> str | None:
    """The regular class (some terminal has infinitely many strings): the same conditions as the
    finite analysis, decided on each terminal's DFA instead of its strings."""
    parser = grammar.parser
    dfas: dict[str, TerminalDFA] = {}
    for term in sorted((t for t in parser.terminals if t.name in used), key=lambda t: t.name):
        name = display_name(parser, term.name)
        regexp, flags = term.pattern.to_regexp(), term.pattern.flags
        wide = _unicode_construct(regexp, flags)
        if wide is not None:
            return (
                f"terminal {name} uses {wide}, which Lark (Python's re) matches for Unicode"
                " characters too, while counts are over ASCII"
            )
        if flags:
            what = "is case-insensitive" if "i" in flags else f"has the regex flags {''.join(sorted(flags))}"
            return f"terminal {name} {what}, which this analysis of infinite terminals does not model"
        try:
            RegexLanguage(regexp, flags, max_len=1)  # refuses look-arounds, anchors, possessives...
        except GumbelseqError as e:
            return f"terminal {name}: {e}"
        why = _not_longest_match(regexp)
        if why is not None:
            return f"terminal {name} {why}"
        try:
            machine = _explicit(interegular.parse_pattern(regexp).to_fsm())
        except Exception:  # noqa: BLE001 - a regex interegular cannot take
            return f"terminal {name}'s regular expression is beyond this analysis"
        if machine is None:
            return f"terminal {name} matches characters outside a finite set"
        initial, finals, step = machine
        if initial in finals:  # pragma: no cover - Lark refuses zero-width terminals
            return f"terminal {name} matches the empty string"
        dfas[term.name] = TerminalDFA(term.name, initial, finals, step)
    # The terminals each of Lark's contextual lexers tries, in its order (per parser state).
    lexer = grammar.parser.parser.lexer
    states = getattr(lexer, "lexers", None)  # a basic lexer (no per-state lexers) tries them all
    lexers = {id(x): x for x in states.values()}.values() if states else [getattr(lexer, "root_lexer", lexer)]
    orders = {tuple(t.name for t in x.terminals if t.name in dfas) for x in lexers}
    show = functools.partial(display_name, parser)
    # Two passes so that a shared string (the worse collision) is the reason when there is one.
    for whole_only in (True, False):
        for order in sorted(orders):
            for i, first in enumerate(order):
                for later in order[i + 1 :]:
                    hit = _prefix_of(dfas[first], dfas[later], whole_only)
                    if hit is None:
                        continue
                    w, whole = hit
                    if whole:
                        return (
                            f"{w!r} is both a {show(first)} and a {show(later)}, which can come at the"
                            " same place: Lark's lexer reads it as one of them only"
                        )
                    return (
                        f"the {show(first)} {w!r} is a proper prefix of a {show(later)}, which can come"
                        f" at the same place: Lark's lexer, trying {show(first)} first, cuts it short"
                    )
    follow = _follow_terminals(grammar)
    firsts = {n: set(d.step[d.initial]) for n, d in dfas.items()}
    for t in sorted(dfas):
        nexts = {c: u for u in sorted(follow.get(t, ()), reverse=True) for c in firsts.get(u, ())}
        if not nexts:
            continue
        tried = sorted({v for order in orders if t in order for v in order})
        for v in tried:
            hit = _extends(dfas[t], dfas[v], nexts.keys())
            if hit is not None:
                short, long = hit
                c = long[len(short)]
                return (
                    f"a {show(t)} {short!r} followed by a {show(nexts[c])} starting with {c!r} can be"
                    f" read as the {show(v)} {long!r}"
                )
    if parser.ignore_tokens:
        runs = _ignore_runs(grammar)
        if isinstance(runs, str):
            return runs
        for n in sorted(dfas):
            shared = sorted(runs.chars & dfas[n].chars)
            if shared:
                return (
                    f"the %ignore'd {' | '.join(runs.terminals)} can match {shared[0]!r}, which"
                    f" strings of {show(n)} contain: ignorable text could merge with or split a token"
                )
        grammar._analysis["ignore_runs"] = runs
    grammar._analysis["terminal_dfas"] = dfas
    return None


def _not_longest_match(regexp: str) -> str | None:
    """Why Python's ``re`` may not take the longest match of ``regexp``, or parse a string of it
    two ways (a shortest example); None when neither can happen (``longest_match.py``)."""
    try:
        short = short_match(regexp)
        if short is None:
            twice = ambiguous_match(regexp)
            return None if twice is None else f"has a regular expression that matches {twice!r} in two ways"
    except NotAnalysable as e:
        return f"has {e}, beyond the analysis of Python's matching"
    lazy = _has_lazy_repeat(_sre_parse.parse(regexp))
    how = "a lazy repeat stops as early as it can" if lazy else "Python's re takes the first alternative that matches"
    return f"is a regex that Python's re cuts short: {what_re_takes(regexp, short)} ({how}, not the longest match)"


def _has_lazy_repeat(items) -> bool:  # noqa: ANN001 - sre_parse items
    for op, av in items:
        op = str(op)
        if op == "MIN_REPEAT":
            return True
        if op == "SUBPATTERN" and _has_lazy_repeat(av[-1]):
            return True
        if op == "BRANCH" and any(_has_lazy_repeat(b) for b in av[1]):
            return True
        if op.endswith("_REPEAT") and _has_lazy_repeat(av[2]):
            return True
    return False


def _prefix_of(a: TerminalDFA, b: TerminalDFA, whole_only: bool = False) -> tuple[str, bool] | None:
    """A non-empty string of ``a`` that is a prefix of some string of ``b`` (shortest first; with
    ``whole_only``, one that is a string of ``b``), with whether it is a string of ``b`` itself;
    None if there is none. Breadth first over pairs of states (every state of ``b`` is live, so
    reaching one is being a prefix)."""
    start = (a.initial, b.initial)
    seen = {start: ""}
    queue = deque([start])
    while queue:
        p, q = queue.popleft()
        w = seen[(p, q)]
        if w and p in a.finals and (q in b.finals or not whole_only):
            return w, q in b.finals
        for c in sorted(a.step[p]):
            r = b.step[q].get(c)
            if r is not None and (a.step[p][c], r) not in seen:
                seen[(a.step[p][c], r)] = w + c
                queue.append((a.step[p][c], r))
    return None


def _extends(t: TerminalDFA, v: TerminalDFA, chars) -> tuple[str, str] | None:  # noqa: ANN001
    """``(s, s + c + y)``: a string ``s`` of ``t`` and a string of ``v`` that runs past it with a
    character ``c`` of ``chars``; None if none. Breadth first over pairs of states, then the
    shortest way for ``v`` to finish."""
    start = (t.initial, v.initial)
    seen = {start: ""}
    queue = deque([start])
    while queue:
        p, q = queue.popleft()
        w = seen[(p, q)]
        if p in t.finals:
            for c in sorted(chars):
                r = v.step[q].get(c)
                if r is not None:
                    return w, w + c + _shortest_from(v, r)
        for c in sorted(t.step[p]):
            r = v.step[q].get(c)
            if r is not None and (t.step[p][c], r) not in seen:
                seen[(t.step[p][c], r)] = w + c
                queue.append((t.step[p][c], r))
    return None


def _shortest_from(d: TerminalDFA, q: int) -> str:
    """The shortest string that takes ``d`` from the live state ``q`` to an accepting state."""
    seen = {q: ""}
    queue = deque([q])
    while queue:
        p = queue.popleft()
        if p in d.finals:
            return seen[p]
        for c in sorted(d.step[p]):
            r = d.step[p][c]
            if r not in seen:
                seen[r] = seen[p] + c
                queue.append(r)
    raise AssertionError("unreachable: every state is live")  # pragma: no cover


def _ignore_runs(grammar: Grammar) -> IgnoreRuns | str:
    """The minimal DFA of the runs of ignorable text, or why there is none this proof can use."""
    parser = grammar.parser
    by_name = {t.name: t for t in parser.terminals}
    names = sorted(parser.ignore_tokens)
    shown = tuple(display_name(parser, n) for n in names)
    # Each ignored terminal as an explicit DFA: (initial, finals, {state: {char: state}}),
    # live states only (reachable and able to reach a final state).
    machines = []
    for name, label in zip(names, shown):
        term = by_name.get(name)
        if term is None:  # pragma: no cover - Lark keeps every ignored terminal
            return f"the %ignore'd {label} has no definition this analysis can read"
        regexp, flags = term.pattern.to_regexp(), term.pattern.flags
        what = f"the %ignore'd {label}"
        wide = _unicode_construct(regexp, flags)
        if wide is not None:
            return (
                f"{what} uses {wide}, which Lark (Python's re) matches for Unicode characters too,"
                " while counts are over ASCII"
            )
        try:
            # The constructs interegular would read differently from Python's re (look-arounds,
            # anchors, possessive repeats, atomic groups, back-references) are refused here.
            RegexLanguage(regexp, flags, max_len=1)
        except GumbelseqError as e:
            return f"{what}: {e}"
        try:
            fsm = interegular.parse_pattern(regexp).to_fsm()
        except Exception:  # noqa: BLE001 - a regex interegular cannot take
            return f"{what}'s regular expression is beyond this analysis"
        machine = _explicit(fsm)
        if machine is None:
            return f"{what} matches characters outside a finite set"
        chars = {c for row in machine[2].values() for c in row}
        folds = _case_folding(regexp, flags, chars)
        if folds:
            return f"{what} {folds}"
        machines.append(machine)
    runs, accepts = _star_of_union(machines)
    witness = _not_right_unitary(runs, accepts)
    if witness is not None:
        u, w = witness
        return (
            f"the ignorable text {u + w!r} starts with the ignorable {u!r} but the rest {w!r} is not"
            f" ignorable: Lark's lexer, which never backtracks, may not read such runs whole"
            f" ({' | '.join(shown)})"
        )
    return IgnoreRuns(shown, runs)


def _explicit(fsm) -> tuple[int, frozenset, dict[int, dict[str, int]]] | None:  # noqa: ANN001
    """An interegular FSM as ``(initial, finals, transitions)`` over explicit characters, live
    states only; None if a live transition is on ``anything_else`` (characters outside a finite
    set)."""
    forward: dict = {q: set() for q in fsm.states}
    backward: dict = {q: set() for q in fsm.states}
    for q, row in fsm.map.items():
        for r in row.values():
            forward[q].add(r)
            backward[r].add(q)

    def closure(seeds, edges) -> set:  # noqa: ANN001
        seen, todo = set(seeds), list(seeds)
        while todo:
            for r in edges[todo.pop()]:
                if r not in seen:
                    seen.add(r)
                    todo.append(r)
        return seen

    live = closure([fsm.initial], forward) & closure(fsm.finals, backward)
    delta: dict[int, dict[str, int]] = {q: {} for q in live}
    for q in live:
        for index, r in fsm.map.get(q, {}).items():
            if r not in live:
                continue
            for symbol in fsm.alphabet.by_transition[index]:
                if symbol is anything_else:
                    return None
                delta[q][symbol] = r
    return fsm.initial, frozenset(fsm.finals & live), delta


def _star_of_union(machines: list) -> tuple[tuple[dict[str, int], ...], frozenset[int]]:
    """The minimal DFA of ``(L1 | L2 | ...)*`` for explicit DFAs of non-empty languages ``Li``:
    subset construction (state 0 the start), then Moore's partition refinement. Returns the
    transitions and the accepting states."""
    boundary = ("end",)  # between two ignorable strings: a run may stop here

    def move(subset: frozenset, c: str) -> frozenset:
        out = set()
        for item in subset:
            starts = [(k, m[0]) for k, m in enumerate(machines)] if item == boundary else [item]
            for k, q in starts:
                r = machines[k][2].get(q, {}).get(c)
                if r is not None:
                    out.add((k, r))
                    if r in machines[k][1]:
                        out.add(boundary)
        return frozenset(out)

    chars = sorted({c for m in machines for row in m[2].values() for c in row})
    start = frozenset({boundary})
    number = {start: 0}
    subsets = [start]
    step: list[dict[str, int]] = []
    for subset in subsets:  # grows while it is walked: a breadth-first numbering
        row = {}
        for c in chars:
            nxt = move(subset, c)
            if nxt:
                if nxt not in number:
                    number[nxt] = len(subsets)
                    subsets.append(nxt)
                row[c] = number[nxt]
        step.append(row)
    # Moore: split states by acceptance, then by the classes their characters lead to (-1: no run).
    accepting = [boundary in sub for sub in subsets]
    cls = [int(a) for a in accepting]
    while True:
        signature = [(cls[q], tuple(cls[step[q][c]] if c in step[q] else -1 for c in chars)) for q in range(len(step))]
        ids: dict = {}
        new = [ids.setdefault(sig, len(ids)) for sig in signature]
        if len(ids) == len(set(cls)):
            break
        cls = new
    # Renumber the classes breadth first from the start's, so the start is 0.
    order = {cls[0]: 0}
    queue = deque([0])
    rep = {cls[0]: 0}
    while queue:
        q = queue.popleft()
        for c in chars:
            r = step[q].get(c)
            if r is not None and cls[r] not in order:
                order[cls[r]] = len(order)
                rep[cls[r]] = r
                queue.append(r)
    minimal: list[dict[str, int]] = [{} for _ in order]
    for k, q in rep.items():
        minimal[order[k]] = {c: order[cls[r]] for c, r in step[q].items()}
    accepts = frozenset(order[cls[q]] for q in range(len(step)) if accepting[q])
    return tuple(minimal), accepts


def _not_right_unitary(step: tuple[dict[str, int], ...], accepts: frozenset[int]) -> tuple[str, str] | None:
    """``(u, w)`` with ``u`` and ``uw`` runs but ``w`` not one, or None when the start is the only
    accepting state of the minimal DFA (then no such pair exists)."""
    others = accepts - {0}
    if not others:
        return None
    # The shortest run u reaching another accepting state q (breadth first from the start).
    path: dict[int, str] = {0: ""}
    queue = deque([0])
    while queue:
        q = queue.popleft()
        for c in sorted(step[q]):
            r = step[q][c]
            if r not in path:
                path[r] = path[q] + c
                queue.append(r)
    q = min(others, key=lambda x: (len(path[x]), path[x]))
    # The shortest w that q accepts and the start does not: L(q) contains L(start) (u w is a run
    # for every run w), and they differ because the DFA is minimal. -1 is the dead state.
    seen = {(q, 0): ""}
    pairs = deque([(q, 0)])
    while pairs:
        a, b = pairs.popleft()
        w = seen[(a, b)]
        if a in accepts and (b < 0 or b not in accepts):
            return path[q], w
        for c in sorted(step[a]):
            nxt = (step[a][c], step[b].get(c, -1) if b >= 0 else -1)
            if nxt not in seen:
                seen[nxt] = w + c
                pairs.append(nxt)
    return None  # pragma: no cover - unreachable for a minimal DFA


def _case_folding(pattern: str, flags, chars: set[str]) -> str | None:  # noqa: ANN001
    """Why ``pattern`` matches more than ``chars`` under Python's case-insensitive rule (a
    sentence), or None: with the ``i`` flag and no ``a`` flag, ``re`` also matches U+0130 and
    U+0131 for ``i``, the Kelvin sign for ``k``, the long s for ``s``; and for non-ASCII
    characters its rules are beyond what the counts model."""
    try:
        parsed = _sre_parse.parse(pattern)
    except Exception:  # noqa: BLE001 - reported elsewhere
        return None
    state_flags = getattr(getattr(parsed, "state", None), "flags", 0)
    if state_flags & re.ASCII or "a" in tuple(flags or ()):
        return None
    insensitive = bool(state_flags & re.IGNORECASE) or "i" in tuple(flags or ())
    if not insensitive:
        insensitive = re.search(r"\(\?[a-zA-Z]*i[a-zA-Z-]*[:)]", pattern) is not None
    if not insensitive:
        return None
    beyond = sorted(c for c in chars if c in _FOLDS_BEYOND_ASCII or (ord(c) > 127 and c.lower() != c.upper()))
    if not beyond:
        return None
    return (
        f"is case-insensitive over {beyond[0]!r}, which Python's re then also matches with a"
        " non-ASCII letter, while counts are over ASCII"
    )


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
                walk(av if name == "ATOMIC_GROUP" else av[-1])  # an atomic group's value is its pattern

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
