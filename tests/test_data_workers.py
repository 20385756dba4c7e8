"""``draw_dataset(workers=N)`` and ``data --workers N``: blocks drawn in processes.

The output depends on the seed only: the same strings for any number of workers, the first
``FIRST_BLOCK`` strings what a smaller draw gives (so earlier datasets stay as they were), later
blocks uniform too. A failing draw in a worker is one ``Error:`` line; Ctrl-C and ``kill -9`` of
the command leave no worker behind and the output file untouched.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from gumbelseq.lang.dataset import BLOCK, FIRST_BLOCK, _blocks, block_seed, draw_dataset
from gumbelseq.lang.grammar import load_grammar
from oracle import BY_NAME, chi2_bound
from processes import alive, kill_all

N = FIRST_BLOCK + 2 * BLOCK + 7


def test_blocks_cover_the_dataset_once():
    for n in [0, 1, FIRST_BLOCK - 1, FIRST_BLOCK, FIRST_BLOCK + 1, N, 10**6]:
        blocks = _blocks(n)
        assert [j for j, _ in blocks] == list(range(len(blocks)))
        assert sum(size for _, size in blocks) == n
        assert blocks[0][1] == min(n, FIRST_BLOCK) and all(0 < s <= BLOCK for _, s in blocks[1:])
    assert block_seed(7, 0) == 7
    assert len({block_seed(s, j) for s in range(20) for j in range(1, 50)}) == 20 * 49


def test_the_same_strings_for_any_number_of_workers():
    g = load_grammar(BY_NAME["calc"].path)
    serial = draw_dataset(g, N, max_len=14, seed=4)
    assert len(serial) == N
    for workers in (2, 3):
        assert draw_dataset(g, N, max_len=14, seed=4, workers=workers) == serial
    # The first block is the draw of earlier versions: a shorter dataset is its prefix.
    assert draw_dataset(g, FIRST_BLOCK, max_len=14, seed=4) == serial[:FIRST_BLOCK]
    assert draw_dataset(g, N, max_len=14, seed=5, workers=2) != serial


def test_random_spacing_is_drawn_from_each_block_generator_too():
    # --ignore random draws spacing from the same generators: still the same for any workers.
    g = load_grammar(BY_NAME["kwname"].path)
    serial = draw_dataset(g, N, max_len=8, seed=6, ignore="random")
    assert draw_dataset(g, N, max_len=8, seed=6, ignore="random", workers=2) == serial
    assert any(" " in s for s in serial[FIRST_BLOCK:])


@pytest.mark.parametrize("fail_at", [0, 1])
def test_without_process_support_the_blocks_are_drawn_here(monkeypatch, fail_at):
    # Where processes cannot be started (a process limit, a sandbox), the same strings are
    # drawn in this process instead of failing; a worker already started is stopped.
    from multiprocessing.context import SpawnProcess

    g = load_grammar(BY_NAME["calc"].path)
    serial = draw_dataset(g, FIRST_BLOCK + 2 * BLOCK, max_len=8, seed=1)
    start, started = SpawnProcess.start, []

    def refuse(self):
        if len(started) == fail_at:
            raise OSError(11, "Resource temporarily unavailable")
        start(self)
        started.append(self)

    monkeypatch.setattr(SpawnProcess, "start", refuse)
    assert draw_dataset(g, FIRST_BLOCK + 2 * BLOCK, max_len=8, seed=1, workers=3) == serial
    assert [p.exitcode is not None for p in started] == [True] * fail_at


def test_later_blocks_are_uniform_too():
    # adjacent.lark: 110 strings of length <= 2 (the example), drawn from blocks >= 1.
    g = load_grammar(BY_NAME["adjacent"].path)
    lines = draw_dataset(g, FIRST_BLOCK + 4 * BLOCK, max_len=2, seed=3, ignore="none", workers=2)[FIRST_BLOCK:]
    counts = Counter(lines)
    assert len(counts) == 110
    expected = len(lines) / 110
    assert sum((c - expected) ** 2 / expected for c in counts.values()) < chi2_bound(109)


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "gumbelseq", *args], capture_output=True, text=True, **kw)


def test_cli_workers_do_not_change_the_output(tmp_path):
    args = ["data", "-g", str(BY_NAME["calc"].path), "-n", str(FIRST_BLOCK + BLOCK + 1), "--max-len", "10", "--seed", "2"]
    one = _cli(*args, "--workers", "1")
    two = _cli(*args, "--workers", "2")
    assert one.returncode == two.returncode == 0, two.stderr
    assert one.stdout == two.stdout and one.stdout.count("\n") == FIRST_BLOCK + BLOCK + 1


def test_a_draw_that_fails_in_a_worker_is_one_error_line(tmp_path):
    g = tmp_path / "merge.lark"
    g.write_text('start: NAME NAME\nNAME: /[a-z]+/\n%ignore " "\n')  # always merges without a space
    r = _cli("data", "-g", str(g), "--max-len", "6", "-n", str(FIRST_BLOCK + 1), "--workers", "2", "--ignore", "none")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1 and "merge too often" in r.stderr


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and pgrep")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_stopping_the_command_stops_its_workers_and_keeps_the_file(tmp_path, sig):
    out = tmp_path / "data.txt"
    out.write_text("the user's file\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gumbelseq", "data", "-g", "json", "-n", "2000000", "--max-len", "100",
         "--workers", "2", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # As a terminal's foreground command: a shell's background job (as a CI runner may
        # start the tests) inherits SIGINT ignored, and Python then keeps ignoring it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [p for p in _children(proc.pid) if "spawn_main" in open(f"/proc/{p}/cmdline").read()]
            if len(workers) == 2:
                break
            time.sleep(0.2)
        assert len(workers) == 2, "the workers never started"
        time.sleep(1.5)  # drawing
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0 and "Traceback" not in err
        deadline = time.monotonic() + 20
        while any(map(alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(alive, workers)), "a worker kept running after its command stopped"
        assert out.read_text() == "the user's file\n"
        assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]  # no temporary file left
    finally:
        kill_all(_children(proc.pid))
        if proc.poll() is None:
            proc.kill()
