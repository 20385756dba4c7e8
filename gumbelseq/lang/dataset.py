"""Training data drawn from a grammar: ``draw_dataset``."""

from __future__ import annotations

import hashlib
import os
import random
import signal
from typing import Callable, Iterator

from ..errors import GumbelseqError, UnsupportedGrammarError
from ..parent_death import stop_with_parent
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
    pool = None
    if workers > 1 and len(blocks) > 1:
        pool = _pool(grammar, max_len, mode, ignore, min(workers, len(blocks)), seed, blocks)
    if pool is None:
        sampler = Sampler(lang, mode, ignore)
        for j, size in blocks:
            out += _draw_block(sampler, seed, j, size)
        drawn, kept = sampler.drawn, sampler.kept
    else:
        for lines, d, k in _in_processes(pool, blocks):
            out += lines
            drawn += d
            kept += k
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


def _pool(grammar: Grammar, max_len: int, mode: str, ignore: str, workers: int,
          seed: int, blocks: list[tuple[int, int]]) -> list | None:
    """``workers`` drawing processes, each with a pipe back and its share of ``blocks``, or None
    where this system cannot start them: the blocks are then drawn here, the same strings.

    Each block goes to the worker with the fewest strings so far (block 0 is four blocks'
    worth), and a worker sends its blocks down its own pipe as it draws them. Nothing runs in
    threads, so nothing can hang when a worker dies or is terminated (``ProcessPoolExecutor``'s
    feeder and manager threads could, under load, on Ctrl-C)."""
    import multiprocessing

    shares: list[list[tuple[int, int]]] = [[] for _ in range(workers)]
    load = [0] * workers
    for j, size in blocks:
        k = load.index(min(load))
        shares[k].append((j, size))
        load[k] += size
    ctx = multiprocessing.get_context("spawn")
    started: list = []
    try:
        for share in shares:
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker_main, daemon=True,
                               args=(writer, grammar, max_len, mode, ignore, os.getpid(), seed, share))
            started.append((proc, reader))
            proc.start()
            writer.close()  # the worker's end: its exit then reads as end of file here
    except (OSError, ImportError, NotImplementedError, ValueError):
        _stop(started, at_once=True)
        return None
    return started


def _in_processes(workers: list, blocks: list[tuple[int, int]]) -> Iterator[tuple[list[str], int, int]]:
    """Each block's (strings, draws, kept), in block order, read from the workers' pipes as
    they come (a block that comes early waits here, so no worker waits for another)."""
    from multiprocessing.connection import wait

    finished = False
    early: dict[int, tuple[list[str], int, int]] = {}
    open_readers = [reader for _, reader in workers]
    try:
        for j in range(len(blocks)):
            while j not in early:
                if not open_readers:
                    raise EOFError
                for reader in wait(open_readers):
                    try:
                        message = reader.recv()  # type: ignore[union-attr]
                    except EOFError:  # a worker that sent all its blocks, or one that died
                        open_readers.remove(reader)
                        continue
                    if message[0] == "error":
                        raise message[1]
                    early[message[1]] = message[2:]
            yield early.pop(j)
        finished = True
    except (EOFError, OSError):
        raise GumbelseqError(
            "the worker processes drawing the data stopped (killed, out of memory, or unable to start:"
            " a script must call draw_dataset with workers > 1 under `if __name__ == \"__main__\":`)"
        ) from None
    finally:
        _stop(workers, at_once=not finished)


def _stop(workers: list, *, at_once: bool) -> None:
    """Wait for finished workers; on an error or Ctrl-C, terminate them first (SIGTERM, then
    SIGKILL for one that does not go)."""
    for proc, _ in workers:
        if at_once and proc.pid is not None:
            proc.terminate()
    for proc, reader in workers:
        if proc.pid is not None:
            proc.join(timeout=5)
            if proc.exitcode is None:
                proc.kill()
                proc.join()
        reader.close()


def _worker_main(writer, grammar: Grammar, max_len: int, mode: str, ignore: str, parent: int,  # noqa: ANN001
                 seed: int, jobs: list[tuple[int, int]]) -> None:
    # Ctrl-C reaches the whole process group: the command stops its workers itself. If the
    # command is killed outright, nothing would: a worker would block writing to a pipe no one
    # reads. Linux kills it with its parent instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_with_parent(parent, signal.SIGKILL)
    try:
        sampler = Sampler(Language(grammar, max_len), mode, ignore)
        for j, size in jobs:
            before = (sampler.drawn, sampler.kept)
            lines = _draw_block(sampler, seed, j, size)
            writer.send(("ok", j, lines, sampler.drawn - before[0], sampler.kept - before[1]))
    except GumbelseqError as e:
        writer.send(("error", e))
    except Exception as e:  # noqa: BLE001 - said in one line by the command
        writer.send(("error", GumbelseqError(f"drawing the data failed in a worker: {type(e).__name__}: {e}")))
    finally:
        writer.close()


def _derives_line_breaks(lang: Language, mode: str, rng: random.Random) -> bool:
    derive = lang.derive_uniform if mode == "uniform" else lang.derive_pcfg
    return any("\n" in t or "\r" in t for _ in range(20) for _, t in derive(rng))
