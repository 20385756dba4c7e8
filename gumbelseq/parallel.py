"""Jobs split across worker processes, results in job order: ``parallel_map``.

``data --workers`` (blocks of strings), ``score``'s grammar check and ``score --validator``
(batches of samples, ``map_batches``) hand independent jobs to worker processes. Each worker
gets a fixed share of the jobs (each job to the worker with the least weight so far), builds
what it needs once (``setup``), and sends each result down its own pipe as soon as it has it;
the caller reads the pipes as results come and yields them in job order. Nothing runs in
threads: ``ProcessPoolExecutor``'s feeder and manager threads could hang its shutdown after
Ctrl-C on a loaded machine, and its shutdown waits for every queued job (a Ctrl-C of ``score``
over 1.6 million molecules went on for minutes).

Stopping: on Ctrl-C (or any error) the caller terminates its workers at once; the workers
ignore SIGINT themselves (a terminal sends it to the whole process group, and the caller
decides), and on Linux they are killed with their caller if it is killed (``kill -9``). A
Ctrl-C while they start is held until all have started (``_hold_sigint``).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable, Iterator, Sequence

from .errors import GumbelseqError, first_line
from .parent_death import stop_with_parent


class WorkersStopped(GumbelseqError):
    """A worker process ended before sending all its results (killed, out of memory, a crash in
    a library, or unable to start)."""


def shares(weights: Sequence[int], workers: int) -> list[list[int]]:
    """Job indices per worker, in order: each job to the worker with the least weight so far."""
    out: list[list[int]] = [[] for _ in range(workers)]
    load = [0] * workers
    for i, w in enumerate(weights):
        k = load.index(min(load))
        out[k].append(i)
        load[k] += w
    return out


def parallel_map(
    setup: Callable[..., Callable[[Any], Any]],
    setup_args: tuple,
    jobs: Sequence[Any],
    workers: int,
    *,
    weights: Sequence[int] | None = None,
    context: str = "spawn",
) -> Iterator[Any] | None:
    """``setup(*setup_args)(job)`` for every job, computed in ``workers`` processes, yielded in
    job order; None where this system cannot start processes (the caller then does the work
    itself). ``setup`` must be a module-level function (workers receive it by reference) and is
    called once per worker. An exception in a worker is raised here (a ``GumbelseqError`` as it
    is, others as they pickle), the first in job order; a worker that dies is ``WorkersStopped``.

    Start the returned generator's first ``next`` promptly and close it (or exhaust it): until
    then the workers wait, and closing it early terminates them."""
    import multiprocessing

    parts = shares(weights if weights is not None else [1] * len(jobs), workers)
    ctx = multiprocessing.get_context(context)
    started: list[tuple[Any, Any]] = []
    # While the workers start, SIGINT is blocked here and ignored by them from their first
    # instruction: a Ctrl-C then waits until this process has them all, and is raised here.
    # Otherwise it could land in a spawned worker still unpickling its setup (a half-printed
    # traceback), or in the standard library's after-fork hooks here, which drop it.
    if context != "fork":
        # Spawned workers need multiprocessing's resource tracker, and starting it unblocks
        # SIGINT here (a held Ctrl-C would then be dropped): start it first.
        try:
            from multiprocessing import resource_tracker

            resource_tracker.ensure_running()
        except (OSError, ImportError):
            return None
    old_mask = _hold_sigint()
    try:
        try:
            for part in parts:
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker_main, daemon=True,
                                   args=(writer, os.getpid(), setup, setup_args, [(i, jobs[i]) for i in part]))
                started.append((proc, reader))
                proc.start()
                writer.close()  # the worker's end: its exit then reads as end of file here
        finally:
            _release_sigint(old_mask)  # a Ctrl-C that came meanwhile is raised from here on
        return _results(started, len(jobs))
    except (OSError, ImportError, NotImplementedError, ValueError):
        _stop(started, at_once=True)
        return None
    except BaseException:
        _stop(started, at_once=True)
        raise


def _hold_sigint() -> Any:
    """Block SIGINT in this process (it stays pending: Linux keeps a blocked signal even while
    ignored) and ignore it, a disposition children keep across fork and exec (a spawned Python
    starts with it). None where that cannot be done: no signal masks (Windows), not the main
    thread (only it may set handlers), a handler Python did not set, or other threads (the
    ``score`` and ``data`` commands run none)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) is None:  # a handler set outside Python: it could not be put back
        return None
    if not _single_threaded():
        # Another thread (torch's OpenMP pool, say) that does not block SIGINT would take the
        # Ctrl-C while it is ignored, and it would be lost: leave SIGINT alone then.
        return None
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    return mask, signal.signal(signal.SIGINT, signal.SIG_IGN)


