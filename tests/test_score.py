import io
import json
import os
import random
import re
import subprocess
import sys
import time

import pytest
from hypothesis import given, strategies as st

from gumbelseq.errors import InputFileError
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.language import COUNT_MAX_LEN
from gumbelseq.lang.score import EARLEY_MAX_LEN, count_distinct, iter_line_chunks, score_file, score_samples

ARITH_RE = re.compile(r"x([-+*/]x)*")


@given(st.lists(st.text(alphabet="x+-*/ ", max_size=8), max_size=40))
def test_validity_agrees_with_regex_checker(samples):
    rep = score_samples(samples, load_grammar("arith"))
    stripped = [s.rstrip(" ") for s in samples]
    valid = sum(1 for s in stripped if ARITH_RE.fullmatch(s))
    assert rep.total == len(samples)
    assert rep.valid == valid
    assert rep.unique == len(set(stripped))
    assert rep.unique_valid == len({s for s in stripped if ARITH_RE.fullmatch(s)})
    assert sum(rep.lengths.values()) == len(samples)


def test_padding_is_removed_and_interior_spaces_are_invalid(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("x+x         \nx x\nx\n")
    rep = score_file(p, load_grammar("arith"))
    assert rep.total == 3 and rep.valid == 2
    assert rep.invalid_examples[0].line == 2
    assert rep.invalid_examples[0].column == 2


def test_novelty_coverage_and_distances(tmp_path):
    samples = tmp_path / "s.txt"
    ref = tmp_path / "r.txt"
    samples.write_text("x\nx\nx+x\nx*x\nxx\n")
    ref.write_text("x\nx+x\nx/x\n")
    rep = score_file(samples, load_grammar("arith"), reference=ref, max_len=3)
    assert rep.valid == 4 and rep.unique_valid == 3
    assert rep.novelty == pytest.approx(1 / 3)  # x*x is new
    assert rep.coverage == pytest.approx(3 / 5)  # 5 strings of length <= 3
    assert rep.reference_coverage == pytest.approx(2 / 3)
    # lengths: samples {1: 2/5, 3: 2/5, 2: 1/5}; reference {1: 1/3, 3: 2/3}
    assert rep.tv_lengths == pytest.approx(0.5 * (abs(0.4 - 1 / 3) + abs(0.4 - 2 / 3) + 0.2))


def test_default_max_len_is_longest_valid_sample(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("x+x+x\nx\nxxxxxxxxxxxx\n")
    rep = score_file(p, load_grammar("arith"))
    assert rep.max_len == 5
    assert rep.coverage == pytest.approx(2 / 21)


def test_first_lines_are_tracked_across_chunks():
    lines = [b"x\n"] * 100_000 + [b"y\n"] + [b"x\n"] * 10 + [b"zz\n"]
    stream = io.BytesIO(b"".join(lines))
    d = count_distinct(iter_line_chunks(stream), "mem")
    assert d["x"][0] == 100_010
    assert d["y"] == [1, 100_001]
    assert d["zz"] == [1, 100_012]


def test_many_new_strings_in_one_chunk_keep_first_lines():
    rng = random.Random(0)
    lines = [f"{rng.randrange(10**6)}\n".encode() for _ in range(5000)]
    d = count_distinct([lines], "mem")
    for i, l in enumerate(lines):
        s = l.decode().rstrip("\n")
        assert d[s][1] <= i + 1
    assert d[lines[0].decode().rstrip()][1] == 1


def test_non_utf8_names_the_line(tmp_path):
    p = tmp_path / "s.txt"
    p.write_bytes(b"x\nx+x\n\xff\xfe\n")
    with pytest.raises(InputFileError, match=r"s.txt:3: not valid UTF-8"):
        score_file(p, load_grammar("arith"))


def test_empty_file(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("")
    rep = score_file(p, load_grammar("arith"))
    assert rep.total == 0 and rep.validity is None and rep.coverage is None
    json.dumps(rep.to_dict())


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        score_file(tmp_path / "nope.txt", load_grammar("arith"))
    with pytest.raises(InputFileError, match="directory"):
        score_file(tmp_path, load_grammar("arith"))


# -- bounded counting: score's time is linear in its input, whatever the lines are ------------


def _score_cli(cwd, *args, timeout=60):
    # Before the bound, the 10 KB line below took minutes and --max-len 10**9 a MemoryError.
    r = subprocess.run(
        [sys.executable, "-m", "gumbelseq", "score", *args, "--json"],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout)


def test_long_valid_line_skips_counting_with_a_note(tmp_path):
    (tmp_path / "f").write_text("x" + "+x" * 4999 + "\nx+x\n")
    rep = _score_cli(tmp_path, "f")
    assert rep["valid"] == 2 and rep["max_len"] == 9999
    assert rep["coverage"] is None and rep["language_size"] is None
    assert any(f"limited to length {COUNT_MAX_LEN}" in n and "longest valid" in n for n in rep["notes"])


def test_huge_explicit_max_len_skips_counting_with_a_note(tmp_path):
    (tmp_path / "f").write_text("x\nx+x\n")
    rep = _score_cli(tmp_path, "f", "--max-len", "1000000000")
    assert rep["coverage"] is None and rep["language_size"] is None
    assert any(f"limited to length {COUNT_MAX_LEN}" in n and "--max-len" in n for n in rep["notes"])
    at_limit = _score_cli(tmp_path, "f", "--max-len", str(COUNT_MAX_LEN))
    assert at_limit["coverage"] is not None and at_limit["language_size"] > 0


@pytest.mark.parametrize("name", ["arith", "parens", "json", "dyck"])
def test_counting_at_the_limit_is_quick(name):
    t = time.perf_counter()
    rep = score_samples(["x"], load_grammar(name), max_len=COUNT_MAX_LEN)
    assert rep.language_size and time.perf_counter() - t < 15  # ~1 s for json on a laptop


def test_earley_grammar_does_not_parse_overlong_lines(tmp_path):
    p = tmp_path / "amb.lark"
    p.write_text('start: s\ns: s "+" s | "x"\n')
    g = load_grammar(p)
    assert g.algorithm == "earley"
    long = "x" + "+x" * EARLEY_MAX_LEN  # valid, but cubic for Earley: minutes unbounded
    t = time.perf_counter()
    rep = score_samples(["x+x", long, long], g)
    assert time.perf_counter() - t < 15
    assert rep.total == 3 and rep.valid == 1 and rep.invalid_examples == []
    assert any("2 samples (1 distinct)" in n and str(EARLEY_MAX_LEN) in n for n in rep.notes)


def test_samples_and_reference_from_one_stream_are_refused(tmp_path):
    # The reference is read first and would take the whole stream: the samples would be none.
    from click.testing import CliRunner

    from gumbelseq.cli import main

    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    cases = [(["-", "--reference", "-"], "-"), (["-", "--reference", "/dev/stdin"], "/dev/stdin"),
             ([str(fifo), "--reference", str(fifo)], str(fifo))]
    for args, named in cases:
        for extra in ([], ["--validator", "rdkit"]):
            r = CliRunner().invoke(main, ["score", *args, "-g", "smiles", *extra], input="CCO\nCCN\n")
            assert r.exit_code == 1
            assert r.output.strip() == f"Error: {named}: the samples and --reference are the same stream; read one of them from a file"
    r = CliRunner().invoke(main, ["score", "-", "--reference", str(tmp_path / "ref.txt"), "-g", "smiles"], input="CCO\n")
    assert "same stream" not in r.output


@given(st.dictionaries(st.integers(0, 30), st.integers(1, 50), min_size=1),
       st.dictionaries(st.integers(0, 30), st.integers(1, 50), min_size=1))
def test_total_variation_is_the_exact_rational_rounded_once(p, q):
    from fractions import Fraction

    from gumbelseq.lang.score import _tv

    P, Q = sum(p.values()), sum(q.values())
    exact = sum(abs(Fraction(p.get(k, 0), P) - Fraction(q.get(k, 0), Q)) for k in set(p) | set(q)) / 2
    assert _tv(p, P, q, Q) == float(exact)  # disjoint supports: exactly 1.0, not 0.99999...


@pytest.mark.parametrize("grammar", ["arith", "tests/corpus/ambiguous.lark"])
def test_workers_give_the_same_report(monkeypatch, tmp_path, grammar):
    """The grammar check in worker processes (many distinct samples): the same counts, the same
    invalid examples (first lines, columns, expected terminals) as one process."""
    from gumbelseq.lang import score as score_module

    for name in ("PARALLEL_MIN", "EARLEY_PARALLEL_MIN"):
        monkeypatch.setattr(score_module, name, 10)
    for name in ("BATCH", "EARLEY_BATCH"):
        monkeypatch.setattr(score_module, name, 7)
    seen = []
    monkeypatch.setattr(score_module, "map_batches", _spy(score_module.map_batches, seen))
    rnd = random.Random(3)
    lines = ["".join(rnd.choice("x+*( )") for _ in range(rnd.randint(0, 9))) for _ in range(300)]
    p = tmp_path / "s.txt"
    p.write_text("".join(s + "\n" for s in lines))
    g = load_grammar(grammar)
    one, two = (score_file(p, g, workers=w, show_invalid=1000) for w in (1, 3))
    assert 0 < one.valid < one.total
    assert one.to_dict() == two.to_dict()
    assert seen == [(1, 7, 10), (3, 7, 10)]  # both grammars' own sizes, patched


def _spy(fn, seen):
    def spy(f, items, workers, *, batch, min_parallel, progress=None):
        seen.append((workers, batch, min_parallel))
        return fn(f, items, workers, batch=batch, min_parallel=min_parallel, progress=progress)

    return spy


def test_a_worker_that_dies_is_one_error(monkeypatch, tmp_path):
    from gumbelseq.errors import GumbelseqError
    from gumbelseq.lang import score as score_module

    monkeypatch.setattr(score_module, "PARALLEL_MIN", 10)
    monkeypatch.setattr(score_module, "BATCH", 5)
    monkeypatch.setattr(score_module, "_check_batch", lambda grammar, batch: os._exit(3))
    p = tmp_path / "s.txt"
    p.write_text("".join(f"x+{'x' * i}\n" for i in range(40)))
    with pytest.raises(GumbelseqError, match="^checking the samples against the grammar failed: a worker process stopped"):
        score_file(p, load_grammar("arith"), workers=2)
