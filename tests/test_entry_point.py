"""The console script: a Ctrl-C while the CLI is still being imported is answered like one during
a command (no traceback), and the package's import stays light enough for that to matter."""

import importlib.metadata
import signal
import subprocess
import sys

import pytest

# Sends this process a SIGINT from inside an import of one of the CLI's libraries: the moment a
# Ctrl-C lands while the console script is still loading (hard to hit by timing in a test).
_INTERRUPT_DURING_IMPORT = """
import os, signal, sys
from gumbelseq.entry_point import main

MODULE = sys.argv[1]

class InterruptOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, InterruptOnImport())
sys.argv[1:] = ["grammars"]
main()
"""


def _as_from_a_terminal() -> None:
    # A job started in the background of a shell script has SIGINT ignored, and Python then
    # leaves it ignored: the child starts with the default action, as from a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("module", ["lark", "click", "rich"])
def test_ctrl_c_while_the_cli_is_imported_is_one_line(module):
    r = subprocess.run([sys.executable, "-c", _INTERRUPT_DURING_IMPORT, module], capture_output=True, text=True, timeout=60,
                       preexec_fn=_as_from_a_terminal)
    assert "Traceback" not in r.stderr, r.stderr
    assert (r.returncode, r.stderr, r.stdout) == (1, "\nAborted!\n", "")


def test_the_installed_console_script_is_the_entry_point():
    (script,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "gumbelseq"]
    assert script.value == "gumbelseq.entry_point:main"


def test_importing_the_package_loads_no_heavy_library():
    code = ("import sys, gumbelseq, gumbelseq.entry_point; "
            "print(sorted(m for m in ('lark', 'click', 'rich', 'torch', 'numpy') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, "[]"), r.stderr


def test_the_package_still_exports_the_grammar_api_lazily():
    import gumbelseq
    from gumbelseq.lang.grammar import load_grammar

    assert gumbelseq.load_grammar is load_grammar
    assert set(gumbelseq.__all__) <= set(dir(gumbelseq))
    with pytest.raises(AttributeError):
        gumbelseq.no_such_name  # noqa: B018
