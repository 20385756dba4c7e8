"""What the core does for every backend: options checked from field metadata, presets through
``Backend.defaults``, and ``BaseTrainer`` (seeding, data, checkpoint state, chunked sampling),
exercised through a third backend written the short way."""

from __future__ import annotations

import io
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from rich.console import Console

import gumbelseq_gan
import gumbelseq_mle
from gumbelseq.errors import GumbelseqError, OptionError
from gumbelseq.model.backend import Backend, BaseOptions
from gumbelseq.model.options import build_options, options_to_dict
from gumbelseq.model.progress import RichProgress
from gumbelseq.model.registry import Registry
from gumbelseq.model.reproduce import _command, _expected_options, paper_models
from gumbelseq.model.run import load_run
from gumbelseq.model.seed import init_seed
from gumbelseq.model.train import resume_training, start_training

# A complete backend on the core's trainer base: options with declared checks, the model, one
# training step and one sampling chunk. Everything else (create, seeding, data, checkpoints,
# chunks, the tau check) is the core's.
TINY = textwrap.dedent(
    '''
    from dataclasses import dataclass, field

    import torch
    from torch import nn
    from torch.nn import functional as F

    from gumbelseq.model.backend import Backend, BaseOptions
    from gumbelseq.model.hookspecs import hookimpl
    from gumbelseq.model.suite import ModelSpec
    from gumbelseq.model.trainer import BaseTrainer


    @dataclass
    class TinyOptions(BaseOptions):
        iterations: int = 12
        batch_size: int = 16
        lr: float = field(default=0.5, metadata={"gt": 0})


    class TinyTrainer(BaseTrainer):
        checkpointed = ("net", "opt")

        def build(self):
            self.net = nn.Linear(1, self.max_len * self.vocab_size).to(self.device)
            self.opt = torch.optim.SGD(self.net.parameters(), lr=self.options.lr, momentum=0.9)

        def logits(self):
            one = torch.ones(1, 1, device=self.device)
            return self.net(one).view(self.max_len, self.vocab_size)

        def train_step(self, iteration):
            ids = self.minibatch(self.options.batch_size)
            logits = self.logits().expand(ids.shape[0], -1, -1)
            loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), ids.reshape(-1))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            return {"loss": loss.item(), "lr": self.options.lr}

        def draw(self, n, tau, generator):
            probs = torch.softmax(self.logits() / tau, -1)
            return torch.multinomial(probs, n, replacement=True, generator=generator).t()


    class Tiny(Backend):
        name = "tiny-test"
        description = "Position-wise logits trained by SGD (test plugin)."
        Options = TinyOptions
        trainer_class = TinyTrainer
        progress_metrics = ("loss",)
        reproduce_suite = (ModelSpec("tiny", "Tiny", {"lr": 0.1}, "a test row", order=0.5, quick_options={"lr": 0.2}),)


    @hookimpl
    def register_backends(register):
        register(Tiny())
    '''
)

VOCAB, MAX_LEN = 5, 6


@pytest.fixture(scope="module")
def plugins_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("plugins")
    (d / "tiny.py").write_text(TINY)
    return d


@pytest.fixture(scope="module")
def tiny(plugins_dir) -> Backend:
    return Registry(plugins_dir).get("tiny-test")


