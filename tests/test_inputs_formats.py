"""Files of samples as .txt, .csv (--column) and .gz: read the same way by `score` (FILE and
--reference) and `train --data`, streaming, with one-line errors naming file:line."""

import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import threading

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from gumbelseq.cli import main
from gumbelseq.errors import InputFileError
from gumbelseq.inputs import CSV, TEXT, input_format, iter_samples, read_lines
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.score import score_file


@pytest.mark.parametrize(
    "name,expected",
    [
        ("s.txt", (TEXT, False)),
        ("s", (TEXT, False)),
        ("-", (TEXT, False)),
        ("s.csv", (CSV, False)),
        ("S.CSV", (CSV, False)),
        ("s.txt.gz", (TEXT, True)),
        ("s.gz", (TEXT, True)),
        ("s.csv.gz", (CSV, True)),
        ("s.csv.bak", (TEXT, False)),
    ],
)
def test_format_comes_from_the_name(name, expected):
    assert input_format(name) == expected


def _write(path, text, gz=False):
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_all_formats_give_the_same_samples(tmp_path):
    expected = ["x", "x+x", "x+", ""]
    txt = "x\nx+x   \nx+\n\n"
    csv_text = 'id,SMILES,other\n1,x,a\n2,"x+x   ",b\n\n3,x+,c\n4,"",d\n'
    files = [
        _write(tmp_path / "a.txt", txt),
        _write(tmp_path / "a.txt.gz", txt, gz=True),
        _write(tmp_path / "a.gz", txt, gz=True),
        _write(tmp_path / "a.csv", csv_text),
        _write(tmp_path / "a.csv.gz", csv_text, gz=True),
    ]
    for f in files:
        assert read_lines(f) == expected, f


def test_csv_lines_are_the_rows_first_lines(tmp_path):
    f = _write(tmp_path / "a.csv", "SMILES\nx\n\nx+\r\nx\n")
    assert list(iter_samples(f)) == [(2, "x"), (4, "x+"), (5, "x")]


def test_csv_column_choice(tmp_path):
    one = _write(tmp_path / "one.csv", "smi\nx\n")
    assert read_lines(one) == ["x"]  # the only column, whatever its name
    many = _write(tmp_path / "many.csv", "a,b\n1,2\n")
    assert read_lines(many, column="b") == ["2"]
    with pytest.raises(InputFileError, match=r"many\.csv:1: 2 columns \('a', 'b'\) and none named 'SMILES'; choose one with --column$"):
        read_lines(many)
    with pytest.raises(InputFileError, match=r"many\.csv:1: no column 'c'; the columns are 'a', 'b'$"):
        read_lines(many, column="c")
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffSMILES,x\nC,1\n".encode())
    assert read_lines(bom) == ["C"]


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("rows.csv", "SMILES,b\n1,2\n1,2,3\n", r"rows\.csv:3: 3 fields where the header has 2$"),
        ("short.csv", "SMILES,b\n1,2\n\n1\n", r"short\.csv:4: 1 field where the header has 2$"),
        ("empty.csv", "", r"empty\.csv: empty CSV file"),
        ("blank.csv", "\nx\n", r"blank\.csv:1: blank line where the CSV header"),
        ("multi.csv", 'SMILES\nx\n"x\n+x"\n', r"multi\.csv:3: the value in column 'SMILES' spans several lines$"),
        ("quote.csv", 'SMILES\nx\n"x+x\n', r"quote\.csv:\d: malformed CSV"),
    ],
)
def test_bad_csv_is_one_line_with_file_and_line(tmp_path, name, content, message):
    f = _write(tmp_path / name, content)
    with pytest.raises(InputFileError, match=message) as e:
        read_lines(f)
    assert "\n" not in str(e.value)


def test_bad_utf8_in_csv_names_the_line(tmp_path):
    f = tmp_path / "u.csv"
    f.write_bytes(b"SMILES\nx\n\xffx\n")
    with pytest.raises(InputFileError, match=r"u\.csv:3: not valid UTF-8 \(column 1\)$"):
        read_lines(f)


