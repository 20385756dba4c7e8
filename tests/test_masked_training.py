"""-o mask=grammar: the masks are inside training, not only at sampling."""

from __future__ import annotations

import pytest
import torch

from gumbelseq.errors import GumbelseqError
from gumbelseq.lang.constraint import Constraint
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.model.constrained import MaskTable, StepMask
from gumbelseq.model.registry import get_backend
from gumbelseq.model.run import load_run
from gumbelseq.model.train import resume_training, start_training
from gumbelseq.model.vocab import Vocabulary

ARITH = Vocabulary(tuple(sorted("x+-*/")))


def _trainer(backend: str, **options):
    be = get_backend(backend)
    g = load_grammar("arith")
    data = ARITH.encode(["x", "x+x", "x*x-x", "x/x/x+x"], 12)
    t = be.create(vocab_size=ARITH.size, max_len=12, data=data, options=be.make_options(options),
                  device=torch.device("cpu"), seed=0)
    t.use_grammar_masks(MaskTable(Constraint(g, 12, ARITH.chars), ARITH, torch.device("cpu")))
    return t


@pytest.mark.parametrize("hard", [False, True])
def test_relaxed_samples_never_leave_the_grammar(hard):
    t = _trainer("gumbel-lstm-gan", hidden_g=8, mask="grammar", hard=hard)
    n = 256
    gen = torch.Generator().manual_seed(1)
    noise = torch.distributions.Gumbel(0.0, 1.0).sample((12, n, ARITH.size))
    mask = StepMask(t.masks, n)
    states = [mask.state]
    y = t.G(t.G.draw_state(n, gen), noise, 0.7, hard, _Recording(mask, states))
    # Every step's vector puts exactly zero mass outside what the grammar allows there...
    for step in range(12):
        allowed = t.masks.allowed[states[step]]  # [n, V]
        assert torch.all(y[step][~allowed] == 0)
    # ...and the argmax strings are valid.
    g = load_grammar("arith")
    for s in ARITH.decode(y.argmax(-1).t()):
        assert g.is_valid(s), s
    # Gradients flow to G and are finite.
    y.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in t.G.parameters() if p.grad is not None)


class _Recording(StepMask):
    """A StepMask that records the state of every step."""

    def __init__(self, inner: StepMask, states: list) -> None:
        self.table, self.state, self._states = inner.table, inner.state, states

    def advance(self, ids):
        super().advance(ids)
        self._states.append(self.state)


def test_masked_mle_loss_is_finite_and_masks_every_position():
    t = _trainer("mle-lstm", hidden=8, mask="grammar")
    ids, allowed = t.minibatch_masked(32)
    assert allowed.shape == (32, 12, ARITH.size)
    assert bool(allowed.gather(2, ids.unsqueeze(2)).all())  # the data is always allowed
    assert not bool(allowed.all())  # and something is not
    loss = t.net.mle_loss(ids, allowed=allowed)
    assert torch.isfinite(loss)
    metrics = t.step(0)
    assert metrics["loss"] == metrics["loss"]


@pytest.mark.parametrize("backend,options", [("mle-lstm", {"hidden": 8}), ("gumbel-lstm-gan", {"hidden_g": 8, "hidden_d": 8})])
def test_masked_runs_sample_valid_and_resume_exactly(tmp_path, backend, options):
    common = dict(grammar="arith", backend=backend, options={**options, "mask": "grammar", "iterations": 6},
                  n_data=100, seed=2, device="cpu", eval_every=3, checkpoint_every=2, final_samples=0)
    start_training(out_dir=tmp_path / "straight", **common)
    start_training(out_dir=tmp_path / "stopped", stop_after=3, **common)
    resume_training(tmp_path / "stopped")
    a = load_run(tmp_path / "straight", device="cpu")
    b = load_run(tmp_path / "stopped", device="cpu")
    for k, v in a.trainer.state_dict().items():
        if isinstance(v, dict) and k != "rng":
            for name, tensor in v.items():
                if torch.is_tensor(tensor):
                    assert torch.equal(tensor, b.trainer.state_dict()[k][name]), (k, name)
    samples = a.sample(300, seed=1)  # a masked run always samples masked
    g = load_grammar("arith")
    assert all(g.is_valid(s) and len(s) <= 12 for s in samples)
    assert samples == b.sample(300, seed=1)


