"""Exact counting and uniform sampling of the strings a regular expression matches, by length.

The grammar counter treats every Lark terminal as a small language of its own: it
needs ``count(n)``, the number of strings of length exactly ``n`` the terminal
matches, and a way to draw one of them uniformly.  For ``PatternStr`` terminals
that is trivial; :class:`RegexLanguage` does it for ``PatternRE`` terminals.

How it works
------------
The pattern is parsed with Python's own regex parser (``re._parser``, or
``sre_parse`` before 3.11), so we accept exactly the syntax ``re`` accepts.  The
parse tree is compiled once into nodes that each hold a count table
``counts[n]`` for ``n = 0..max_len`` (Python ints, so counts are exact however
large).  Sequences convolve their children's tables, alternations add them, and
repeats are built with a linear recurrence rather than powers, so building is
about ``O(max_len**2)`` for ordinary patterns.  Sampling walks the tree top-down,
at every node choosing how the remaining length is split by weight using only
``rng.randrange`` on exact integers, so it is exactly uniform.

What is counted
---------------
Counts are over *derivations* of the parse tree: ``a|a`` would count ``"a"``
twice and ``a*a*`` counts ``"aa"`` three times.  For an unambiguous regex (the
common case: ``-?(0|[1-9][0-9]*)``, ``"[a-z]*"``, ``(ab|c)+``...) a derivation
*is* a string, so counts are exact string counts and sampling is uniform over
strings.  Two sources of spurious ambiguity are removed on purpose:

* character classes are sets: ``[aa-c]`` is 3 characters, and so is
  ``a|b|c`` (``re`` itself merges single-character branches into a class);
* a repeat whose body can match the empty string, e.g. ``(a|)*`` or
  ``(a?){2}``, is counted as a repeat of the body's *non-empty* strings (with
  the lower bound dropped).  That denotes the same set of strings but does not
  count the countless ways of inserting empty iterations.

Unbounded quantifiers (``*``, ``+``, ``{m,}``) are cut at ``max_len``, which
loses nothing because only lengths ``<= max_len`` are counted.  Greedy and lazy
quantifiers denote the same language and are treated alike.

Characters
----------
* Literals, escapes, classes with ranges and negation, ``.``.
* ``\\d``, ``\\w``, ``\\s`` are taken in their ASCII sense (``[0-9]``,
  ``[A-Za-z0-9_]``, ``[ \\t\\n\\r\\f\\v]``), as if ``re.ASCII`` were set; every
  string we produce still matches under Python's Unicode rules.
* Anything that needs a complement (``.``, ``[^...]``, ``\\D``, ``\\W``,
  ``\\S``) is taken within :data:`UNIVERSE`: printable ASCII ``0x20..0x7E``
  (newline excluded, also under the ``s``/DOTALL flag).  So ``[^a-y]`` has 70
  characters.
* Flag ``i`` (also ``(?i)`` / ``(?i:...)``) follows ``re``'s own
  case-insensitive rule: a character matches when its simple lowercase mapping
  is one of the class's (plus ``re``'s extra equivalences, e.g. ``s``/``ſ``,
  ``k``/Kelvin sign ``K``), so ``(?i)k`` counts 3 one-character strings.  Flags
  ``m``, ``s``, ``x``, ``u`` and ``a`` are accepted too (``m`` only affects
  anchors, which are rejected anyway); ``l`` (LOCALE) is not.

Not supported (raise :class:`~gumbelseq.errors.UnsupportedGrammarError` with a
one-line message naming the construct): anchors (``^ $ \\A \\Z``), word
boundaries (``\\b \\B``), backreferences, lookahead/lookbehind, conditional
groups, atomic groups and possessive quantifiers (the last two can make ``re``
reject strings a plain derivation would allow).  A pattern ``re`` cannot parse
raises :class:`~gumbelseq.errors.GrammarSyntaxError`.
"""

from __future__ import annotations

import bisect
import random
import re
from itertools import accumulate
from typing import Callable, Iterable, Sequence

import _sre  # re's C core: the exact case-folding functions re itself uses

try:  # Python >= 3.11
    import re._compiler as _sre_compile
    import re._constants as _sre_constants
    import re._parser as _sre_parse
except ImportError:  # pragma: no cover - older Pythons
    import sre_compile as _sre_compile  # type: ignore[no-redef]
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

from gumbelseq.errors import GrammarSyntaxError, UnsupportedGrammarError

__all__ = ["RegexLanguage", "UNIVERSE", "refers_to_group_by_number"]

#: Code-point interval ``(lo, hi)`` (inclusive) that complements are taken in.
UNIVERSE: tuple[int, int] = (0x20, 0x7E)

_MAXREPEAT = int(_sre_constants.MAXREPEAT)

# Extra case equivalences re applies under IGNORECASE (e.g. 's' ~ 'ſ').  The name
# moved between versions; an empty dict only loses those few exotic pairs.
_EXTRA_CASES: dict[int, tuple[int, ...]] = (
    getattr(_sre_compile, "_EXTRA_CASES", None)
    or getattr(_sre_compile, "_ignorecase_fixes", None)
    or {}
)

