"""The run directory: created only in new or empty folders, locked while training, every file
checked before use, and loading a run leaves the caller's random generators alone."""

import json
import random
import threading

import numpy as np
import pytest
import torch

from gumbelseq.errors import GumbelseqError, RunError
from gumbelseq.model import rundir
from gumbelseq.model.reproduce import reproduce
from gumbelseq.model.run import load_run
from gumbelseq.model.train import Callback, read_metrics, resume_training, start_training

TINY = {"iterations": 6, "batch_size": 8}


def _train(out, **kw):
    kw.setdefault("options", TINY)
    return start_training(backend="mle-lstm", out_dir=out, n_data=40, device="cpu", eval_every=0,
                          checkpoint_every=2, final_samples=5, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("r") / "run").run_dir


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("stray", ["data.txt", "checkpoint.pt", "notes/x.txt"])
def test_out_must_be_new_or_empty_and_a_refusal_touches_nothing(tmp_path, stray):
    out = tmp_path / "out"
    (out / stray).parent.mkdir(parents=True, exist_ok=True)
    (out / stray).write_text("keep\n")
    before = _snapshot(out)
    with pytest.raises(RunError, match="not empty"):
        _train(out)
    assert _snapshot(out) == before


def test_out_that_is_a_file_or_under_a_file_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("keep\n")
    with pytest.raises(RunError, match="not a folder"):
        _train(f)
    with pytest.raises(RunError, match="cannot create"):
        _train(f / "sub")
    assert f.read_text() == "keep\n"


def test_an_empty_existing_folder_is_accepted_and_a_run_is_not_clobbered(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert not _train(out).stopped
    before = _snapshot(out)
    with pytest.raises(RunError, match="already holds a run"):
        _train(out)
    assert _snapshot(out) == before


def test_a_failure_before_the_first_checkpoint_leaves_nothing(tmp_path):
    class Boom(Callback):
        def on_start(self, *a):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        _train(tmp_path / "new", callbacks=[Boom()])
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        _train(tmp_path / "kept", callbacks=[Boom()])
    assert list((tmp_path / "kept").iterdir()) == []  # the user's empty folder stays, empty


def test_a_second_process_is_refused_while_one_trains(tmp_path):
    """The lock is held for the whole training: a resume (or a new run) attempted from inside
    the first one's loop is refused and leaves the run intact."""
    seen = []

    class Intruder(Callback):
        def on_step(self, iteration, metrics):
            if iteration == 3:
                for attempt in (lambda: resume_training(tmp_path / "run"), lambda: _train(tmp_path / "run")):
                    with pytest.raises(RunError) as e:
                        attempt()
                    seen.append(str(e.value))

    res = _train(tmp_path / "run", callbacks=[Intruder()])
    assert not res.stopped
    assert "in use by another gumbelseq process" in seen[0]
    assert "in use by another gumbelseq process" in seen[1] or "already holds a run" in seen[1]
    its = [m["iteration"] for m in read_metrics(res.run_dir)]
    assert its == sorted(set(its))  # no duplicated rows
    assert len(load_run(res.run_dir, device="cpu").sample(3)) == 3


def test_lock_is_released_after_training_and_after_a_failure(tmp_path, trained):
    with rundir.DirLock(trained, "run directory"):
        pass
    lock = rundir.DirLock(trained, "run directory")
    with pytest.raises(RunError, match="in use"):
        rundir.DirLock(trained, "run directory")
    lock.release()
    rundir.DirLock(trained, "run directory").release()


def test_loading_a_run_never_reseeds_the_caller(trained):
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    run = load_run(trained, device="cpu")
    run.sample(5, seed=9)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_edited_alphabet_is_refused(tmp_path, trained):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["vocab"]["chars"] = [chr(ord(c) + 100) for c in cfg["vocab"]["chars"]]  # same size, other characters
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="trained with another 'vocab.chars'"):
        load_run(run, device="cpu")


def test_an_edited_option_is_named_with_both_values(tmp_path, trained):
    """Both sides were the whole options cut to 40 characters: they printed the same."""
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    cfg = json.loads((run / "config.json").read_text())
    old = cfg["options"]["hidden"]
    cfg["options"]["hidden"] = old + 7
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match=rf"another 'options\.hidden' than config\.json says \({old} in the checkpoint, {old + 7} in config\.json\)"):
        load_run(run, device="cpu")


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("max_len", "12", "key 'max_len'"),
        ("max_len", -1, "key 'max_len'"),
        ("max_len", 1e9, "key 'max_len'"),
        ("vocab", ["x"], "key 'vocab'"),
        ("options", None, "key 'options'"),
        ("seed", 2**64, "key 'seed'"),
        ("surprise", 1, "unknown key 'surprise'"),
    ],
)
def test_config_schema_names_the_file_and_key(tmp_path, trained, key, value, match):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg[key] = value
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match=match) as e:
        load_run(run, device="cpu")
    assert str(run / "config.json") in str(e.value) and "\n" not in str(e.value)


