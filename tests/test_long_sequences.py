"""Long sequences and big models: the ``v2`` LSTM kernels (``gumbelseq.model.stacked``), the
``layers`` / ``kernel`` / ``matmul`` / ``d_start`` / ``mle_weight`` options, the ``moses``
preset and rows, training at ``max_len`` 128, memory refusals and the vectorised encoder."""

from __future__ import annotations

import io
import math

import pytest
import torch
from click.testing import CliRunner
from torch.autograd import gradcheck

import gumbelseq_gan
import gumbelseq_mle
from gumbelseq.cli import main
from gumbelseq.errors import GumbelseqError, InputFileError, OptionError
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.model import memory, stacked
from gumbelseq.model.lstm import FeedbackLSTM
from gumbelseq.model.memory import OutOfMemory
from gumbelseq.model.run import load_run
from gumbelseq.model.stacked import SequenceClassifier, StackedLSTM, sample_chunk_rows
from gumbelseq.model.train import read_metrics, resume_training, start_training
from gumbelseq.model.vocab import Vocabulary

GAN = gumbelseq_gan.GumbelLSTMGAN()
MLE = gumbelseq_mle.MLELSTM()
CPU = torch.device("cpu")
VOCAB, MAX_LEN = 6, 12


def _data(n: int = 200, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, MAX_LEN + 1, (n,), generator=g)
    ids = torch.randint(1, VOCAB, (n, MAX_LEN), generator=g)
    ids[torch.arange(MAX_LEN) >= lengths[:, None]] = 0
    return ids


DATA = _data()


def _make(backend, data: torch.Tensor = DATA, seed: int = 0, **options):
    return backend.create(vocab_size=VOCAB, max_len=MAX_LEN, data=data, options=backend.make_options(options),
                          device=CPU, seed=seed)


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _params(trainer) -> list[torch.Tensor]:
    if isinstance(trainer, gumbelseq_gan.GANTrainer):
        return [*trainer.G.parameters(), *trainer.D.parameters()]
    return list(trainer.net.parameters())


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend, options, word", [
    (MLE, {"layers": 0}, "layers"),
    (MLE, {"layers": 9}, "layers"),
    (GAN, {"layers_g": 0}, "layers_g"),
    (GAN, {"layers_d": 9}, "layers_d"),
    (MLE, {"kernel": "v3"}, "kernel"),
    (GAN, {"matmul": "float16"}, "matmul"),
    (MLE, {"kernel": "v1", "layers": 2}, "kernel=v1"),
    (GAN, {"kernel": "v1", "layers_d": 2}, "kernel=v1"),
    (GAN, {"kernel": "v1", "matmul": "bfloat16"}, "kernel=v1"),
    (GAN, {"iterations": 10, "pretrain_iters": 4, "d_start": 5}, "d_start"),
    (GAN, {"mle_weight": -1.0}, "mle_weight"),
])
def test_new_options_are_range_checked_in_one_line(backend, options, word) -> None:
    with pytest.raises(OptionError) as err:
        backend.make_options(options)
    assert word in str(err.value) and "\n" not in str(err.value)


def test_kernel_defaults_follow_layers_and_matmul_and_old_defaults_stay() -> None:
    assert MLE.make_options().kernel == "v1" and MLE.make_options().layers == 1
    assert MLE.make_options({"layers": 2}).kernel == "v2"
    assert MLE.make_options({"matmul": "bfloat16"}).kernel == "v2"
    paper, best = GAN.make_options(), GAN.make_options({"preset": "best"})
    for o in (paper, best):
        assert (o.kernel, o.layers_g, o.layers_d, o.matmul, o.d_start, o.mle_weight) == ("v1", 1, 1, "float32", 0, 0.0)
    assert GAN.make_options({"layers_d": 3}).kernel == "v2"


def test_moses_preset_and_rows() -> None:
    o = GAN.make_options({"preset": "moses"})
    assert (o.kernel, o.hidden_g, o.hidden_d, o.hard, o.batch_size) == ("v2", 256, 128, True, 64)
    assert o.iterations == gumbelseq_gan.MOSES_ITERATIONS
    assert o.pretrain_iters == round(0.8 * o.iterations) and o.d_start == round(0.9 * o.pretrain_iters)
    # a shortened run keeps the shape; explicit values win
    short = GAN.make_options({"preset": "moses", "iterations": 100})
    assert (short.pretrain_iters, short.d_start) == (80, 72)
    assert GAN.make_options({"preset": "moses", "iterations": 100, "pretrain_iters": 50}).d_start == 45
    rows = [(b, r) for b in (GAN, MLE) for r in b.reproduce_suite if r.suite == "moses"]
    assert sorted(r.key for _, r in rows) == ["gan-moses", "gan-moses-constrained", "mle-moses", "mle-moses-constrained"]
    for _, row in rows:
        if row.sample_of:  # the constrained rows sample a trained MOSES row's run
            assert row.constrained and row.sample_of == row.key.removesuffix("-constrained")
    for backend, row in (x for x in rows if not x[1].sample_of):
        opts = backend.make_options(row.options)
        assert opts.iterations >= 1000 and "min" in row.what  # the time budget is stated
    assert all(r.suite == "paper" for b in (GAN, MLE) for r in b.reproduce_suite if "moses" not in r.key)