def test_bad_gzip_is_one_line(tmp_path):
    plain = _write(tmp_path / "plain.gz", "x\n")
    with pytest.raises(InputFileError, match=r"plain\.gz: not gzip data"):
        read_lines(plain)
    whole = gzip.compress(b"x\n" * 10000)
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputFileError, match=r"cut\.txt\.gz: gzip data cut short"):
        read_lines(cut)
    bad = bytearray(whole)
    bad[-6] ^= 0xFF  # the CRC
    crc = tmp_path / "crc.gz"
    crc.write_bytes(bytes(bad))
    with pytest.raises(InputFileError, match=r"crc\.gz: corrupt gzip data"):
        read_lines(crc)
    for f in (plain, cut, crc):  # the score path reads through the same checks
        with pytest.raises(InputFileError):
            score_file(f, load_grammar("arith"))


def test_missing_and_directory_keep_their_messages(tmp_path):
    with pytest.raises(InputFileError, match=r"nope\.csv\.gz: no such file$"):
        read_lines(tmp_path / "nope.csv.gz")
    d = tmp_path / "d.csv"
    d.mkdir()
    with pytest.raises(InputFileError, match=r"d\.csv: is a directory"):
        read_lines(d)


def test_gzip_through_a_fifo_streams(tmp_path):
    fifo = tmp_path / "pipe.gz"
    os.mkfifo(fifo)
    data = gzip.compress(b"x\nx+x   \n")
    writer = threading.Thread(target=lambda: fifo.write_bytes(data), daemon=True)
    writer.start()
    assert read_lines(fifo) == ["x", "x+x"]
    writer.join(timeout=10)


def test_score_reads_csv_and_gz_with_line_numbers(tmp_path):
    samples = _write(tmp_path / "s.csv.gz", "id,SMILES\n1,x\n\n2,x+\n3,x+\n4,x*x\n", gz=True)
    ref = _write(tmp_path / "r.txt.gz", "x\nx+x\n", gz=True)
    rep = score_file(samples, load_grammar("arith"), reference=ref)
    assert (rep.total, rep.valid, rep.unique) == (4, 2, 3)
    assert [(e.line, e.text, e.count) for e in rep.invalid_examples] == [(4, "x+", 2)]
    assert rep.novelty == 0.5
    plain = _write(tmp_path / "s.txt", "x\nx+\nx+\nx*x\n")
    rep2 = score_file(plain, load_grammar("arith"), reference=ref)
    assert (rep2.total, rep2.valid, rep2.unique, rep2.novelty) == (4, 2, 3, 0.5)


def test_cli_score_column_and_errors(tmp_path):
    runner = CliRunner()
    f = _write(tmp_path / "s.csv", "a,b\nx,x+\n")
    r = runner.invoke(main, ["score", str(f), "--column", "b", "--json"])
    assert r.exit_code == 0, r.output
    assert '"validity": 0.0' in r.stdout
    r = runner.invoke(main, ["score", str(f), "--json"])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and r.output.count("\n") == 1
    plain = _write(tmp_path / "s.txt", "x\n")
    r = runner.invoke(main, ["score", str(plain), "--column", "b"])
    assert r.exit_code == 1 and r.output.startswith("Error: --column applies to .csv inputs") and len(r.output.strip().splitlines()) == 1


