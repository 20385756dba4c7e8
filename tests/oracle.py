"""The independent validity oracle: Lark itself, built here the way ``load_grammar`` builds it.

"Valid" means exactly what ``Lark.parse`` accepts with the parser and lexer gumbelseq chose:
strict LALR(1) with Lark's contextual lexer first, Earley (dynamic lexer) when strict LALR
refuses the grammar (a conflict or a regex collision). This module builds a fresh ``lark.Lark``
with those options (it never goes through gumbelseq's recogniser), brute-forces every string over
a small alphabet up to a length, and returns the set Lark accepts. ``mutants`` makes
deterministic near-misses of valid strings.

``CORPUS`` lists the test grammars in ``tests/corpus/`` (written for this project): for each, its
path, its start rule, a small alphabet to enumerate over, and the brute-force length.
"""

from __future__ import annotations

import functools
import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from lark import Lark
from lark.exceptions import LarkError

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"


@dataclass(frozen=True)
class CorpusEntry:
    name: str
    path: Path
    start: str
    alphabet: str
    max_len: int  # exhaustive up to this length (len(alphabet) ** max_len stays small)
    algorithm: str  # what load_grammar must pick: "lalr" or "earley"
    # For a grammar whose counts are exact: an alphabet holding every character of its language
    # and a length, for counts by brute force (None: the counts are not exact).
    counts: tuple[str, int] | None = None


def _entry(
    file: str, alphabet: str, max_len: int, start: str = "start", algorithm: str = "lalr",
    counts: tuple[str, int] | None = None,
) -> CorpusEntry:
    name = file[: -len(".lark")].replace("/", "_")
    return CorpusEntry(name, CORPUS_DIR / file, start, alphabet, max_len, algorithm, counts)


CORPUS: tuple[CorpusEntry, ...] = (
    _entry("config.lark", 'ano1=;" ', 5),
    # Regular class (NUM /[0-9]+/ has infinitely many strings): exact since infinite terminals.
    _entry("composed/main.lark", "[],1x ", 6, counts=("0123456789[],x ", 4)),
    _entry("composed/lists.lark", "[],1x ", 5, start="list", counts=("0123456789[],x", 4)),
    _entry("collide_ctx.lark", "xyzabc", 5),
    _entry("collide_earley.lark", "ab1 ", 5, algorithm="earley"),
    _entry("kwname.lark", "if; ", 7),
    _entry("kw_case.lark", "ifF x", 6),
    _entry("adjacent.lark", "01 x", 7),
    _entry("alternation.lark", "abc ", 7),
    _entry("lazy.lark", "abc", 7),
    _entry("priority.lark", "ab, ", 7),
    _entry("ignore_collide.lark", "abc ", 7),
    _entry("ignore_string.lark", "abc ", 7),
    _entry("comments.lark", "ab,# \t", 6),
    _entry("verilog.lark", "inout ;,", 5),
    _entry("ambiguous.lark", "x+()", 6, algorithm="earley"),
    _entry("ignore_greedy.lark", "axyz", 6),
    # Ignore-separable: exact counts and masks with %ignore (gumbelseq/lang/exactness.py).
    _entry("calc_ws.lark", "1-*() \t", 6, counts=("0123456789+-*/() \t", 4)),
    _entry("json_ws.lark", '[]{}:,"1 \n', 5, counts=('"abtruefsln-0123456789[]{}:, \t\n\r\x0c', 3)),
    _entry("config_kv.lark", "ab1='\n ", 6, counts=("abcdefghijklmnopqrstuvwxyz0123456789=\n' ", 3)),
    _entry("ignore_runs.lark", "[]ab, ~", 6, counts=("[]ab, ~", 6)),
    # Regular class: terminals with infinitely many strings (gumbelseq/lang/exactness.py).
    _entry("int_sum.lark", "01+ ", 6, counts=("0123456789+ ", 4)),
    _entry("name_list.lark", "ab[], ", 6, counts=("abcdefghijklmnopqrstuvwxyz[], ", 3)),
    _entry("calc_int.lark", "1-*() \t", 6, counts=("0123456789+-*/() \t", 4)),
    # common.NUMBER (float | int, with alternations and optional groups inside) and common.WS.
    _entry("calc.lark", "1.e+*() ", 5, counts=("0123456789.eE+-*() \t\x0c\r\n", 4)),
)

BY_NAME = {e.name: e for e in CORPUS}


def _strict_lalr_refused(e: LarkError) -> bool:
    # Strict LALR refuses a grammar with a conflict ("... conflict ... [strict-mode]") or a
    # regex collision ("Collision between Terminals ..."); everything else is a broken grammar.
    msg = str(e)
    return "conflict" in msg.lower() or "collision" in msg.lower() or "strict" in msg.lower()