_FLAG_LETTERS: dict[str, int] = {
    "i": re.IGNORECASE,
    "m": re.MULTILINE,
    "s": re.DOTALL,
    "x": re.VERBOSE,
    "u": re.UNICODE,
    "a": re.ASCII,
}
_SUPPORTED_FLAG_BITS = 0
for _bit in _FLAG_LETTERS.values():
    _SUPPORTED_FLAG_BITS |= int(_bit)

Intervals = list[tuple[int, int]]

# ASCII readings of the \d \w \s categories (see module docstring for why ASCII).
_DIGIT: Intervals = [(0x30, 0x39)]
_WORD: Intervals = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE: Intervals = [(0x09, 0x0D), (0x20, 0x20)]

_ANCHORS: dict[str, str] = {
    "AT_BEGINNING": "anchor '^'",
    "AT_BEGINNING_LINE": "anchor '^'",
    "AT_BEGINNING_STRING": "anchor '\\A'",
    "AT_END": "anchor '$'",
    "AT_END_LINE": "anchor '$'",
    "AT_END_STRING": "anchor '\\Z'",
    "AT_BOUNDARY": "word boundary '\\b'",
    "AT_NON_BOUNDARY": "non-boundary '\\B'",
}


# ----------------------------------------------------------------------------
# character sets as sorted, disjoint, inclusive code-point intervals
# ----------------------------------------------------------------------------


def _normalize(intervals: Iterable[tuple[int, int]]) -> Intervals:
    """Sort and merge intervals, so a set never counts a character twice."""
    out: Intervals = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _from_codes(codes: Iterable[int]) -> Intervals:
    return _normalize((c, c) for c in codes)


def _subtract(a: Intervals, b: Intervals) -> Intervals:
    """``a - b`` for normalized interval lists."""
    out: Intervals = []
    for lo, hi in a:
        cur = lo
        for blo, bhi in b:
            if bhi < cur or blo > hi:
                continue
            if blo > cur:
                out.append((cur, blo - 1))
            cur = max(cur, bhi + 1)
            if cur > hi:
                break
        if cur <= hi:
            out.append((cur, hi))
    return out


_INVERSE_LOWER: dict[bool, dict[int, tuple[int, ...]]] = {}


def _inverse_lower(ascii_only: bool) -> dict[int, tuple[int, ...]]:
    """Map ``l`` to every other code point whose simple lowercase is ``l``.

    Built lazily, once per process (a scan of all code points, ~70 ms), because
    characters such as 'İ' -> 'i' or Kelvin sign -> 'k' cannot be found by
    upper-casing the lowercase letter.
    """
    table = _INVERSE_LOWER.get(ascii_only)
    if table is None:
        acc: dict[int, list[int]] = {}
        if ascii_only:
            for c in range(0x41, 0x5B):
                acc.setdefault(c + 0x20, []).append(c)
        else:
            tolower = _sre.unicode_tolower
            for c in range(0x110000):
                low = tolower(c)
                if low != c:
                    acc.setdefault(low, []).append(c)
        table = {k: tuple(v) for k, v in acc.items()}
        _INVERSE_LOWER[ascii_only] = table
    return table


def _case_closure(intervals: Intervals, flags: int) -> Intervals:
    """Every character that matches one of ``intervals`` under re's IGNORECASE rule.

    re lowercases the subject character and looks it up among the lowercased
    class members (plus its extra equivalences); we invert that exactly.
    """
    ascii_only = bool(flags & re.ASCII)
    tolower = _sre.ascii_tolower if ascii_only else _sre.unicode_tolower
    fixes = {} if ascii_only else _EXTRA_CASES
    lowered: set[int] = set()
    for lo, hi in intervals:
        for c in range(lo, hi + 1):
            low = tolower(c)
            lowered.add(low)
            lowered.update(fixes.get(low, ()))
    inverse = _inverse_lower(ascii_only)
    result: set[int] = set()
    for low in lowered:
        if tolower(low) == low:
            result.add(low)
        result.update(inverse.get(low, ()))
    return _from_codes(result)


# ----------------------------------------------------------------------------
# count-table nodes
# ----------------------------------------------------------------------------


def _conv(a: Sequence[int], b: Sequence[int], max_len: int) -> list[int]:
    """Truncated convolution; skips zeros since most tables are very sparse."""
    out = [0] * (max_len + 1)
    b_nz = [(j, y) for j, y in enumerate(b) if y]
    for i, x in enumerate(a):
        if not x:
            continue
        for j, y in b_nz:
            k = i + j
            if k > max_len:
                break
            out[k] += x * y
    return out


def _support(counts: Sequence[int]) -> list[int]:
    return [n for n, c in enumerate(counts) if c]


#: A pick: ``(total, total.bit_length(), cumulative weights, values)``.
Entry = tuple[int, int, list[int], list]


def pick_table(weighted: Iterable[tuple[object, int]]) -> Entry:
    """The pick over ``weighted`` (value, weight) pairs, zero weights dropped: one draw below
    the total, then the first value whose cumulative weight exceeds it (found by bisection)."""
    pairs = [(v, w) for v, w in weighted if w]
    cum = list(accumulate(w for _, w in pairs))
    total = cum[-1]
    return total, total.bit_length(), cum, [v for v, _ in pairs]


