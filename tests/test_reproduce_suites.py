"""`reproduce --suite` (built-in suites and suite files) and `reproduce --seeds` (several seeds,
the aggregate, parallel workers), in quick mode with one or two rows to stay fast."""

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gumbelseq.cli import main
from gumbelseq.model.registry import get_registry

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["--quick", "--no-plots"]
METRICS = ("validity", "unique_valid", "novelty", "coverage", "train_coverage", "tv_strings", "tv_lengths", "train_seconds")


def _invoke(*args):
    return CliRunner().invoke(main, ["reproduce", *map(str, args)])


def _one_error_line(r, *needles):
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    assert "Traceback" not in r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


# -- suite files: every problem is one line naming the file and the key, and writes nothing ------


GOOD = """
name = "tiny"
grammar = "arith"
max_len = 12
samples = 200
[train]
draw = 300
"""


@pytest.mark.parametrize(
    "name, content, needles",
    [
        ("missing.toml", None, ["no such suite file"]),
        ("empty.toml", "  \n", ["empty suite file"]),
        ("binary.toml", b"\x00\x01name = 1", ["binary file"]),
        ("latin1.toml", "name = 'caf\xe9'".encode("latin-1"), ["not valid UTF-8"]),
        ("syntax.toml", "name = \n", ["syntax.toml:1:8: TOML syntax error"]),
        ("syntax.json", '{"name": }', ["JSON syntax error"]),
        ("twice.json", '{"name": "x",\n "name": "y"}', ["twice.json:2:2: duplicate key 'name'"]),
        ("huge.toml", GOOD + '[[published]]\nlabel = "x"\nmetrics = { validity = 1' + "0" * 400 + " }\n", ["published[1].metrics.validity"]),
        ("list.json", "[1, 2]", ["expected a JSON object"]),
        ("suite.yaml", "name: x", [".toml or .json"]),
        ("unknown.toml", "colour = 'red'\n" + GOOD, ["colour", "unknown key"]),
        ("unknown_train.toml", GOOD + "drw = 3\n", ["train.drw", "unknown key"]),
        ("type.toml", GOOD.replace("samples = 200", 'samples = "many"'), ["samples", "expected an integer >= 1"]),
        ("bool.toml", GOOD.replace("samples = 200", "samples = true"), ["samples", "a boolean"]),
        ("no_train.toml", 'name = "x"\ngrammar = "arith"\nmax_len = 12\n', ["train", "missing"]),
        ("no_maxlen.toml", GOOD.replace("max_len = 12", ""), ["max_len", "missing"]),
        ("both.toml", GOOD + "file = 'x.txt'\n", ["train.file", "does not go with draw"]),
        ("grammar.toml", GOOD.replace('"arith"', '"nope"'), ["grammar", "unknown grammar 'nope'"]),
        ("dataset.toml", GOOD.replace("draw = 300", 'dataset = "nope"'), ["train.dataset", "unknown data set"]),
        ("file.toml", GOOD.replace("draw = 300", 'file = "absent.txt"'), ["train.file", "no such file"]),
        ("validator.toml", GOOD.replace("samples = 200", 'samples = 200\nvalidators = ["nope"]'), ["validators", "unknown validator"]),
        ("backend.toml", GOOD + '[[rows]]\nbackend = "nope"\nkey = "a"\n', ["rows[1].backend", "unknown backend 'nope'"]),
        ("option.toml", GOOD + '[[rows]]\nbackend = "mle-lstm"\nkey = "a"\noptions = { hiden = 3 }\n', ["rows[1].options", "hiden"]),
        ("key.toml", GOOD + '[[rows]]\nbackend = "mle-lstm"\nkey = "../x"\n', ["rows[1].key"]),
        ("row.toml", GOOD + '[[rows]]\nbackend = "mle-lstm"\nkey = "a"\nlr = 1\n', ["rows[1].lr", "unknown key"]),
        ("published.toml", GOOD + '[[published]]\nlabel = "x"\nmetrics = { validity = "high" }\n', ["published[1].metrics.validity"]),
    ],
)
def test_bad_suite_files_are_one_error_line_and_write_nothing(tmp_path, name, content, needles):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    r = _invoke("--suite", path, "--out", out, *QUICK)
    _one_error_line(r, str(path), *needles)
    assert not out.exists()


def test_unknown_suite_name_and_seed_flags_are_one_error_line(tmp_path):
    out = tmp_path / "out"
    _one_error_line(_invoke("--suite", "nope", "--out", out, *QUICK), "unknown suite 'nope'", "paper, moses")
    _one_error_line(_invoke("--seed", "1", "--seeds", "0,1", "--out", out, *QUICK), "--seed and --seeds")
    _one_error_line(_invoke("--workers", "2", "--out", out, *QUICK), "--workers", "--seeds")
    _one_error_line(_invoke("--seeds", "0,x", "--out", out, *QUICK), "--seeds", "'x'")
    _one_error_line(_invoke("--seeds", "1,1", "--out", out, *QUICK), "seed 1 is given twice")
    assert not out.exists()