def test_a_half_written_last_metrics_line_is_repaired_on_resume(tmp_path):
    res = _train(tmp_path / "run", stop_after=4, log_every=1)
    metrics = res.run_dir / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"iteration": 5, "lo')  # a kill in the middle of an append
    done = resume_training(res.run_dir)
    assert not done.stopped
    assert [m["iteration"] for m in read_metrics(res.run_dir)] == sorted({m["iteration"] for m in read_metrics(res.run_dir)})


def test_a_corrupt_metrics_line_in_the_middle_is_named(tmp_path):
    res = _train(tmp_path / "run", stop_after=4, log_every=1)
    metrics = res.run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines.insert(1, "not json")
    metrics.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match=r"metrics.jsonl:2: not a JSON object"):
        resume_training(res.run_dir)


def test_seed_out_of_range_is_one_error(tmp_path):
    with pytest.raises(GumbelseqError, match="seed must be an integer"):
        _train(tmp_path / "x", seed=2**64)
    assert not (tmp_path / "x").exists()


def test_home_that_is_a_file(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("")
    monkeypatch.setenv("GUMBELSEQ_HOME", str(home))
    with pytest.raises(RunError, match="must be a folder"):
        rundir.last_run()
    with pytest.raises(RunError, match="must be a folder"):
        _train(tmp_path / "x", remember=True)
    assert not (tmp_path / "x").exists()


def test_reproduce_reuses_only_a_folder_made_with_the_same_settings(tmp_path):
    out = tmp_path / "r"
    reproduce(out, quick=True, only=["mle"], seed=0)
    before = _snapshot(out)
    with pytest.raises(RunError, match=r"other settings: seed 0 \(asked: 1\)"):
        reproduce(out, quick=True, only=["mle"], seed=1)
    with pytest.raises(RunError, match=r"quick true \(asked: false\)"):
        reproduce(out, quick=False, only=["mle"], seed=0)
    assert _snapshot(out) == before
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep\n")
    with pytest.raises(RunError, match="not empty"):
        reproduce(user, quick=True, only=["mle"])
    assert (user / "notes.txt").read_text() == "keep\n" and len(list(user.iterdir())) == 1


def test_reproduce_with_a_bad_device_writes_nothing_and_cpu_then_works(tmp_path):
    bad = "tpu" if torch.cuda.is_available() else "cuda"
    with pytest.raises(GumbelseqError, match=f"--device {bad}"):
        reproduce(tmp_path / "r", quick=True, only=["mle"], device=bad)
    assert not (tmp_path / "r").exists()
    assert reproduce(tmp_path / "r", quick=True, only=["mle"], device="cpu").rows[-1].validity is not None


def test_lock_is_per_directory_not_per_process_thread(tmp_path):
    """flock locks belong to open file descriptions: two locks taken in one process through
    separate opens still exclude each other (what a second thread would meet)."""
    (tmp_path / "d").mkdir()
    errors = []
    lock = rundir.DirLock(tmp_path / "d", "folder")

    def other():
        try:
            rundir.DirLock(tmp_path / "d", "folder")
        except RunError as e:
            errors.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    lock.release()
    assert errors and "in use" in errors[0]


@pytest.mark.parametrize("name", ["run ", "nl\nrun", " run"])
def test_the_last_run_pointer_reads_back_the_folder_it_names(tmp_path, monkeypatch, name):
    """A run folder whose name ends in a space (or holds a newline) was lost by a strip()."""
    monkeypatch.setenv("GUMBELSEQ_HOME", str(tmp_path / "home"))
    (tmp_path / name).mkdir()
    rundir.remember_last_run(tmp_path / name)
    assert rundir.last_run() == (tmp_path / name).resolve()


def test_a_hand_edited_last_run_pointer_still_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("GUMBELSEQ_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "home" / "last_run").write_text(f"{tmp_path / 'run'}  \r\n")
    assert rundir.last_run() == tmp_path / "run"
    (tmp_path / "home" / "last_run").write_text(" \n")
    with pytest.raises(RunError, match="not a last-run pointer"):
        rundir.last_run()
