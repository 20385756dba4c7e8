"""Loose plugin files (``--plugins-dir``, ``$GUMBELSEQ_PLUGINS_DIR``) for every plugin kind:
backends, validators and character automata, and an automaton plugin that fails at run time
(one ``Error:`` line naming it, nothing written)."""

import json
import textwrap

import pytest
from click.testing import CliRunner

from gumbelseq.cli import main
from gumbelseq.lang.grammar import load_grammar

AUTOMATA = textwrap.dedent(
    '''
    from gumbelseq.lang.automaton import CharAutomaton, hookimpl


    class NoDivision(CharAutomaton):
        name, description = "no-division", "never '/'"

        def start(self):
            return 0

        def step(self, state, char):
            return None if char == "/" else 0

        def accepts(self, state):
            return True


    class Broken(CharAutomaton):
        name, description = "broken", "step raises after three characters"

        def start(self):
            return 0

        def step(self, state, char):
            if state >= 3:
                raise RuntimeError("boom in step")
            return state + 1

        def accepts(self, state):
            return True


    class ListState(CharAutomaton):
        name, description = "list-state", "a state that cannot be hashed"

        def start(self):
            return []

        def step(self, state, char):
            return state + [char]

        def accepts(self, state):
            return True


    class TextBound(CharAutomaton):
        name, description = "text-bound", "min_chars that is not a number"

        def start(self):
            return 0

        def step(self, state, char):
            return 0

        def accepts(self, state):
            return True

        def min_chars(self, state):
            return "one"


    @hookimpl
    def register_automata(register):
        for kind in (NoDivision, Broken, ListState, TextBound):
            register(kind())
    '''
)

VALIDATOR = textwrap.dedent(
    '''
    from gumbelseq.validators import Validator, hookimpl


    def canonical(strings):
        return [s.replace("+", "-") if len(s) % 2 else None for s in strings]


    @hookimpl
    def register_validators(register):
        register(Validator("odd-length", "odd-length strings, '+' read as '-'", canonical, lambda: None))
    '''
)