def bit_source(rng: random.Random) -> Callable[[int], int]:
    """``gb`` such that ``r = gb(k)``, repeated while ``r >= t`` (with ``k = t.bit_length()``),
    draws exactly what ``rng.randrange(t)`` draws, consuming the same stream.

    That loop is CPython's ``Random._randbelow_with_getrandbits``, which ``randrange(t)`` calls
    (unchanged from 3.10 to 3.13, and checked at import below): written inline at every choice,
    it saves two Python calls per choice, the sampler's largest cost. For a generator whose
    ``randrange`` is something else (a subclass that overrides it, Hypothesis's), the loop runs
    on ``rng.randrange(2**k)``: still an exactly uniform draw below ``t``, from that generator,
    but not the values ``randrange(t)`` would have given (no seed of such a generator is pinned).
    """
    cls = type(rng)
    if (
        _INLINE_RANDBELOW
        and cls.randrange is random.Random.randrange
        and getattr(cls, "_randbelow", None) is random.Random._randbelow_with_getrandbits
    ):
        return rng.getrandbits
    randrange = rng.randrange
    return lambda k: randrange(1 << k)


def _inline_randbelow_matches() -> bool:
    """Whether the loop ``bit_source`` inlines gives ``randrange``'s values on this Python."""
    a, b = random.Random(20261201), random.Random(20261201)
    gb = b.getrandbits
    for t in [1, 2, 3, 5, 7, 8, 9, 10, 100, 255, 256, 257, 2**32 - 1, 2**32, 2**32 + 1, 10**40, 3**200 + 7] * 8:
        k = t.bit_length()
        r = gb(k)
        while r >= t:
            r = gb(k)
        if a.randrange(t) != r:
            return False
    return a.getstate() == b.getstate()


_INLINE_RANDBELOW = True
_INLINE_RANDBELOW = _inline_randbelow_matches()


class _Branch:
    """A choice in a program: after the draw ``r``, ``options[bisect_right(cum, r)]`` is
    ``(before, tail)``: run each program of ``before``, then go on with ``tail``."""

    __slots__ = ("cum", "options")

    def __init__(self, cum: list[int], options: list[tuple[tuple, tuple]]) -> None:
        self.cum = cum
        self.options = options


def _exec(prog: tuple, gb: Callable[[int], int], out: list[str]) -> None:
    """Run a program (see ``_Node.prog``): its draws, in order, and what they append."""
    bisect_right = bisect.bisect_right
    while True:
        for t, k, table in prog:
            r = gb(k)
            while r >= t:
                r = gb(k)
            if table is None:
                continue
            cls = table.__class__
            if cls is str:
                out.append(table[r])
            elif cls is _Branch:
                before, prog = table.options[bisect_right(table.cum, r)]
                for sub in before:
                    _exec(sub, gb, out)
                break  # a branch is always a program's last step: go on with its tail
            else:
                table.decode(r, out)
        else:
            return


def _cat(p: tuple | None, q: tuple | None) -> tuple | None:
    """Program ``p`` then program ``q`` (None: either cannot be a program)."""
    if p is None or q is None:
        return None
    if not q:
        return p
    if not p:
        return q
    t, k, table = p[-1]
    if table.__class__ is _Branch:  # keep the branch last: q runs after each option's tail
        opts = [(before + (tail,) if tail else before, q) for before, tail in table.options]
        return p[:-1] + ((t, k, _Branch(table.cum, opts)),)
    return p + q


def _pick_prog(e: Entry, option: Callable[[object], tuple | None]) -> tuple | None:
    """The program of a pick ``e`` followed by ``option(value)``, the program for each value
    (None: no program)."""
    t, k, cum, values = e
    if len(values) == 1:
        return _cat(((t, k, None),), option(values[0]))
    opts = []
    for v in values:
        sub = option(v)
        if sub is None:
            return None
        opts.append(((), sub))
    return ((t, k, _Branch(cum, opts)),)


#: Programs are built for sequences of at most this many items and repeats with at most this
#: many counted pieces ({m,n} with m or n - m above it walk the tree instead): their building
#: recurses once per item.
_PROG_MAX_ITEMS = 40


