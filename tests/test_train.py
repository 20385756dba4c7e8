import json
import os
import pickle
import signal
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from gumbelseq.cli import main
from gumbelseq.errors import RunError
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.model.registry import get_backend
from gumbelseq.model.run import load_run
from gumbelseq.model.train import Callback, read_metrics, resume_training, start_training

SMALL = {"iterations": 24, "batch_size": 32, "hidden_g": 8, "hidden_d": 8}


def _start(tmp_path, name, backend="gumbel-lstm-gan", options=SMALL, **kw):
    kw.setdefault("device", "cpu")
    return start_training(grammar=load_grammar("arith"), backend=get_backend(backend), out_dir=tmp_path / name,
                          options=options, n_data=300, seed=5, eval_every=8, checkpoint_every=10, log_every=1,
                          final_samples=50, **kw)


def _state(run_dir):
    """The checkpoint without its training time (a wall-clock figure, never equal twice)."""
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    state.pop("train_seconds")
    return state


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("backend,options", [("gumbel-lstm-gan", SMALL), ("mle-lstm", {"iterations": 24, "batch_size": 32})])
def test_resume_equals_uninterrupted(tmp_path, backend, options):
    full = _start(tmp_path, "full", backend, options).run_dir
    r1 = _start(tmp_path, "part", backend, options, stop_after=13)
    part = r1.run_dir
    assert r1.stopped and r1.iterations == 13 and _state(part)["iteration"] == 13
    r2 = resume_training(part)
    assert not r2.stopped and r2.iterations == 24
    _assert_same(_state(full), _state(part))
    assert read_metrics(full) == read_metrics(part)
    assert (full / "samples.txt").read_text() == (part / "samples.txt").read_text()


def test_training_time_is_kept_in_the_checkpoint_across_sessions(tmp_path):
    r1 = _start(tmp_path, "r", stop_after=13)
    first = torch.load(r1.run_dir / "checkpoint.pt", weights_only=True)["train_seconds"]
    assert r1.train_seconds == first > 0
    r2 = resume_training(r1.run_dir)
    total = torch.load(r1.run_dir / "checkpoint.pt", weights_only=True)["train_seconds"]
    assert r2.train_seconds == total > first  # the first session's time is not lost


def test_training_time_of_an_older_checkpoint_is_unknown_not_zero(tmp_path):
    r1 = _start(tmp_path, "r", stop_after=13)
    path = r1.run_dir / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state["train_seconds"]  # as written before the time was recorded
    torch.save(state, path)
    assert resume_training(r1.run_dir).train_seconds is None
    assert "train_seconds" not in torch.load(path, weights_only=True)


def test_a_checkpoint_with_a_bad_training_time_is_one_error(tmp_path):
    r1 = _start(tmp_path, "r", stop_after=13)
    path = r1.run_dir / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["train_seconds"] = -1.0
    torch.save(state, path)
    with pytest.raises(RunError, match="train_seconds"):
        resume_training(r1.run_dir)


def test_ctrl_c_stops_after_the_step_with_a_checkpoint(tmp_path):
    class Interrupt(Callback):
        def on_step(self, iteration, metrics):
            if iteration == 5:
                os.kill(os.getpid(), signal.SIGINT)

    res = _start(tmp_path, "r", callbacks=[Interrupt()])
    run = res.run_dir
    assert res.stopped and res.iterations == 5
    assert _state(run)["iteration"] == 5
    assert not (run / "samples.txt").exists()


