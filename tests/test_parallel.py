"""`gumbelseq.parallel.parallel_map`: results in job order whatever the workers' speeds, errors
and dead workers said in one exception, workers stopped when the caller stops."""

import os
import signal
import time

import pytest

from gumbelseq.errors import GumbelseqError
from gumbelseq.parallel import WorkersStopped, parallel_map, shares
from processes import alive


def _slow_square(delay_for):
    def square(job):
        time.sleep(delay_for.get(job, 0))
        return job * job, os.getpid()

    return square


def _failing(bad):
    def fn(job):
        if job == bad:
            raise ValueError(f"job {job} is bad")
        return job

    return fn


def _dying(bad):
    def fn(job):
        if job == bad:
            os.kill(os.getpid(), signal.SIGKILL)
        return job

    return fn


def _pid_then_wait(_):
    def fn(job):
        if job > 0:
            time.sleep(60)
        return os.getpid()

    return fn


def test_shares_balance_the_weight_in_job_order():
    assert shares([4, 1, 1, 1, 1, 1], 2) == [[0, 5], [1, 2, 3, 4]]
    assert shares([1] * 5, 3) == [[0, 3], [1, 4], [2]]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_results_come_in_job_order_from_every_worker(context):
    # The first jobs are the slowest: later ones arrive first and wait for their turn.
    jobs = list(range(12))
    out = list(parallel_map(_slow_square, ({0: 0.4, 1: 0.3},), jobs, 3, context=context))
    assert [r for r, _ in out] == [j * j for j in jobs]
    assert len({pid for _, pid in out}) == 3 and os.getpid() not in {pid for _, pid in out}


def test_an_error_in_a_worker_is_raised_here_and_the_workers_stop():
    with pytest.raises(ValueError, match="^job 5 is bad$"):
        list(parallel_map(_failing, (5,), list(range(10)), 2, context="fork"))


def _failing_slowly(bad, slow):
    def fn(job):
        if job in slow:
            time.sleep(0.5)
        if job in bad:
            raise ValueError(f"job {job} is bad")
        return job

    return fn


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_the_first_error_in_job_order_is_raised_whichever_worker_meets_its_own_first(context):
    # Job 3 (second worker) fails at once, job 2 (first worker) half a second later: the run
    # must say what one process would say, job 2, after the results before it.
    results = parallel_map(_failing_slowly, ({2, 3}, {2}), list(range(10)), 2, context=context)
    got = []
    with pytest.raises(ValueError, match="^job 2 is bad$"):
        for r in results:
            got.append(r)
    assert got == [0, 1]


def test_a_worker_that_dies_is_workers_stopped():
    with pytest.raises(WorkersStopped) as info:
        list(parallel_map(_dying, (3,), list(range(8)), 2, context="fork"))
    assert isinstance(info.value, GumbelseqError)


def test_closing_early_terminates_the_workers_at_once():
    results = parallel_map(_pid_then_wait, (None,), [0, 1, 2, 3], 2, context="fork")
    first = next(results)  # the other jobs sleep for a minute
    start = time.monotonic()
    results.close()
    assert time.monotonic() - start < 10
    deadline = time.monotonic() + 5
    while alive(first) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(first)


@pytest.mark.parametrize("workers", [1, 2])
def test_map_batches_in_order_with_progress(workers):
    from gumbelseq.parallel import map_batches

    seen = []
    items = list(range(103))
    out = map_batches(lambda b: [x * x for x in b], items, workers, batch=10, min_parallel=20,
                      progress=lambda done, total: seen.append((done, total)))
    assert out == [x * x for x in items]
    assert seen == [(min(10 * k, 103), 103) for k in range(1, 12)]


def _sigint_setup(_):
    # A Ctrl-C in a worker (a terminal sends it to the whole group) does not stop it.
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    return lambda job: (job, signal.getsignal(signal.SIGINT) is signal.SIG_IGN)


CTRL_C_AT_START = """
import multiprocessing, os, signal, sys
from gumbelseq.parallel import parallel_map
import test_parallel

procs = []
cls = type(multiprocessing.get_context(sys.argv[1]).Process())
real_start = cls.start

def start(self):
    procs.append(self)
    os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C, in the middle of the starts
    real_start(self)

cls.start = start
if __name__ == "__main__":
    try:
        parallel_map(test_parallel._sigint_setup, (None,), list(range(4)), 2, context=sys.argv[1])
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=10)
        print("interrupted after", len(procs), "starts; exit codes known:", all(p.exitcode is not None for p in procs))
    else:
        print("not interrupted")
"""


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_ctrl_c_while_workers_start_is_raised_here_once_all_are_started(tmp_path, context):
    """Ctrl-C during the starts: held (blocked) here until every worker exists, then raised here,
    and the workers, which ignore it, are stopped. It had been lost in the standard library's
    after-fork hooks, or printed half a traceback from a spawned worker. Run in a fresh
    single-threaded process with Python's own SIGINT handler, as the commands are."""
    import subprocess
    import sys

    script = tmp_path / "ctrl_c_at_start.py"
    script.write_text(CTRL_C_AT_START)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(script), context], capture_output=True, text=True, timeout=60, env=env,
                       preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL),
                                           signal.pthread_sigmask(signal.SIG_SETMASK, set())))
    assert r.stdout.strip() == "interrupted after 2 starts; exit codes known: True", (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_ignore_sigint_from_their_start(context):
    out = list(parallel_map(_sigint_setup, (None,), list(range(4)), 2, context=context))
    assert out == [(j, True) for j in range(4)]