def _single_threaded() -> bool:
    """Whether this process runs one thread, native ones included (Linux); False when unknown."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _release_sigint(held: Any) -> None:
    if held is not None:
        mask, handler = held
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def map_batches(fn: Callable[[list], list], items: list, workers: int, *, batch: int, min_parallel: int,
                progress: Callable[[int, int], None] | None = None) -> list:
    """``fn`` over consecutive batches of ``items``, results flattened in order: in ``workers``
    forked processes when there are at least ``min_parallel`` items, else (or where processes
    cannot start) here. Forked, so ``fn`` may be any callable (a bound method, a closure) and
    what it uses is inherited, not pickled; only the batches' results travel back.

    ``progress(done, total)``: called here, in items, after each batch in order. Errors are the
    caller's to word: ``WorkersStopped`` for a worker that died, else what ``fn`` raised."""
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    parallel = None
    if workers > 1 and len(items) >= min_parallel:
        parallel = parallel_map(_identity, (fn,), batches, min(workers, len(batches)), context="fork")
    results = (fn(b) for b in batches) if parallel is None else parallel
    out: list = []
    try:
        for result in results:
            out.extend(result)
            if progress is not None:
                progress(len(out), len(items))
    finally:
        if parallel is not None:
            parallel.close()
    return out


def _identity(fn: Callable) -> Callable:
    """``parallel_map``'s setup for a function that needs none."""
    return fn


def _results(workers: list[tuple[Any, Any]], n: int) -> Iterator[Any]:
    from multiprocessing.connection import wait

    finished = False
    early: dict[int, Any] = {}
    # A job's error is raised when its turn comes, as the work done here would meet it: the
    # first error in job order, whichever worker reaches its own first (else two workers could
    # report two different lines of the same input from one run to the next).
    errors: dict[int, BaseException] = {}
    open_readers = [reader for _, reader in workers]
    try:
        for i in range(n):
            while i not in early:
                if i in errors:
                    raise errors[i]
                if not open_readers:
                    if errors:
                        raise errors[min(errors)]
                    raise WorkersStopped("a worker process stopped before it sent all its results")
                for reader in wait(open_readers):
                    try:
                        kind, index, value = reader.recv()  # type: ignore[union-attr]
                    except (EOFError, OSError):  # a worker that sent everything, or one that died
                        open_readers.remove(reader)
                        continue
                    if kind == "error":
                        if index < i:  # before any job (its setup failed): nothing to wait for
                            raise value
                        errors[index] = value
                    else:
                        early[index] = value
            yield early.pop(i)
        finished = True
    finally:
        _stop(workers, at_once=not finished)


def _stop(workers: list[tuple[Any, Any]], *, at_once: bool) -> None:
    """Wait for finished workers; on an error or Ctrl-C terminate them first (SIGTERM, then
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


def _worker_main(writer: Any, parent: int, setup: Callable[..., Callable[[Any], Any]], setup_args: tuple,
                 jobs: list[tuple[int, Any]]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # blocked by parallel_map while it started us
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    stop_with_parent(parent, signal.SIGKILL)
    index = -1
    try:
        fn = setup(*setup_args)
        for index, job in jobs:
            writer.send(("ok", index, fn(job)))
    except BaseException as e:  # noqa: BLE001 - sent to the caller, which raises it
        try:
            writer.send(("error", index, e))
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its one line
            writer.send(("error", index, GumbelseqError(f"{type(e).__name__}: {first_line(e)}")))
    finally:
        writer.close()
