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


    class FreshFails(NoDivision):
        name, description = "fresh-fails", "fresh() raises"

        def fresh(self):
            raise KeyError("no copy")


    class FreshNone(NoDivision):
        name, description = "fresh-none", "fresh() returns None"

        def fresh(self):
            return None


    @hookimpl
    def register_automata(register):
        for kind in (NoDivision, Broken, ListState, TextBound, FreshFails, FreshNone):
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
    ("fresh-fails", "Error: automaton 'fresh-fails' failed: KeyError: 'no copy'\n"),
    ("fresh-none", "Error: automaton 'fresh-none' failed: fresh() returned NoneType, not a CharAutomaton of that name\n"),
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


# -- plugins that misbehave, found by a hostile pass ------------------------------------------------

def _folder(tmp_path, name, text):
    d = tmp_path / name
    d.mkdir()
    (d / "p.py").write_text(textwrap.dedent(text))
    return d


def _one_error_line(r, start):
    assert r.exit_code == 1, (r.exit_code, r.output)
    assert r.stderr.startswith(start) and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_a_fifo_named_like_a_plugin_is_refused_not_waited_on(tmp_path):
    import os

    d = tmp_path / "fifo"
    d.mkdir()
    os.mkfifo(d / "x.py")  # importing it blocked for good
    _one_error_line(CliRunner().invoke(main, ["plugins", "--plugins-dir", str(d)]),
                    f"Error: {d / 'x.py'}: a plugin file must be a regular file")


def test_an_empty_plugins_dir_is_not_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "script.py").write_text("raise SystemExit('this script must not run')\n")
    monkeypatch.chdir(tmp_path)
    _one_error_line(CliRunner().invoke(main, ["plugins", "--plugins-dir", ""]),
                    "Error: '': an empty path names no plugins folder")
    monkeypatch.setenv("GUMBELSEQ_PLUGINS_DIR", "")  # an empty variable is no folder, as unset
    assert CliRunner().invoke(main, ["plugins", "--json"]).exit_code == 0


def test_an_unreadable_plugins_folder_is_one_line(tmp_path, monkeypatch):
    import os

    d = _folder(tmp_path, "locked", "")
    real = os.listdir

    def listdir(path):
        if str(path) == str(d):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "listdir", listdir)  # root reads any folder, so the refusal is staged
    _one_error_line(CliRunner().invoke(main, ["plugins", "--plugins-dir", str(d)]),
                    f"Error: {d}: cannot read the plugins folder (Permission denied)")


PRINTS = '''
    from gumbelseq.lang.automaton import CharAutomaton, hookimpl
    from gumbelseq.validators import Validator


    def canonical(batch):
        print("PRINTED BY canonical")
        return [s for s in batch]


    class Chatty(CharAutomaton):
        name, description = "chatty", "prints as it steps"

        def start(self):
            return 0

        def step(self, state, char):
            print("PRINTED BY step")
            return 0

        def accepts(self, state):
            return True


    @hookimpl
    def register_automata(register):
        register(Chatty())


    @hookimpl
    def register_validators(register):
        register(Validator("chatty", "prints as it checks", canonical, lambda: None))
'''


def _many_samples(tmp_path, n=25_000):
    """n distinct short arith strings: enough for score to hand validators to worker processes."""
    p = tmp_path / "many.txt"
    lines = []
    for i in range(n):
        s = "x"
        while i:
            i, op = divmod(i, 4)
            s += "+-*/"[op] + "x"
        lines.append(s + "\n")
    p.write_text("".join(lines))
    return p