# A possessive repeat: Lark loads it, no mask engine follows it (yet).
BEYOND_MASKS = "start: A+\nA: /a++b/\n"


def test_mask_option_is_refused_before_anything_is_written(tmp_path):
    grammar = tmp_path / "possessive.lark"
    grammar.write_text(BEYOND_MASKS)
    with pytest.raises(GumbelseqError, match="does not support this grammar.*possessive"):
        start_training(grammar=str(grammar), backend="mle-lstm", out_dir=tmp_path / "r", data=["ab", "aab"],
                       options={"mask": "grammar", "iterations": 2}, max_len=8, device="cpu")
    assert not (tmp_path / "r").exists()
    with pytest.raises(GumbelseqError, match="mask"):
        start_training(grammar="arith", backend="mle-lstm", out_dir=tmp_path / "r2",
                       options={"mask": "everything", "iterations": 2}, n_data=20, device="cpu")
    assert not (tmp_path / "r2").exists()


def test_training_data_outside_the_grammar_is_one_line_naming_the_first_such_line(tmp_path):
    # Line 2 fails at its last character (no room left to finish), line 3 at its first: line 2
    # is named.
    with pytest.raises(GumbelseqError) as info:
        start_training(grammar="arith", backend="mle-lstm", out_dir=tmp_path / "r", data=["x+x", "x+x+", "+x"],
                       options={"mask": "grammar", "iterations": 2}, device="cpu")
    assert str(info.value) == ("data:2:4: the string has '+' where the grammar allows no such thing within the length"
                               " bound, so it cannot be trained with grammar masks")
    assert not (tmp_path / "r").exists()


def test_masked_training_data_errors_name_the_line_of_the_users_file(tmp_path):
    from click.testing import CliRunner

    from gumbelseq.cli import main

    data = tmp_path / "d.csv"
    data.write_text("s\n\nx+x\n\n\"x*x\"\nx+-x\n+x\n")  # header, blank lines, a quoted field
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--backend", "mle-lstm", "-o", "mask=grammar",
                                  "--iterations", "2", "--out", str(tmp_path / "r")])
    assert r.exit_code == 1
    assert r.output.strip() == (f"Error: {data}:6:3: the string has '-' where the grammar allows no such thing within"
                                " the length bound, so it cannot be trained with grammar masks")
    assert not (tmp_path / "r").exists()
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--backend", "mle-lstm", "--max-len", "2",
                                  "--iterations", "2", "--out", str(tmp_path / "r")])
    assert r.output.strip() == f"Error: {data}:3: a string of length 4, more than --max-len 2"


def test_real_vectors_are_noised_inside_the_masks_too():
    # Otherwise D separates real from fake by the mass real vectors put where G cannot write.
    from gumbelseq_gan.model import real_log_probs, real_vectors

    t = _trainer("gumbel-lstm-gan", hidden_g=8, mask="grammar", real_peak=0.9)
    ids, allowed = t.minibatch_masked(64)
    noise = torch.distributions.Gumbel(0.0, 1.0).sample((12, 64, ARITH.size))
    table = real_log_probs(ARITH.size, 0.9, torch.device("cpu"))
    masked = real_vectors(ids, table, noise, 1.0, False, allowed)
    assert torch.all(masked[~allowed.transpose(0, 1)] == 0)
    assert torch.allclose(masked.sum(-1), torch.ones(12, 64))
    free = real_vectors(ids, table, noise, 1.0, False)
    assert bool((free[~allowed.transpose(0, 1)] > 0).any())
