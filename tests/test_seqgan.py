"""The ``seqgan`` backend (plugins/gumbelseq_seqgan): options, roll-outs, the policy gradient,
exact resumption and sampling, through the same paths as the built-ins."""

from __future__ import annotations

import io
import math

import pluggy
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import gumbelseq_seqgan
from gumbelseq.cli import main
from gumbelseq.errors import OptionError
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.model import hookspecs
from gumbelseq.model.registry import Registry
from gumbelseq.model.reproduce import _expected_options, paper_models
from gumbelseq.model.run import load_run
from gumbelseq.model.train import read_metrics, resume_training, start_training
from test_backends_models import arith_data

VOCAB, MAX_LEN = 6, 12
CPU = torch.device("cpu")
SEQGAN = gumbelseq_seqgan.SeqGAN()
#: Small enough for a step to take milliseconds; crosses the MLE -> policy boundary at 4 and
#: trains D after every second iteration.
SMALL = dict(iterations=10, batch_size=16, hidden_g=8, hidden_d=8, pretrain_iters=4, rollouts=2, d_every=2, d_steps=1)


DATA = arith_data(200)  # x(op x)* as ids, the built-ins' test data


def make(data: torch.Tensor = DATA, seed: int = 0, **options) -> gumbelseq_seqgan.SeqGANTrainer:
    return SEQGAN.create(vocab_size=VOCAB, max_len=MAX_LEN, data=data, options=SEQGAN.make_options(options),
                         device=CPU, seed=seed)


def roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def params(trainer) -> list[torch.Tensor]:
    return [*trainer.G.parameters(), *trainer.D.parameters()]


# -- registration and options -------------------------------------------------------------------


def test_registered_through_the_entry_point_group() -> None:
    pm = pluggy.PluginManager("gumbelseq")
    pm.add_hookspecs(hookspecs)
    pm.register(gumbelseq_seqgan)
    found: list = []
    pm.hook.register_backends(register=found.append)
    assert [b.name for b in found] == ["seqgan"]
    entry = {e.name: e for e in Registry().entries()}["seqgan"]
    assert entry.source.startswith("entry point seqgan = gumbelseq_seqgan")
    assert SEQGAN.description and "\n" not in SEQGAN.description and SEQGAN.tau_help


def test_pretraining_scales_with_iterations_and_given_values_win() -> None:
    o = SEQGAN.make_options({})
    assert (o.iterations, o.pretrain_iters) == (3000, 2000)
    assert SEQGAN.make_options({"iterations": "30"}).pretrain_iters == round(30 * gumbelseq_seqgan.PRETRAIN_FRACTION)
    assert SEQGAN.make_options({"iterations": 30, "pretrain_iters": 0}).pretrain_iters == 0


@pytest.mark.parametrize(
    "values, message",
    [
        ({"rollouts": 0}, "option rollouts=0 is invalid: expected an integer >= 1"),
        ({"d_every": "0"}, "option d_every=0 is invalid: expected an integer >= 1"),
        ({"lr_pg": 0}, "option lr_pg=0 is invalid: expected a finite number > 0"),
        ({"mle_weight": -1.0}, "option mle_weight=-1.0 is invalid: expected a finite number >= 0"),
        ({"beta1": 1.0}, "option beta1=1.0 is invalid: expected a number in [0, 1)"),
        ({"baseline": "maybe"}, "option baseline expects bool, got 'maybe'"),
        ({"iterations": 5, "pretrain_iters": 6}, "option pretrain_iters=6 is invalid: expected an integer <= iterations (5)"),
    ],
)
def test_bad_options_are_option_errors(values, message) -> None:
    with pytest.raises(OptionError) as e:
        SEQGAN.make_options(values)
    assert str(e.value) == message