def _data(n: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(1, VOCAB, (n, MAX_LEN), generator=g)


def _make(backend: Backend, data: torch.Tensor | None = None, seed: int = 3, **options):
    return backend.create(vocab_size=VOCAB, max_len=MAX_LEN, data=_data() if data is None else data,
                          options=backend.make_options(options), device=torch.device("cpu"), seed=seed)


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# -- options: checks declared on the fields ---------------------------------------------------


@dataclass
class _Checked(BaseOptions):
    iterations: int = 5  # redeclared for its default: keeps BaseOptions' "min": 1
    count: int = field(default=3, metadata={"min": 1})
    cap: int = field(default=3, metadata={"max": 5})
    rate: float = field(default=0.1, metadata={"gt": 0})
    share: float = field(default=0.5, metadata={"min": 0, "lt": 1})
    peak: float = field(default=1.0, metadata={"gt": 0, "max": 1})
    scale: float = 1.0
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    flag: bool = False
    limit: int | None = field(default=None, metadata={"min": 2})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"iterations": 0}, "option iterations=0 is invalid: expected an integer >= 1"),
        ({"batch_size": -1}, "option batch_size=-1 is invalid: expected an integer >= 1"),
        ({"count": 0}, "option count=0 is invalid: expected an integer >= 1"),
        ({"count": True}, "option count=True is invalid: expected an integer >= 1"),
        ({"count": 2.0}, "option count=2.0 is invalid: expected an integer >= 1"),
        ({"cap": 6}, "option cap=6 is invalid: expected an integer <= 5"),
        ({"rate": 0.0}, "option rate=0.0 is invalid: expected a finite number > 0"),
        ({"rate": float("inf")}, "option rate=inf is invalid: expected a finite number > 0"),
        ({"share": 1.0}, "option share=1.0 is invalid: expected a number in [0, 1)"),
        ({"peak": 0}, "option peak=0 is invalid: expected a number in (0, 1]"),
        ({"scale": float("nan")}, "option scale=nan is invalid: expected a finite number"),
        ({"mode": "c"}, "option mode='c' is invalid: expected one of a, b"),
        ({"flag": 1}, "option flag=1 is invalid: expected true or false"),
        ({"limit": 1}, "option limit=1 is invalid: expected an integer >= 2"),
    ],
)
def test_declared_checks_give_one_line_errors(values, message) -> None:
    with pytest.raises(OptionError) as direct:
        _Checked(**values)
    with pytest.raises(OptionError) as built:
        build_options(_Checked, values)
    assert str(direct.value) == str(built.value) == message


def test_declared_checks_accept_what_they_declare() -> None:
    o = build_options(_Checked, {"count": "1", "cap": "5", "rate": "1e-9", "share": "0", "peak": "1",
                                 "scale": "-3", "mode": "b", "flag": "yes", "limit": "none"})
    assert (o.count, o.cap, o.share, o.peak, o.scale, o.mode, o.flag, o.limit) == (1, 5, 0.0, 1.0, -3.0, "b", True, None)
    assert _Checked(rate=1, limit=2).rate == 1  # an int where a float is declared is a number


def test_defaults_see_typed_checked_values_and_lose_to_given_ones() -> None:
    seen = []

    def defaults(given):
        seen.append(dict(given))
        return {"count": given.get("cap", 3) - 1, "cap": 1, "mode": "b"}

    o = build_options(_Checked, {"cap": "4"}, defaults)
    assert seen == [{"cap": 4}]
    assert (o.cap, o.count, o.mode) == (4, 3, "b")
    # a bad given value is refused before defaults derive anything from it
    with pytest.raises(OptionError, match="mode='z'"):
        build_options(_Checked, {"mode": "z"}, defaults)
    assert len(seen) == 1


def test_a_preset_name_is_checked_before_its_table_is_read() -> None:
    gan = gumbelseq_gan.GumbelLSTMGAN()
    with pytest.raises(OptionError, match="option preset='fast' is invalid: expected one of paper, best"):
        gan.make_options({"preset": "fast"})


# Options as runs made before presets were resolved into typed options saved them
# (config.json of a `best` GAN run and an MLE run, verbatim).
SAVED = [
    (gumbelseq_gan.GumbelLSTMGAN(), '{"iterations": 30, "batch_size": 32, "preset": "best", "gen_batch": 32, "hidden_g": 32, "hidden_d": 32, "hard": true, "g_loss": "kl", "schedule": "exponential", "tau_start": 2.0, "tau_end": 0.5, "anneal_iters": 15, "anneal": "both", "noise": "h0c0", "d_steps": 2, "pretrain_iters": 3, "lr_g": 0.001, "lr_d": 0.001, "beta1": 0.5, "beta2": 0.999, "real_peak": 1.0}'),
    (gumbelseq_mle.MLELSTM(), '{"iterations": 40, "batch_size": 32, "hidden": 32, "lr": 0.001, "beta1": 0.9, "beta2": 0.999}'),
]


