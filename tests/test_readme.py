"""The README's quick tour runs as written (in a scratch directory, through the real CLI)."""

import re
import shlex
import shutil
from pathlib import Path

from click.testing import CliRunner

from gumbelseq.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _quick_tour() -> list[list[str]]:
    text = README.read_text()
    block = re.search(r"## Quick tour\s+```bash\n(.*?)```", text, re.S).group(1)
    commands = []
    for line in block.splitlines():
        line = line.split("  #")[0].strip()
        if line:
            argv = shlex.split(line)
            assert argv[0] == "gumbelseq"
            commands.append(argv[1:])
    return commands


def test_quick_tour_runs_as_written(tmp_path, monkeypatch):
    shutil.copytree(README.parent / "gumbelseq" / "grammars", tmp_path / "grammars")
    monkeypatch.chdir(tmp_path)
    commands = _quick_tour()
    assert len(commands) >= 6
    runner = CliRunner()
    for argv in commands:
        r = runner.invoke(main, argv)
        assert r.exit_code == 0, (argv, r.output)
    assert len(Path("samples.txt").read_text().splitlines()) == 100
    assert (tmp_path / "reproduction-quick" / "report.md").exists()
