import io
import json
import random
import re

import pytest
from hypothesis import given, strategies as st

from gumbelseq.errors import InputFileError
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.score import count_distinct, iter_line_chunks, score_file, score_samples

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
