"""Training data drawn from a grammar: ``draw_dataset``."""

from __future__ import annotations

import hashlib
import random
from typing import Callable

from ..errors import GumbelseqError, UnsupportedGrammarError
from ..parallel import WorkersStopped, parallel_map
from .grammar import Grammar
from .language import MODES, Language
from .sampler import Sampler

#: Why uniform is the default: the paper's 5000 strings "up to length 12" are read as a uniform
#: draw over the language, which makes coverage and distribution distances well defined
#: (every string of the 1365 has probability 1/1365). A PCFG with equal alternatives instead
#: piles its mass on the shortest strings (half of arith's draws would be "x").
DEFAULT_MODE = "uniform"


#: How a dataset's strings are split into independently seeded blocks, so that worker processes
#: can draw them and the output depends only on the seed, never on the number of workers. Block
#: 0 holds the first ``FIRST_BLOCK`` strings, drawn from ``random.Random(seed)`` as earlier
#: versions drew every string: a dataset of at most that many strings is the same as before
#: (the reproduction's training sets and 10,000-string reference draws among them). Block j >= 1
#: holds the next ``BLOCK`` strings, drawn from a generator seeded by a hash of (seed, j).
FIRST_BLOCK = 16_384
BLOCK = 4_096


def draw_dataset(
    grammar: Grammar,
    n: int,
    *,
    max_len: int = 12,
    mode: str = DEFAULT_MODE,
    seed: int = 0,
    language: Language | None = None,
    ignore: str = "minimal",
    on_notice: Callable[[str], None] | None = None,
    workers: int = 1,
) -> list[str]:
    """``n`` valid strings of the grammar's language with length <= ``max_len``, drawn with
    ``seed`` (private generators; global RNGs are untouched).

    ``uniform``: every string the sampler can write equally likely (see ``sampler.py``: for a
    grammar whose ``Language.exact`` holds, every string of the language up to ``max_len``).
    ``pcfg``: a random derivation, alternatives equally likely among those that still fit.
    ``ignore``: what to do with ``%ignore``d text (``none``, ``minimal``, ``random``).
    ``on_notice`` hears how many draws Lark read differently (and were drawn again), if any.
    ``workers`` > 1 draws the blocks (``FIRST_BLOCK``, ``BLOCK``) in that many processes
    (started with ``spawn``: call it under ``if __name__ == "__main__":`` in a script); the
    strings are the same for any number of workers.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if n < 0:
        raise ValueError("n must be >= 0")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    blocks = _blocks(n)
    out: list[str] = []
    drawn = kept = 0
    # Built here even when workers draw: a grammar that cannot be drawn from fails here, with
    # its own message, rather than in a worker's start-up.
    lang = language if language is not None and language.max_len == max_len else Language(grammar, max_len)
    results = None
    if workers > 1 and len(blocks) > 1:
        # Processes started with spawn (a forked copy of a parent running torch's threads is
        # unsafe); where none can be started, the blocks are drawn here, the same strings.
        results = parallel_map(_block_drawer, (grammar, max_len, mode, ignore, seed), blocks,
                               min(workers, len(blocks)), weights=[size for _, size in blocks])
    if results is None:
        sampler = Sampler(lang, mode, ignore)
        for j, size in blocks:
            out += _draw_block(sampler, seed, j, size)
        drawn, kept = sampler.drawn, sampler.kept
    else:
        try:
            for lines, d, k in results:
                out += lines
                drawn += d
                kept += k
        except WorkersStopped:
            raise GumbelseqError(
                "the worker processes drawing the data stopped (killed, out of memory, or unable to start:"
                " a script must call draw_dataset with workers > 1 under `if __name__ == \"__main__\":`)"
            ) from None
        finally:
            results.close()  # stops the workers now if this loop was interrupted
    if on_notice is not None and grammar.algorithm != "lalr" and mode == "uniform":
        on_notice(
            f"{grammar.path}: the grammar is parsed with Earley (not strict LALR(1)), so uniform is over derivations:"
            " a string with several parses is drawn as often as it has parses"
        )
    if on_notice is not None and drawn > kept:
        on_notice(
            f"{drawn - kept} of {drawn} draws were read differently by"
            f" Lark's lexer and drawn again ({100 * kept / drawn:.1f}% kept)"
        )
    return out


def _blocks(n: int) -> list[tuple[int, int]]:
    """(block index, strings in it) for a dataset of ``n`` strings (one empty block for 0)."""
    out = [(0, min(n, FIRST_BLOCK))]
    done, j = out[0][1], 1
    while done < n:
        size = min(BLOCK, n - done)
        out.append((j, size))
        done += size
        j += 1
    return out


def block_seed(seed: int, j: int) -> int:
    """The seed of block ``j`` (block 0: ``seed`` itself)."""
    if j == 0:
        return seed
    digest = hashlib.blake2b(f"gumbelseq data block {seed} {j}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big")


def _draw_block(sampler: Sampler, seed: int, j: int, size: int) -> list[str]:
    rng = random.Random(block_seed(seed, j))
    lang = sampler.language
    out = []
    for _ in range(size):
        try:
            out.append(sampler.draw(rng))
        except UnsupportedGrammarError:
            if not out and _derives_line_breaks(lang, sampler.mode, rng):
                raise UnsupportedGrammarError(
                    f"{lang.grammar.path}: the grammar derives line breaks, which a one-string-per-line"
                    " file cannot hold"
                ) from None
            raise
    return out


def _block_drawer(grammar: Grammar, max_len: int, mode: str, ignore: str, seed: int) -> Callable:
    """A worker's setup (``parallel_map``): a sampler built once, drawing one block per call."""
    sampler = Sampler(Language(grammar, max_len), mode, ignore)

    def draw(block: tuple[int, int]) -> tuple[list[str], int, int]:
        before = (sampler.drawn, sampler.kept)
        lines = _draw_block(sampler, seed, *block)
        return lines, sampler.drawn - before[0], sampler.kept - before[1]

    return draw


def _derives_line_breaks(lang: Language, mode: str, rng: random.Random) -> bool:
    derive = lang.derive_uniform if mode == "uniform" else lang.derive_pcfg
    return any("\n" in t or "\r" in t for _ in range(20) for _, t in derive(rng))