@pytest.mark.parametrize("workers", ["1", "2"])
def test_what_a_plugin_prints_at_run_time_goes_to_stderr(arith_run, tmp_path, workers):
    d = _folder(tmp_path, "chatty", PRINTS)
    r = CliRunner().invoke(main, ["score", str(_many_samples(tmp_path)), "--validator", "chatty", "--plugins-dir", str(d),
                                  "--workers", workers, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["validators"]["chatty"]["valid"] == 25_000
    r = CliRunner().invoke(main, ["sample", "--run", str(arith_run), "-n", "20", "--plugins-dir", str(d),
                                  "--automaton", "chatty", "--json"])
    assert r.exit_code == 0 and len(json.loads(r.stdout)["samples"]) == 20
    assert "PRINTED BY step" in r.stderr


EXITS = '''
    import sys

    from gumbelseq.lang.automaton import CharAutomaton, hookimpl
    from gumbelseq.validators import Validator


    class Exits(CharAutomaton):
        name, description = "exits", "calls sys.exit(0) as it steps"

        def start(self):
            return 0

        def step(self, state, char):
            sys.exit(0)

        def accepts(self, state):
            return True


    def exits_canonical(batch):
        sys.exit(5)


    def exits_check():
        sys.exit(4)


    @hookimpl
    def register_automata(register):
        register(Exits())


    @hookimpl
    def register_validators(register):
        register(Validator("exits-canonical", "sys.exit(5) in canonical", exits_canonical, lambda: None))
        register(Validator("exits-check", "sys.exit(4) in check", lambda batch: batch, exits_check))
'''


def test_a_plugin_that_calls_sys_exit_at_run_time_is_one_error(arith_run, tmp_path):
    d = _folder(tmp_path, "exits", EXITS)
    target = tmp_path / "out.txt"
    target.write_text("keep me\n")
    r = CliRunner().invoke(main, ["sample", "--run", str(arith_run), "-n", "3000", "--plugins-dir", str(d),
                                  "--automaton", "exits", "-o", str(target)])
    _one_error_line(r, "Error: automaton 'exits' failed: it called sys.exit(0)")  # it was a silent exit 0
    assert target.read_text() == "keep me\n"
    small = tmp_path / "s.txt"
    small.write_text("x\n")
    for path, workers in ((small, "1"), (_many_samples(tmp_path), "2")):
        r = CliRunner().invoke(main, ["score", str(path), "--validator", "exits-canonical", "--plugins-dir", str(d),
                                      "--workers", workers])
        _one_error_line(r, "Error: validator 'exits-canonical' failed: it called sys.exit(5)")
    r = CliRunner().invoke(main, ["score", str(small), "--validator", "exits-check", "--plugins-dir", str(d)])
    _one_error_line(r, "Error: validator 'exits-check' cannot run: it called sys.exit(4)")


RETURNS = '''
    from gumbelseq.validators import Validator, hookimpl


    class TwoArgs(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}{b}")


    def lists(batch):
        return [[s] for s in batch]


    def ints(batch):
        return [len(s) for s in batch]


    def generator(batch):
        return (s.upper() for s in batch)


    def two_args(batch):
        raise TwoArgs(1, 2)


    @hookimpl
    def register_validators(register):
        for name, fn in (("lists", lists), ("ints", ints), ("generator", generator), ("two-args", two_args)):
            register(Validator(name, "returns oddly", fn, lambda: None))
'''


@pytest.mark.parametrize("name,message", [
    ("lists", "Error: validator 'lists' failed: it returned list ['x'] where a string or None belongs"),
    ("ints", "Error: validator 'ints' failed: it returned int 1 where a string or None belongs"),
    ("two-args", "Error: validator 'two-args' failed: TwoArgs: 12"),
    ("generator", None),
])
def test_a_validator_s_result_is_checked_alike_for_any_number_of_workers(tmp_path, name, message):
    """One worker or two, the same answer: a generator was taken in this process and refused
    from workers (it cannot be pickled), an exception that cannot be rebuilt from its message
    was misreported, and unhashable or non-string forms were a traceback or taken silently."""
    d = _folder(tmp_path, "returns", RETURNS)
    many = _many_samples(tmp_path)
    answers = []
    for workers in ("1", "2"):
        r = CliRunner().invoke(main, ["score", str(many), "--validator", name, "--plugins-dir", str(d),
                                      "--workers", workers, "--json"])
        if message is None:
            assert r.exit_code == 0, r.output
            answers.append(json.loads(r.stdout)["validators"][name])
        else:
            _one_error_line(r, message)
    if message is None:
        assert answers[0] == answers[1] and answers[0]["valid"] == 25_000


@pytest.mark.parametrize("registers,message", [
    ('CharAutomaton.__new__(type("A", (Base,), {"name": ("bad",)}))', "the automaton name ('bad',) is not a non-empty line of text"),
    ('CharAutomaton.__new__(type("A", (Base,), {"name": ""}))', "the automaton name '' is not a non-empty line of text"),
    ('CharAutomaton.__new__(type("A", (Base,), {"name": "two" + chr(10) + "lines"}))', "the automaton name 'two\\nlines' is not a non-empty line of text"),
    ('CharAutomaton.__new__(type("A", (Base,), {"name": "ok", "description": 5}))', "automaton 'ok': its description must be a string, got 5"),
])
def test_a_malformed_automaton_registration_is_one_line(tmp_path, registers, message):
    d = _folder(tmp_path, "names", f'''
        from gumbelseq.lang.automaton import CharAutomaton, hookimpl


        class Base(CharAutomaton):
            def start(self):
                return 0

            def step(self, state, char):
                return 0

            def accepts(self, state):
                return True


        @hookimpl
        def register_automata(register):
            register({registers})
    ''')
    r = CliRunner().invoke(main, ["plugins", "--plugins-dir", str(d)])
    _one_error_line(r, "Error: ")
    assert message in r.stderr, r.stderr


@pytest.mark.parametrize("field,message", [
    ("max_length='5'", "max_length must be None or an integer >= 1, got '5'"),
    ("max_length=-1", "max_length must be None or an integer >= 1, got -1"),
    ("check=None", "check must be callable, got None"),
])
def test_a_malformed_validator_is_one_line_when_registered(tmp_path, field, message):
    d = _folder(tmp_path, "fields", f'''
        from gumbelseq.validators import Validator, hookimpl


        @hookimpl
        def register_validators(register):
            register(Validator("v", "a validator", lambda batch: batch, lambda: None, {field}))
    '''.replace(", lambda: None, check=None", ", check=None"))
    r = CliRunner().invoke(main, ["plugins", "--plugins-dir", str(d)])
    _one_error_line(r, f"Error: plugin {d / 'p.py'}: register_validators failed: ")
    assert message in r.stderr, r.stderr


@pytest.mark.parametrize("text,message", [
    ("class Stop(BaseException):\n    pass\n\nraise Stop('not an Exception')\n", "plugin failed to load: Stop: not an Exception"),
    ("class Odd(Exception):\n    def __str__(self):\n        raise RuntimeError\n\nraise Odd()\n", "plugin failed to load: Odd: (its message cannot be shown)"),
])
def test_odd_exceptions_at_import_are_one_line(tmp_path, text, message):
    d = tmp_path / "odd"
    d.mkdir()
    (d / "p.py").write_text(text)
    _one_error_line(CliRunner().invoke(main, ["plugins", "--plugins-dir", str(d)]), f"Error: {d / 'p.py'}: {message}")


def test_pluggy_s_specname_is_honoured_and_a_wrapper_refused(tmp_path):
    d = _folder(tmp_path, "specname", '''
        from gumbelseq.lang.automaton import CharAutomaton, hookimpl


        class Any_(CharAutomaton):
            name, description = "anything", "accepts anything"

            def start(self):
                return 0

            def step(self, state, char):
                return 0

            def accepts(self, state):
                return True


        @hookimpl(specname="register_automata")
        def my_automata(register):
            register(Any_())
    ''')
    r = CliRunner().invoke(main, ["plugins", "--plugins-dir", str(d), "--json"])
    assert r.exit_code == 0 and ("automaton", "anything") in {(p["kind"], p["name"]) for p in json.loads(r.stdout)}
    d = _folder(tmp_path, "wrapper", '''
        from gumbelseq.lang.automaton import hookimpl


        @hookimpl(wrapper=True)
        def register_automata(register):
            return (yield)
    ''')
    _one_error_line(CliRunner().invoke(main, ["plugins", "--plugins-dir", str(d)]),
                    f"Error: plugin {d / 'p.py'}: register_automata must be a plain hook implementation, not a wrapper")


def test_a_plugin_file_name_with_a_line_break_stays_on_one_line(tmp_path):
    d = tmp_path / "nl"
    d.mkdir()
    (d / "a\nb.py").write_text("raise ValueError('bad')\n")
    _one_error_line(CliRunner().invoke(main, ["plugins", "--plugins-dir", str(d)]),
                    f"Error: {str(d / 'a') + chr(10) + 'b.py'!r}: plugin failed to load: ValueError: bad")
