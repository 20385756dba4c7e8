"""Constrained sampling through real runs and random models: every sample valid by a fresh Lark
and within max_len; the same seed gives the same samples; backends and grammars the masks cannot
serve are one-line errors."""

from __future__ import annotations

import functools
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from lark import Lark

from gumbelseq.lang.constraint import Constraint
from gumbelseq.lang.exactness import terminal_strings
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.model.constrained import MaskTable, StepMask
from gumbelseq.model.registry import get_backend
from gumbelseq.model.run import load_run
from gumbelseq.model.train import start_training
from gumbelseq.model.vocab import Vocabulary
from gumbelseq.lang.masks import grammar_masks
from oracle import CORPUS, lark_accepts, oracle_lark

GRAMMARS = {"arith": 12, "parens": 12, "dyck": 10, "json": 16, "smiles": 24}
BACKENDS = {"mle-lstm": {"hidden": 8}, "gumbel-lstm-gan": {"hidden_g": 8, "hidden_d": 8}}


@functools.lru_cache(maxsize=None)
def fresh_lark(name: str) -> Lark:
    return Lark(load_grammar(name).text, parser="lalr")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    made = {}
    for grammar, max_len in GRAMMARS.items():
        for backend, options in BACKENDS.items():
            out = tmp_path_factory.mktemp("runs") / f"{grammar}-{backend}"
            start_training(grammar=grammar, backend=backend, out_dir=out, options={**options, "iterations": 3},
                           n_data=200, max_len=max_len, seed=1, device="cpu", eval_every=0, final_samples=0)
            made[(grammar, backend)] = out
    return made


@pytest.mark.parametrize("grammar", sorted(GRAMMARS))
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_constrained_samples_are_valid_and_fit(runs, grammar, backend):
    run = load_run(runs[(grammar, backend)], device="cpu")
    samples = run.sample(400, tau=1.0, seed=5, constrained=True)
    assert len(samples) == 400
    for s in set(samples):
        assert len(s) <= GRAMMARS[grammar], s
        assert lark_accepts(fresh_lark(grammar), s), (grammar, backend, s)
    assert samples == run.sample(400, tau=1.0, seed=5, constrained=True)
    assert samples != run.sample(400, tau=1.0, seed=6, constrained=True)


def test_masks_only_remove_mass(tmp_path):
    # The noise is the same with and without masks: where the unconstrained sample was already
    # valid at every step, the constrained one is the same string.
    start_training(grammar="arith", backend="mle-lstm", out_dir=tmp_path / "r", options={"hidden": 16, "iterations": 300},
                   n_data=500, seed=1, device="cpu", eval_every=0, final_samples=0)
    run = load_run(tmp_path / "r", device="cpu")
    free = run.sample(2000, seed=3)
    held = run.sample(2000, seed=3, constrained=True)
    g = load_grammar("arith")
    con = run.constraint()
    same = [a == b for a, b in zip(free, held) if g.is_valid(a) and con.state_of(a) is not None]
    assert len(same) >= 50 and all(same)
    assert sum(map(g.is_valid, free)) < len(free)  # the masks had something to do


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    grammar=st.sampled_from(["arith", "parens", "dyck", "json"]),
    hidden=st.integers(1, 12),
    weight_seed=st.integers(0, 2**31),
    sample_seed=st.integers(0, 2**31),
    tau=st.sampled_from([0.05, 0.5, 1.0, 3.0]),
    backend=st.sampled_from(sorted(BACKENDS)),
)
def test_random_models_never_leave_the_grammar(grammar, hidden, weight_seed, sample_seed, tau, backend):
    g = load_grammar(grammar)
    max_len = GRAMMARS[grammar]
    # A vocabulary that can write part of the language (letters of json beyond abc are left out).
    chars = sorted(set("x+-*/()[]{}:,\"abc0123456789-truefalsn") & set("".join(terminal_strings(g))))
    vocab = Vocabulary(tuple(chars))
    be = get_backend(backend)
    key = "hidden" if backend == "mle-lstm" else "hidden_g"
    trainer = be.create(vocab_size=vocab.size, max_len=max_len, data=torch.zeros((0, max_len), dtype=torch.long),
                        options=be.make_options({key: hidden}), device=torch.device("cpu"), seed=weight_seed)
    con = Constraint(g, max_len, vocab.chars)

    table = MaskTable(con, vocab, torch.device("cpu"))

    def masks(k):
        return StepMask(table, k)

    gen = torch.Generator().manual_seed(sample_seed)
    ids = trainer.sample_ids(64, tau, gen, mask=masks)
    for s in vocab.decode(ids):
        assert len(s) <= max_len
        assert lark_accepts(fresh_lark(grammar), s), s
        assert vocab.pad not in s  # no pad inside a string: the end is final


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entry=st.sampled_from(CORPUS),
    hidden=st.integers(1, 12),
    weight_seed=st.integers(0, 2**31),
    sample_seed=st.integers(0, 2**31),
    tau=st.sampled_from([0.05, 1.0, 3.0]),
    backend=st.sampled_from(sorted(BACKENDS)),
)
def test_random_models_stay_inside_every_corpus_grammar(entry, hidden, weight_seed, sample_seed, tau, backend):
    # Whichever engine grammar_masks picks (exact counts, Lark's lexer, Earley's chart), random
    # weights sampled through its masks only write strings Lark accepts, within the length.
    _check_random_model(entry, hidden, weight_seed, sample_seed, tau, backend)


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_each_corpus_grammar_is_served(entry):
    # Hypothesis above may not pick every grammar in a run: each one once here, both backends.
    for backend in sorted(BACKENDS):
        _check_random_model(entry, 8, 0, 1, 1.0, backend, n=64)