class _Node:
    """A parse-tree node with its count table (index = length).

    ``emit(n, gb, out)`` appends a uniform string of length ``n`` to ``out``, drawing with
    ``gb`` (see ``bit_source``). ``run`` does the same through ``flat(n)`` when there is one: at
    a length where every choice below the node is forced (one value with a nonzero weight:
    literals, fixed-size classes, runs), the walk is the same sequence of draws whatever they
    give, so it is kept as a flat program of steps ``(total, bits, table)``: draw below total;
    then nothing (``table`` None: a forced choice, drawn only to keep the stream), append
    ``table[r]`` (a ``str``: one character of a class), or ``table.decode(r, out)``.
    """

    counts: list[int]
    support: list[int]  # lengths with a nonzero count, for sparse loops

    def _set_counts(self, counts: list[int]) -> None:
        self.counts = counts
        self.support = _support(counts)
        self._flat: dict[int, tuple | None] = {}
        self._progs: dict[int, tuple | None] = {}

    def emit(self, n: int, gb: Callable[[int], int], out: list[str]) -> None:
        raise NotImplementedError

    def _flat_at(self, n: int) -> tuple | None:
        return None

    def flat(self, n: int) -> tuple | None:
        """The flat program of ``emit(n)``, or None when a choice at this length is not forced."""
        try:
            return self._flat[n]
        except KeyError:
            steps = self._flat[n] = self._flat_at(n)
            return steps

    def _dag(self, n: int) -> tuple | None:
        return None

    def prog(self, n: int) -> tuple | None:
        """The program of ``emit(n)``: its flat program, or one with branches (``_Branch``) at
        the choices that are not forced, each option going on with the rest of the walk
        (shared, not copied, between options). None: walk the tree (``emit``)."""
        try:
            return self._progs[n]
        except KeyError:
            p = self.flat(n)
            if p is None:
                p = self._dag(n)
            self._progs[n] = p
            return p

    def run(self, n: int, gb: Callable[[int], int], out: list[str]) -> None:
        try:
            p = self._progs[n]
        except KeyError:
            p = self.prog(n)
        if p is None:
            self.emit(n, gb, out)
        else:
            _exec(p, gb, out)


def _forced(e: Entry) -> tuple | None:
    """A forced pick's step (drawn, result unused), or None when the pick has a choice."""
    return ((e[0], e[1], None),) if len(e[3]) == 1 else None


class _Empty(_Node):
    def __init__(self, max_len: int) -> None:
        self._set_counts([1] + [0] * max_len)

    def emit(self, n: int, gb: Callable[[int], int], out: list[str]) -> None:
        pass

    def _flat_at(self, n: int) -> tuple | None:
        return ()


#: Classes up to this size keep their characters as one string (a table look-up per draw).
_ALPHABET_MAX = 1 << 16


class _Chars(_Node):
    """One character out of a set."""

    def __init__(self, intervals: Intervals, max_len: int) -> None:
        self.starts = [lo for lo, _ in intervals]
        self.offsets: list[int] = []  # how many characters precede each interval
        size = 0
        for lo, hi in intervals:
            self.offsets.append(size)
            size += hi - lo + 1
        self.size = size
        self.bits = size.bit_length()
        self.alphabet = (
            "".join(chr(c) for lo, hi in intervals for c in range(lo, hi + 1)) if size <= _ALPHABET_MAX else None
        )
        counts = [0] * (max_len + 1)
        if max_len >= 1:
            counts[1] = size
        self._set_counts(counts)

    def emit(self, n: int, gb: Callable[[int], int], out: list[str]) -> None:
        t, k = self.size, self.bits
        r = gb(k)
        while r >= t:
            r = gb(k)
        out.append(self.alphabet[r] if self.alphabet is not None else self.char(r))

    def _flat_at(self, n: int) -> tuple | None:
        return ((self.size, self.bits, self.alphabet if self.alphabet is not None else self),)

    def decode(self, r: int, out: list[str]) -> None:
        out.append(self.char(r))

    def char(self, k: int) -> str:
        """The ``k``-th character of the set."""
        i = bisect.bisect_right(self.offsets, k) - 1
        return chr(self.starts[i] + k - self.offsets[i])


class _Run:
    """``rem`` characters of ``chars`` from one draw below ``size**rem``: its base-``size``
    digits, least significant first (how a run ``[0-9]*`` is drawn)."""

    _DIGITS = "0123456789"

    def __init__(self, chars: _Chars, rem: int) -> None:
        self.chars = chars
        self.rem = rem
        self.total = chars.size**rem
        self.bits = self.total.bit_length()
        a = chars.alphabet
        # Base ten: the digits are str(r)'s, read backwards, mapped onto the class.
        self.trans = str.maketrans(self._DIGITS, a) if chars.size == 10 and a is not None else None

    def decode(self, r: int, out: list[str]) -> None:
        if self.trans is not None:
            out.append(str(r).zfill(self.rem)[::-1].translate(self.trans))
            return
        chars, size = self.chars, self.chars.size
        a = chars.alphabet
        for _ in range(self.rem):
            r, d = divmod(r, size)
            out.append(a[d] if a is not None else chars.char(d))