def test_moses_without_the_data_set_cache_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("GUMBELSEQ_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    _one_error_line(_invoke("--suite", "moses", "--out", out, *QUICK), "gumbelseq datasets fetch moses")
    _one_error_line(_invoke("--suite", "moses", "--seeds", "0,1", "--out", out, *QUICK), "gumbelseq datasets fetch moses")
    assert not out.exists()


def test_the_core_names_no_backend():
    """Outside docstrings (which may show an example), no module of the package names a
    registered backend: rows, options and presets come from the plugins."""
    names = {e.name for e in get_registry().entries()}
    assert {"mle-lstm", "gumbel-lstm-gan"} <= names
    found = []
    for path in sorted((ROOT / "gumbelseq").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                body = getattr(node, "body", [])
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    docstrings.add(id(body[0].value))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n in node.value]
            if isinstance(node, ast.Name) and node.id in {n.replace("-", "_") for n in names}:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.id}")
    assert not found, found


# -- a moses-like suite file, end to end ------------------------------------------------------------


SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "c1ccncc1", "CC(C)O", "OC1CCCCC1", "CC(=O)Nc1ccc(O)cc1",
          "COc1ccccc1", "CCOC(=O)C", "C1CCNCC1", "Cc1ccccc1", "CC(C)(C)O", "O=C(O)c1ccccc1", "NCCO", "CCCCN",
          "ClCCl", "CC#N", "C=CC=C", "OCC(O)CO"]