def _check_random_model(entry, hidden, weight_seed, sample_seed, tau, backend, n=32):
    g = load_grammar(str(entry.path), start=entry.start)
    vocab = Vocabulary(tuple(sorted(set(entry.alphabet))))
    be = get_backend(backend)
    key = "hidden" if backend == "mle-lstm" else "hidden_g"
    trainer = be.create(vocab_size=vocab.size, max_len=entry.max_len, data=torch.zeros((0, entry.max_len), dtype=torch.long),
                        options=be.make_options({key: hidden}), device=torch.device("cpu"), seed=weight_seed)
    table = MaskTable(grammar_masks(g, entry.max_len, vocab.chars), vocab, torch.device("cpu"))
    ids = trainer.sample_ids(n, tau, torch.Generator().manual_seed(sample_seed), mask=lambda k: StepMask(table, k))
    lark = oracle_lark(str(entry.path), entry.start)
    for s in vocab.decode(ids):
        assert len(s) <= entry.max_len
        assert lark_accepts(lark, s), (entry.name, s)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "gumbelseq", *args], capture_output=True, text=True, cwd=cwd)


def test_a_grammar_beyond_the_masks_is_one_line(tmp_path):
    (tmp_path / "possessive.lark").write_text("start: A+\nA: /a++b/\n")  # Lark loads it; no mask engine follows it
    (tmp_path / "data.txt").write_text("ab\naab\nabab\n")
    r = _cli("train", "--grammar", "possessive.lark", "--data", "data.txt", "--backend", "mle-lstm", "--iterations", "2",
             "--max-len", "8", "--out", "run", "--eval-every", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli("sample", "--run", "run", "-n", "3", "--constrained", "-o", "out.txt", cwd=tmp_path)
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "possessive" in lines[0], r.stderr
    assert not (tmp_path / "out.txt").exists()


def test_a_backend_without_the_hook_is_one_line(tmp_path):
    from test_backend_core import TINY

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "tiny.py").write_text(TINY)
    r = _cli("train", "--backend", "tiny-test", "--plugins-dir", str(plugins), "--iterations", "2", "--out", "run",
             "--eval-every", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli("sample", "--run", "run", "--plugins-dir", str(plugins), "-n", "3", "--constrained", cwd=tmp_path)
    assert r.returncode != 0 and r.stdout == ""
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "tiny-test" in lines[0] and "constrained" in lines[0], r.stderr


def test_sample_json_goes_where_o_says(tmp_path):
    r = _cli("train", "--backend", "mle-lstm", "--iterations", "2", "--data-size", "50", "--out", "run",
             "--eval-every", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli("sample", "--run", "run", "-n", "7", "--constrained", "--json", "-o", "out.json", "--seed", "4", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    import json

    obj = json.loads((tmp_path / "out.json").read_text())
    assert obj["constrained"] is True and len(obj["samples"]) == 7
    assert all(lark_accepts(fresh_lark("arith"), s) for s in obj["samples"])