# -- the v2 kernels -------------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["tanh", "fast-tanh"])
def fast_tanh(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with the cells' tanh as bfloat16 mode computes it (``2 sigmoid(2c) - 1``),
    here in float64, where it must match plain autograd as tightly as tanh does."""
    if request.param:
        init = stacked._MM.__init__

        def forced(self: stacked._MM, dtype: torch.dtype) -> None:
            init(self, dtype)
            self.fast_tanh = True

        monkeypatch.setattr(stacked._MM, "__init__", forced)
    return request.param


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("hard", [False, True])
def test_v2_relaxed_loop_matches_plain_autograd(layers: int, hard: bool, fast_tanh: bool) -> None:
    torch.manual_seed(0)
    net = StackedLSTM(5, 4, layers).double()
    steps, batch = 6, 3
    noise = torch.randn(steps, batch, 5, dtype=torch.float64)
    state = tuple(torch.rand(layers, batch, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    fused, plain = net.relaxed(state, noise, 0.7, hard=hard), net.relaxed_reference(state, noise, 0.7, hard=hard)
    assert torch.allclose(fused, plain, atol=1e-12)
    w = torch.randn_like(fused)
    inputs = [*net.parameters(), *state]
    for a, b in zip(torch.autograd.grad((fused * w).sum(), inputs), torch.autograd.grad((plain * w).sum(), inputs)):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("layers", [1, 3])
def test_v2_teacher_forcing_and_discriminator_match_nn_lstm(layers: int, fast_tanh: bool) -> None:
    torch.manual_seed(1)
    net = StackedLSTM(5, 4, layers).double()
    ids = torch.randint(5, (3, 7))
    state = tuple(torch.rand(layers, 3, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    ours = net.teacher_forced_logits(ids, state)
    x = torch.zeros(7, 3, 5, dtype=torch.float64)
    x[1:].scatter_(2, ids[:, :-1].t().unsqueeze(2), 1.0)
    ref = net.head(net.lstm(x, state)[0])
    assert torch.allclose(ours, ref, atol=1e-12)
    inputs = [*net.parameters(), *state]
    w = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad((ours * w).sum(), inputs), torch.autograd.grad((ref * w).sum(), inputs)):
        assert torch.allclose(a, b, atol=1e-10)

    d = SequenceClassifier(5, 4, layers).double()
    xs = torch.rand(7, 3, 5, dtype=torch.float64, requires_grad=True)
    ours = d(xs)
    ref = d.head(d.lstm(xs)[1][0][-1]).squeeze(-1)
    assert torch.allclose(ours, ref, atol=1e-12)
    inputs = [*d.parameters(), xs]
    for a, b in zip(torch.autograd.grad(ours.sum(), inputs), torch.autograd.grad(ref.sum(), inputs)):
        assert torch.allclose(a, b, atol=1e-10)
    # param_grads=False: the same input gradient, no graph to the weights
    only_x = d(xs, param_grads=False)
    assert torch.equal(only_x, ours.detach())
    assert not any(p.grad_fn is None and p.requires_grad for p in [only_x]) and only_x.requires_grad
    (gx,) = torch.autograd.grad(only_x.sum(), [xs], retain_graph=True)
    ref = d.head(d.lstm(xs)[1][0][-1]).squeeze(-1)
    assert torch.allclose(gx, torch.autograd.grad(ref.sum(), [xs])[0], atol=1e-10)
    unused = torch.autograd.grad(only_x.sum(), list(d.parameters()), allow_unused=True)
    assert all(g is None for g in unused)


def test_v2_kernels_pass_gradcheck(fast_tanh: bool) -> None:
    torch.manual_seed(2)
    net = StackedLSTM(4, 3, 2).double()
    state = tuple(torch.rand(2, 2, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    noise = torch.randn(4, 2, 4, dtype=torch.float64)
    assert gradcheck(lambda h, c: net.relaxed((h, c), noise, 0.8), state)
    ids = torch.randint(4, (2, 5))
    assert gradcheck(lambda h, c: net.teacher_forced_logits(ids, (h, c)), state)


@pytest.mark.parametrize("feedback", ["soft", "hard", "ancestral"])
def test_one_layer_v2_samples_what_v1_samples(feedback: str) -> None:
    # The same weights, noise and state: the same draws (float rounding differs, ids do not).
    v1, v2 = FeedbackLSTM(6, 8), StackedLSTM(6, 8, 1)
    v2.load_state_dict(v1.state_dict())
    h0, c0 = torch.rand(300, 8), torch.rand(300, 8)
    a = v1.sample((h0, c0), 12, 1.0, torch.Generator().manual_seed(3), feedback=feedback)
    b = v2.sample((h0[None], c0[None]), 12, 1.0, torch.Generator().manual_seed(3), feedback=feedback)
    assert (a == b).float().mean() > 0.99


def test_bfloat16_products_stay_close_to_float32() -> None:
    torch.manual_seed(3)
    a, b = StackedLSTM(27, 64, 2), StackedLSTM(27, 64, 2, "bfloat16")
    b.load_state_dict(a.state_dict())
    ids = torch.randint(27, (16, 30))
    la, lb = a.mle_loss(ids), b.mle_loss(ids)
    assert abs(la.item() - lb.item()) < 1e-2
    ga, gb = torch.autograd.grad(la, list(a.parameters())), torch.autograd.grad(lb, list(b.parameters()))
    assert max(((x - y).norm() / x.norm()).item() for x, y in zip(ga, gb)) < 0.02


@pytest.mark.parametrize("layers", [1, 2])
def test_bfloat16_discriminator_stays_close_to_float32(layers: int) -> None:
    # Its input projection runs in bfloat16 (bias included) and hands back a bfloat16 gradient.
    torch.manual_seed(4)
    a, b = SequenceClassifier(27, 64, layers), SequenceClassifier(27, 64, layers, "bfloat16")
    b.load_state_dict(a.state_dict())
    x = torch.softmax(3 * torch.randn(30, 16, 27), dim=2)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    oa, ob = a(xa), b(xb)
    assert ob.dtype == torch.float32 and (oa - ob).abs().max() < 1e-3
    w = torch.randn(16)
    ga = torch.autograd.grad((oa * w).sum(), [xa, *a.parameters()])
    gb = torch.autograd.grad((ob * w).sum(), [xb, *b.parameters()])
    assert all(g.dtype == torch.float32 for g in gb)
    assert max(((p - q).norm() / p.norm()).item() for p, q in zip(ga, gb)) < 0.03
    # the generator's step: gradients w.r.t. the input only
    (gx,) = torch.autograd.grad((b(xb, param_grads=False) * w).sum(), [xb])
    assert torch.equal(gx, gb[0])


def test_sample_chunks_shrink_with_the_state_only() -> None:
    assert sample_chunk_rows(10, 1) == 16384 and sample_chunk_rows(256, 1) == 2048
    assert sample_chunk_rows(256, 2) == 1024 and sample_chunk_rows(100_000, 8) == 256


# -- training with layers > 1 ---------------------------------------------------------------------

DEEP = [
    (GAN, dict(iterations=8, batch_size=16, hidden_g=8, hidden_d=8, layers_g=2, layers_d=2, pretrain_iters=2)),
    (GAN, dict(preset="best", iterations=8, batch_size=16, hidden_g=8, hidden_d=6, layers_g=2, noise="h0",
               pretrain_iters=3, d_start=1, mle_weight=0.5)),
    (GAN, dict(iterations=8, batch_size=16, hidden_g=8, hidden_d=8, kernel="v2", matmul="bfloat16")),
    (MLE, dict(iterations=8, batch_size=16, hidden=8, layers=2)),
]
DEEP_IDS = ["gan-2-layers", "gan-best-2-layers-h0", "gan-v2-bf16", "mle-2-layers"]


@pytest.mark.parametrize("backend, options", DEEP, ids=DEEP_IDS)
def test_deep_models_train_resume_bit_identically_and_sample(backend, options) -> None:
    straight = _make(backend, seed=11, **options)
    metrics = [straight.step(i) for i in range(6)]
    assert all(math.isfinite(v) for m in metrics for v in m.values() if not (isinstance(v, float) and math.isnan(v)))
    first = _make(backend, seed=11, **options)
    for i in range(3):
        first.step(i)
    resumed = _make(backend, seed=11, **options)
    resumed.load_state_dict(_roundtrip(first.state_dict()))
    assert [resumed.step(i) for i in range(3, 6)] == metrics[3:]
    for a, b in zip(_params(straight), _params(resumed)):
        assert torch.equal(a, b)
    # a model loaded for sampling samples as the trained one, in range
    loaded = _make(backend, data=torch.zeros((0, MAX_LEN), dtype=torch.long), **options)
    loaded.load_state_dict(_roundtrip(straight.state_dict()))
    a = straight.sample_ids(70, 1.0, torch.Generator().manual_seed(5))
    assert torch.equal(a, loaded.sample_ids(70, 1.0, torch.Generator().manual_seed(5)))
    assert a.shape == (70, MAX_LEN) and int(a.min()) >= 0 and int(a.max()) < VOCAB


def test_before_d_start_only_g_trains_by_mle() -> None:
    t = _make(GAN, iterations=10, batch_size=16, hidden_g=8, hidden_d=8, pretrain_iters=4, d_start=2)
    d_before = [p.detach().clone() for p in t.D.parameters()]
    g_before = [p.detach().clone() for p in t.G.parameters()]
    m0, m1 = t.step(0), t.step(1)
    assert set(m0) == {"mle_loss", "tau", "tau_g"} and math.isfinite(m1["mle_loss"])
    assert all(torch.equal(a, b) for a, b in zip(d_before, t.D.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(g_before, t.G.parameters()))
    assert "d_loss" in t.step(2)  # D trains from d_start on


# -- max_len 128, end to end ----------------------------------------------------------------------


def test_gan_v2_and_mle_at_length_128_on_smiles_train_sample_and_sample_constrained(tmp_path) -> None:
    g = load_grammar("smiles")
    # SMILES-like strings up to the full length: molecules joined into dot-separated mixtures.
    parts = ["CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "c1ccc2c(c1)cccc2", "OC(=O)CCc1ccccc1",
             "CCN(CC)CC", "Clc1ccc(Br)cc1"]
    data = [".".join(parts[(i + k) % len(parts)] for k in range(1 + i % 5)) for i in range(30)]
    data.append("C" * 128)
    assert max(map(len, data)) == 128 and all(map(g.is_valid, data))
    runs = {
        "gan": ("gumbel-lstm-gan", {"iterations": 4, "batch_size": 8, "hidden_g": 16, "hidden_d": 8, "layers_g": 2,
                                    "pretrain_iters": 2, "hard": True}),
        "mle": ("mle-lstm", {"iterations": 3, "batch_size": 8, "hidden": 16}),
    }
    for name, (backend, options) in runs.items():
        res = start_training(grammar=g, backend=backend, out_dir=tmp_path / name, options=options, data=data,
                             seed=0, device="cpu", eval_every=2, final_samples=10)
        assert res.iterations == options["iterations"]
        run = load_run(tmp_path / name, device="cpu")
        assert run.config.max_len == 128
        free = run.sample(20, seed=1)
        assert len(free) == 20 and all(len(s) <= 128 for s in free)
        valid = run.sample(6, seed=2, constrained=True)
        assert all(g.is_valid(s) and len(s) <= 128 for s in valid)
    assert any("eval_validity" in row for row in read_metrics(tmp_path / "gan"))


def test_layers_2_run_resumes_to_the_uninterrupted_result(tmp_path) -> None:
    opts = {"iterations": 6, "batch_size": 16, "hidden": 8, "layers": 2}
    kw = dict(grammar=load_grammar("arith"), backend="mle-lstm", options=opts, n_data=100, seed=4, device="cpu",
              eval_every=3, checkpoint_every=2, final_samples=20)
    full = start_training(out_dir=tmp_path / "full", **kw).run_dir
    part = start_training(out_dir=tmp_path / "part", stop_after=3, **kw).run_dir
    resume_training(part)
    a = torch.load(full / "checkpoint.pt", weights_only=True)["trainer"]
    b = torch.load(part / "checkpoint.pt", weights_only=True)["trainer"]
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])
    assert (full / "samples.txt").read_text() == (part / "samples.txt").read_text()


# -- memory sized from the data -------------------------------------------------------------------


def test_estimates_grow_with_layers_length_and_vocabulary() -> None:
    # A big batch, so that the training step dominates (v2's sampling chunks shrink with layers).
    for backend, key in ((MLE, "layers"), (GAN, "layers_g"), (GAN, "layers_d")):
        base = {"batch_size": 4000}
        one = backend.memory_estimate(backend.make_options({**base, "kernel": "v2"}), vocab_size=27, max_len=57)
        two = backend.memory_estimate(backend.make_options({**base, key: 2}), vocab_size=27, max_len=57)
        assert two > one
        one = backend.memory_estimate(backend.make_options(base), vocab_size=27, max_len=57)
        assert backend.memory_estimate(backend.make_options(base), vocab_size=27, max_len=128) > one
        assert backend.memory_estimate(backend.make_options(base), vocab_size=60, max_len=57) > one


def test_train_refuses_what_does_not_fit_in_one_line_before_writing(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 50 * 2**20)  # 50 MiB free
    out = tmp_path / "run"
    data = tmp_path / "data.txt"
    data.write_text("".join("C" * n + "\n" for n in range(1, 58)))
    r = CliRunner().invoke(main, ["train", "--grammar", "smiles", "--data", str(data), "--backend", "mle-lstm",
                                  "-o", "hidden=1024", "--batch-size", "512", "--out", str(out)])
    assert r.exit_code == 1 and not out.exists()
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "Traceback" not in r.output
    # the estimate and the limit, for the data's length and vocabulary
    assert "needs about" in lines[0] and "0.0 GiB free" in lines[0] and "length 57, vocabulary 2" in lines[0]
    assert "options hidden=1024)" in lines[0]  # what the user set is named: often the cause


def test_resume_refuses_what_no_longer_fits(tmp_path, monkeypatch) -> None:
    kw = dict(grammar=load_grammar("arith"), backend="mle-lstm", options={"iterations": 4, "batch_size": 8, "hidden": 8},
              n_data=50, seed=0, device="cpu", eval_every=0, final_samples=0)
    run = start_training(out_dir=tmp_path / "r", stop_after=2, **kw).run_dir
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    with pytest.raises(OutOfMemory, match="needs about .* which has 0.0 GiB free"):
        resume_training(run)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 2


# -- encoding big data sets -----------------------------------------------------------------------


def test_vectorised_encoding_equals_the_loop_and_words_errors_the_same() -> None:
    strings = ["C1=CC=CC=C1", "", "CC(=O)O", "N#N", "C" * 9]
    v = Vocabulary.from_strings(strings)
    assert v.chars == tuple(sorted(set("".join(strings))))
    fast = v.encode(strings, 12)
    slow = torch.zeros_like(fast)
    for row, s in enumerate(strings):
        slow[row, : len(s)] = torch.tensor([v.chars.index(c) + 1 for c in s], dtype=torch.long)
    assert torch.equal(fast, slow)
    # the first bad row in order, whichever the problem
    with pytest.raises(InputFileError, match=r"^d:2: string of length 13 exceeds max length 12$"):
        v.encode(["CC", "C" * 13, "CX"], 12, source="d")
    with pytest.raises(InputFileError, match=r"^d:2: character 'X' is not in the vocabulary$"):
        v.encode(["CC", "CX", "C" * 13], 12, source="d")
    with pytest.raises(InputFileError, match=r"^d:1: character '☃' is not in the vocabulary$"):
        v.encode(["C\u2603"], 12, source="d")
    wide = Vocabulary(("a", "\u2603"))  # a vocabulary beyond one byte takes the loop
    assert wide.encode(["\u2603a"], 3).tolist() == [[2, 1, 0]]


def test_v2_trains_inside_the_grammar_masks(tmp_path) -> None:
    g = load_grammar("arith")
    opts = {"iterations": 4, "batch_size": 16, "hidden_g": 8, "hidden_d": 8, "layers_g": 2, "mask": "grammar",
            "pretrain_iters": 2, "hard": True}
    start_training(grammar=g, backend="gumbel-lstm-gan", out_dir=tmp_path / "m", options=opts, n_data=80, seed=1,
                   device="cpu", eval_every=0, final_samples=30)
    samples = (tmp_path / "m" / "samples.txt").read_text().splitlines()
    assert len(samples) == 30 and all(map(g.is_valid, samples))


def test_max_len_past_the_limit_is_named_as_such_before_any_estimate(tmp_path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("CC\n")
    r = CliRunner().invoke(main, ["train", "--grammar", "smiles", "--data", str(data), "--max-len", "20000",
                                  "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "'--max-len': 20000 is not in the range 1<=x<=10000" in r.output
    for kw in ({"data": ["CC"]}, {}):
        with pytest.raises(GumbelseqError, match=r"^max_len must be in \[1, 10000\], got 20000$"):
            start_training(grammar="smiles", backend="mle-lstm", out_dir=tmp_path / "r", max_len=20000,
                           device="cpu", **kw)
    assert not (tmp_path / "r").exists()