def test_a_suite_file_over_a_small_data_set_runs_end_to_end(tmp_path):
    pytest.importorskip("rdkit")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("id,SMILES\n" + "".join(f"{i},{s}\n" for i, s in enumerate(SMILES * 3)))
    (data / "test.txt").write_text("\n".join(reversed(SMILES)) + "\n")
    suite = tmp_path / "mini.toml"
    suite.write_text("""
name = "mini-smiles"
title = "A tiny SMILES table"
grammar = "smiles"
samples = 50
validators = ["rdkit"]

[train]
file = "data/train.csv"
column = "SMILES"
limit = 40

[reference]
file = "data/test.txt"

[[published]]
label = "Somebody's model"
source = "a paper, Table 9"
metrics = { "rdkit.validity" = { mean = 0.9, std = 0.1 }, "rdkit.intdiv1" = 0.85 }

[[rows]]
backend = "mle-lstm"
key = "mle"
label = "MLE on SMILES"
options = { hidden = "16" }
""")
    out = tmp_path / "out"
    r = _invoke("--suite", suite, "--out", out, *QUICK, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["suite"] == "mini-smiles" and [row["key"] for row in rep["rows"]] == ["reference", "mle"]
    train = (out / "train.txt").read_text().splitlines()
    assert len(train) == 40 and set(train) <= set(SMILES)  # a seeded sample of the 60 CSV rows
    ref = rep["rows"][0]
    assert ref["validity"] == 1.0 and ref["validators"]["rdkit"]["validity"] == 1.0
    assert ref["validators"]["rdkit"]["unique"] == 20 and 0 < ref["validators"]["rdkit"]["intdiv1"] < 1
    assert ref["coverage"] is None  # a data-set suite shows no coverage of the language
    mle = rep["rows"][1]
    assert set(mle["validators"]["rdkit"]) >= {"validity", "uniqueness", "novelty", "intdiv1"}
    assert "--data train.txt" in mle["command"] and mle["options"]["hidden"] == 16
    md = (out / "report.md").read_text()
    assert md.startswith("# A tiny SMILES table") and "| IntDiv1 |" in md and "coverage L<=" not in md
    assert "| published: Somebody's model | - |" in md and "90.0 ± 10.0%" in md and "0.850" in md
    settings = json.loads((out / "settings.json").read_text())
    assert settings["suite"]["name"] == "mini-smiles"
    # The same folder with another suite is refused, untouched; the same suite reuses it.
    before = (out / "runs" / "mle" / "checkpoint.pt").stat().st_mtime_ns
    _one_error_line(_invoke("--out", out, *QUICK), "suite mini-smiles (asked: paper)")
    r = _invoke("--suite", suite, "--out", out, *QUICK, "--json")
    assert r.exit_code == 0, r.output
    assert (out / "runs" / "mle" / "checkpoint.pt").stat().st_mtime_ns == before
    assert json.loads(r.stdout)["rows"][1]["validity"] == mle["validity"]


# -- seeds ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    """Seeds 0, 1, 2 of the paper suite in quick mode (rows mle, gan-a), seed 1's folder made
    beforehand by an ordinary single-seed `reproduce --seed 1 --out DIR/seed-1`."""
    out = tmp_path_factory.mktemp("seeds") / "agg"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of two workers gets on two cores: the same floating point
    try:
        rows = ["--only", "mle", "--only", "gan-a"]
        single = _invoke("--seed", "1", "--out", out / "seed-1", *QUICK, *rows)
        assert single.exit_code == 0, single.output
        stamps = {p: p.stat().st_mtime_ns for p in (out / "seed-1").rglob("*") if p.name in ("checkpoint.pt", "timing.json")}
        r = _invoke("--seeds", "0,1,2", "--out", out, *QUICK, *rows, "--json")
        assert r.exit_code == 0, r.output
    finally:
        torch.set_num_threads(threads)
    return out, json.loads(r.stdout), stamps, r.output


def test_seeds_aggregate_matches_numpy_on_the_seed_reports(seeds_run):
    out, agg, _stamps, _ = seeds_run
    assert agg == json.loads((out / "report.json").read_text())
    assert agg["seeds"] == [0, 1, 2]
    reports = {s: json.loads((out / f"seed-{s}" / "report.json").read_text()) for s in (0, 1, 2)}
    assert [r["key"] for r in agg["rows"]] == ["reference", "mle", "gan-a"]
    for row in agg["rows"]:
        per_seed = {s: next(r for r in rep["rows"] if r["key"] == row["key"]) for s, rep in reports.items()}
        for metric in METRICS:
            stat = row["metrics"][metric]
            values = {s: r[metric] for s, r in per_seed.items()}
            assert stat["values"] == {str(s): v for s, v in values.items()}
            xs = np.array([v for v in values.values() if v is not None], dtype=float)
            assert stat["n"] == len(xs)
            if len(xs) == 0:
                assert stat["mean"] is None and stat["std"] is None
                continue
            assert stat["mean"] == pytest.approx(xs.mean(), rel=1e-12, abs=1e-12)
            assert stat["min"] == xs.min() and stat["max"] == xs.max()
            assert stat["std"] == pytest.approx(xs.std(ddof=1), rel=1e-9, abs=1e-12)
        validity = np.array([per_seed[s]["validity"] for s in (0, 1, 2)])
        assert row["worst_seed"] == [0, 1, 2][int(np.argmin(validity))]
        assert row["worst_validity"] == validity.min()
    md = (out / "report.md").read_text()
    assert "| model | validity |" in md and "worst seed (validity)" in md and "## Range over the seeds" in md
    mle = next(r for r in agg["rows"] if r["key"] == "mle")["metrics"]["validity"]
    assert f"{100 * mle['mean']:.1f} ± {100 * mle['std']:.1f}%" in md


def test_seed_folders_are_ordinary_reproductions_and_reruns_reuse_them(seeds_run):
    out, agg, stamps, output = seeds_run
    for s in (0, 1, 2):
        settings = json.loads((out / f"seed-{s}" / "settings.json").read_text())
        assert settings == {"seed": s, "quick": True, "device": "cpu", "version": 1}  # today's single-seed format
    # Seed 1 was made by `reproduce --seed 1 --out DIR/seed-1`: reused, not retrained.
    assert stamps and all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert "seed 1: MLE LSTM: reusing the finished run" in output
    every = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name in ("checkpoint.pt", "timing.json")}
    r = _invoke("--seeds", "0,1,2", "--out", out, *QUICK, "--only", "mle", "--only", "gan-a", "--json")
    assert r.exit_code == 0, r.output
    assert r.output.count("reusing the finished run") == 6
    assert all(p.stat().st_mtime_ns == t for p, t in every.items())
    assert json.loads(r.stdout)["rows"][0]["metrics"]["validity"] == agg["rows"][0]["metrics"]["validity"]


def test_two_workers_give_the_same_aggregate_as_one(seeds_run, tmp_path):
    _out, agg, _stamps, _ = seeds_run
    out = tmp_path / "par"
    r = _invoke("--seeds", "0,1,2", "--workers", "2", "--out", out, *QUICK, "--only", "mle", "--only", "gan-a", "--json")
    assert r.exit_code == 0, r.output
    par = json.loads(r.stdout)
    assert "1 torch thread each" in r.output or os.cpu_count() != 2

    def figures(a):  # train times differ run to run; every other figure must not
        return [(row["key"], {k: v for k, v in row["metrics"].items() if k != "train_seconds"}, row["worst_seed"])
                for row in a["rows"]]

    assert figures(par) == figures(agg)


def test_a_seeds_folder_holding_other_files_is_refused_untouched(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep\n")
    _one_error_line(_invoke("--seeds", "0,1", "--out", out, *QUICK, "--only", "mle"), "notes.txt")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