@functools.lru_cache(maxsize=None)
def oracle_lark(path: str, start: str = "start") -> Lark:
    """A fresh ``Lark`` with the options load_grammar uses: strict LALR, else Earley."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return Lark(text, source_path=str(path), parser="lalr", strict=True, start=start)
    except LarkError as e:
        if not _strict_lalr_refused(e):
            raise
    return Lark(text, source_path=str(path), parser="earley", start=start)


def lark_accepts(parser: Lark, text: str) -> bool:
    """``Lark.parse`` succeeds. Any exception (a rejection or a Lark-internal failure) is False."""
    try:
        parser.parse(text)
    except Exception:  # noqa: BLE001 - the oracle's verdict is "parse succeeded or not"
        return False
    return True


def all_strings(alphabet: str, max_len: int) -> Iterator[str]:
    for n in range(max_len + 1):
        for chars in itertools.product(alphabet, repeat=n):
            yield "".join(chars)


@functools.lru_cache(maxsize=None)
def oracle_language(name: str, max_len: int | None = None) -> frozenset[str]:
    """Every string over the entry's alphabet of length <= max_len that Lark accepts."""
    e = BY_NAME[name]
    parser = oracle_lark(str(e.path), e.start)
    n = e.max_len if max_len is None else max_len
    return frozenset(s for s in all_strings(e.alphabet, n) if lark_accepts(parser, s))


# -- mutations ---------------------------------------------------------------------------------


def mutate(s: str, alphabet: str, rng: random.Random) -> str:
    """One random edit: insert, delete, replace or duplicate a character, or delete, duplicate,
    move or reverse a substring."""
    op = rng.randrange(9)
    n = len(s)
    if n == 0 or op == 0:  # insert a character
        i = rng.randint(0, n)
        return s[:i] + rng.choice(alphabet) + s[i:]
    i = rng.randrange(n)
    j = rng.randint(i + 1, n)
    if op == 1:  # delete a character
        return s[:i] + s[i + 1 :]
    if op == 2:  # replace a character
        return s[:i] + rng.choice(alphabet) + s[i + 1 :]
    if op == 3:  # duplicate a character
        return s[:i] + s[i] + s[i:]
    if op == 4:  # delete a substring
        return s[:i] + s[j:]
    if op == 5:  # duplicate a substring
        return s[:j] + s[i:j] + s[j:]
    if op == 6:  # move a substring elsewhere
        rest = s[:i] + s[j:]
        k = rng.randint(0, len(rest))
        return rest[:k] + s[i:j] + rest[k:]
    if op == 7:  # reverse a substring
        return s[:i] + s[i:j][::-1] + s[j:]
    # swap two adjacent characters
    if n < 2:
        return s + s
    i = rng.randrange(n - 1)
    return s[:i] + s[i + 1] + s[i] + s[i + 2 :]


def mutants(
    seeds: Iterable[str],
    alphabet: str,
    count: int,
    seed: int,
    *,
    keep: Callable[[str], bool] | None = None,
    max_len: int = 40,
) -> list[str]:
    """``count`` strings, each 1-3 random edits of a pool string; deterministic in ``seed``.

    The pool starts as ``seeds`` (sorted, so set order does not matter); when ``keep`` is given,
    every mutant it accepts joins the pool, so valid strings grow past the brute-force length.
    Mutants longer than ``max_len`` are cut back to it.
    """
    rng = random.Random(seed)
    pool = sorted(set(seeds)) or [""]
    out = []
    for _ in range(count):
        s = rng.choice(pool)
        for _ in range(rng.randint(1, 3)):
            s = mutate(s, alphabet, rng)
        s = s[:max_len]
        out.append(s)
        if keep is not None and keep(s):
            pool.append(s)
    return out


def assert_masks_equal(con, alphabet: str, max_len: int, valid: set[str] | frozenset[str], label: object = "") -> None:
    """Every prefix of at most ``max_len`` characters of ``alphabet`` gets, from a mask engine
    ``con``, what brute force over ``valid`` (every accepted string up to ``max_len``) says:
    None for a prefix of no valid string, else exactly the next characters of valid strings,
    the end exactly where it is valid, and never a dead end."""
    nexts: dict[str, set[str]] = {}
    for s in valid:
        for i in range(len(s) + 1):
            nexts.setdefault(s[:i], set())
            if i < len(s):
                nexts[s[:i]].add(s[i])
    for p in all_strings(alphabet, max_len):
        state = con.state_of(p)
        if p not in nexts:
            assert state is None, (label, p)
            continue
        assert state is not None, (label, p)
        assert con.allowed(state) == nexts[p], (label, p)
        assert con.can_end(state) == (p in valid), (label, p)
        assert con.allowed(state) or con.can_end(state), (label, p)  # never a dead end


def chi2_bound(dof: int, z: float = 4.753) -> float:
    """Wilson-Hilferty upper quantile of chi-square with ``dof`` degrees of freedom; z=4.753 is
    the 1e-6 normal tail, so a uniformity test built on it fails by chance once in a million."""
    return dof * (1 - 2 / (9 * dof) + z * (2 / (9 * dof)) ** 0.5) ** 3
