"""A real `gumbelseq train` process stopped by Ctrl-C (SIGINT) or killed (SIGKILL): the run
stays resumable, the lock dies with the process, and the resumed run finishes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from processes import alive, kill_all

ARGS = ["train", "--backend", "mle-lstm", "--iterations", "100000", "--batch-size", "16", "--data-size", "100",
        "--checkpoint-every", "50", "--eval-every", "0", "--device", "cpu", "--seed", "3"]


def _start(tmp_path, run):
    env = {**os.environ, "GUMBELSEQ_HOME": str(tmp_path / "home")}
    # SIGTERM's default action, whatever the test runner left (a CI runner may ignore it).
    return subprocess.Popen([sys.executable, "-m", "gumbelseq", *ARGS, "--out", str(run)], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))


def _wait_for_checkpoint(run, proc, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (run / "checkpoint.pt").exists() and proc.poll() is None:
            return
        assert proc.poll() is None, proc.communicate()[1].decode()
        time.sleep(0.05)
    pytest.fail("no checkpoint in time")


def _iteration(run):
    import torch

    return torch.load(run / "checkpoint.pt", weights_only=True)["iteration"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "kill-9"])
def test_stopped_process_leaves_a_resumable_unlocked_run(tmp_path, sig):
    run = tmp_path / "run"
    proc = _start(tmp_path, run)
    _wait_for_checkpoint(run, proc)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=120)
    err = err.decode()
    assert "Traceback" not in err
    if sig in (signal.SIGINT, signal.SIGTERM):  # stopped after the iteration, at a checkpoint written then
        assert proc.returncode == 128 + sig and "continue with: gumbelseq train --resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    stopped_at = _iteration(run)
    assert stopped_at >= 50
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # Shrink the run so the resume finishes quickly: a resumed run keeps its own settings, so
    # edit both copies of `iterations` consistently (config.json and the checkpoint's).
    import torch

    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    cfg = json.loads((run / "config.json").read_text())
    cfg["options"]["iterations"] = ckpt["config"]["options"]["iterations"] = stopped_at + 20
    (run / "config.json").write_text(json.dumps(cfg))
    torch.save(ckpt, run / "checkpoint.pt")
    env = {**os.environ, "GUMBELSEQ_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "gumbelseq", "train", "--resume", str(run)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resuming {run} at iteration {stopped_at}" in r.stderr
    assert _iteration(run) == stopped_at + 20
    its = [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    kept = [row["iteration"] for row in rows if row["iteration"] <= stopped_at]
    assert its == sorted(set(its)) and its[: len(kept)] == kept
    assert len((run / "samples.txt").read_text().splitlines()) == 1000


def _children_of(parent: int) -> list[int]:
    """Processes started with GUMBELSEQ_PARENT_PID=parent (reproduce --seeds's children)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"GUMBELSEQ_PARENT_PID={parent}".encode() in env:
            found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_reproduce_seeds_children_stop_when_the_command_is_killed(tmp_path):
    # The children run in their own sessions (Ctrl-C reaches the command only); when the
    # command is killed outright they must not go on training on their own.
    proc = subprocess.Popen([sys.executable, "-m", "gumbelseq", "reproduce", "--seeds", "0,1", "--workers", "2",
                             "--out", str(tmp_path / "r"), "--only", "gan-a", "--no-plots"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        children: list[int] = []
        while len(children) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            children = _children_of(proc.pid)
        assert len(children) == 2, "the two seed children never started"
        time.sleep(3)  # let them get into training
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 90
        while any(map(alive, children)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(map(alive, children)), "a child kept running after its command was killed"
    finally:
        kill_all(_children_of(proc.pid))
