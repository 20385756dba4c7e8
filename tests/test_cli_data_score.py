import json
import re

import pytest
from click.testing import CliRunner

from gumbelseq.cli import main

ARITH_RE = re.compile(r"x([-+*/]x)*")


@pytest.fixture
def runner():
    return CliRunner()


def test_grammars_json(runner):
    r = runner.invoke(main, ["grammars", "--json"])
    assert r.exit_code == 0, r.output
    names = {g["name"] for g in json.loads(r.stdout)}
    assert {"arith", "parens", "json", "dyck"} <= names


def test_data_to_stdout_and_file(runner, tmp_path):
    r = runner.invoke(main, ["data", "--grammar", "arith", "-n", "300", "--max-len", "12", "--seed", "0"])
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 300
    assert all(ARITH_RE.fullmatch(s) and len(s) <= 12 for s in lines)
    out = tmp_path / "train.txt"
    r2 = runner.invoke(main, ["data", "-g", "arith", "-n", "300", "--seed", "0", "-o", str(out)])
    assert r2.exit_code == 0
    assert out.read_text().splitlines() == lines


def test_data_failure_leaves_existing_file_untouched(runner, tmp_path):
    out = tmp_path / "keep.txt"
    out.write_text("precious\n")
    r = runner.invoke(main, ["data", "-g", "nope", "-o", str(out)])
    assert r.exit_code != 0
    assert out.read_text() == "precious\n"


def test_score_json_stdout(runner, tmp_path):
    data = tmp_path / "train.txt"
    runner.invoke(main, ["data", "-n", "500", "--seed", "1", "-o", str(data)])
    samples = tmp_path / "s.txt"
    samples.write_text("x+x         \nx x\nx\n+\n")
    r = runner.invoke(main, ["score", str(samples), "--reference", str(data), "--json", "--max-len", "12"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    for key in "total valid validity unique unique_valid novelty coverage lengths invalid_examples".split():
        assert key in rep
    assert rep["total"] == 4 and rep["valid"] == 2
    assert rep["coverage"] == pytest.approx(2 / 1365)
    assert rep["invalid_examples"][0]["line"] == 2
    assert rep["lengths"] == {"1": 2, "3": 2}


def test_score_stdin(runner):
    r = runner.invoke(main, ["score", "-", "--json"], input="x\nx-x\nq\n")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["valid"] == 2


def test_score_table_for_people(runner, tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("x\nx+\n")
    r = runner.invoke(main, ["score", str(p)])
    assert r.exit_code == 0
    assert "valid" in r.stdout and "x+" in r.stdout


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["score", "MISSING.txt"], r"MISSING.txt: no such file of samples$"),
        (["score", "."], r"is a directory"),
        # the reference is named as the reference (it was "file of samples" too)
        (["score", "-", "--reference", "MISSING.txt"], r"^Error: MISSING.txt: no such reference file$"),
        (["score", "-", "--reference", ""], r"^Error: '': an empty path names no reference file$"),
        (["score", "-", "--reference", ".", "--validator", "rdkit"], r"^Error: \.: is a directory, not a reference file$"),
        (["score", "-", "--grammar", "nope"], r"unknown grammar 'nope'; built-in grammars: arith"),
    ],
)
def test_bad_input_one_line_no_traceback(runner, args, pattern):
    r = runner.invoke(main, args, input="")
    assert r.exit_code == 1
    assert re.search(pattern, r.output)
    assert "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_bad_grammar_names_file_line_column(runner, tmp_path):
    g = tmp_path / "bad.lark"
    g.write_text('start: "x"\n  | ??\n')
    r = runner.invoke(main, ["score", "-", "--grammar", str(g)], input="x\n")
    assert r.exit_code == 1
    assert re.search(rf"{re.escape(str(g))}:2:\d+:", r.output)
    assert len(r.output.strip().splitlines()) == 1