class _Seq(_Node):
    def __init__(self, children: list[_Node], max_len: int) -> None:
        self.children = children
        # suffix[i] = counts of children[i:]; sampling needs every suffix.
        suffix = [[1] + [0] * max_len]
        for child in reversed(children):
            suffix.append(_conv(child.counts, suffix[-1], max_len))
        suffix.reverse()
        self.suffix = suffix
        self._set_counts(suffix[0])
        self._cache: dict = {}

    def _split(self, i: int, n: int) -> Entry:
        e = self._cache.get((i, n))
        if e is None:
            counts, rest = self.children[i].counts, self.suffix[i + 1]
            e = self._cache[(i, n)] = pick_table((m, counts[m] * rest[n - m]) for m in self.children[i].support if m <= n)
        return e

    def emit(self, n: int, gb: Callable[[int], int], out: list[str]) -> None:
        cache = self._cache
        for i, child in enumerate(self.children):
            e = cache.get((i, n)) or self._split(i, n)
            t, k, cum, values = e
            r = gb(k)
            while r >= t:
                r = gb(k)
            m = values[bisect.bisect_right(cum, r)]
            child.run(m, gb, out)
            n -= m

    def _dag(self, n: int) -> tuple | None:
        if len(self.children) > _PROG_MAX_ITEMS:
            return None
        return self._rest_prog(0, n)

    def _rest_prog(self, i: int, n: int) -> tuple | None:
        """The program of children[i:] at length n."""
        if i == len(self.children):
            return ()
        key = ("prog", i, n)
        try:
            return self._cache[key]
        except KeyError:
            child = self.children[i]
            p = self._cache[key] = _pick_prog(
                self._split(i, n), lambda m: _cat(child.prog(m), self._rest_prog(i + 1, n - m))  # type: ignore[operator]
            )
            return p

    def _flat_at(self, n: int) -> tuple | None:
        steps: tuple = ()
        for i, child in enumerate(self.children):
            e = self._split(i, n)
            step = _forced(e)
            m = e[3][0]
            sub = child.flat(m) if step is not None else None
            if sub is None:
                return None
            steps += step + sub
            n -= m
        return steps


class _Alt(_Node):
    def __init__(self, children: list[_Node], max_len: int) -> None:
        self.children = children
        self._set_counts([sum(col) for col in zip(*(c.counts for c in children))])
        self._cache: dict = {}

    def _choice(self, n: int) -> Entry:
        e = self._cache.get(n)
        if e is None:
            e = self._cache[n] = pick_table((i, c.counts[n]) for i, c in enumerate(self.children))
        return e

    def emit(self, n: int, gb: Callable[[int], int], out: list[str]) -> None:
        t, k, cum, values = self._cache.get(n) or self._choice(n)
        r = gb(k)
        while r >= t:
            r = gb(k)
        self.children[values[bisect.bisect_right(cum, r)]].run(n, gb, out)

    def _dag(self, n: int) -> tuple | None:
        return _pick_prog(self._choice(n), lambda i: self.children[i].prog(n))  # type: ignore[index]

    def _flat_at(self, n: int) -> tuple | None:
        e = self._choice(n)
        step = _forced(e)
        sub = self.children[e[3][0]].flat(n) if step is not None else None
        return None if sub is None else step + sub