def test_bad_option_on_the_command_line_is_one_error_line(tmp_path) -> None:
    r = CliRunner().invoke(main, ["train", "--backend", "seqgan", "--out", str(tmp_path / "r"), "-o", "rollouts=0"])
    assert r.exit_code != 0
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines == ["Error: option rollouts=0 is invalid: expected an integer >= 1"]
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_memory_estimate_grows_with_rollouts_and_refuses_impossible_sizes(tmp_path) -> None:
    small = SEQGAN.memory_estimate(SEQGAN.make_options({}), vocab_size=VOCAB, max_len=MAX_LEN)
    more = SEQGAN.memory_estimate(SEQGAN.make_options({"rollouts": 64}), vocab_size=VOCAB, max_len=MAX_LEN)
    assert 0 < small < more
    r = CliRunner().invoke(main, ["train", "--backend", "seqgan", "--device", "cpu", "--out", str(tmp_path / "r"),
                                  "-o", "rollouts=1000000000"])
    assert r.exit_code != 0 and "needs about" in r.output and "Traceback" not in r.output


# -- roll-outs and the policy gradient ----------------------------------------------------------


def test_prefix_states_reproduce_the_teacher_forced_logits() -> None:
    t = make(**SMALL)
    ids = DATA[:7]
    cell = gumbelseq_seqgan._Cell(t.G)
    h = torch.zeros(7, 8)
    c = torch.zeros_like(h)
    with torch.no_grad():
        want = t.G.teacher_forced_logits(ids)
        for step in range(MAX_LEN):
            h, c = cell.step(None if step == 0 else ids[:, step - 1], h, c)
            torch.testing.assert_close(h @ cell.w_out + cell.b_out, want[step], rtol=1e-5, atol=1e-5)


def test_rollouts_keep_the_prefix_and_complete_it_with_draws_from_the_generator() -> None:
    t = make(**{**SMALL, "rollouts": 4000})
    t.G.head.bias.data[0] += 1.0  # a less even next-symbol distribution to compare against
    ids = DATA[2:3]  # one string: "x", then an operator
    full = t.rollout(ids)  # [T-1, N, 1, T]
    assert full.shape == (MAX_LEN - 1, 4000, 1, MAX_LEN)
    for k in range(1, MAX_LEN):
        assert torch.equal(full[k - 1, :, 0, :k], ids[:, :k].expand(4000, k))
    # The symbol after the one-symbol prefix is a draw from G's next-symbol distribution there.
    with torch.no_grad():
        probs = torch.softmax(t.G.teacher_forced_logits(ids)[1, 0], dim=0)
    freq = torch.bincount(full[0, :, 0, 1], minlength=VOCAB).float() / 4000
    assert (freq - probs).abs().max() < 0.03, (freq, probs)