def test_non_utf8_sample_file(runner, tmp_path):
    p = tmp_path / "s.txt"
    p.write_bytes(b"x\n\xff\n")
    r = runner.invoke(main, ["score", str(p)])
    assert r.exit_code == 1
    assert "s.txt:2: not valid UTF-8" in r.output


def test_empty_file_is_zero_samples(runner, tmp_path):
    p = tmp_path / "e.txt"
    p.write_text("")
    r = runner.invoke(main, ["score", str(p), "--json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["total"] == 0


def test_earley_fallback_is_one_stderr_line_and_stdout_stays_json(runner, tmp_path):
    g = tmp_path / "amb.lark"
    g.write_text('start: s\ns: s "+" s | "x"\n')
    r = runner.invoke(main, ["score", "-", "--grammar", str(g), "--json"], input="x+x\nx+\n")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["valid"] == 1
    notice = [line for line in r.stderr.splitlines() if "Earley" in line]
    assert len(notice) == 1 and str(g) in notice[0]


def test_score_workers_same_json(runner, tmp_path, monkeypatch):
    from gumbelseq.lang import score as score_module

    monkeypatch.setattr(score_module, "PARALLEL_MIN", 10)
    monkeypatch.setattr(score_module, "BATCH", 16)
    f = tmp_path / "s.txt"
    f.write_text("".join(f"x{'+x' * (i % 37)}{'+' if i % 5 == 0 else ''}\n" for i in range(200)))
    outs = []
    for w in ("1", "2", "0"):
        r = runner.invoke(main, ["score", str(f), "--json", "--workers", w])
        assert r.exit_code == 0, r.output
        outs.append(json.loads(r.stdout))
    assert outs[0]["valid"] == 160 and outs[0] == outs[1] == outs[2]
    r = runner.invoke(main, ["score", str(f), "--workers", "-1"])
    assert r.exit_code == 2 and "--workers" in r.output


def test_user_text_is_printed_as_written_not_read_as_markup(runner, tmp_path, monkeypatch):
    """Rich read "[nH]" in a SMILES sample, or "[/]" in a file name, as a style tag: the first
    vanished from the invalid-samples table, the second raised MarkupError (a traceback)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "[").mkdir()
    (tmp_path / "[/]m.txt").write_text("c1cc[nH]c1(\nC[@H](\n[bold]x[/bold]\n")
    r = runner.invoke(main, ["score", "[/]m.txt", "-g", "smiles"])
    assert r.exit_code == 0, r.output
    assert "'c1cc[nH]c1('" in r.stdout and "'C[@H]('" in r.stdout and "'[bold]x[/bold]'" in r.stdout
    assert "[/]m.txt against grammar smiles" in r.stdout
    # A notice naming a user's grammar path (the Earley fall-back), with --json.
    (tmp_path / "[/]a.lark").write_text('start: x\nx: "a" | x "+" x\n')
    r = runner.invoke(main, ["score", "[/]m.txt", "-g", "[/]a.lark", "--json"])
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("note: [/]a.lark: ") and json.loads(r.stdout)["total"] == 3
    r = runner.invoke(main, ["data", "-n", "2", "-o", "[/]o.txt"])
    assert (r.exit_code, r.stderr) == (0, "wrote 2 strings to [/]o.txt\n")
    monkeypatch.setenv("GUMBELSEQ_HOME", str(tmp_path / "[" / "[red]h"))
    r = runner.invoke(main, ["datasets", "list"])
    assert r.exit_code == 0 and r.exception is None, r.output  # the path cell raised MarkupError


def test_training_progress_shows_a_run_path_as_written():
    import io
    from pathlib import Path

    from rich.console import Console

    from gumbelseq.model.progress import RichProgress

    console = Console(file=io.StringIO(), force_terminal=False, width=200)
    p = RichProgress(console, label="[/]run")  # `train --resume '[/]run'` labels the bar with the path
    p.on_start(Path("[/]run"), 10, 3, None)
    p.on_step(4, {"loss": 1.0})
    p.on_end(4, False)
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "resuming [/]run at iteration 3/10" and lines[-1].startswith("[/]run "), lines
