"""Strings of Lark's language, drawn by checked rejection: ``Sampler(language).draw(rng)``.

A draw is a derivation (``Language.derive_uniform`` or ``derive_pcfg``) written out as text,
kept only when Lark's lexer and parser read that text back as exactly the derivation's tokens
(for an Earley grammar, which has no separate token stream: when ``Lark.parse`` accepts it);
otherwise it is drawn again. So every string is valid, and because a valid string is read as
one token sequence, two kept derivations never give the same string: ``uniform`` stays uniform
over the strings it can give, and ``pcfg`` is the derivation distribution conditioned on that.

How tokens become text depends on ``ignore`` (what to do with the grammar's ``%ignore``d text):

- ``none``: tokens written side by side. Strings are those of Lark's language with no ignorable
  text; tokens that would merge (a keyword then a name) are drawn again.
- ``minimal`` (default): side by side, except that the shortest ignorable text (a space where
  the grammar ignores spaces) goes between two tokens that Lark would otherwise read as
  something else (decided left to right, in the parser's context). Strings are the valid
  strings written that way: uniform over them.
- ``random``: as ``minimal``, plus ignorable text of 1 to 3 characters between tokens with
  probability 1/2 at each boundary. Not uniform over anything simple; it shows a model
  strings with varied spacing.

A grammar with nothing ``%ignore``d writes the same under all three. Ignorable text is never
put before the first token or after the last (files of samples strip trailing spaces), and
never contains a line break (one string per line). The length bound counts it.
"""

from __future__ import annotations

import random
from typing import Callable

from lark.lexer import PatternStr

from ..errors import GumbelseqError, UnsupportedGrammarError
from .first_token import FirstToken
from .language import Language, Token
from .regex import RegexLanguage

IGNORE_MODES = ("none", "minimal", "random")

#: When to give up on a grammar: after at least ``MIN_DRAWS_BEFORE_GIVING_UP`` draws (over the
#: whole call) of which fewer than ``MIN_ACCEPTANCE`` were kept, or ``MAX_REJECTIONS`` draws in a
#: row for one string. Both are far past what a grammar that can be sampled ever needs (at 0.2%
#: acceptance, the chance of 100,000 misses in a row is e^-200), so a seed or ``-n`` never decides
#: whether a grammar can be drawn from.
MAX_REJECTIONS = 100_000
MIN_DRAWS_BEFORE_GIVING_UP = 20_000
MIN_ACCEPTANCE = 1e-4

#: For a grammar proved exact, one draw in this many is still read back (``Sampler._proved``).
PROVED_CHECK_EVERY = 16

#: Longest ignorable text ``random`` inserts at one boundary.
RANDOM_IGNORE_MAX = 3