def test_trained_model_round_trips_exactly(tmp_path):
    res = _start(tmp_path, "r")
    run = res.run_dir
    gen = torch.Generator().manual_seed(11)
    in_memory = res.trainer.sample_ids(64, 1.0, gen)
    loaded = load_run(run, device="cpu")
    gen = torch.Generator().manual_seed(11)
    assert torch.equal(loaded.trainer.sample_ids(64, 1.0, gen), in_memory)
    assert loaded.sample(20, seed=3) == load_run(run, device="cpu").sample(20, seed=3)
    assert loaded.sample(20, seed=3) != loaded.sample(20, seed=4)
    assert all(len(s) <= 12 for s in loaded.sample(200, tau=0.5, seed=0))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_checkpoint_loading_never_executes_code(tmp_path, monkeypatch):
    run = _start(tmp_path, "r").run_dir
    monkeypatch.chdir(tmp_path)
    with open(run / "checkpoint.pt", "wb") as f:
        pickle.dump({"iteration": 1, "trainer": _Evil()}, f)
    with pytest.raises(RunError, match="not a checkpoint gumbelseq can load safely") as e:
        load_run(run, device="cpu")
    assert not (tmp_path / "pwned").exists()
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)  # no advice to load it unsafely
    torch.save({"iteration": 1, "trainer": _Evil()}, run / "checkpoint.pt")  # torch's own format
    with pytest.raises(RunError, match=r"load safely: .*\(.*GLOBAL posix\.system.*\); it is not executed$"):
        load_run(run, device="cpu")
    assert not (tmp_path / "pwned").exists()