class _Repeat(_Node):
    """``body{lo,hi}`` as ``body^lo`` followed by ``body{0,hi-lo}``.

    Only non-empty body strings are used (see module docstring), so each piece
    has length >= 1: at most ``max_len`` pieces matter, ``lo > max_len`` matches
    nothing, and ``hi - lo >= max_len`` is the same as ``*`` (a cheap recurrence).
    """

    def __init__(self, child: _Node, lo: int, hi: int, max_len: int) -> None:
        self.child = child
        self._cache: dict = {}
        self._runs: dict[int, _Run] = {}
        self._chars_run = False
        body = list(child.counts)
        if body[0]:
            body[0] = 0
            lo = 0
        self.body = body
        self.body_support = _support(body)
        self.lo = lo
        eps = [1] + [0] * max_len
        if lo > max_len:
            self.powers: list[list[int]] = []
            self._set_counts([0] * (max_len + 1))
            return
        # powers[j] = body^j: j mandatory pieces.
        self.powers = [eps]
        for _ in range(lo):
            self.powers.append(_conv(body, self.powers[-1], max_len))
        self.star = hi == _MAXREPEAT or hi - lo >= max_len
        if self.star:
            # S[n] = [n == 0] + sum_m body[m] * S[n - m]
            s = list(eps)
            for n in range(1, max_len + 1):
                s[n] = sum(body[m] * s[n - m] for m in self.body_support if m <= n)
            self.optional = [s]
        else:
            # optional[j] = body{0,j} = eps + body * optional[j-1]
            self.optional = [eps]
            for _ in range(hi - lo):
                nxt = _conv(body, self.optional[-1], max_len)
                nxt[0] += 1
                self.optional.append(nxt)
        head = self.powers[lo]
        self.head_support = _support(head)
        self._set_counts(_conv(head, self.optional[-1], max_len))
        self._chars_run = self.star and isinstance(child, _Chars)

    def _head(self, n: int) -> Entry:
        key = ("h", n)
        e = self._cache.get(key)
        if e is None:
            head, tail = self.powers[self.lo], self.optional[-1]
            e = self._cache[key] = pick_table((a, head[a] * tail[n - a]) for a in self.head_support if a <= n)
        return e

    def _piece_entry(self, rem: int, after: list[int], key: tuple) -> Entry:
        e = self._cache.get(key)
        if e is None:
            body = self.body
            e = self._cache[key] = pick_table((m, body[m] * after[rem - m]) for m in self.body_support if m <= rem)
        return e

    def _emit_piece(self, rem: int, after: list[int], key: tuple, gb: Callable[[int], int], out: list[str]) -> int:
        t, k, cum, values = self._cache.get(key) or self._piece_entry(rem, after, key)
        r = gb(k)
        while r >= t:
            r = gb(k)
        m = values[bisect.bisect_right(cum, r)]
        self.child.run(m, gb, out)
        return m

    def _run(self, rem: int) -> _Run:
        run = self._runs.get(rem)
        if run is None:
            run = self._runs[rem] = _Run(self.child, rem)  # type: ignore[arg-type]
        return run

    def emit(self, n: int, gb: Callable[[int], int], out: list[str]) -> None:
        t, k, cum, values = self._cache.get(("h", n)) or self._head(n)
        r = gb(k)
        while r >= t:
            r = gb(k)
        a = values[bisect.bisect_right(cum, r)]
        rem = a
        for j in range(self.lo, 0, -1):
            rem -= self._emit_piece(rem, self.powers[j - 1], ("p", j, rem), gb, out)
        rem = n - a
        if self._chars_run and rem:
            # A run of characters from one set (``[0-9]*``): one draw for the whole run.
            run = self._runs.get(rem) or self._run(rem)
            t, k = run.total, run.bits
            r = gb(k)
            while r >= t:
                r = gb(k)
            run.decode(r, out)
        elif self.star:
            s = self.optional[0]
            while rem:
                rem -= self._emit_piece(rem, s, ("s", rem), gb, out)
        else:
            j = len(self.optional) - 1
            while rem:
                rem -= self._emit_piece(rem, self.optional[j - 1], ("o", j, rem), gb, out)
                j -= 1

    def _dag(self, n: int) -> tuple | None:
        if self.lo > _PROG_MAX_ITEMS or (not self.star and len(self.optional) > _PROG_MAX_ITEMS + 1):
            return None
        return _pick_prog(self._head(n), lambda a: _cat(self._lo_prog(self.lo, a), self._tail_prog(n - a)))  # type: ignore[operator]

    def _lo_prog(self, j: int, rem: int) -> tuple | None:
        """The program of the last j mandatory pieces, of total length rem."""
        if j == 0:
            return ()
        key = ("prog-p", j, rem)
        try:
            return self._cache[key]
        except KeyError:
            p = self._cache[key] = _pick_prog(
                self._piece_entry(rem, self.powers[j - 1], ("p", j, rem)),
                lambda m: _cat(self.child.prog(m), self._lo_prog(j - 1, rem - m)),  # type: ignore[operator]
            )
            return p

    def _tail_prog(self, rem: int) -> tuple | None:
        """The program of the optional pieces, of total length rem."""
        if rem == 0:
            return ()
        if self._chars_run:
            run = self._run(rem)
            return ((run.total, run.bits, run),)
        if not self.star:
            return self._opt_prog(len(self.optional) - 1, rem)
        cache, s = self._cache, self.optional[0]
        if ("prog-s", rem) not in cache:
            # From short to long, each on shorter ones: no recursion on the length.
            for r in range(1, rem + 1):
                if ("prog-s", r) in cache:
                    continue
                cache[("prog-s", r)] = (
                    _pick_prog(
                        self._piece_entry(r, s, ("s", r)),
                        lambda m: _cat(self.child.prog(m), cache[("prog-s", r - m)] if r - m else ()),  # type: ignore[operator]
                    )
                    if s[r]
                    else None
                )
        return cache[("prog-s", rem)]

    def _opt_prog(self, j: int, rem: int) -> tuple | None:
        if rem == 0:
            return ()
        key = ("prog-o", j, rem)
        try:
            return self._cache[key]
        except KeyError:
            p = self._cache[key] = _pick_prog(
                self._piece_entry(rem, self.optional[j - 1], ("o", j, rem)),
                lambda m: _cat(self.child.prog(m), self._opt_prog(j - 1, rem - m)),  # type: ignore[operator]
            )
            return p

    def _flat_at(self, n: int) -> tuple | None:
        e = self._head(n)
        steps = _forced(e)
        if steps is None:
            return None
        a = e[3][0]

        def piece(rem: int, after: list[int], key: tuple) -> int | None:
            nonlocal steps
            e = self._piece_entry(rem, after, key)
            step = _forced(e)
            sub = self.child.flat(e[3][0]) if step is not None else None
            if sub is None:
                return None
            steps += step + sub
            return e[3][0]

        rem = a
        for j in range(self.lo, 0, -1):
            m = piece(rem, self.powers[j - 1], ("p", j, rem))
            if m is None:
                return None
            rem -= m
        rem = n - a
        if self._chars_run and rem:
            run = self._run(rem)
            return steps + ((run.total, run.bits, run),)
        j = len(self.optional) - 1
        while rem:
            if self.star:
                m = piece(rem, self.optional[0], ("s", rem))
            else:
                m = piece(rem, self.optional[j - 1], ("o", j, rem))
                j -= 1
            if m is None:
                return None
            rem -= m
        return steps


# ----------------------------------------------------------------------------
# parse tree -> nodes
# ----------------------------------------------------------------------------