class Sampler:
    """Checked draws from ``language``: ``mode`` "uniform" or "pcfg", ``ignore`` as above."""

    def __init__(self, language: Language, mode: str = "uniform", ignore: str = "minimal") -> None:
        if mode not in ("uniform", "pcfg"):
            raise ValueError(f"unknown mode {mode!r}")
        if ignore not in IGNORE_MODES:
            raise ValueError(f"unknown ignore mode {ignore!r}; choose from {', '.join(IGNORE_MODES)}")
        self.language = language
        self.mode = mode
        self.ignore = ignore
        grammar = language.grammar
        parser = grammar.parser
        self._derive: Callable[[random.Random], list[Token]] = (
            language.derive_uniform if mode == "uniform" else language.derive_pcfg
        )
        self._separators = _ignorable_texts(parser, language.max_len) if ignore != "none" else []
        self._minimal = min(self._separators, key=lambda s: (len(s), s != " ", s)) if self._separators else None
        self._reader = FirstToken(parser) if self._minimal is not None else None
        # FirstToken.read without its cache (drawn texts rarely repeat) or its tuple: the joined
        # regex of Lark's scanner called directly when there is one (Scanner.match's loop).
        mres = getattr(getattr(self._reader, "_scanner", None), "_mres", None)
        self._first_match = mres[0].match if isinstance(mres, list) and len(mres) == 1 else None
        self._unless = getattr(self._reader, "_unless", {})
        self._needs: dict[tuple[str, str, str], bool] = {}
        recognizer = grammar._fast
        self._tokens_of = recognizer.tokens if recognizer is not None else None
        # exactness.py proves, for an exact grammar, that Lark reads every derivation written
        # side by side, or with runs of ignorable text between tokens, back as its tokens: the
        # read-back can only succeed, and skipping it changes no draw. It still runs on every
        # PROVED_CHECK_EVERY-th draw, a tripwire for a flaw in that proof.
        self._proved = getattr(language, "exact", False) is True and self._tokens_of is not None
        # The same proof says no separator is ever needed: ``minimal`` writes as ``none`` does
        # (the pairwise test and the drop loop below would give the same text, slower).
        self._separate = self._minimal is not None and not self._proved
        #: Draws made and kept so far (for reporting an acceptance rate).
        self.drawn = 0
        self.kept = 0

    def draw(self, rng: random.Random) -> str:
        """One valid string of length <= ``max_len``."""
        for _ in range(MAX_REJECTIONS):
            if self.drawn >= MIN_DRAWS_BEFORE_GIVING_UP and self.kept < MIN_ACCEPTANCE * self.drawn:
                break
            tokens = self._derive(rng)
            self.drawn += 1
            text = self._write(tokens, rng)
            if text is None or len(text) > self.language.max_len or "\n" in text or "\r" in text:
                continue
            if self._reads_back(text, tokens):
                self.kept += 1
                return text
        g = self.language.grammar
        raise UnsupportedGrammarError(
            f"{g.path}: {self.kept} of {self.drawn} draws were read back by Lark as the tokens they"
            f" were made of (ignore={self.ignore}, max_len={self.language.max_len}); the grammar's"
            " tokens merge too often to draw from it this way"
            + (" (ignore=minimal separates them)" if self.ignore == "none" and self._has_ignore() else "")
        )

    def _has_ignore(self) -> bool:
        return bool(self.language.grammar.parser.ignore_tokens)

    def _reads_back(self, text: str, tokens: list[Token]) -> bool:
        if self._tokens_of is None:
            return self.language.grammar.is_valid(text)
        if self._proved and self.drawn % PROVED_CHECK_EVERY:
            return True
        read = self._tokens_of(text)
        if self._proved and read != tokens:
            g = self.language.grammar
            raise GumbelseqError(
                f"{g.path}: Lark read the drawn string {text!r} as {read} instead of its tokens {tokens},"
                " although exactness.py proves that it cannot (please report this grammar)"
            )
        return read is not None and read == tokens

    def _write(self, tokens: list[Token], rng: random.Random) -> str | None:
        if len(tokens) < 2 or not (self._separate or self.ignore == "random" and self._minimal is not None):
            return "".join(t for _, t in tokens)
        out = [tokens[0][1]]
        needed: list[int] = []  # indexes in out of separators put there because they seemed needed
        needs, minimal = self._needs, self._minimal
        if self.ignore == "random":
            for (kind, text), (_, nxt) in zip(tokens, tokens[1:]):
                if rng.random() < 0.5:
                    out.append(self._random_separator(rng))
                elif self._separate and self._needs_separator(kind, text, nxt):
                    needed.append(len(out))
                    out.append(minimal)
                out.append(nxt)
        else:
            kind, text = tokens[0]
            for token in tokens[1:]:
                nxt = token[1]
                need = needs.get((kind, text, nxt))  # the cache hit inline: the common case
                if need is None:
                    need = self._needs_separator(kind, text, nxt)
                if need:
                    needed.append(len(out))
                    out.append(minimal)
                out.append(nxt)
                kind, text = token
        if needed and self._tokens_of is not None:
            # The pairwise test reads with every terminal; in context Lark's contextual lexer
            # may need fewer separators (a keyword where only a name can come). Drop each one,
            # left to right, that Lark does not need.
            for i in needed:
                out[i] = ""
                if self._tokens_of("".join(out)) != tokens:
                    out[i] = minimal
        return "".join(out)

    def _needs_separator(self, kind: str, text: str, nxt: str) -> bool:
        """Whether Lark's lexer, over all terminals, reads ``text + nxt`` as other than ``text``
        of ``kind`` first (``FirstToken.read``, the scanner's joined regex called directly)."""
        key = (kind, text, nxt)
        need = self._needs.get(key)
        if need is None:
            if self._first_match is not None:
                m = self._first_match(text + nxt)
                if m is None:
                    need = True
                else:
                    ttype = m.lastgroup
                    fold = self._unless.get(ttype)
                    if fold is not None:
                        ttype = fold(m.group()) or ttype
                    need = m.end() != len(text) or ttype != kind
            else:
                assert self._reader is not None
                need = self._reader.read(text + nxt) != (kind, text)
            if len(self._needs) < 1_000_000:
                self._needs[key] = need
        return need

    def _random_separator(self, rng: random.Random) -> str:
        return rng.choice(self._separators)

    @property
    def acceptance(self) -> float | None:
        """Share of draws kept so far (None before the first)."""
        return self.kept / self.drawn if self.drawn else None


def _ignorable_texts(parser, max_len: int) -> list[str]:
    """Every string of 1..RANDOM_IGNORE_MAX characters, without line breaks, that one of the
    grammar's %ignore terminals matches and that Lark's lexer reads alone as ignorable."""
    found: set[str] = set()
    bound = min(RANDOM_IGNORE_MAX, max_len)
    rng = random.Random(0)  # a fixed stream: which texts exist must not depend on the caller
    for term in parser.terminals:
        if term.name not in parser.ignore_tokens:
            continue
        try:
            lang = RegexLanguage(term.pattern.to_regexp(), term.pattern.flags, max_len=bound)
        except Exception:  # noqa: BLE001 - look-around etc.: Lark takes it, we cannot spell it
            continue
        for n in range(1, bound + 1):
            count = lang.count(n)
            if not count:
                continue
            # Small sets are listed by drawing until every string was seen (at most a few
            # hundred); larger ones are represented by a fixed sample.
            want = min(count, 64)
            seen: set[str] = set()
            for _ in range(want * 20):
                seen.add(lang.sample(n, rng))
                if len(seen) >= want:
                    break
            found |= {s for s in seen if "\n" not in s and "\r" not in s}
    reader = FirstToken(parser)
    alone = []
    for s in sorted(found):
        read = reader.read(s)
        if read is not None and read[0] in parser.ignore_tokens and read[1] == s:
            alone.append(s)
    # A separator must stay itself when a token follows: a comment opener ("#") read alone is
    # ignorable, but before a token it swallows the rest of the line. Probe with characters
    # that start tokens (the first characters of literal terminals, and a letter, a digit, _).
    probes = {t.pattern.value[0] for t in parser.terminals if isinstance(t.pattern, PatternStr) and t.pattern.value}
    probes |= {"a", "A", "0", "_"}
    probes -= {c for c in probes if c in alone}
    kept = []
    for s in alone:
        if all((reader.read(s + c) or ("", ""))[1] == s for c in sorted(probes)):
            kept.append(s)
    return kept