def test_cli_a_foreign_pickle_checkpoint_is_one_line_without_torchs_warning(tmp_path):
    run = _start(tmp_path, "r").run_dir
    with open(run / "checkpoint.pt", "wb") as f:
        pickle.dump({"iteration": 1, "trainer": _Evil()}, f, protocol=4)  # torch warns about protocol 4
    for argv in (["sample", "--run", str(run), "-n", "2"], ["train", "--resume", str(run)]):
        r = subprocess.run([sys.executable, "-m", "gumbelseq", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"Error: {run / 'checkpoint.pt'}: not a checkpoint gumbelseq can load safely")
    assert not (tmp_path / "pwned").exists()


def test_cli_train_sample_and_defaults(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(main, ["train", "--grammar", "grammars/arith.lark", "--iterations", "12", "--batch-size", "16",
                             "--device", "cpu", "--out", str(run), "-o", "hidden_g=8", "--seed", "2", "--eval-every", "6"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(run)
    for name in ["config.json", "checkpoint.pt", "metrics.jsonl", "samples.txt", "data.txt", "grammar.lark"]:
        assert (run / name).exists(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["options"]["hidden_g"] == 8 and cfg["options"]["iterations"] == 12
    assert any("eval_validity" in m for m in read_metrics(run))
    a = runner.invoke(main, ["sample", "-n", "30", "--seed", "1", "--tau", "0.5"])
    b = runner.invoke(main, ["sample", "-n", "30", "--seed", "1", "--tau", "0.5", "--run", str(run)])
    assert a.exit_code == 0 and a.stdout == b.stdout and len(a.stdout.splitlines()) == 30
    j = runner.invoke(main, ["sample", "-n", "30", "--json", "--seed", "1", "--tau", "0.5"])
    assert json.loads(j.stdout)["samples"] == a.stdout.splitlines()


def test_cli_refuses_to_clobber_a_run(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    args = ["train", "--iterations", "3", "--batch-size", "8", "--device", "cpu", "--out", str(run), "--eval-every", "0"]
    assert runner.invoke(main, args).exit_code == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    r = runner.invoke(main, args)
    assert r.exit_code == 1 and "already holds a run" in r.output
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_cli_bad_option_and_backend(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["train", "-o", "hiden_g=3", "--out", str(tmp_path / "x"), "--device", "cpu"])
    assert r.exit_code == 1 and "unknown option 'hiden_g'" in r.output
    assert not (tmp_path / "x").exists()
    r = runner.invoke(main, ["train", "--backend", "nope", "--out", str(tmp_path / "y")])
    assert r.exit_code == 1 and "known backends" in r.output
    r = runner.invoke(main, ["sample", "--run", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no such run directory" in r.output
    r = runner.invoke(main, ["sample", "--tau", "0"])
    assert r.exit_code == 1 and "tau must be a number in [1e-08, 1e+08]" in r.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_train_and_sample(tmp_path):
    res = _start(tmp_path, "r", device="cuda")
    assert res.iterations == 24
    assert len(load_run(res.run_dir, device="cuda").sample(50, seed=0)) == 50


def test_cli_resume_continues_and_refuses_new_settings(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    base = ["train", "--iterations", "8", "--batch-size", "8", "--device", "cpu", "--out", str(run), "--eval-every", "0"]
    assert runner.invoke(main, base).exit_code == 0
    r = runner.invoke(main, ["train", "--resume", str(run), "--iterations", "50", "-o", "hidden_g=4"])
    assert r.exit_code == 2 and "drop --iterations, --option" in r.output
    r = runner.invoke(main, ["train", "--resume", str(run)])
    assert r.exit_code == 0, r.output
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 8


def test_train_with_another_start_rule_and_resume(tmp_path):
    g = tmp_path / "g.lark"
    g.write_text('expr: "y" | expr "+" "y"\n')
    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(main, ["train", "--grammar", str(g), "--start", "expr", "--backend", "mle-lstm", "--iterations", "6",
                             "--batch-size", "8", "--data-size", "30", "--device", "cpu", "--out", str(run),
                             "--checkpoint-every", "2", "--eval-every", "2"])
    assert r.exit_code == 0, r.output
    assert json.loads((run / "config.json").read_text())["start"] == "expr"
    assert set("".join((run / "data.txt").read_text().split())) == {"y", "+"}
    # resuming must load the grammar with the recorded start rule (there is no rule `start`)
    r = runner.invoke(main, ["train", "--resume", str(run)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["train", "--resume", str(run), "--start", "other"])
    assert r.exit_code == 2 and "drop --start" in r.output


def test_data_with_a_space_and_the_visible_pad_trains_with_another_pad(tmp_path):
    """A space makes the pad "␣"; data holding both was refused with a message about a
    'settings' key that the user never wrote."""
    from gumbelseq.model.vocab import Vocabulary

    vocab = Vocabulary.from_strings(["x x", "x\u2423x"])
    assert vocab.pad not in vocab.chars and vocab.pad == "\u00b7"
    assert Vocabulary.from_strings(["ab"]).pad == " " and Vocabulary.from_strings(["a b"]).pad == "\u2423"
    (tmp_path / "d.txt").write_text("x x\nx\u2423x\n" * 5, encoding="utf-8")
    r = CliRunner().invoke(main, ["train", "-b", "mle-lstm", "--iterations", "2", "--data", str(tmp_path / "d.txt"),
                                  "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["vocab"]["pad"] == "\u00b7"
    r = CliRunner().invoke(main, ["sample", "--run", str(tmp_path / "run"), "-n", "3"])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 3, r.output


def test_cli_train_refuses_an_empty_data_path_and_data_size_with_data(tmp_path):
    """`--data ''` trained on the grammar's strings; `--data-size` beside `--data` was ignored."""
    (tmp_path / "t.txt").write_text("x\nx+x\n")
    base = ["train", "-b", "mle-lstm", "--iterations", "2", "--out", str(tmp_path / "run")]
    r = CliRunner().invoke(main, [*base, "--data", ""])
    assert (r.exit_code, r.stderr) == (1, "Error: '': an empty path names no data file\n")
    r = CliRunner().invoke(main, [*base, "--data", str(tmp_path / "t.txt"), "--data-size", "10"])
    assert r.exit_code == 2 and "--data-size is the number of strings drawn from the grammar" in r.stderr
    r = CliRunner().invoke(main, ["data", "-g", ""])
    assert r.exit_code == 1 and r.stderr.startswith("Error: an empty grammar name; built-in grammars: ")
    assert not (tmp_path / "run").exists()
