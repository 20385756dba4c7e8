import json

from click.testing import CliRunner

from gumbelseq.cli import main
from gumbelseq.model.reproduce import paper_models


def test_reproduce_quick_writes_the_full_report(tmp_path):
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["reproduce", "--quick", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    keys = [row["key"] for row in rep["rows"]]
    assert keys == ["reference"] + [m.key for m in paper_models()]
    for row in rep["rows"]:
        for k in ("validity", "unique_valid", "novelty", "coverage", "train_coverage", "tv_strings", "tv_lengths"):
            assert k in row
        assert len(row["samples"]) == 20
    ref = rep["rows"][0]
    assert ref["validity"] == 1.0 and ref["tv_lengths"] < 0.1
    assert json.loads((out / "report.json").read_text())["rows"] == rep["rows"]
    md = (out / "report.md").read_text()
    assert "| model | validity |" in md and "GAN (d) noise h0" in md
    for png in ("losses.png", "samples.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Re-running reuses the finished runs: same numbers, nothing retrained.
    before = (out / "runs" / "gan-a" / "checkpoint.pt").stat().st_mtime_ns
    r2 = CliRunner().invoke(main, ["reproduce", "--quick", "--out", str(out), "--json", "--only", "gan-a"])
    assert r2.exit_code == 0, r2.output
    assert (out / "runs" / "gan-a" / "checkpoint.pt").stat().st_mtime_ns == before
    assert json.loads(r2.stdout)["rows"][1] == rep["rows"][2]


def test_reproduce_rejects_unknown_model(tmp_path):
    r = CliRunner().invoke(main, ["reproduce", "--quick", "--out", str(tmp_path), "--only", "nope"])
    assert r.exit_code == 2 and "gan-best" in r.output


def test_figures_need_the_plot_extra_and_no_plots_needs_nothing(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["reproduce", "--quick", "--out", str(out), "--only", "mle"])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "[plot]" in lines[0]
    assert not out.exists()  # refused before anything is written
    r = CliRunner().invoke(main, ["reproduce", "--quick", "--out", str(out), "--only", "mle", "--no-plots"])
    assert r.exit_code == 0, r.output
    assert (out / "report.md").exists() and not (out / "losses.png").exists() and not (out / "samples.png").exists()