def test_cli_reference_column_differs_from_the_samples_column(tmp_path):
    runner = CliRunner()
    samples = _write(tmp_path / "s.csv", "name,text\nn1,x+x\nn2,x*x\n")
    ref = _write(tmp_path / "ref.csv", "id,SMILES,string\n1,q,x+x\n2,q,x\n")
    r = runner.invoke(main, ["score", str(samples), "--column", "text", "--reference", str(ref), "--json"])
    assert r.exit_code == 1 and r.output.strip().startswith(f"Error: {ref}:1: no column 'text'")
    r = runner.invoke(main, ["score", str(samples), "--column", "text", "--reference", str(ref),
                             "--reference-column", "string", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["novelty"] == 0.5  # x+x is in the reference's column, x*x is not
    r = runner.invoke(main, ["score", str(samples), "--column", "text", "--reference", str(tmp_path / "s.csv"),
                             "--reference-column", "name", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["novelty"] == 1.0
    plain = _write(tmp_path / "r.txt", "x\n")
    r = runner.invoke(main, ["score", str(samples), "--column", "text", "--reference", str(plain),
                             "--reference-column", "b"])
    assert r.exit_code == 1 and r.output.strip() == "Error: --reference-column applies to .csv inputs (and .csv.gz) only; none was given"


def test_cli_bad_rows_are_one_line_without_traceback(tmp_path):
    f = _write(tmp_path / "bad.csv.gz", "a,b\n1,2\n1,2,3\n", gz=True)
    r = subprocess.run([sys.executable, "-m", "gumbelseq", "score", str(f), "--column", "a"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr == f"Error: {f}:3: 3 fields where the header has 2\n"


def test_training_data_from_csv_column(tmp_path):
    from gumbelseq.cli import _training_data

    f = _write(tmp_path / "d.csv", "a,SMILES\n1,x+x\n2,x\n")
    assert _training_data(str(f), None) == ["x+x", "x"]
    assert _training_data(str(f), "a") == ["1", "2"]
    g = _write(tmp_path / "d.txt.gz", "x\nx*x  \n", gz=True)
    assert _training_data(str(g), None) == ["x", "x*x"]


@pytest.mark.parametrize("name,gz", [("s.txt", False), ("s.txt.gz", True), ("s.csv", False)])
def test_a_byte_order_mark_on_line_one_is_not_part_of_the_sample(tmp_path, name, gz):
    # Windows editors write a BOM first; read as text it would make line 1 an invalid sample.
    body = ("SMILES\n" if name.endswith(".csv") else "") + "x+x\nx+x\nx\n"
    path = tmp_path / name
    data = b"\xef\xbb\xbf" + body.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    assert [s for _, s in iter_samples(path)] == ["x+x", "x+x", "x"]
    rep = score_file(path, load_grammar("arith"))
    assert (rep.total, rep.valid, rep.unique_valid) == (3, 3, 2)


def test_a_byte_order_mark_after_line_one_stays(tmp_path):
    path = tmp_path / "s.txt"
    path.write_bytes(b"x\n\xef\xbb\xbfx\n")
    assert [s for _, s in iter_samples(path)] == ["x", "\ufeffx"]
    assert score_file(path, load_grammar("arith")).valid == 1


@pytest.mark.parametrize("column", [None, "SMILES"])
def test_two_columns_with_the_asked_name_are_refused(tmp_path, column):
    path = tmp_path / "s.csv"
    path.write_text("SMILES,id,SMILES\nx,1,x+x\n")
    with pytest.raises(InputFileError, match=r"s\.csv:1: 2 columns are named 'SMILES' \(columns 1, 3\)"):
        list(iter_samples(path, column=column))
    # Another column of the same file is still readable.
    assert [s for _, s in iter_samples(path, column="id")] == ["1"]


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux's /proc")
@pytest.mark.parametrize("args", [["score", "/proc/self/mem"], ["score", "s.txt", "--reference", "/proc/self/mem"],
                                  ["score", "/proc/self/clear_refs"], ["data", "-g", "/proc/self/clear_refs"]])
def test_an_input_that_opens_but_cannot_be_read_is_one_line_naming_it(tmp_path, args):
    """/proc/self/mem opens and then fails to read (EIO): that was reported as a failure to
    write stdout; /proc/self/clear_refs (EINVAL) was a traceback."""
    (tmp_path / "s.txt").write_text("x\n")
    r = subprocess.run([sys.executable, "-m", "gumbelseq", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    path = next(a for a in args if a.startswith("/proc"))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(f"Error: {path}: cannot read it ("), r.stderr


def test_a_byte_order_mark_on_a_later_line_equal_to_line_one_stays(tmp_path):
    """Line 1's bytes stood for every later line equal to them, so their BOM went too."""
    path = tmp_path / "s.txt"
    path.write_bytes(b"\xef\xbb\xbfx\n\xef\xbb\xbfx\n")
    rep = score_file(path, load_grammar("arith"))
    assert (rep.total, rep.valid, rep.unique) == (2, 1, 2)


_LINES = st.sampled_from([b"x", b"x+x", b"\xef\xbb\xbfx", b"\xef\xbb\xbf\xef\xbb\xbfx", b"", b"x  ", b"x\r", b"\xef\xbb\xbf", b"(x)"])


@given(st.lists(_LINES, max_size=30), st.booleans())
@settings(max_examples=200, deadline=None)
def test_the_scorers_byte_path_counts_what_the_line_reader_reads(lines, gz):
    """``score``'s fast path groups raw bytes before decoding; the line-by-line reader
    (``iter_samples``) decodes each line on its own: they must agree on every file."""
    from collections import Counter

    from gumbelseq.lang.score import count_distinct, iter_line_chunks

    data = b"".join(line + b"\n" for line in lines)
    stream = io.BytesIO(data)
    counts = {s: c for s, (c, _) in count_distinct(iter_line_chunks(stream), "mem").items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.txt.gz" if gz else "s.txt")
        with open(path, "wb") as f:
            f.write(gzip.compress(data) if gz else data)
        assert counts == dict(Counter(s for _, s in iter_samples(path)))


def test_gzip_followed_by_junk_and_an_empty_gz_are_named_for_what_they_are(tmp_path):
    junk = tmp_path / "junk.gz"
    junk.write_bytes(gzip.compress(b"x\n") + b"junk")  # gzip(1) reads it and warns
    with pytest.raises(InputFileError, match=r"junk\.gz: bytes that are not gzip data after the gzip data$"):
        read_lines(junk)
    empty = tmp_path / "empty.txt.gz"
    empty.write_bytes(b"")  # gzip -t: unexpected end of file; it was scored as 0 samples
    for read in (read_lines, lambda p: score_file(p, load_grammar("arith"))):
        with pytest.raises(InputFileError, match=r"empty\.txt\.gz: empty file, not gzip data"):
            read(empty)
    nothing = tmp_path / "nothing.gz"
    nothing.write_bytes(gzip.compress(b""))  # a real gzip file of no lines
    assert read_lines(nothing) == []
    two = tmp_path / "two.gz"
    two.write_bytes(gzip.compress(b"x\n") + gzip.compress(b"x+x\n"))
    assert read_lines(two) == ["x", "x+x"]


@pytest.mark.parametrize("name", ["u.txt", "u.csv"])
def test_an_invalid_utf8_column_counts_characters(tmp_path, name):
    """The parser's columns count characters; this one counted bytes (5 for the third)."""
    f = tmp_path / name
    f.write_bytes(b"SMILES\n" + "éé".encode() + b"\xff\n")
    with pytest.raises(InputFileError, match=rf"{name}:2: not valid UTF-8 \(column 3\)$"):
        read_lines(f)
    g = tmp_path / "g.lark"
    g.write_bytes('start: "éé'.encode() + b'\xff"\n')
    with pytest.raises(InputFileError, match=r"g\.lark:1:11: not valid UTF-8$"):
        load_grammar(str(g))


def test_a_csv_field_as_long_as_a_text_line_is_read_and_the_csv_limit_restored(tmp_path):
    import csv

    f = tmp_path / "big.csv"
    f.write_text("SMILES\n" + "x" * 200_000 + "\n")  # the csv module's default limit is 131,072
    before = csv.field_size_limit()
    assert read_lines(f) == ["x" * 200_000]
    assert csv.field_size_limit() == before


def test_a_symlink_loop_is_named_as_one(tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(InputFileError, match=r"loop: Too many levels of symbolic links$"):
        read_lines(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to("nowhere")
    with pytest.raises(InputFileError, match=r"dangling: no such file$"):
        read_lines(tmp_path / "dangling")


def test_gzip_checks_hold_on_a_stream_without_peek():
    """A wheel member read through a progress counter has no peek(): a plain-text member was
    called "bytes that are not gzip data after the gzip data" (CI caught it)."""
    from gumbelseq.inputs import gunzip_stream

    class NoPeek:
        def __init__(self, data):
            self._f = io.BytesIO(data)

        def read(self, n=-1):
            return self._f.read(n)

        def close(self):
            self._f.close()

    with pytest.raises(InputFileError, match=r"m\.gz: not gzip data"):
        gunzip_stream(NoPeek(b"SMILES\nCC\n"), "m.gz").read()
    with pytest.raises(InputFileError, match=r"m\.gz: bytes that are not gzip data after the gzip data"):
        gunzip_stream(NoPeek(gzip.compress(b"x\n") + b"junk"), "m.gz").read()
    assert gunzip_stream(NoPeek(gzip.compress(b"x\ny\n")), "m.gz").read() == b"x\ny\n"