class _Builder:
    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.universe: Intervals = [UNIVERSE]

    def seq(self, items: Iterable[tuple[object, object]], flags: int) -> _Node:
        children = [self.item(op, av, flags) for op, av in items]
        if not children:
            return _Empty(self.max_len)
        if len(children) == 1:
            return children[0]
        return _Seq(children, self.max_len)

    def chars(self, intervals: Intervals) -> _Node:
        return _Chars(intervals, self.max_len)

    def literal(self, code: int, flags: int) -> Intervals:
        ivs = [(code, code)]
        return _case_closure(ivs, flags) if flags & re.IGNORECASE else ivs

    def char_class(self, items: list[tuple[object, object]], flags: int) -> Intervals:
        negate = False
        plain: Intervals = []  # literals and ranges: subject to case folding
        categories: Intervals = []  # \d \w \s and negations: not case-folded
        for op, av in items:
            name = _name(op)
            if name == "NEGATE":
                negate = True
            elif name == "LITERAL":
                plain.append((av, av))  # type: ignore[arg-type]
            elif name == "RANGE":
                plain.append(av)  # type: ignore[arg-type]
            elif name == "CATEGORY":
                categories.extend(self.category(_name(av)))
            else:
                raise UnsupportedGrammarError(f"unsupported item {name} in a character class")
        plain = _normalize(plain)
        if flags & re.IGNORECASE:
            plain = _case_closure(plain, flags)
        members = _normalize(plain + categories)
        return _subtract(self.universe, members) if negate else members

    def category(self, name: str) -> Intervals:
        table = {
            "CATEGORY_DIGIT": (_DIGIT, False),
            "CATEGORY_NOT_DIGIT": (_DIGIT, True),
            "CATEGORY_WORD": (_WORD, False),
            "CATEGORY_NOT_WORD": (_WORD, True),
            "CATEGORY_SPACE": (_SPACE, False),
            "CATEGORY_NOT_SPACE": (_SPACE, True),
        }
        if name not in table:
            raise UnsupportedGrammarError(f"unsupported character category {name}")
        ivs, negated = table[name]
        return _subtract(self.universe, ivs) if negated else list(ivs)

    def item(self, op: object, av: object, flags: int) -> _Node:
        name = _name(op)
        if name == "LITERAL":
            return self.chars(self.literal(av, flags))  # type: ignore[arg-type]
        if name == "NOT_LITERAL":
            return self.chars(_subtract(self.universe, _normalize(self.literal(av, flags))))  # type: ignore[arg-type]
        if name == "ANY":
            return self.chars(list(self.universe))
        if name == "IN":
            return self.chars(self.char_class(av, flags))  # type: ignore[arg-type]
        if name == "BRANCH":
            _, branches = av  # type: ignore[misc]
            return _Alt([self.seq(b, flags) for b in branches], self.max_len)
        if name == "SUBPATTERN":
            _group, add_flags, del_flags, sub = av  # type: ignore[misc]
            if add_flags & re.LOCALE:
                raise UnsupportedGrammarError("LOCALE flag (?L) is not supported")
            return self.seq(sub, (flags | add_flags) & ~del_flags)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):  # greedy / lazy: same language
            lo, hi, sub = av  # type: ignore[misc]
            return _Repeat(self.seq(sub, flags), int(lo), int(hi), self.max_len)
        if name == "POSSESSIVE_REPEAT":
            raise UnsupportedGrammarError("possessive quantifier (*+, ++, ?+, {m,n}+) is not supported")
        if name == "ATOMIC_GROUP":
            raise UnsupportedGrammarError("atomic group (?>...) is not supported")
        if name == "AT":
            what = _ANCHORS.get(_name(av), f"anchor {_name(av)}")
            raise UnsupportedGrammarError(f"{what} is not supported")
        if name == "GROUPREF":
            raise UnsupportedGrammarError(f"backreference to group {av} is not supported")
        if name == "GROUPREF_EXISTS":
            raise UnsupportedGrammarError("conditional group (?(id)yes|no) is not supported")
        if name in ("ASSERT", "ASSERT_NOT"):
            direction, _sub = av  # type: ignore[misc]
            kind = "lookahead" if direction >= 0 else "lookbehind"
            sign = "negative " if name == "ASSERT_NOT" else ""
            raise UnsupportedGrammarError(f"{sign}{kind} assertion is not supported")
        raise UnsupportedGrammarError(f"regex construct {name} is not supported")


def _name(constant: object) -> str:
    """Opcode names are stable across Python versions; their int values are not."""
    return getattr(constant, "name", None) or str(constant)


def _flags_to_int(flags: Iterable[str] | int) -> int:
    if isinstance(flags, int):
        value = int(flags)
        if value & re.LOCALE:
            raise UnsupportedGrammarError("regex flag 'l' (LOCALE) is not supported")
        if value & ~_SUPPORTED_FLAG_BITS:
            raise UnsupportedGrammarError(f"regex flags {value:#x} are not supported")
        return value
    value = 0
    for flag in flags:
        for letter in flag:  # accept both ("i", "m") and "im"
            if letter not in _FLAG_LETTERS:
                raise UnsupportedGrammarError(f"regex flag {letter!r} is not supported")
            value |= int(_FLAG_LETTERS[letter])
    return value