@pytest.fixture(scope="module")
def arith_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    r = CliRunner().invoke(main, ["train", "-g", "arith", "-b", "mle-lstm", "--iterations", "20", "--out", str(out),
                                  "--device", "cpu", "-o", "hidden=16", "--data-size", "300"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def plugins(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "automata.py").write_text(AUTOMATA)
    (d / "validator.py").write_text(VALIDATOR)
    return d


def test_a_loose_automaton_is_sampled_with(arith_run, plugins):
    args = ["sample", "--run", str(arith_run), "-n", "300", "--seed", "1", "--plugins-dir", str(plugins),
            "--automaton", "no-division"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    samples = r.stdout.splitlines()
    g = load_grammar("arith")
    assert len(samples) == 300 and all(g.is_valid(s) and "/" not in s for s in samples)
    plain = CliRunner().invoke(main, [*args[:-2], "--constrained"]).stdout.splitlines()
    assert any("/" in s for s in plain)  # the automaton changed something
    # The library takes the folder as load_run does; without it the name is unknown.
    from gumbelseq.lang.automaton import AutomatonError
    from gumbelseq.model.run import load_run

    assert load_run(arith_run, device="cpu", plugins_dir=plugins).sample(300, seed=1, automata=["no-division"]) == samples
    with pytest.raises(AutomatonError, match="unknown automaton 'no-division'"):
        load_run(arith_run, device="cpu").sample(5, automata=["no-division"])


@pytest.mark.parametrize("name,message", [
    ("broken", "Error: automaton 'broken' failed: RuntimeError: boom in step\n"),
    ("list-state", "Error: automaton 'list-state' failed: TypeError: unhashable type: 'list' (a state must be hashable,"
                   " min_chars an integer, suggest a string)\n"),
    ("text-bound", "Error: automaton 'text-bound' failed: TypeError: "),
])
def test_an_automaton_that_fails_is_one_line_and_writes_nothing(arith_run, plugins, tmp_path, name, message):
    target = tmp_path / "out.txt"
    target.write_text("keep me\n")
    r = CliRunner().invoke(main, ["sample", "--run", str(arith_run), "-n", "50", "--plugins-dir", str(plugins),
                                  "--automaton", name, "-o", str(target)])
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr
    assert target.read_text() == "keep me\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "plugins"]


def test_a_loose_validator_scores(plugins, tmp_path, monkeypatch):
    samples = tmp_path / "s.txt"
    samples.write_text("x\nx+x\nx-x\nx*x*x\nxx\n")
    r = CliRunner().invoke(main, ["score", str(samples), "--validator", "odd-length", "--plugins-dir", str(plugins), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["validators"]["odd-length"]
    assert (got["valid"], got["unique"]) == (4, 3)  # x+x and x-x share a canonical form
    monkeypatch.setenv("GUMBELSEQ_PLUGINS_DIR", str(plugins))
    r = CliRunner().invoke(main, ["score", str(samples), "--validator", "odd-length", "--json"])
    assert json.loads(r.stdout)["validators"]["odd-length"]["valid"] == 4


def test_plugins_lists_every_kind_with_its_source(plugins):
    r = CliRunner().invoke(main, ["plugins", "--plugins-dir", str(plugins), "--json"])
    assert r.exit_code == 0, r.output
    rows = {(p["kind"], p["name"]): p["source"] for p in json.loads(r.stdout)}
    assert rows[("automaton", "no-division")] == str(plugins / "automata.py")
    assert rows[("validator", "odd-length")] == str(plugins / "validator.py")
    assert rows[("automaton", "smiles-rings")].startswith("entry point")
    assert rows[("backend", "mle-lstm")].startswith("entry point")
    assert CliRunner().invoke(main, ["plugins"]).exit_code == 0


def test_one_file_may_hold_several_kinds_and_a_misspelt_hook_is_named(tmp_path):
    from test_registry import PLUGIN

    d = tmp_path / "both"
    d.mkdir()
    (d / "both.py").write_text(PLUGIN + AUTOMATA.replace("from gumbelseq.lang.automaton import CharAutomaton, hookimpl",
                                                         "from gumbelseq.lang.automaton import CharAutomaton"))
    r = CliRunner().invoke(main, ["plugins", "--plugins-dir", str(d), "--json"])
    kinds = {(p["kind"], p["name"]) for p in json.loads(r.stdout)}
    assert {("backend", "unigram-test"), ("automaton", "broken")} <= kinds
    d = tmp_path / "typo"  # a folder is read once per process
    d.mkdir()
    (d / "typo.py").write_text("from gumbelseq.validators import hookimpl\n\n@hookimpl\ndef register_validator(register):\n    pass\n")
    for argv in (["plugins"], ["backends"], ["score", "x.txt", "--validator", "rdkit"]):
        r = CliRunner().invoke(main, [*argv, "--plugins-dir", str(d)])
        assert r.exit_code == 1 and r.stderr.startswith(f"Error: {d / 'typo.py'}: not a valid plugin: unknown hook 'register_validator'"), r.stderr


BLIND = textwrap.dedent(
    '''
    from gumbelseq.lang.automaton import CharAutomaton, hookimpl


    class TwoStrings(CharAutomaton):
        """States that never merge (the prefix itself) and no bound: a search off the two
        strings (which ``suggest`` leads to) is blind."""
        name, description = "two-strings", "x+x or x-x-x-x-x"
        targets = ("x+x", "x-x-x-x-x")

        def start(self):
            return ""

        def step(self, state, char):
            return state + char

        def accepts(self, state):
            return state in self.targets

        def suggest(self, state):
            return "".join(t[len(state)] for t in self.targets if t.startswith(state) and len(t) > len(state))


    @hookimpl
    def register_automata(register):
        register(TwoStrings())
    '''
)


def test_a_search_out_of_budget_is_said_and_counted(arith_run, tmp_path, monkeypatch):
    from gumbelseq.lang import intersection

    d = tmp_path / "blind"
    d.mkdir()
    (d / "blind.py").write_text(BLIND)
    monkeypatch.setattr(intersection, "SEARCH_BUDGET", 40)
    args = ["sample", "--run", str(arith_run), "-n", "30", "--plugins-dir", str(d), "--automaton", "two-strings"]
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["search_gave_up"] > 0 and set(obj["samples"]) <= {"x+x", "x-x-x-x-x"}
    assert f"ran out of its budget (40 states) {obj['search_gave_up']:,} times" in " ".join(r.stderr.split())
    monkeypatch.setattr(intersection, "SEARCH_BUDGET", 200_000)
    r = CliRunner().invoke(main, [*args, "--json"])
    obj = json.loads(r.stdout)
    assert obj["search_gave_up"] == 0 and "budget" not in r.stderr
    assert set(obj["samples"]) == {"x+x", "x-x-x-x-x"}