@pytest.mark.parametrize("backend, saved", SAVED, ids=["gan-best", "mle"])
def test_options_saved_by_earlier_runs_load_unchanged_and_are_made_the_same_today(backend, saved) -> None:
    recorded = json.loads(saved)
    # Options added since (with defaults that keep the old behaviour) come back after the saved
    # ones, in declaration order; the saved ones are unchanged and in their order.
    added = {"mask": "none"}
    # The long-sequence options: one layer, the v1 kernels (bit-identical with those runs).
    if "preset" in recorded:
        added.update(layers_g=1, layers_d=1, kernel="v1", matmul="float32", d_start=0, mle_weight=0.0)
    else:
        added.update(layers=1, kernel="v1", matmul="float32")
    today = json.dumps({**recorded, **added})
    assert json.dumps(options_to_dict(backend.make_options(recorded))) == today
    asked = {"preset": "best", "iterations": 30, "batch_size": 32} if "preset" in recorded else {"iterations": 40, "batch_size": 32}
    assert json.dumps(options_to_dict(backend.make_options(asked))) == today


# -- BaseTrainer ------------------------------------------------------------------------------


def test_create_seeds_the_weights_from_the_run_seed_without_touching_global_rngs(tiny) -> None:
    before = torch.get_rng_state()
    a, b, c = _make(tiny, seed=3), _make(tiny, seed=3), _make(tiny, seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a.net.weight, b.net.weight) and not torch.equal(a.net.weight, c.net.weight)
    # initialised from a seed derived from the run seed, not from the training stream's seed
    assert init_seed(3) != 3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(3))
        expected = torch.nn.Linear(1, MAX_LEN * VOCAB).weight
    assert torch.equal(a.net.weight, expected)


def test_checkpoint_state_is_the_declared_attributes_the_stream_and_the_step_count(tiny) -> None:
    trainer = _make(tiny)
    for i in range(3):
        trainer.step(i)
    state = _roundtrip(trainer.state_dict())
    assert set(state) == {"net", "opt", "rng", "steps_done"} and state["steps_done"] == 3
    resumed = _make(tiny)
    resumed.load_state_dict(state)
    assert [resumed.step(i) for i in range(3, 6)] == [trainer.step(i) for i in range(3, 6)]
    assert torch.equal(resumed.net.weight, trainer.net.weight)


def test_a_trainer_made_for_sampling_refuses_to_train(tiny) -> None:
    loaded = _make(tiny, data=torch.zeros((0, MAX_LEN), dtype=torch.long))
    with pytest.raises(RuntimeError, match="no training data"):
        loaded.step(0)


def test_sampling_in_chunks_checks_tau_and_keeps_one_stream(tiny, monkeypatch) -> None:
    trainer = _make(tiny)
    sizes: list[int] = []
    draw = trainer.draw
    monkeypatch.setattr(trainer, "draw", lambda n, tau, g: sizes.append(n) or draw(n, tau, g))
    trainer.sample_chunk = 4
    ids = trainer.sample_ids(10, 1.0, torch.Generator().manual_seed(1))
    assert sizes == [4, 4, 2] and ids.shape == (10, MAX_LEN) and ids.dtype == torch.long
    # the chunks are successive draws from the caller's one generator
    g = torch.Generator().manual_seed(1)
    assert torch.equal(ids, torch.cat([draw(4, 1.0, g), draw(4, 1.0, g), draw(2, 1.0, g)]))
    assert trainer.sample_ids(0, 1.0, torch.Generator()).shape == (0, MAX_LEN)
    sizes.clear()
    with pytest.raises(ValueError, match="tau"):
        trainer.sample_ids(3, 0.0, torch.Generator())
    assert sizes == []


