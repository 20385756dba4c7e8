import json
import textwrap
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from gumbelseq.model.backend import BaseOptions
from gumbelseq.cli import main
from gumbelseq.errors import GumbelseqError, OptionError, UnknownBackendError
from gumbelseq.model.options import build_options, parse_pairs
from gumbelseq.model.registry import Registry

# A complete third-party backend in one loose file: a unigram model over positions.
PLUGIN = textwrap.dedent(
    '''
    from dataclasses import dataclass

    import torch

    from gumbelseq.model.backend import Backend, BaseOptions, Trainer
    from gumbelseq.model.hookspecs import hookimpl


    @dataclass
    class Options(BaseOptions):
        iterations: int = 5
        smoothing: float = 1.0


    class UnigramTrainer(Trainer):
        def __init__(self, vocab_size, max_len, data, options, device, seed):
            self.options = options
            self.generator = torch.Generator(device=device).manual_seed(seed)
            self.counts = torch.full((max_len, vocab_size), options.smoothing, device=device)
            self.data = data

        def step(self, iteration):
            rows = torch.randint(0, self.data.shape[0], (self.options.batch_size,),
                                 generator=self.generator, device=self.data.device)
            self.counts.scatter_add_(1, self.data[rows].t(), torch.ones_like(self.data[rows].t(), dtype=torch.float))
            return {"loss": float(-self.counts.log_softmax(-1).max(-1).values.mean())}

        def state_dict(self):
            return {"counts": self.counts, "rng": self.generator.get_state()}

        def load_state_dict(self, state):
            self.counts.copy_(state["counts"])
            self.generator.set_state(state["rng"])

        def sample_ids(self, n, tau, generator):
            probs = (self.counts.log_softmax(-1) / tau).softmax(-1)
            return torch.multinomial(probs, n, replacement=True, generator=generator).t()


    class Unigram(Backend):
        name = "unigram-test"
        description = "Position-wise unigram counts (test plugin)."
        Options = Options

        def create(self, *, vocab_size, max_len, data, options, device, seed):
            return UnigramTrainer(vocab_size, max_len, data, options, device, seed)


    @hookimpl
    def register_backends(register):
        register(Unigram())
    '''
)


@pytest.fixture
def plugins_dir(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "unigram.py").write_text(PLUGIN)
    return d


def test_builtins_come_from_entry_points():
    entries = {e.name: e for e in Registry().entries()}
    assert {"gumbel-lstm-gan", "mle-lstm"} <= set(entries)
    assert entries["gumbel-lstm-gan"].source.startswith("entry point")


def test_unknown_backend_lists_known():
    with pytest.raises(UnknownBackendError, match="known backends: .*gumbel-lstm-gan"):
        Registry().get("nope")


def test_plugin_dir_backend_is_listed_and_trains(plugins_dir, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["backends", "--json", "--plugins-dir", str(plugins_dir)])
    assert r.exit_code == 0, r.output
    listed = {b["name"]: b for b in json.loads(r.stdout)}
    assert listed["unigram-test"]["source"].endswith("unigram.py")
    assert "argmax of the relaxed sample" in listed["gumbel-lstm-gan"]["tau"]
    run = tmp_path / "run"
    r = runner.invoke(
        main,
        ["train", "--backend", "unigram-test", "--plugins-dir", str(plugins_dir), "--out", str(run),
         "--device", "cpu", "--data-size", "200", "-o", "smoothing=0.5"],
    )
    assert r.exit_code == 0, r.output
    assert json.loads((run / "config.json").read_text())["options"]["smoothing"] == 0.5
    r = runner.invoke(main, ["sample", "-n", "5", "--plugins-dir", str(plugins_dir), "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["samples"]) == 5


def test_plugins_dir_from_environment(plugins_dir, monkeypatch):
    monkeypatch.setenv("GUMBELSEQ_PLUGINS_DIR", str(plugins_dir))
    r = CliRunner().invoke(main, ["backends", "--json"])
    assert "unigram-test" in {b["name"] for b in json.loads(r.stdout)}


def test_broken_plugin_is_one_line_error(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    (d / "bad.py").write_text("def oops(:\n")
    r = CliRunner().invoke(main, ["backends", "--plugins-dir", str(d)])
    assert r.exit_code == 1
    assert "bad.py:1" in r.output and "Traceback" not in r.output


@dataclass
class _Opts(BaseOptions):
    hidden: int = 10
    rate: float = 0.1
    hard: bool = False
    mode: str | None = None


def test_options_typed_and_validated():
    o = build_options(_Opts, parse_pairs(["hidden=32", "rate=1e-3", "hard=true", "mode=none"]))
    assert (o.hidden, o.rate, o.hard, o.mode) == (32, 1e-3, True, None)
    with pytest.raises(OptionError, match="unknown option 'hiden'; accepted: .*hidden \\(int\\)"):
        build_options(_Opts, parse_pairs(["hiden=3"]))
    with pytest.raises(OptionError, match="hidden expects int, got 'ten'"):
        build_options(_Opts, parse_pairs(["hidden=ten"]))
    with pytest.raises(OptionError, match="not key=value"):
        parse_pairs(["hidden"])


def test_the_default_backend_is_declared_by_a_plugin_not_named_by_the_core(tmp_path):
    from gumbelseq.model.registry import Registry

    assert Registry().default().name == "gumbel-lstm-gan"
    # A second plugin that also claims the default: one line naming both.
    (tmp_path / "other.py").write_text(
        "from gumbelseq.model.hookspecs import hookimpl\n"
        "import gumbelseq_mle\n"
        "class Other(gumbelseq_mle.MLELSTM):\n"
        "    name = 'other-default'\n"
        "    default = True\n"
        "@hookimpl\n"
        "def register_backends(register):\n"
        "    register(Other())\n"
    )
    with pytest.raises(GumbelseqError) as info:
        Registry(tmp_path).default()
    assert "several backends" in str(info.value) and "other-default" in str(info.value)


def test_a_plugin_that_prints_while_loading_leaves_backends_json_intact(tmp_path):
    import json
    import subprocess
    import sys

    (tmp_path / "P").mkdir()
    (tmp_path / "P" / "p.py").write_text('print("hello from plugin")\n')
    r = subprocess.run([sys.executable, "-m", "gumbelseq", "backends", "--plugins-dir", "P", "--json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "hello from plugin" in r.stderr
    assert {b["name"] for b in json.loads(r.stdout)} >= {"mle-lstm", "gumbel-lstm-gan"}
