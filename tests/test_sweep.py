"""`gumbelseq sweep`: Optuna grids and searches whose trials are ordinary run directories.

Real worker processes where it matters (two workers share a grid; Ctrl-C on the command);
in-process sweeps (``workers=1``) for resuming, searching and the storage options. Tiny
budgets: 20 iterations, batches of 16, 200 training strings.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("optuna")

from gumbelseq.cli import main  # noqa: E402
from gumbelseq.errors import GumbelseqError  # noqa: E402
from gumbelseq.lang.grammar import load_grammar  # noqa: E402
from gumbelseq.lang.score import score_samples  # noqa: E402
from gumbelseq.model.run import load_run  # noqa: E402
from gumbelseq.model.sweep import append_result, missing_trials, read_results, run_sweep  # noqa: E402
from gumbelseq.model.sweep_file import load_sweep_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

GRID = """\
name = "{name}"
backend = "gumbel-lstm-gan"
iterations = {iterations}
checkpoint_every = {checkpoint_every}
seeds = [0, 1]
samples = 200
[data]
n = 200
seed = 3
[fixed]
batch_size = 16
[grid]
tau_end = {values}
"""


def _grid(tmp_path: Path, name: str = "g", iterations: int = 20, values: str = "[0.5, 2.0]",
          checkpoint_every: int = 1000) -> Path:
    f = tmp_path / f"{name}.toml"
    f.write_text(GRID.format(name=name, iterations=iterations, values=values, checkpoint_every=checkpoint_every))
    return f


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "GUMBELSEQ_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}


def _cli(tmp_path: Path, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gumbelseq", "sweep", *args], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# -- a grid on two worker processes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    f = _grid(tmp)
    t0 = time.monotonic()
    r = _cli(tmp, str(f), "--out", str(tmp / "out"), "--workers", "2", "--json")
    return tmp, f, r, time.monotonic() - t0


def test_grid_on_two_workers_runs_every_trial_once(grid_sweep):
    tmp, f, r, _seconds = grid_sweep
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    report = json.loads(r.stdout)  # stdout is the JSON object alone; progress went to stderr
    assert report["mode"] == "grid" and report["metric"] == "validity"
    trials = report["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 4
    points = sorted((t["params"]["tau_end"], t["seed"]) for t in trials)
    assert points == [(0.5, 0), (0.5, 1), (2.0, 0), (2.0, 1)]
    rows = read_results(tmp / "out")
    assert len(rows) == 4 and sorted(r_["trial"] for r_ in rows) == [t["number"] for t in trials]
    assert {r_["worker"] for r_ in rows} and all(r_["state"] == "complete" for r_ in rows)
    for t in trials:
        run = load_run(tmp / "out" / t["run_dir"], device="cpu")
        assert run.iteration == 20 and run.config.seed == t["seed"]
        assert run.config.options["tau_end"] == t["params"]["tau_end"]
        assert len((tmp / "out" / t["run_dir"] / "samples.txt").read_text().splitlines()) == 200
    logs = sorted((tmp / "out" / "logs").iterdir())
    assert [p.name for p in logs] == ["worker-1.log", "worker-2.log"]


def test_a_trial_is_what_train_gives_with_the_same_options_and_seed(grid_sweep, tmp_path):
    tmp, f, r, _ = grid_sweep
    trial = json.loads(r.stdout)["trials"][0]
    out = tmp / "out"
    direct = tmp_path / "direct"
    args = ["train", "--data", str(out / "data.txt"), "--max-len", "12", "--backend", "gumbel-lstm-gan",
            "--iterations", "20", "--batch-size", "16", "-o", f"tau_end={trial['params']['tau_end']}",
            "--seed", str(trial["seed"]), "--device", "cpu", "--out", str(direct)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    samples = load_run(direct, device="cpu").sample(200, tau=1.0, seed=trial["seed"])
    assert samples == (out / trial["run_dir"] / "samples.txt").read_text().splitlines()
    data = (out / "data.txt").read_text().splitlines()
    rep = score_samples(samples, load_grammar("arith"), reference=data, max_len=12, show_invalid=0)
    for key, value in trial["metrics"].items():
        assert getattr(rep, key) == value, key


def test_rerunning_a_finished_sweep_redoes_nothing(grid_sweep):
    tmp, f, r, _ = grid_sweep
    before = (tmp / "out" / "results.jsonl").read_bytes()
    again = _cli(tmp, str(f), "--out", str(tmp / "out"))
    assert again.returncode == 0, again.stderr
    assert (tmp / "out" / "results.jsonl").read_bytes() == before
    assert "complete" in again.stdout and "by options, over seeds" in again.stdout


# -- interrupting and resuming ---------------------------------------------------------------------


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path):
    f = _grid(tmp_path, "long", iterations=600, values="[1.0]", checkpoint_every=20)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gumbelseq", "sweep", str(f), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    end = time.monotonic() + 120
    while time.monotonic() < end:  # both trials past a checkpoint: a stop mid-training
        ckpts = list((out / "trials").glob("*/checkpoint.pt")) if (out / "trials").exists() else []
        if len(ckpts) == 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "run the same command again" in err
    rows = read_results(out)
    assert rows and all(r["state"] == "interrupted" for r in rows)
    interrupted = {r["trial"]: r["run_dir"] for r in rows}
    stopped_at = {d: json.loads((out / d / "metrics.jsonl").read_text().splitlines()[-1])["iteration"]
                  for d in interrupted.values()}
    assert all(0 < it < 600 for it in stopped_at.values())

    again = _cli(tmp_path, str(f), "--out", str(out), "--workers", "2", "--json")
    assert again.returncode == 0, again.stderr
    trials = json.loads(again.stdout)["trials"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert sorted(t["seed"] for t in complete) == [0, 1]  # each point once
    for t in complete:  # the retry resumed the interrupted run directory
        assert t["retry_of"] in interrupted and t["run_dir"] == interrupted[t["retry_of"]]
        rows_ = [json.loads(line) for line in (out / t["run_dir"] / "metrics.jsonl").read_text().splitlines()]
        its = [row["iteration"] for row in rows_ if not any(k.startswith("eval_") for k in row)]
        assert its == list(range(10, 601, 10))  # resumed, not restarted: no iteration twice
    assert len(read_results(out)) == len(rows) + 2


def test_a_partial_sweep_resumes_without_redoing_complete_trials(tmp_path):
    spec = load_sweep_file(_grid(tmp_path))
    out = tmp_path / "out"
    first = run_sweep(spec, out, trials_per_worker=2)
    assert [t.state for t in first] == ["complete", "complete"]
    assert missing_trials(spec, first) == 2
    stamps = {t.run_dir: (out / t.run_dir / "checkpoint.pt").stat().st_mtime_ns for t in first}
    again = run_sweep(load_sweep_file(_grid(tmp_path)), out)
    assert [t.state for t in again] == ["complete"] * 4 and missing_trials(spec, again) == 0
    assert [t.number for t in again[:2]] == [t.number for t in first]
    assert {d: (out / d / "checkpoint.pt").stat().st_mtime_ns for d in stamps} == stamps
    assert len(read_results(out)) == 4


def test_a_failed_trial_is_recorded_and_the_next_run_retries_it(tmp_path, monkeypatch):
    from gumbelseq.errors import GumbelseqError
    from gumbelseq.model import sweep

    real = sweep._train_and_score

    def flaky(ctx, params, seed, run_rel):
        if seed == 1:
            raise GumbelseqError("out of luck")
        return real(ctx, params, seed, run_rel)

    monkeypatch.setattr(sweep, "_train_and_score", flaky)
    spec = load_sweep_file(_grid(tmp_path))
    first = run_sweep(spec, tmp_path / "out")
    assert sorted(t.state for t in first) == ["complete", "complete", "failed", "failed"]
    assert {t.error for t in first if t.state == "failed"} == {"out of luck"} and missing_trials(spec, first) == 2
    monkeypatch.setattr(sweep, "_train_and_score", real)
    again = run_sweep(spec, tmp_path / "out")
    retried = [t for t in again if t.retry_of is not None]
    assert sorted(t.retry_of for t in retried) == sorted(t.number for t in first if t.state == "failed")
    assert all(t.state == "complete" and t.seed == 1 for t in retried) and missing_trials(spec, again) == 0


# -- search -----------------------------------------------------------------------------------------

SEARCH = """\
name = "s"
backend = "gumbel-lstm-gan"
iterations = 20
seeds = [0, 1]
n_trials = 3
sampler_seed = {seed}
samples = 100
metric = "tv_lengths"
[data]
n = 200
[fixed]
batch_size = 16
[search]
lr_g = {{ low = 1e-4, high = 1e-2, log = true }}
hidden_g = {{ low = 4, high = 16, step = 4 }}
g_loss = {{ choices = ["kl", "nonsat"] }}
"""


def _search(tmp_path: Path, seed: int) -> list:
    f = tmp_path / f"s{seed}.toml"
    f.write_text(SEARCH.format(seed=seed))
    return run_sweep(load_sweep_file(f), tmp_path / f"out-{seed}-{len(list(tmp_path.iterdir()))}")


def test_search_runs_n_trials_and_is_reproducible_with_the_sampler_seed(tmp_path):
    a = _search(tmp_path, 7)
    b = _search(tmp_path, 7)
    assert [t.state for t in a] == ["complete"] * 3
    assert [(t.params, t.seed, t.value) for t in a] == [(t.params, t.seed, t.value) for t in b]
    assert [t.seed for t in a] == [0, 1, 0]  # trials cycle through the seeds
    assert all(4 <= t.params["hidden_g"] <= 16 and t.params["hidden_g"] % 4 == 0 for t in a)
    assert all(1e-4 <= t.params["lr_g"] <= 1e-2 for t in a)
    c = _search(tmp_path, 8)
    assert [t.params for t in c] != [t.params for t in a]


# -- storage and the folder -----------------------------------------------------------------------


def test_a_database_url_is_a_storage_and_a_resume_must_name_it(tmp_path):
    spec = load_sweep_file(_grid(tmp_path, values="[1.0]"))
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    res = run_sweep(spec, tmp_path / "out", storage=url)
    assert [t.state for t in res] == ["complete", "complete"]
    assert not (tmp_path / "out" / "optuna.journal").exists()
    r = CliRunner().invoke(main, ["sweep", str(tmp_path / "g.toml"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and "pass --storage sqlite:///" in r.output
    # Another folder on the same storage (another machine, say) joins the finished study.
    more = run_sweep(spec, tmp_path / "elsewhere", storage=url)
    assert [t.number for t in more] == [t.number for t in res]
    assert not (tmp_path / "elsewhere" / "trials").exists() or not any((tmp_path / "elsewhere" / "trials").iterdir())


def test_folders_holding_something_else_are_refused_untouched(tmp_path):
    f = _grid(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = CliRunner().invoke(main, ["sweep", str(f), "--out", str(mine)])
    assert r.exit_code == 1 and r.output.startswith("Error:") and "nothing in it was touched" in r.output
    assert sorted(os.listdir(mine)) == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    # A sweep folder made from another sweep file is refused too.
    other = _grid(tmp_path, name="g", values="[0.25]")
    run_sweep(load_sweep_file(_grid(tmp_path, name="h")), tmp_path / "swept", trials_per_worker=0)
    r = CliRunner().invoke(main, ["sweep", str(other), "--out", str(tmp_path / "swept")])
    assert r.exit_code == 1 and "another sweep file" in r.output


def test_a_second_sweep_on_a_busy_folder_is_refused(tmp_path):
    from gumbelseq.model.rundir import DirLock

    f = _grid(tmp_path)
    run_sweep(load_sweep_file(f), tmp_path / "out", trials_per_worker=0)
    with DirLock(tmp_path / "out", "sweep folder"):  # as a running sweep holds it
        r = CliRunner().invoke(main, ["sweep", str(f), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and "in use by another gumbelseq process" in r.output


def _append_many(path: str, k: int) -> None:
    for i in range(200):
        append_result(Path(path), {"worker": k, "i": i, "pad": "x" * (k * 300)})


def test_result_lines_from_concurrent_processes_never_interleave(tmp_path):
    path = tmp_path / "results.jsonl"
    ctx = multiprocessing.get_context("fork")  # the child only appends lines
    procs = [ctx.Process(target=_append_many, args=(str(path), k)) for k in range(1, 4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 600 and all(len(r["pad"]) == r["worker"] * 300 for r in rows)


# -- sweep files ------------------------------------------------------------------------------------


def test_toml_yaml_and_json_files_are_the_same_sweep(tmp_path):
    toml = load_sweep_file(_grid(tmp_path))
    body = {"name": "g", "backend": "gumbel-lstm-gan", "iterations": 20, "checkpoint_every": 1000, "seeds": [0, 1],
            "samples": 200, "data": {"n": 200, "seed": 3}, "fixed": {"batch_size": 16}, "grid": {"tau_end": [0.5, 2.0]}}
    (tmp_path / "g.json").write_text(json.dumps(body))
    import yaml

    (tmp_path / "g.yaml").write_text(yaml.safe_dump(body))
    assert load_sweep_file(tmp_path / "g.json").fingerprint() == toml.fingerprint()
    assert load_sweep_file(tmp_path / "g.yaml").fingerprint() == toml.fingerprint()
    assert len(toml.grid_points()) == 4 and toml.n_planned() == 4


def test_the_shipped_example_is_a_valid_eight_trial_grid():
    spec = load_sweep_file(ROOT / "sweeps" / "gan_tau.toml")
    assert spec.mode == "grid" and spec.n_planned() == 8


BAD = {
    "missing": (None, "no such sweep file"),
    "empty": ("   \n", "empty sweep file"),
    "binary": (b"name = \x00\x01", "binary data"),
    "not utf-8": (b"name = '\xff'", "not valid UTF-8"),
    "toml syntax": ("name = 'x'\niterations = = 3\n", ":2:14: "),
    "toml cut short": ("name = 'x'\niterations = [1,\n", ":3:1: "),
    "unknown key": ("iterations = 20\ncolour = 'red'\n[grid]\ntau_end = [1.0]\n", "unknown key 'colour'"),
    "unknown backend": ("backend = 'nope'\niterations = 20\n[grid]\ntau_end = [1.0]\n", "unknown backend 'nope'"),
    "unknown option": ("iterations = 20\n[grid]\ntau_ending = [1.0]\n", "unknown option 'tau_ending'"),
    "out of range": ("iterations = 20\n[grid]\ntau_end = [1.0, -1.0]\n", "tau_end=-1.0 is invalid"),
    "empty grid": ("iterations = 20\n[grid]\n", "[grid] is empty"),
    "empty values": ("iterations = 20\n[grid]\ntau_end = []\n", "an empty list"),
    "no iterations": ("[grid]\ntau_end = [1.0]\n", "iterations: missing"),
    "grid and search": ("iterations = 20\n[grid]\ntau_end = [1.0]\n[search]\nlr_g = {low = 0.1, high = 0.2}\n", "both"),
    "search without n_trials": ("iterations = 20\n[search]\nlr_g = {low = 0.001, high = 0.01}\n", "n_trials: missing"),
    "bad metric": ("iterations = 20\nmetric = 'fun'\n[grid]\ntau_end = [1.0]\n", "unknown metric 'fun'"),
    # Tracebacks before: an unhashable direction; an int past float's range (OverflowError).
    "list direction": ("iterations = 20\ndirection = ['max']\n[grid]\ntau_end = [1.0]\n", "direction: expected maximize or minimize"),
    "huge int in a grid": ("iterations = 20\n[grid]\ntau_end = [1" + "0" * 400 + "]\n", "tau_end"),
    "huge int in a search": ("iterations = 20\nn_trials = 1\n[search]\nlr_g = {low = 0.001, high = 1" + "0" * 400 + "}\n",
                             "expected a number"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_sweep_files_are_one_error_line_and_write_nothing(tmp_path, case):
    content, expected = BAD[case]
    f = tmp_path / "bad.toml"
    if isinstance(content, bytes):
        f.write_bytes(content)
    elif content is not None:
        f.write_text(content)
    _assert_refused(tmp_path, f, expected)


@pytest.mark.parametrize("kind", ["directory", "fifo", "yaml", "json", "extension"])
def test_bad_sweep_paths_and_formats(tmp_path, kind):
    f = tmp_path / {"yaml": "bad.yaml", "json": "bad.json", "extension": "bad.ini"}.get(kind, "bad.toml")
    expected = {"directory": "is a directory", "fifo": "not a regular file", "yaml": ":3:4: ", "json": ":1:16: Expecting value",
                "extension": "unknown sweep file type"}[kind]
    if kind == "directory":
        f.mkdir()
    elif kind == "fifo":
        os.mkfifo(f)
    elif kind == "yaml":
        f.write_text("iterations: 20\ngrid: {a: 1\n  b: [2}\n")
    elif kind == "json":
        f.write_text('{"iterations": }')
    else:
        f.write_text("iterations = 20\n")
    _assert_refused(tmp_path, f, expected)


def _assert_refused(tmp_path: Path, f: Path, expected: str) -> None:
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["sweep", str(f), "--out", str(out)])
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    assert expected in lines[0], lines[0]
    assert not out.exists()


def test_storage_naming_the_out_folder_is_one_line(tmp_path):
    r = CliRunner().invoke(main, ["sweep", str(_grid(tmp_path)), "--out", str(tmp_path / "o"), "--storage", str(tmp_path / "o")])
    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines() == [f"Error: --storage {tmp_path / 'o'}: is the --out folder; give a journal file path (or leave --storage out)"]


def test_results_and_journal_cut_mid_line_are_repaired_on_resume(tmp_path):
    """A kill or a full disk can cut the last line; the next record was appended to it: a
    results line no JSON reader could parse, and a journal Optuna could no longer read
    (every later resume a JSONDecodeError traceback)."""
    spec = load_sweep_file(_grid(tmp_path, iterations=3))
    out = tmp_path / "out"
    run_sweep(spec, out, trials_per_worker=2)
    for name, keep in (("results.jsonl", 0.6), ("optuna.journal", 0.7)):
        data = (out / name).read_bytes()
        (out / name).write_bytes(data[: int(len(data) * keep)])
        assert not (out / name).read_bytes().endswith(b"\n")
    again = run_sweep(load_sweep_file(_grid(tmp_path, iterations=3)), out)
    assert [t.state for t in again].count("complete") == 4
    for name in ("results.jsonl", "optuna.journal"):
        lines = (out / name).read_text().splitlines()
        assert all(isinstance(json.loads(line), dict) for line in lines), name
    assert {r["trial"] for r in read_results(out) if r["state"] == "complete"} == {t.number for t in again if t.state == "complete"}


def test_a_shared_journal_cut_mid_line_is_refused_not_cut(tmp_path):
    journal = tmp_path / "shared.journal"
    spec = load_sweep_file(_grid(tmp_path, iterations=3))
    run_sweep(spec, tmp_path / "out", storage=str(journal), trials_per_worker=1)
    data = journal.read_bytes()
    journal.write_bytes(data[:-5])
    for out in ("out", "fresh"):  # a new --out folder over the same shared journal too
        with pytest.raises(GumbelseqError, match="its last line is cut short"):
            run_sweep(load_sweep_file(_grid(tmp_path, iterations=3)), tmp_path / out, storage=str(journal))
    assert journal.read_bytes() == data[:-5]
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("name,text,where", [
    ("dup.json", '{"iterations": 3,\n "iterations": 5, "grid": {"tau_end": [1.0]}}', ":2:2: duplicate key 'iterations'"),
    ("dup.yaml", "iterations: 3\ngrid:\n  tau_end: [1.0]\niterations: 5\n", ":4:1: duplicate key 'iterations'"),
    ("dup2.json", '{"iterations": 3, "grid": {"tau_end": [1.0]}, "grid": {"lr_g": [0.1]}}', "duplicate key 'grid'"),
])
def test_a_key_named_twice_in_json_or_yaml_is_refused(tmp_path, name, text, where):
    """TOML refuses it; JSON and YAML kept the last silently (a grid written twice lost the first)."""
    f = tmp_path / name
    f.write_text(text)
    _assert_refused(tmp_path, f, where)


def test_a_huge_grid_is_refused_by_its_size_before_anything_else(tmp_path):
    """The duplicate check compared every pair first (40,000 values: 39 s before the refusal)."""
    f = tmp_path / "h.toml"
    f.write_text("iterations = 3\n[grid]\ntau_end = [" + ", ".join(f"{i}.5" for i in range(40_000)) + ", 0.5]\n")
    _assert_refused(tmp_path, f, "40,001 values; a grid has at most 10,000 trials")  # not "0.5 is listed twice"