def _group_refs(node: object, out: list[int]) -> list[int]:
    """Group numbers that back-references and conditionals in a parsed pattern refer to."""
    if isinstance(node, _sre_parse.SubPattern):
        node = node.data
    if isinstance(node, (list, tuple)):
        for item in node:
            if isinstance(item, tuple) and len(item) == 2 and _name(item[0]) in ("GROUPREF", "GROUPREF_EXISTS"):
                op, av = item
                out.append(int(av if _name(op) == "GROUPREF" else av[0]))  # type: ignore[index]
                if _name(op) == "GROUPREF_EXISTS":
                    _group_refs(av[1:], out)  # type: ignore[index]
            else:
                _group_refs(item, out)
    return out


def refers_to_group_by_number(pattern: str, flags: Iterable[str] | int = ()) -> bool:
    """True when ``pattern`` refers to a group by its number (``\\1``, ``(?(1)...)``).

    Lark joins every terminal into one regex, one named group each, which renumbers the groups
    inside; references by name (``(?P=name)``) survive that, references by number do not. An
    extra group in front shifts every group by one: a reference by name follows it, a number
    stays put. A pattern ``re`` cannot parse gives False (the caller reports that error).
    """
    try:
        value = _flags_to_int(flags)
        plain = _group_refs(_sre_parse.parse(pattern, value), [])
        shifted = _group_refs(_sre_parse.parse("()" + pattern, value), [])
    except (re.error, UnsupportedGrammarError):
        return False
    return [g + 1 for g in plain] != shifted


class RegexLanguage:
    """Count and uniformly sample the strings of each length a regex fully matches.

    ``RegexLanguage(pattern, flags=(), *, max_len=N)`` builds all count tables
    up front; ``count``/``counts``/``min_len`` are then lookups and ``sample``
    is one top-down walk.  See the module docstring for what "count" means for
    ambiguous patterns and which constructs are supported.
    """

    def __init__(self, pattern: str, flags: Iterable[str] | int = (), *, max_len: int) -> None:
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 0:
            raise ValueError(f"max_len must be a non-negative int, got {max_len!r}")
        self.pattern = pattern
        self.max_len = max_len
        self.flags = _flags_to_int(flags)
        try:
            parsed = _sre_parse.parse(pattern, self.flags)
        except re.error as exc:
            raise GrammarSyntaxError(f"invalid regular expression {pattern!r}: {exc}") from None
        # Inline global flags such as a leading (?i) live on the parser state.
        state = getattr(parsed, "state", None) or getattr(parsed, "pattern", None)
        all_flags = int(getattr(state, "flags", self.flags)) | self.flags
        if all_flags & re.LOCALE:
            raise UnsupportedGrammarError("regex flag 'l' (LOCALE) is not supported")
        self._root = _Builder(max_len).seq(parsed, all_flags)
        self._counts = self._root.counts
        self._plans: dict[int, tuple[int, str | None, tuple | None]] = {}

    @property
    def counts(self) -> list[int]:
        """``[count(0), ..., count(max_len)]`` (a copy)."""
        return list(self._counts)

    def count(self, n: int) -> int:
        """Number of derivation-strings of length exactly ``n`` (0 outside ``0..max_len``)."""
        if 0 <= n <= self.max_len:
            return self._counts[n]
        return 0

    @property
    def min_len(self) -> int | None:
        """Smallest length with a nonzero count, or None if there is none up to ``max_len``."""
        for n, c in enumerate(self._counts):
            if c:
                return n
        return None

    def sample(self, n: int, rng: random.Random) -> str:
        """Draw uniformly among the ``count(n)`` derivations of length ``n``."""
        return self.sample_bits(n, bit_source(rng))

    def sample_bits(self, n: int, gb: Callable[[int], int]) -> str:
        """``sample`` drawing with ``gb`` (see ``bit_source``): the same string from the same stream."""
        plan = self._plans.get(n)
        if plan is None:
            plan = self.plan(n)
        units, text, steps = plan
        if text is not None:
            for _ in range(units):  # forced draws below 1: one bit each, until it is 0
                while gb(1):
                    pass
            return text
        out: list[str] = []
        if steps is not None:
            _exec(steps, gb, out)
        else:
            self._root.emit(n, gb, out)
        return "".join(out)

    def plan(self, n: int) -> tuple[int, str | None, tuple | None]:
        """How ``sample_bits(n)`` draws: ``(units, text, steps)``. ``text`` set: every choice at
        this length is forced and below 1 (a literal), so the string is ``text`` after ``units``
        draws below 1. Otherwise ``steps``, the root's program (``_Node.prog``), or None (walk
        the tree)."""
        plan = self._plans.get(n)
        if plan is None:
            if self.count(n) == 0:
                raise ValueError(f"pattern {self.pattern!r} matches no string of length {n} (max_len={self.max_len})")
            steps = self._root.prog(n)
            if steps is not None and all(t == 1 and table.__class__ is not _Branch for t, _, table in steps):
                out: list[str] = []
                _exec(steps, lambda k: 0, out)
                plan = (len(steps), "".join(out), steps)
            else:
                plan = (0, None, steps)
            self._plans[n] = plan
        return plan

    def __repr__(self) -> str:
        return f"RegexLanguage({self.pattern!r}, flags={self.flags:#x}, max_len={self.max_len})"