def test_a_short_backend_trains_resumes_and_samples_like_the_built_ins(plugins_dir, tmp_path) -> None:
    common = dict(grammar="arith", backend="tiny-test", n_data=100, seed=5, device="cpu", eval_every=4,
                  checkpoint_every=4, final_samples=20, plugins_dir=plugins_dir)
    straight = start_training(out_dir=tmp_path / "straight", **common)
    stopped = start_training(out_dir=tmp_path / "stopped", stop_after=5, **common)
    assert stopped.stopped and stopped.iterations == 5
    resumed = resume_training(tmp_path / "stopped", plugins_dir=plugins_dir)
    assert resumed.iterations == straight.iterations == 12
    assert torch.equal(resumed.trainer.net.weight, straight.trainer.net.weight)
    a = load_run(tmp_path / "straight", device="cpu", plugins_dir=plugins_dir).sample(30, seed=2)
    b = load_run(tmp_path / "stopped", device="cpu", plugins_dir=plugins_dir).sample(30, seed=2)
    assert a == b and len(a) == 30
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())["options"]
    assert saved == {"iterations": 12, "batch_size": 16, "lr": 0.5}
    with pytest.raises(GumbelseqError, match="option lr=0.0 is invalid: expected a finite number > 0"):
        start_training(out_dir=tmp_path / "bad", options={"lr": "0"}, **common)
    assert not (tmp_path / "bad").exists()


# -- progress ---------------------------------------------------------------------------------


def _stats(backend: Backend, metrics: dict[str, float]) -> str:
    progress = RichProgress(Console(file=io.StringIO()))
    progress.on_backend(backend)
    progress.on_start(Path("run"), 10, 0, None)  # type: ignore[arg-type]
    progress.on_step(1, metrics)
    assert progress.progress is not None
    stats = progress.progress.tasks[0].fields["stats"]
    progress.on_end(1, False)
    return stats


def test_progress_shows_the_metrics_the_backend_declares(tiny) -> None:
    gan = gumbelseq_gan.GumbelLSTMGAN()
    metrics = {"d_loss": 1.0, "g_loss": 2.0, "tau": 5.0, "tau_g": 5.0, "d_real": 0.5}
    assert _stats(gan, metrics) == "d_loss=1.000 g_loss=2.000 tau=5.000 valid=-"
    assert _stats(tiny, {"loss": 0.25, "lr": 0.5}) == "loss=0.250 valid=-"

    class Undeclared(Backend):
        name = "undeclared"
        description = "shows every metric"

    assert _stats(Undeclared(), {"a": 1.0, "b": 2.0}) == "a=1.000 b=2.000 valid=-"


# -- the reproduction suite: declared by the backends -------------------------------------------


def test_reproduce_runs_the_rows_the_backends_declare_in_their_order(plugins_dir) -> None:
    builtin = [(m.key, m.backend) for m in paper_models()]
    gan = [(k, "gumbel-lstm-gan") for k in ("gan-a", "gan-b", "gan-c", "gan-d", "gan-best")]
    masks = [("mle-constrained", "mle-lstm"), ("gan-a-constrained", "gumbel-lstm-gan"), ("gan-best-constrained", "gumbel-lstm-gan"),
             ("mle-masked", "mle-lstm"), ("gan-a-masked", "gumbel-lstm-gan"), ("gan-best-masked", "gumbel-lstm-gan")]
    assert builtin == [("mle", "mle-lstm"), *gan, ("seqgan", "seqgan"), *masks]
    with_tiny = paper_models(plugins_dir)
    assert [m.key for m in with_tiny] == ["mle", "tiny", "gan-a", "gan-b", "gan-c", "gan-d", "gan-best", "seqgan", *(k for k, _ in masks)]
    tiny = with_tiny[1]
    assert tiny.backend == "tiny-test"
    assert _expected_options(tiny, quick=False) == {"lr": 0.1}
    assert _expected_options(tiny, quick=True) == {"lr": 0.2, "iterations": 30, "batch_size": 50}
    assert _command(tiny, 4, quick=True) == "gumbelseq train --grammar arith --backend tiny-test --seed 4 --iterations 30 --batch-size 50 -o lr=0.2"
    gan_b = next(m for m in with_tiny if m.key == "gan-b")
    assert _expected_options(gan_b, quick=True)["gen_batch"] == 200  # the GAN's own cap for --quick
    assert _command(gan_b, 0, quick=False).endswith("-o preset=paper -o gen_batch=1000")


def test_two_backends_declaring_one_row_key_is_a_one_line_error(tmp_path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "clash.py").write_text(TINY.replace('"tiny-test"', '"clash-test"').replace('ModelSpec("tiny"', 'ModelSpec("mle"'))
    with pytest.raises(GumbelseqError, match="reproduce model 'mle' is declared by backends clash-test and mle-lstm"):
        paper_models(d)
