"""Exact counting of a grammar's language by length, and the two ways to draw from it.

``Language(grammar, max_len)`` tabulates, for every nonterminal and every length n <= max_len,
the number of derivations that produce a string of exactly n characters (Python integers, so
nothing overflows). Terminals are counted through their regular expressions (``regex.py``), so
multi-character and regex terminals count the same way single characters do.

From these tables come:

* ``count(n)`` / ``count_upto(L)``: the number of strings of Lark's language by length, exactly
  when ``exactness.py`` proves it (``Language.exact``; otherwise ``Language.reason`` says why not,
  and the counts are derivation counts: an ambiguous grammar, infinite terminals, tokens that
  Lark's lexer can read differently, ``%ignore`` that this analysis does not cover). For a
  grammar without ``%ignore`` these are the derivation counts. For an *ignore-separable*
  grammar (``%ignore`` whose text can never merge with or split a token) each string is one
  derivation with a run of ignorable text before the first token and after every token, so
  the counts are those of the grammar in which every terminal ``T`` is replaced by ``T R``,
  times ``R`` for the leading run, where ``R`` counts the runs by length (a DFA: each distinct
  run once). For the regular class (terminals with infinitely many strings), each terminal's
  series is its distinct strings by length, from its DFA.
* ``derivations(n)``: derivation counts (without ignorable text), which drawing uses.
* ``derive_uniform`` / ``derive_pcfg``: a derivation as its ``(terminal, text)`` tokens;
  ``sampler.py`` turns tokens into text and keeps only what Lark reads back as those tokens.
* ``sample_uniform``: the recursive method (Flajolet, Zimmermann & Van Cutsem 1994): choose a
  length with weight derivations(n), then each rule and each split of the length by the number
  of derivations below it. Every derivation of length <= L is equally likely, with no rejection.
* ``sample_pcfg``: a random derivation where each alternative of a rule is equally likely
  among those that can still fit in the remaining length budget (lengths of later symbols are
  reserved from their minimum lengths), so the bound holds without rejection.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass

from ..errors import GumbelseqError, UnsupportedGrammarError
from .exactness import exactness, ignore_runs, terminal_dfas
from .grammar import Grammar
from .regex import RegexLanguage, bit_source, pick_table

Token = tuple[str, str]  # (terminal name, its text)

MODES = ("uniform", "pcfg")

#: Building the tables takes time about cubic in ``max_len`` (L*L table cells, integers of about
#: L bits). Measured for the built-in grammars (arith, parens, json, dyck) at L = 50, 100, 200,
#: 400, 800, 1600: json, the slowest, 0.03 / 0.08 / 0.24 / 1.06 / 6.2 / 62 s; arith 0.10 s and
#: dyck 0.14 s at 400. ``score`` counts exactly only up to this bound (about a second at most
#: for the built-ins) and reports coverage as null above it.
COUNT_MAX_LEN = 400

#: The hard bound on ``Language(grammar, max_len)`` (so ``gumbelseq data --max-len``): above
#: it the tables would take minutes to hours (json: ~12 s to count at 1000, then ~0.08 s per
#: uniform string) and, far above, more memory than there is.
LANGUAGE_MAX_LEN = 1000


class LengthLimitError(GumbelseqError):
    """A length bound past what exact counting can do in reasonable time and memory."""


@dataclass(frozen=True, eq=False)  # identity: fast to hash as a table key, and two equal rules stay two
class _Rule:
    origin: str
    symbols: tuple[str, ...]


class Language:
    """Length-indexed derivation counts of ``grammar`` up to ``max_len`` characters."""

    def __init__(self, grammar: Grammar, max_len: int) -> None:
        if max_len < 0:
            raise ValueError("max_len must be >= 0")
        if max_len > LANGUAGE_MAX_LEN:
            raise LengthLimitError(
                f"max length {max_len} is over the limit of {LANGUAGE_MAX_LEN} for counting and"
                " drawing from a grammar (the work grows about as the cube of the length)"
            )
        self.grammar = grammar
        self.max_len = max_len
        #: Why counts may not be string counts of Lark's language (None: they are).
        self.reason: str | None = exactness(grammar)
        self.exact = self.reason is None
        self._terminals: dict[str, RegexLanguage] = {}
        # Only terminals the rules use: an %ignore-only terminal may be any regex Lark takes.
        used = {s.name for r in grammar.rules for s in r.expansion if s.is_term}
        for term in grammar.terminals:
            if term.name not in used:
                continue
            try:
                self._terminals[_plain(term.name)] = RegexLanguage(
                    term.pattern.to_regexp(), term.pattern.flags, max_len=max_len
                )
            except UnsupportedGrammarError as e:
                raise UnsupportedGrammarError(
                    f"{grammar.path}: terminal {term.name} ({term.pattern.raw or term.pattern.value}): {e}"
                ) from None
        self._rules: dict[str, list[_Rule]] = {}
        for rule in grammar.rules:
            r = _Rule(_plain(rule.origin.name), tuple(_plain(s.name) for s in rule.expansion))
            self._rules.setdefault(r.origin, []).append(r)
        for rules in self._rules.values():
            for r in rules:
                for s in r.symbols:
                    if s not in self._terminals and s not in self._rules:
                        raise UnsupportedGrammarError(
                            f"{grammar.path}: symbol {s} has no definition the sampler can use"
                            " (a %declare'd terminal?)"
                        )
        self._tabulate()

    # -- counting ---------------------------------------------------------------------------

    def _sym(self, name: str) -> list[int]:
        t = self._terminals.get(name)
        return t._counts if t is not None else self._nt[name]

    def _fixed_point(self, terminals: dict[str, list[int]]) -> tuple[dict[str, list[int]], dict[_Rule, list[list[int]]]]:
        """Per nonterminal, the number of derivations of each length when each terminal has the
        counts ``terminals`` gives; and per rule, the same for each suffix of its symbols."""
        L = self.max_len
        nt: dict[str, list[int]] = {a: [0] * (L + 1) for a in self._rules}
        # suffix[rule][i][n]: derivations of rule.symbols[i:] producing exactly n characters.
        suffix: dict[_Rule, list[list[int]]] = {}
        for rules in self._rules.values():
            for r in rules:
                tabs = [[0] * (L + 1) for _ in range(len(r.symbols) + 1)]
                tabs[-1][0] = 1
                suffix[r] = tabs
        all_rules = list(suffix)
        limit = len(self._rules) + 2
        for n in range(L + 1):
            # At a fixed length, a nonterminal can depend on another at the same length only
            # through symbols that derive the empty string; iterate those to a fixed point.
            # Without a cycle of such dependencies, |nonterminals| + 1 rounds settle it.
            for _ in range(limit + 1):
                for r in all_rules:
                    tabs = suffix[r]
                    for i in range(len(r.symbols) - 1, -1, -1):
                        name = r.symbols[i]
                        c = terminals.get(name) or nt[name]
                        nxt = tabs[i + 1]
                        tabs[i][n] = sum(c[m] * nxt[n - m] for m in range(n + 1) if c[m])
                changed = False
                for a, rules in self._rules.items():
                    v = sum(suffix[r][0][n] for r in rules)
                    if v != nt[a][n]:
                        nt[a][n] = v
                        changed = True
                if not changed:
                    break
            else:
                growing = sorted(a for a in self._rules if nt[a][n])
                raise UnsupportedGrammarError(
                    f"{self.grammar.path}: infinitely many derivations of length {n} "
                    f"(a cycle of rules that consume no input, through {', '.join(growing[:5])})"
                )
        return nt, suffix

    def _tabulate(self) -> None:
        L = self.max_len
        self._nt, self._suffix = self._fixed_point({name: t._counts for name, t in self._terminals.items()})
        start = self.grammar.start
        if start not in self._nt:
            raise UnsupportedGrammarError(f"{self.grammar.path}: no rule named {start!r}")
        #: Derivations by length: the weights of ``derive_uniform``'s choice of a length.
        self._derivations: list[int] = list(self._nt[start])
        # String counts of each terminal: for the regular class (infinite terminals), from its
        # DFA, each distinct string once (exactness.py); the regex's derivation counts otherwise
        # (equal for every exact grammar: its terminal regexes are unambiguous).
        dfas = terminal_dfas(self.grammar)
        strings = {name: dfas[name].counts(L) if name in dfas else t._counts for name, t in self._terminals.items()}
        same = all(strings[name] == t._counts for name, t in self._terminals.items())
        runs = ignore_runs(self.grammar)
        if runs is None:
            #: Strings of Lark's language by length (derivations when ``exact`` is False).
            self.counts: list[int] = self._derivations if same else self._fixed_point(strings)[0][start]
        else:
            # Ignore-separable (exactness.py): every token is followed by a run of ignorable
            # text and one run leads; a string is one derivation and its runs, so counts are
            # the same fixed point with each terminal's series times the runs' series.
            r = runs.counts(L)
            nt, _ = self._fixed_point({name: _times(c, r) for name, c in strings.items()})
            self.counts = _times(r, nt[start])
        self._min_len = {a: next((n for n, c in enumerate(t) if c), None) for a, t in self._nt.items()}
        for name, t in self._terminals.items():
            self._min_len[name] = next((n for n, c in enumerate(t.counts) if c), None)
        # Per rule, the minimum length of each suffix of its symbols (huge if underivable).
        unreachable = self.max_len + 1
        self._reserve: dict[_Rule, tuple[int, ...]] = {}
        for r in self._suffix:
            acc, res = 0, [0]
            for s in reversed(r.symbols):
                m = self._min_len[s]
                acc += unreachable if m is None else m
                res.append(acc)
            self._reserve[r] = tuple(reversed(res))
        # The choices sampling makes, built on first use, each as (total, its bit length,
        # cumulative weights, values): one draw below the total (``regex.bit_source``) and a
        # bisection instead of a pass over big integers. Per nonterminal, indexed by length:
        # its rules; per rule and symbol, indexed by the length left: that symbol's length.
        # One table per symbol, indexed by length: for a nonterminal, the pick of its rule (a
        # 4-tuple whose total is an int); for a terminal, (None, units, text, program) from
        # RegexLanguage.plan. Filled on first use.
        self._rule_tab: dict[str, list] = {a: [None] * (L + 1) for a in self._rules}
        for name in self._terminals:
            self._rule_tab[name] = [None] * (L + 1)
        self._split_tab: dict[_Rule, list[list]] = {
            r: [[None] * (L + 1) for _ in r.symbols] for rules in self._rules.values() for r in rules
        }
        self._length_cum: dict[int, tuple] = {}

    def _rule_entry(self, sym: str, length: int) -> tuple:
        term = self._terminals.get(sym)
        if term is not None:
            e = self._rule_tab[sym][length] = (None, *term.plan(length))
            return e
        rules = self._rules[sym]
        pairs = []
        for r in rules:
            w = self._suffix[r][0][length]
            if len(r.symbols) == 1 and w:  # its one symbol's length is forced: keep the draw at hand
                t, k, _, _ = self._split_tab[r][0][length] or self._split_entry(r, 0, length)
                pairs.append(((r.symbols[0], t, k), w))
            else:
                pairs.append(((r.symbols, self._split_tab[r], r), w))
        e = self._rule_tab[sym][length] = pick_table(pairs)
        return e

    def _split_entry(self, r: _Rule, i: int, rest: int) -> tuple:
        c = self._sym(r.symbols[i])
        nxt = self._suffix[r][i + 1]
        e = self._split_tab[r][i][rest] = pick_table((m, c[m] * nxt[rest - m]) for m in range(rest + 1))
        return e

    def count(self, n: int) -> int:
        """Number of strings of Lark's language of exactly ``n`` characters (ignorable text
        included) when ``exact``; otherwise of derivations."""
        return self.counts[n] if 0 <= n <= self.max_len else 0

    def count_upto(self, max_len: int | None = None) -> int:
        """Number of strings (as ``count``) of length <= ``max_len`` (default: the table's bound)."""
        top = self.max_len if max_len is None else min(max_len, self.max_len)
        return sum(self.counts[: top + 1])

    def derivations(self, n: int) -> int:
        """Number of derivations of exactly ``n`` characters (no ignorable text): what
        ``derive_uniform`` draws from. Equal to ``count(n)`` for a grammar without ``%ignore``."""
        return self._derivations[n] if 0 <= n <= self.max_len else 0

    # -- uniform sampling ------------------------------------------------------------------

    def sample_uniform(self, rng: random.Random, min_len: int = 0) -> str:
        """One derivation's string, uniform over derivations of length ``min_len``..``max_len``
        (not checked against Lark's lexer: see ``sampler.py`` for strings that are)."""
        return "".join(text for _, text in self.derive_uniform(rng, min_len))

    def derive_uniform(self, rng: random.Random, min_len: int = 0) -> list[Token]:
        """A derivation's tokens, uniform over derivations of length ``min_len``..``max_len``."""
        e = self._length_cum.get(min_len)
        if e is None:
            weights = self._derivations[min_len:]
            if not any(weights):
                raise UnsupportedGrammarError(
                    f"{self.grammar.path}: no string of length {min_len}..{self.max_len} in this language"
                )
            e = self._length_cum[min_len] = pick_table(enumerate(weights))
        gb = bit_source(rng)
        t, k, cum, values = e
        r = gb(k)
        while r >= t:
            r = gb(k)
        return self._expand_bits(self.grammar.start, min_len + values[bisect_right(cum, r)], gb)

    def _expand(self, symbol: str, n: int, rng: random.Random) -> list[Token]:
        return self._expand_bits(symbol, n, bit_source(rng))

    def _expand_bits(self, symbol: str, n: int, gb) -> list[Token]:  # noqa: ANN001 - regex.bit_source
        # An explicit stack: left-recursive grammars make derivations as deep as they are long.
        # Every choice is one draw below its total, inlined (see regex.bit_source): the same
        # values as rng.randrange(total), so draws stay those of earlier versions. Even a forced
        # choice draws from the stream, for the same reason.
        out: list[Token] = []
        append = out.append
        stack: list[tuple[str, int]] = [(symbol, n)]
        pop, push = stack.pop, stack.append
        terminals, rule_tab = self._terminals, self._rule_tab
        while stack:
            sym, length = pop()
            while True:  # follow the leftmost child at once rather than through the stack
                t, k, cum, values = rule_tab[sym][length] or self._rule_entry(sym, length)
                if t is None:  # a terminal: k draws below 1 then the text cum, or a program
                    if cum is None:
                        cum = terminals[sym].sample_bits(length, gb)
                    elif k == 1:
                        while gb(1):
                            pass
                    else:
                        for _ in range(k):
                            while gb(1):
                                pass
                    append((sym, cum))
                    break
                r = gb(k)
                while r >= t:
                    r = gb(k)
                symbols, splits, rule = values[bisect_right(cum, r)]
                if symbols.__class__ is str:  # one symbol (_rule_entry): its forced length, drawn
                    r = gb(rule)
                    while r >= splits:
                        r = gb(rule)
                    sym = symbols
                    continue
                if not symbols:
                    break
                rest = length
                parts: list[tuple[str, int]] = []
                i = 0
                for s in symbols:
                    t, k, cum, values = splits[i][rest] or self._split_entry(rule, i, rest)
                    r = gb(k)
                    while r >= t:
                        r = gb(k)
                    m = values[bisect_right(cum, r)]
                    parts.append((s, m))
                    rest -= m
                    i += 1
                sym, length = parts[0]
                if i == 2:
                    push(parts[1])
                else:
                    del parts[0]
                    parts.reverse()
                    stack += parts
        return out

    # -- pcfg sampling -----------------------------------------------------------------------

    def sample_pcfg(self, rng: random.Random) -> str:
        """One random derivation's string with equally likely alternatives, bounded by
        ``max_len`` (not checked against Lark's lexer: see ``sampler.py``)."""
        return "".join(text for _, text in self.derive_pcfg(rng))

    def derive_pcfg(self, rng: random.Random) -> list[Token]:
        """A random derivation's tokens, alternatives equally likely among those that fit."""
        start = self.grammar.start
        if self._min_len.get(start) is None:
            raise UnsupportedGrammarError(
                f"{self.grammar.path}: no string of length <= {self.max_len} in this language"
            )
        # Depth guard: past it, finish the subtree with the exact sampler, which always ends.
        # Only grammars whose rules can recurse without consuming input ever get there.
        max_depth = 4 * (self.max_len + 1) * (len(self._rules) + 1)
        out: list[Token] = []
        used = 0
        # Frame: [symbols, next index, chars used when it began, its budget, reserve, depth],
        # where reserve[i] is the minimum length of symbols[i:], kept back for later siblings.
        frames: list[list] = [[(start,), 0, 0, self.max_len, (self._min_len[start], 0), 0]]
        while frames:
            f = frames[-1]
            symbols, i, began, budget, reserve, depth = f
            if i == len(symbols):
                frames.pop()
                continue
            f[1] = i + 1
            sym = symbols[i]
            room = budget - (used - began) - reserve[i + 1]
            term = self._terminals.get(sym)
            if term is not None:
                piece = term.sample(_choose(rng, term._counts[: room + 1]), rng)
                out.append((sym, piece))
                used += len(piece)
            elif depth > max_depth:
                pieces = self._expand(sym, _choose(rng, self._nt[sym][: room + 1]), rng)
                out.extend(pieces)
                used += sum(len(t) for _, t in pieces)
            else:
                fits = [r for r in self._rules[sym] if self._reserve[r][0] <= room]
                r = fits[rng.randrange(len(fits))]
                frames.append([r.symbols, 0, used, room, self._reserve[r], depth + 1])
        return out


def _plain(name: str) -> str:
    """A symbol name as a plain ``str``: Lark's names are often its ``Token``, whose Python-level
    ``__eq__`` would run at every dict look-up and comparison of the tokens drawn."""
    return str.__str__(name)


def _times(a: list[int], b: list[int]) -> list[int]:
    """The product of two count series, cut at their common length."""
    n = min(len(a), len(b))
    return [sum(a[m] * b[k - m] for m in range(k + 1) if a[m]) for k in range(n)]


def _choose(rng: random.Random, weights: list[int]) -> int:
    """Index i with probability weights[i] / sum(weights), exactly, for big integers."""
    total = sum(weights)
    x = rng.randrange(total)
    for i, w in enumerate(weights):
        if x < w:
            return i
        x -= w
    raise AssertionError("unreachable: x < total")
