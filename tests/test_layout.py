"""The layout keeps its promises: the grammar side never imports torch (so `score` starts
fast), and only rundir.py knows the names of a run directory's files."""

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "gumbelseq"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level >= 1:
            names.add("." * node.level + (node.module or ""))
    return names


def test_grammar_side_imports_neither_torch_nor_the_model_side():
    for path in (PKG / "lang").glob("*.py"):
        imports = _imports(path)
        assert "torch" not in imports, path
        assert not any(i.startswith("..model") for i in imports), path


def test_score_runs_without_importing_torch(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("x+x\nx+\n")
    code = (
        "import sys\n"
        "from gumbelseq.cli import main\n"
        f"sys.argv = ['gumbelseq', 'score', {str(f)!r}, '--json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'score imported torch'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"validity": 0.5' in r.stdout


def test_only_rundir_names_run_files():
    names = ['"config.json"', '"checkpoint.pt"', '"metrics.jsonl"', '"grammar.lark"']
    for path in PKG.rglob("*.py"):
        if path.name == "rundir.py":
            continue
        text = path.read_text()
        for name in names:
            assert name not in text, f"{path} hard-codes {name}; use gumbelseq.model.rundir"
