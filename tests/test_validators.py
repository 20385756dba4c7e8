"""`score --validator`: validator plugins (their own entry-point group, no torch), MOSES's
definitions of validity, uniqueness and novelty, and the rdkit validator."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from gumbelseq import validators
from gumbelseq.cli import main
from gumbelseq.validators import Validator, ValidatorError, canonical_forms, get_validator, validate_distinct


def lower_or_none(batch):
    """A toy domain: strings with an 'x' are invalid, case does not matter (canonical: lower)."""
    return [None if "x" in s.lower() else s.lower() for s in batch]


TOY = Validator("toy", "lower case, no x", lower_or_none, lambda: None)


def test_definitions_are_mosess():
    distinct = {"AB": [3, 1], "ab": [1, 2], "cd": [1, 3], "x": [5, 4]}
    rep = validate_distinct(TOY, distinct, reference={"ab": [1, 1], "CD": [1, 2]}, reference_name="ref")
    assert (rep.total, rep.valid, rep.unique) == (10, 5, 2)
    assert rep.validity == 0.5
    assert rep.uniqueness == 2 / 5  # distinct canonical among valid samples, repeats counted
    assert rep.novelty == 0.5  # "cd" is not in the reference as written ("CD")
    assert validate_distinct(TOY, {}).validity is None


def test_parallel_gives_the_same_forms(monkeypatch):
    monkeypatch.setattr(validators, "PARALLEL_MIN", 10)
    monkeypatch.setattr(validators, "BATCH", 7)
    strings = [f"S{i}" + ("x" if i % 3 == 0 else "") for i in range(100)]
    assert canonical_forms(TOY, strings, workers=2) == lower_or_none(strings)


def test_unknown_validator_lists_the_known_ones():
    with pytest.raises(ValidatorError, match=r"^unknown validator 'nope'; known validators: .*rdkit"):
        get_validator("nope")


def test_a_failing_validator_is_one_line():
    def boom(batch):
        raise RuntimeError("library exploded\nsecond line")

    with pytest.raises(ValidatorError, match=r"^validator 'bad' failed: RuntimeError: library exploded$"):
        canonical_forms(Validator("bad", "", boom, lambda: None), ["a"])


def test_without_rdkit_the_error_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "rdkit", None)  # import rdkit now fails, as when not installed
    with pytest.raises(ValidatorError, match=r"needs RDKit.*pip install -e '\.\[chem\]'"):
        get_validator("rdkit")
    f = tmp_path / "s.txt"
    f.write_text("CCO\n")
    r = CliRunner().invoke(main, ["score", str(f), "--grammar", "smiles", "--validator", "rdkit"])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and r.output.count("\n") == 1, r.output
    assert "pip install -e '.[chem]'" in r.output


def test_rdkit_validity_uniqueness_novelty(tmp_path):
    pytest.importorskip("rdkit")
    samples = tmp_path / "s.txt"
    samples.write_text("CCO\nOCC\nC1CC\nc1ccccc1\nc1ccccc1\nC(\n")
    ref = tmp_path / "ref.csv.gz"
    import gzip

    ref.write_bytes(gzip.compress(b"SMILES\nCCO\n"))
    r = CliRunner().invoke(main, ["score", str(samples), "--grammar", "smiles", "--reference", str(ref), "--validator", "rdkit", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["valid"] == 5  # the grammar accepts the unclosed ring C1CC; only C( is malformed
    rd = d["validators"]["rdkit"]
    assert (rd["total"], rd["valid"], rd["unique"]) == (6, 4, 2)  # CCO = OCC; benzene twice
    assert rd["validity"] == 4 / 6 and rd["uniqueness"] == 2 / 4
    assert rd["novelty"] == 0.5  # CCO is in the reference, benzene is not
    r = CliRunner().invoke(main, ["score", str(samples), "--grammar", "smiles", "--validator", "rdkit"])
    assert r.exit_code == 0 and "validator rdkit" in r.stdout


def test_score_with_a_validator_never_imports_torch(tmp_path):
    pytest.importorskip("rdkit")
    f = tmp_path / "s.txt"
    f.write_text("CCO\n")
    code = (
        "import sys\n"
        "from gumbelseq.cli import main\n"
        f"sys.argv = ['gumbelseq', 'score', {str(f)!r}, '--grammar', 'smiles', '--validator', 'rdkit', '--json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'score imported torch'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"validity": 1.0' in r.stdout


def test_rdkit_counts_a_string_with_whitespace_invalid():
    Chem = pytest.importorskip("rdkit.Chem")
    import gumbelseq_rdkit

    # RDKit itself reads what follows a space as the molecule's name: that would score a sample
    # with a garbage tail valid.
    assert Chem.MolFromSmiles("CCO junk") is not None
    forms = gumbelseq_rdkit.canonical_smiles(["CCO junk", "C\tC", " CCO", "CCO", "OCC"])
    ethanol = Chem.MolToSmiles(Chem.MolFromSmiles("CCO"))
    assert forms == [None, None, None, ethanol, ethanol]


def test_a_line_past_the_validators_bound_is_one_line_naming_it():
    short = Validator("toy", "", lower_or_none, lambda: None, max_length=3)
    distinct = {"ab": [2, 1], "abcdef": [1, 4], "abcde": [1, 2]}
    with pytest.raises(ValidatorError, match=r"^f\.txt:2: a line of 5 characters; the toy validator reads lines of at most 3$"):
        validate_distinct(short, distinct, source="f.txt")
    assert validate_distinct(short, {"ab": [2, 1], "abc": [1, 2]}).valid == 3


def test_rdkit_takes_its_longest_line_and_refuses_a_longer_one_without_crashing(tmp_path):
    # RDKit overflows its stack on a 20,000-atom chain (a segmentation fault, not an exception);
    # 10,000 atoms (the bound, and gumbelseq's longest --max-len) take about 2 s.
    pytest.importorskip("rdkit")
    from gumbelseq_rdkit import MAX_LENGTH

    ok, bad = tmp_path / "ok.txt", tmp_path / "bad.txt"
    ok.write_text("CCO\n" + "C" * MAX_LENGTH + "\n")
    bad.write_text("CCO\nCCN\n" + "C" * 20_000 + "\n")
    run = lambda f: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "gumbelseq", "score", str(f), "-g", "smiles", "--validator", "rdkit", "--json"],
        capture_output=True, text=True, timeout=300)
    r = run(ok)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["validators"]["rdkit"]["valid"] == 2
    r = run(bad)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == (f"Error: {bad}:3: a line of 20,000 characters; the rdkit validator reads lines"
                                " of at most 10,000")