class _FirstSymbolCritic(nn.Module):
    """A fixed D: confident "real" exactly when the first symbol is ``k``."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 8.0 * (x[0, :, self.k] - 0.5)


def test_rewards_are_the_critics_verdict_on_completions() -> None:
    t = make(**SMALL)
    t.D = _FirstSymbolCritic(2)
    ids = DATA[:5].clone()
    ids[:3, 0] = 2
    q = t.rewards(ids)
    assert q.shape == (MAX_LEN, 5)
    # The first symbol is in every prefix: every step of a string gets the same reward.
    high, low = torch.sigmoid(torch.tensor(4.0)), torch.sigmoid(torch.tensor(-4.0))
    torch.testing.assert_close(q[:, :3], high.expand(MAX_LEN, 3))
    torch.testing.assert_close(q[:, 3:], low.expand(MAX_LEN, 2))


def test_policy_gradient_moves_the_generator_towards_what_the_critic_rewards() -> None:
    # No pre-training and D never retrained: G should learn to start strings with symbol 3.
    t = make(iterations=40, batch_size=64, hidden_g=8, hidden_d=8, pretrain_iters=0, rollouts=1,
             d_every=1000, lr_pg=0.05, mle_weight=0.0)
    t.D = _FirstSymbolCritic(3)

    def p_first() -> float:
        with torch.no_grad():
            return torch.softmax(t.G.teacher_forced_logits(DATA[:1])[0, 0], dim=0)[3].item()

    before = p_first()
    metrics = [t.step(i) for i in range(40)]
    assert all(math.isfinite(m["g_loss"]) and "mle_loss" not in m for m in metrics)
    assert p_first() > max(0.9, before + 0.5), (before, p_first())
    assert metrics[-1]["reward"] > metrics[0]["reward"]


@pytest.mark.parametrize("mle_weight", [0.0, 1.0])
def test_phases_and_discriminator_rounds_report_their_metrics(mle_weight) -> None:
    t = make(**{**SMALL, "mle_weight": mle_weight})
    metrics = [t.step(i) for i in range(SMALL["iterations"])]
    for i, m in enumerate(metrics):
        assert ("mle_loss" in m) == (i < SMALL["pretrain_iters"] or mle_weight > 0)
        assert ("g_loss" in m and "reward" in m) == (i >= SMALL["pretrain_iters"])
        assert ("d_loss" in m) == ((i + 1) % SMALL["d_every"] == 0)
        assert all(math.isfinite(v) for v in m.values())


# -- resumption and sampling --------------------------------------------------------------------


def test_resuming_from_a_state_dict_is_bit_identical() -> None:
    uninterrupted = make(seed=11, **SMALL)
    straight = [uninterrupted.step(i) for i in range(8)]
    first = make(seed=11, **SMALL)
    for i in range(3):
        first.step(i)
    resumed = make(seed=11, **SMALL)
    resumed.load_state_dict(roundtrip(first.state_dict()))
    assert [resumed.step(i) for i in range(3, 8)] == straight[3:]
    for a, b in zip(params(uninterrupted), params(resumed)):
        assert torch.equal(a, b)
    assert torch.equal(uninterrupted.generator.get_state(), resumed.generator.get_state())


def _start(tmp_path, name: str, **kw):
    return start_training(grammar=load_grammar("arith"), backend="seqgan", out_dir=tmp_path / name, options=SMALL,
                          n_data=300, seed=5, device="cpu", eval_every=4, checkpoint_every=3, log_every=1,
                          final_samples=50, **kw)


def test_a_stopped_run_resumes_to_the_uninterrupted_one(tmp_path) -> None:
    full = _start(tmp_path, "full").run_dir
    part = _start(tmp_path, "part", stop_after=5)
    assert part.stopped and part.iterations == 5
    assert resume_training(part.run_dir).iterations == SMALL["iterations"]
    a = torch.load(full / "checkpoint.pt", weights_only=True)["trainer"]
    b = torch.load(part.run_dir / "checkpoint.pt", weights_only=True)["trainer"]
    for name in ("G", "D"):
        assert a[name].keys() == b[name].keys()
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name])
    assert torch.equal(a["rng"], b["rng"])
    assert read_metrics(full) == read_metrics(part.run_dir)
    assert (full / "samples.txt").read_text() == (part.run_dir / "samples.txt").read_text()
    # A loaded run samples as the trained one, and constrained samples are all valid.
    run = load_run(full, device="cpu")
    assert run.sample(30, seed=2) == load_run(part.run_dir, device="cpu").sample(30, seed=2)
    grammar = load_grammar("arith")
    held = run.sample(500, seed=3, constrained=True)
    assert all(grammar.is_valid(s) and len(s) <= MAX_LEN for s in held)
    assert held == run.sample(500, seed=3, constrained=True)
    with pytest.raises(RuntimeError, match="no training data"):
        run.trainer.step(0)  # an MLE step needs the training set


def test_reproduce_row_comes_after_the_gan_rows_with_quick_options() -> None:
    models = paper_models()
    keys = [m.key for m in models]
    # After every trained GAN row; the mask rows (order 10 and up) come after all trained rows.
    assert keys.index("seqgan") == keys.index("gan-best") + 1
    spec = models[keys.index("seqgan")]
    assert spec.backend == "seqgan" and spec.label == "SeqGAN (REINFORCE)"
    quick = SEQGAN.make_options(_expected_options(spec, quick=True))
    assert quick.iterations == 30 and 0 < quick.pretrain_iters < quick.iterations
