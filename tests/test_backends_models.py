"""The built-in backends ``gumbel-lstm-gan`` and ``mle-lstm`` and their shared LSTM.

The backends are importable once the project is installed (`pip install -e .`).
"""

from __future__ import annotations

import dataclasses
import io
import math

import pluggy
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gumbelseq_gan
import gumbelseq_mle
from gumbelseq.model import hookspecs
from gumbelseq.errors import OptionError
from gumbelseq.model.options import options_to_dict
from gumbelseq.model.gumbel import gumbel_noise
from gumbelseq.model.lstm import FeedbackLSTM, _RelaxedLoop
from gumbelseq_gan.model import temperature


# torch draws replay with each Hypothesis example: conftest.py registers torch's RNG.

VOCAB, MAX_LEN = 6, 12
CPU = torch.device("cpu")
GAN = gumbelseq_gan.GumbelLSTMGAN()
MLE = gumbelseq_mle.MLELSTM()


def arith_data(n: int = 300, seed: int = 0) -> torch.Tensor:
    """Strings x(op x)* as ids (0 pad, 1 'x', 2..5 operators), right-padded to MAX_LEN."""
    g = torch.Generator().manual_seed(seed)
    data = torch.zeros((n, MAX_LEN), dtype=torch.long)
    n_ops = torch.randint(0, (MAX_LEN - 1) // 2 + 1, (n,), generator=g)
    ops = torch.randint(2, VOCAB, (n, MAX_LEN), generator=g)
    for i in range(n):
        length = 2 * int(n_ops[i]) + 1
        data[i, :length:2] = 1
        data[i, 1:length:2] = ops[i, 1:length:2]
    return data


DATA = arith_data()


def make(backend, data: torch.Tensor = DATA, seed: int = 0, device=CPU, **options):
    opts = backend.make_options(options)
    return backend.create(
        vocab_size=VOCAB, max_len=MAX_LEN, data=data, options=opts, device=device, seed=seed
    )


def small_gan(**options):
    """A small, fast GAN configuration (options given here win)."""
    base = dict(iterations=20, batch_size=32, hidden_g=8, hidden_d=8)
    return make(GAN, **{**base, **options})


def all_params(trainer) -> list[torch.Tensor]:
    if isinstance(trainer, gumbelseq_gan.GANTrainer):
        return [*trainer.G.parameters(), *trainer.D.parameters()]
    return list(trainer.net.parameters())


def roundtrip(state: dict) -> dict:
    """Through ``torch.save`` / ``torch.load(weights_only=True)``, as a run directory does."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# -- registration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, name", [(gumbelseq_gan, "gumbel-lstm-gan"), (gumbelseq_mle, "mle-lstm")]
)
def test_plugin_registers_its_backend(module, name) -> None:
    pm = pluggy.PluginManager("gumbelseq")
    pm.add_hookspecs(hookspecs)
    pm.register(module)
    found: list = []
    pm.hook.register_backends(register=found.append)
    assert [b.name for b in found] == [name]
    backend = found[0]
    assert backend.description and "\n" not in backend.description and backend.tau_help
    assert dataclasses.is_dataclass(backend.Options)


def test_option_field_types_are_parseable_kinds() -> None:
    # The core parses -o key=value with the field types; only these kinds are supported.
    import typing

    allowed = {int, float, bool, str, int | None, float | None, str | None}
    for backend in (GAN, MLE):
        hints = typing.get_type_hints(backend.Options)
        for field in dataclasses.fields(backend.Options):
            assert hints[field.name] in allowed, (backend.name, field.name, hints[field.name])


# -- options and presets ------------------------------------------------------------------------


def test_paper_preset_is_the_default_and_matches_the_paper() -> None:
    o = GAN.make_options()
    assert o == GAN.Options()  # the fields' defaults are the paper preset
    assert o.preset == "paper"
    assert (o.iterations, o.batch_size, o.gen_batch) == (20_000, 200, 200)
    assert (o.hidden_g, o.hidden_d, o.hard, o.g_loss) == (10, 10, False, "kl")
    assert (o.schedule, o.tau_start, o.tau_end, o.anneal_iters) == ("linear", 5.0, 1.0, 10_000)
    assert (o.lr_g, o.lr_d, o.beta1, o.d_steps, o.pretrain_iters) == (1e-3, 1e-3, 0.5, 1, 0)
    assert (o.real_peak, o.noise, o.anneal) == (0.9, "h0c0", "both")
    assert all(getattr(o, f.name) is not None for f in dataclasses.fields(o))


def test_explicit_options_win_over_the_preset() -> None:
    best = GAN.make_options({"preset": "best"})
    assert best.hard is True and best.pretrain_iters > 0 and best.d_steps > 1
    o = GAN.make_options(dict(preset="best", hard=False, iterations=50, d_steps=1))
    assert (o.hard, o.iterations, o.d_steps) == (False, 50, 1)
    assert o.hidden_g == best.hidden_g and o.real_peak == best.real_peak
    # run-length-dependent defaults scale with iterations; explicit values are kept as given
    assert (best.iterations, best.pretrain_iters, best.anneal_iters) == (20_000, 2_000, 10_000)
    assert (o.pretrain_iters, o.anneal_iters) == (5, 25)
    o = GAN.make_options(dict(iterations=50, anneal_iters=7, pretrain_iters=0))
    assert (o.pretrain_iters, o.anneal_iters) == (0, 7)
    # options saved in a run's config make the same options again, and gen_batch follows an
    # explicit batch_size; -o strings are typed the same way
    assert GAN.make_options(options_to_dict(o)) == o
    assert GAN.make_options(options_to_dict(best)) == best
    assert GAN.make_options(dict(batch_size=17)).gen_batch == 17
    typed = GAN.make_options(dict(preset="best", hard=False, iterations=50, d_steps=1))
    assert GAN.make_options({"preset": "best", "iterations": "50", "hard": "false", "d_steps": "1"}) == typed


@pytest.mark.parametrize(
    "options",
    [
        dict(preset="nope"),
        dict(schedule="cosine"),
        dict(g_loss="wgan"),
        dict(anneal="gen"),
        dict(noise="c0"),
        dict(hidden_g=0),
        dict(hidden_d=-3),
        dict(batch_size=0),
        dict(gen_batch=0),
        dict(iterations=0),
        dict(d_steps=0),
        dict(pretrain_iters=-1),
        dict(anneal_iters=0),
        dict(tau_start=0.0),
        dict(tau_end=-1.0),
        dict(tau_start=math.inf),
        dict(lr_g=math.nan),
        dict(lr_d=0.0),
        dict(beta1=1.0),
        dict(beta2=-0.1),
        dict(real_peak=0.0),
        dict(real_peak=1.5),
        dict(hard="maybe"),
        dict(hard=1),
        dict(iterations=2.0),
        dict(lr_g=math.inf),
    ],
)
def test_bad_gan_options_raise_option_error(options) -> None:
    # Both ways of making options check them: the core's (typed -o values, a run's config)
    # and constructing the dataclass directly.
    for build in (lambda: GAN.make_options(options), lambda: GAN.Options(**options)):
        with pytest.raises(OptionError) as err:
            build()
        message = str(err.value)
        assert "\n" not in message and next(iter(options)) in message


def test_choice_errors_list_the_accepted_values() -> None:
    with pytest.raises(OptionError, match="constant, linear, exponential, inverse-linear"):
        GAN.Options(schedule="cosine")
    with pytest.raises(OptionError, match="paper, best"):
        GAN.Options(preset="fast")


def test_pretraining_longer_than_training_is_rejected() -> None:
    with pytest.raises(OptionError, match="pretrain_iters=11 is invalid: expected an integer <= iterations \\(10\\)"):
        GAN.make_options(dict(iterations=10, pretrain_iters=11))


@pytest.mark.parametrize(
    "options",
    [dict(hidden=0), dict(lr=0.0), dict(lr=math.inf), dict(iterations=0), dict(beta2=1.0)],
)
def test_bad_mle_options_raise_option_error(options) -> None:
    with pytest.raises(OptionError):
        MLE.Options(**options)
    with pytest.raises(OptionError):
        MLE.make_options(options)


def test_temperature_schedules() -> None:
    assert temperature("linear", 0, 5.0, 1.0, 10_000) == 5.0
    assert temperature("linear", 9_999, 5.0, 1.0, 10_000) == pytest.approx(1.0)
    assert temperature("linear", 20_000, 5.0, 1.0, 10_000) == 1.0
    assert temperature("linear", 4_999.5, 5.0, 1.0, 10_000) == pytest.approx(3.0)
    assert 1 / temperature("inverse-linear", 4_999.5, 5.0, 1.0, 10_000) == pytest.approx(0.6)
    assert temperature("exponential", 9_999, 2.0, 0.5, 10_000) == pytest.approx(0.5)
    assert temperature("constant", 123, 2.0, 0.5, 10_000) == 2.0


# -- the shared LSTM: the fused loop is the plain one ------------------------------------------


@pytest.mark.parametrize("hard", [False, True])
def test_fused_relaxed_loop_matches_plain_autograd(hard: bool) -> None:
    torch.manual_seed(0)
    net = FeedbackLSTM(5, 4).double()
    h0 = torch.rand(7, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.rand(7, 4, dtype=torch.float64, requires_grad=True)
    noise = gumbel_noise((6, 7, 5), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    weights = torch.randn(6, 7, 5, dtype=torch.float64)
    results = []
    for run in (net.relaxed, net.relaxed_reference):
        net.zero_grad()
        h0.grad = c0.grad = None
        y = run((h0, c0), noise, 0.7, hard=hard)
        (y * weights).sum().backward()
        results.append([y.detach(), h0.grad, c0.grad, *(p.grad for p in net.parameters())])
    for fused, plain in zip(*results):
        assert torch.allclose(fused, plain, atol=1e-12)


def test_fused_relaxed_loop_passes_gradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    h, b, v, t = 3, 4, 5, 4

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)

    inputs = (rand(h, b), rand(h, b), rand(t, v, b), rand(4 * h, v + h), rand(4 * h, 1), rand(v, h))
    assert torch.autograd.gradcheck(lambda *a: _RelaxedLoop.apply(*a, False), inputs)


def test_teacher_forcing_is_consistent_with_sampling_inputs() -> None:
    # logits of step t must not see ids[:, t] (no peeking), only the prefix.
    torch.manual_seed(0)
    net = FeedbackLSTM(VOCAB, 8)
    ids = DATA[:4]
    changed = ids.clone()
    changed[:, 5] = (changed[:, 5] + 1) % VOCAB
    a, b = net.teacher_forced_logits(ids), net.teacher_forced_logits(changed)
    assert torch.equal(a[:6], b[:6]) and not torch.equal(a[6:], b[6:])


# -- training ----------------------------------------------------------------------------------


GAN_VARIANTS = [
    dict(),
    dict(gen_batch=48),
    dict(anneal="real"),
    dict(noise="h0"),
    dict(hard=True, real_peak=1.0),
    dict(g_loss="nonsat", schedule="inverse-linear"),
    dict(pretrain_iters=2, d_steps=2, schedule="exponential"),
    dict(preset="best", pretrain_iters=2, d_steps=2),
]


def _variant_id(options: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items()) or "paper"


@pytest.mark.parametrize("options", GAN_VARIANTS, ids=_variant_id)
def test_gan_steps_give_finite_losses(options) -> None:
    trainer = small_gan(**options)
    for i in range(4):
        metrics = trainer.step(i)
        assert {"d_loss", "g_loss", "tau"} <= set(metrics)
        assert all(isinstance(v, float) for v in metrics.values())
        assert math.isfinite(metrics["d_loss"]) and math.isfinite(metrics["g_loss"])
        assert metrics["tau"] > 0
    if trainer.options.pretrain_iters:
        assert "mle_loss" not in metrics  # the adversarial phase has begun


def test_gan_paper_preset_step_runs_at_full_size() -> None:
    trainer = make(GAN)
    assert trainer.options.batch_size == 200 and trainer.options.hidden_g == 10
    metrics = trainer.step(0)
    assert metrics["tau"] == 5.0 and math.isfinite(metrics["d_loss"])


def test_gan_pretraining_reports_the_mle_loss_and_keeps_tau_at_start() -> None:
    trainer = small_gan(pretrain_iters=3, iterations=6)
    metrics = [trainer.step(i) for i in range(5)]
    assert all("mle_loss" in m and math.isfinite(m["mle_loss"]) for m in metrics[:3])
    assert metrics[0]["tau"] == metrics[3]["tau"] == 5.0 and metrics[4]["tau"] < 5.0


def test_mle_loss_decreases() -> None:
    trainer = make(MLE, hidden=16, lr=1e-2)
    losses = [trainer.step(i)["loss"] for i in range(40)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])


RESUMABLE = [
    (GAN, dict(iterations=20, batch_size=32, hidden_g=8, hidden_d=8)),
    (
        GAN,
        dict(preset="best", iterations=20, batch_size=32, pretrain_iters=2, d_steps=2, noise="h0"),
    ),
    (MLE, dict(batch_size=32)),
]


@pytest.mark.parametrize("backend, options", RESUMABLE, ids=["gan-paper", "gan-best", "mle"])
def test_resuming_from_a_state_dict_is_bit_identical(backend, options) -> None:
    uninterrupted = make(backend, seed=11, **options)
    straight = [uninterrupted.step(i) for i in range(6)]

    first = make(backend, seed=11, **options)
    for i in range(3):
        first.step(i)
    state = roundtrip(first.state_dict())
    resumed = make(backend, seed=11, **options)
    resumed.load_state_dict(state)
    continued = [resumed.step(i) for i in range(3, 6)]

    assert continued == straight[3:]
    for a, b in zip(all_params(uninterrupted), all_params(resumed)):
        assert torch.equal(a, b)
    assert torch.equal(uninterrupted.generator.get_state(), resumed.generator.get_state())


@pytest.mark.parametrize("backend, options", RESUMABLE, ids=["gan-paper", "gan-best", "mle"])
def test_a_loaded_model_samples_like_the_trained_one(backend, options) -> None:
    trained = make(backend, **options)
    for i in range(3):
        trained.step(i)
    empty = torch.zeros((0, MAX_LEN), dtype=torch.long)
    loaded = make(backend, data=empty, **options)
    loaded.load_state_dict(roundtrip(trained.state_dict()))
    a = trained.sample_ids(50, 1.0, torch.Generator().manual_seed(5))
    b = loaded.sample_ids(50, 1.0, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="no training data"):
        loaded.step(3)


def test_rng_state_from_another_device_type_warns_but_loads() -> None:
    trained = small_gan()
    state = roundtrip(trained.state_dict())
    state["rng"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA (Philox) state
    loaded = small_gan()
    with pytest.warns(RuntimeWarning, match="RNG state"):
        loaded.load_state_dict(state)
    assert torch.equal(loaded.G.net.head.weight, trained.G.net.head.weight)
    loaded.step(0)


def test_different_seeds_give_different_models() -> None:
    a, b = small_gan(), make(GAN, seed=1, iterations=20, batch_size=32, hidden_g=8, hidden_d=8)
    assert not torch.equal(a.G.net.head.weight, b.G.net.head.weight)


# -- sampling ----------------------------------------------------------------------------------


SAMPLERS = {
    "gan": small_gan(),
    "gan-hard": small_gan(hard=True),
    "mle": make(MLE, hidden=8),
}


@settings(deadline=None, max_examples=40)
@given(
    which=st.sampled_from(sorted(SAMPLERS)),
    n=st.integers(0, 70),
    tau=st.one_of(st.sampled_from([1e-8, 1.0]), st.floats(1e-6, 1e3)),
    seed=st.integers(0, 2**32 - 1),
)
def test_sampled_ids_are_in_range_with_the_right_shape(which, n, tau, seed) -> None:
    trainer = SAMPLERS[which]
    stream_before = trainer.generator.get_state()
    ids = trainer.sample_ids(n, tau, torch.Generator().manual_seed(seed))
    assert ids.dtype == torch.long and ids.shape == (n, MAX_LEN)
    assert ((ids >= 0) & (ids < VOCAB)).all()
    # sampling never touches the training stream
    assert torch.equal(trainer.generator.get_state(), stream_before)


@pytest.mark.parametrize("which", sorted(SAMPLERS))
def test_sampling_is_reproducible_from_the_generator_seed(which) -> None:
    trainer = SAMPLERS[which]
    a = trainer.sample_ids(500, 1.0, torch.Generator().manual_seed(42))
    b = trainer.sample_ids(500, 1.0, torch.Generator().manual_seed(42))
    c = trainer.sample_ids(500, 1.0, torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sampling_chunks_cover_large_requests() -> None:
    trainer = small_gan()
    trainer.sample_chunk = 64
    ids = trainer.sample_ids(200, 1.0, torch.Generator().manual_seed(0))
    assert ids.shape == (200, MAX_LEN)


@pytest.mark.parametrize("tau", [0.0, -1.0, math.nan, math.inf])
def test_sampling_rejects_bad_tau(tau) -> None:
    for trainer in SAMPLERS.values():
        with pytest.raises(ValueError):
            trainer.sample_ids(3, tau, torch.Generator().manual_seed(0))


def test_gan_sample_ids_are_gumbel_max_draws_of_the_generator() -> None:
    # Step 0 has a fixed input (y_0 = 0), so the first symbol's distribution is
    # softmax(head(h_1)) averaged over z; compare against the teacher-forced logits.
    trainer = small_gan()
    n = 60_000
    ids = trainer.sample_ids(n, 1.0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = trainer.G.draw_state(n, torch.Generator().manual_seed(1))
        logits = trainer.G.net.teacher_forced_logits(ids[:, :1], z)[0]
        p = torch.softmax(logits, -1).mean(0).double()
    counts = torch.bincount(ids[:, 0], minlength=VOCAB).double()
    assert ((counts - n * p).abs() <= 5 * (n * p * (1 - p)).sqrt() + 1).all()


def test_mle_tau_sharpens_the_first_symbol() -> None:
    trainer = make(MLE, hidden=8)
    logits = trainer.net.teacher_forced_logits(DATA[:1])[0, 0]
    n = 20_000
    for tau in (1.0, 0.25):
        ids = trainer.sample_ids(n, tau, torch.Generator().manual_seed(0))[:, 0]
        p = torch.softmax(logits.double() / tau, -1)
        counts = torch.bincount(ids, minlength=VOCAB).double()
        assert ((counts - n * p).abs() <= 5 * (n * p * (1 - p)).sqrt() + 1).all()


# -- devices -----------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend, options", RESUMABLE, ids=["gan-paper", "gan-best", "mle"])
def test_training_and_sampling_on_cuda(backend, options) -> None:
    cuda = torch.device("cuda")
    trainer = make(backend, data=DATA.to(cuda), device=cuda, **options)
    for i in range(3):
        metrics = trainer.step(i)
    assert all(math.isfinite(v) for k, v in metrics.items() if k != "mle_loss")
    ids = trainer.sample_ids(1000, 1.0, torch.Generator(device=cuda).manual_seed(0))
    assert ids.device.type == "cuda" and ids.shape == (1000, MAX_LEN)
    state = roundtrip(trainer.state_dict())
    again = make(backend, data=DATA.to(cuda), device=cuda, **options)
    again.load_state_dict(state)
    again.step(3)
