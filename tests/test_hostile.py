"""Hostile inputs against the real CLI: the project's trust guarantees, case by case.

For every case in ``hostile_cases.build_cases()`` (run in a subprocess, in its own folder):
the exit status is not 0; stderr is exactly one line starting with ``Error:`` (or, for a case
that is a click usage error, exit status 2 with click's usage text); no ``Traceback`` anywhere;
and no file under the case's folder changed except the outputs the case allows (most allow
none). Then two concurrent ``train --out same``, and Hypothesis mutations of a run directory
at the library level: loading or resuming either works or raises a one-line
``GumbelseqError``, never anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gumbelseq.errors import GumbelseqError

from hostile_cases import (
    TIMEOUT,
    TINY_GAN,
    TINY_MLE,
    Outcome,
    build_cases,
    popen_cli,
    problems,
    run_case,
    run_cli,
)

CASES = build_cases()


# -- fixtures: tiny trained runs, made once per module with the CLI ----------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """``RUN`` (mle-lstm), ``GAN`` (gumbel-lstm-gan) and ``R`` (reproduce --quick --only mle)."""
    d = tmp_path_factory.mktemp("hostile-base")
    home = d / "home"
    jobs = {
        "RUN": ["train", *TINY_MLE, "--out", "RUN", "--seed", "0"],
        "GAN": ["train", *TINY_GAN, "--out", "GAN", "--seed", "0"],
        "R": ["reproduce", "--quick", "--only", "mle", "--out", "R"],
    }
    procs = {k: popen_cli(args, d, home) for k, args in jobs.items()}
    for name, p in procs.items():
        out, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, f"fixture {name} failed:\n{err.decode(errors='replace')[-3000:]}"
    assert (d / "RUN" / "checkpoint.pt").exists() and (d / "GAN" / "checkpoint.pt").exists()
    assert (d / "R" / "runs" / "mle" / "timing.json").exists()
    return d


@pytest.fixture(scope="module")
def outcomes(base, tmp_path_factory) -> dict[str, Outcome]:
    """Every case, two at a time (CI has two cores)."""
    root = tmp_path_factory.mktemp("hostile-cases")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.id: pool.submit(run_case, c, root, base) for c in CASES}
        return {cid: f.result() for cid, f in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case, outcomes):
    o = outcomes[case.id]
    found = problems(o)
    r = o.result
    assert not found, (
        f"{case.id}: gumbelseq {' '.join(case.argv)}\n  - " + "\n  - ".join(found)
        + f"\n--- exit {r.rc}, {r.seconds:.1f} s, folder {o.folder}\n--- stderr (tail):\n{r.stderr[-2000:]}"
        + f"\n--- stdout (tail):\n{r.stdout[-500:]}"
    )


# -- two trainers racing for one folder ---------------------------------------------------------


def test_two_trainers_same_out(base, tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    args = ["train", *TINY_MLE, "--out", "same", "--seed", "0"]
    procs = [popen_cli(args, work, home) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        results.append((p.returncode, out.decode(errors="replace"), err.decode(errors="replace")))
    codes = [rc for rc, _, _ in results]
    for rc, out, err in results:
        assert "Traceback" not in out + err, err[-2000:]
    assert sorted(rc == 0 for rc in codes) == [False, True], f"exactly one must succeed; exit codes {codes}"
    _, _, loser_err = next(r for r in results if r[0] != 0)
    lines = loser_err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), f"loser's stderr: {loser_err[-1500:]!r}"
    low = lines[0].lower()
    assert "in use" in low or "already holds a run" in low, lines[0]
    # One consistent run: the same files as the fixture's identical solo run, and it samples.
    run = work / "same"
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in (base / "RUN").iterdir())
    assert (run / "data.txt").read_bytes() == (base / "RUN" / "data.txt").read_bytes()
    assert (run / "metrics.jsonl").read_text() == (base / "RUN" / "metrics.jsonl").read_text()
    r = run_cli(["sample", "--run", "same", "-n", "5"], work, home)
    assert r.rc == 0, r.stderr[-2000:]
    assert len(r.stdout.splitlines()) == 5


# -- Hypothesis: mutated run directories at the library level ------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def _address_space_limit(extra: int = 8 * 2**30):
    """Cap this process's address space at its current size plus ``extra`` while a mutated run
    loads (a config may ask for an LSTM of any size); the cap is lifted afterwards."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        want = current + extra
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _copied_run(base: Path, stack: contextlib.ExitStack) -> Path:
    d = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hostile-fuzz-")))
    run = d / "RUN"
    shutil.copytree(base / "RUN", run)
    return run


def _expect_ok_or_one_line(fn) -> None:
    with _address_space_limit():
        try:
            fn()
        except GumbelseqError as e:
            msg = str(e)
            assert msg.strip() and "\n" not in msg.strip(), f"{type(e).__name__} message is not one line: {msg!r}"


def _load(run: Path) -> None:
    from gumbelseq.model.run import load_run

    load_run(run, device="cpu")


def _resume(run: Path) -> None:
    """The public resume path: ``resume_training`` where it exists, else the older
    ``load_config`` + ``train`` pair the CLI used."""
    import gumbelseq.model.train as T

    if hasattr(T, "resume_training"):
        T.resume_training(run, device="cpu")
        return
    from gumbelseq.lang.grammar import load_grammar
    from gumbelseq.model.registry import get_backend

    cfg = T.load_config(run)
    T.train(run, get_backend(cfg.backend), load_grammar(run / "grammar.lark"), device="cpu")


def _paths(cfg: dict) -> list[tuple[str, ...]]:
    out = [(k,) for k in cfg]
    for k, v in cfg.items():
        if isinstance(v, dict):
            out += [(k, kk) for kk in v]
    return out


@FUZZ
@given(data=st.data())
def test_fuzz_config(base, data):
    with contextlib.ExitStack() as stack:
        run = _copied_run(base, stack)
        p = run / "config.json"
        cfg = json.loads(p.read_text())
        path = data.draw(st.sampled_from(_paths(cfg)), label="key")
        action = data.draw(st.sampled_from(["delete", "replace"]), label="action")
        parent = cfg
        for k in path[:-1]:
            parent = parent[k]
        if action == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JSON, label="value")
        p.write_text(json.dumps(cfg))
        _expect_ok_or_one_line(lambda: _load(run))


@FUZZ
@given(data=st.data())
def test_fuzz_metrics_then_resume(base, data):
    with contextlib.ExitStack() as stack:
        run = _copied_run(base, stack)
        p = run / "metrics.jsonl"
        lines = p.read_bytes().splitlines(keepends=True)
        line = data.draw(
            st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.text(max_size=40).map(str.encode), st.binary(max_size=40)),
            label="line",
        )
        at = data.draw(st.integers(0, len(lines)), label="at")
        lines.insert(at, line + b"\n")
        p.write_bytes(b"".join(lines))
        _expect_ok_or_one_line(lambda: _resume(run))


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint(base, data):
    with contextlib.ExitStack() as stack:
        run = _copied_run(base, stack)
        p = run / "checkpoint.pt"
        blob = bytearray(p.read_bytes())
        if data.draw(st.booleans(), label="truncate"):
            blob = blob[: data.draw(st.integers(0, len(blob) - 1), label="offset")]
        else:
            flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)), min_size=1, max_size=8),
                              label="flips")
            for pos, xor in flips:
                blob[pos] ^= xor
        p.write_bytes(bytes(blob))

        def load_and_sample() -> None:
            from gumbelseq.model.run import load_run

            load_run(run, device="cpu").sample(5, tau=1.0, seed=0)

        _expect_ok_or_one_line(load_and_sample)
