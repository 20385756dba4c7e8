"""`gumbelseq datasets`: fetching MOSES from the molsets wheel into the cache, offline.

No test here uses the network: a fake wheel (a zip with the same inner paths) stands in for the
real one, and the download path is checked with pip pointed at no index at all."""

import dataclasses
import gzip
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from gumbelseq import datasets
from gumbelseq.cli import main
from gumbelseq.datasets import DatasetError, dataset_dir, dataset_status, fetch_dataset, list_datasets

TRAIN = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "C[C@@H](N)C(=O)O"]
TEST = ["CCN", "O=C=O"]
SPEC = datasets.DATASETS["moses"]


def _csv_gz(rows, header="SMILES"):
    return gzip.compress(("".join(f"{r}\n" for r in [header, *rows])).encode())


def make_wheel(path: Path, train=TRAIN, test=TEST, *, members=None) -> Path:
    members = members if members is not None else {
        "moses/dataset/data/train.csv.gz": _csv_gz(train),
        "moses/dataset/data/test.csv.gz": _csv_gz(test),
    }
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("moses/__init__.py", "")
        for name, data in members.items():
            z.writestr(name, data)
    return path


@pytest.fixture
def wheel(tmp_path):
    return make_wheel(tmp_path / SPEC.wheel_file)


def test_fetch_from_a_wheel_fills_the_cache(wheel):
    messages = []
    seen = []
    folder = fetch_dataset("moses", wheel=wheel, on_message=messages.append, progress=lambda d, t: seen.append((d, t)))
    assert folder == Path(os.environ["GUMBELSEQ_HOME"]) / "datasets" / "moses"
    assert (folder / "train.txt").read_text().splitlines() == TRAIN
    assert (folder / "test.txt").read_text().splitlines() == TEST
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "test.txt", "train.txt"]
    status = dataset_status("moses")
    assert status.present and status.lines == {"train.txt": 4, "test.txt": 2}
    assert any("not the published" in m for m in messages)  # a fake wheel says so, and is read
    assert seen and seen[-1][0] == seen[-1][1]  # progress ends at its total


def test_a_complete_cache_is_left_alone(wheel, monkeypatch):
    folder = fetch_dataset("moses", wheel=wheel)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}

    def no_download(*a, **k):
        raise AssertionError("a complete cache must not be fetched again")

    monkeypatch.setattr(datasets, "_download", no_download)
    assert fetch_dataset("moses", wheel=wheel) == folder
    # The published wheel's cache is left alone by a plain fetch (here the test wheel plays it).
    spec = datasets.get_dataset("moses")
    monkeypatch.setitem(datasets.DATASETS, "moses", dataclasses.replace(spec, sha256=datasets._sha256(Path(wheel))))
    assert fetch_dataset("moses") == folder
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()} == before


def test_a_cache_read_from_another_wheel_is_not_what_a_plain_fetch_promises(wheel, monkeypatch):
    fetch_dataset("moses", wheel=wheel)  # not the published wheel: its sha256 differs
    assert json.loads((dataset_dir("moses") / "manifest.json").read_text())["wheel_sha256"] == datasets._sha256(Path(wheel))

    class Downloaded(Exception):
        pass

    def download(*a, **k):
        raise Downloaded

    monkeypatch.setattr(datasets, "_download", download)
    with pytest.raises(Downloaded):
        fetch_dataset("moses")


def test_half_written_caches_never_look_complete(wheel):
    folder = dataset_dir("moses")
    folder.mkdir(parents=True)
    (folder / "train.txt").write_text("CC\n")
    (folder / ".test.txt.abcd.tmp").write_text("C")
    (folder / ".download-xyz").mkdir()
    assert not dataset_status("moses").present
    fetch_dataset("moses", wheel=wheel)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "test.txt", "train.txt"]
    # A data file changed or cut after the fetch: no longer complete, and fetched again.
    with open(folder / "train.txt", "a") as f:
        f.write("CCCC\n")
    assert not dataset_status("moses").present
    fetch_dataset("moses", wheel=wheel)
    assert (folder / "train.txt").read_text().splitlines() == TRAIN
    (folder / "manifest.json").write_text("{not json")
    assert not dataset_status("moses").present


def test_kill_9_during_the_fetch_leaves_an_incomplete_cache(tmp_path):
    big = make_wheel(tmp_path / "big.whl", train=[f"C{'C' * (i % 50)}O" for i in range(200_000)])
    code = (
        "import os, signal\n"
        "from gumbelseq.datasets import fetch_dataset\n"
        "def progress(done, total):\n"
        "    if done > total // 3:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"fetch_dataset('moses', wheel={str(big)!r}, progress=progress)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    folder = dataset_dir("moses")
    assert folder.is_dir() and not (folder / "manifest.json").exists()
    assert not dataset_status("moses").present
    fetch_dataset("moses", wheel=big)
    assert dataset_status("moses").lines == {"train.txt": 200_000, "test.txt": 2}
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "test.txt", "train.txt"]


@pytest.mark.parametrize(
    "members,message",
    [
        ({"moses/dataset/data/train.csv.gz": _csv_gz(TRAIN)}, r"has no moses/dataset/data/test\.csv\.gz \(not the molsets==0\.3\.1 wheel\?\)$"),
        ({"moses/dataset/data/train.csv.gz": b"SMILES\nCC\n", "moses/dataset/data/test.csv.gz": _csv_gz(TEST)},
         r"corrupt data set file: .*train\.csv\.gz: not gzip data"),
        ({"moses/dataset/data/train.csv.gz": _csv_gz(TRAIN)[:40], "moses/dataset/data/test.csv.gz": _csv_gz(TEST)},
         r"train\.csv\.gz: gzip data cut short"),
        ({"moses/dataset/data/train.csv.gz": _csv_gz(["C,C"]), "moses/dataset/data/test.csv.gz": _csv_gz(TEST)},
         r"train\.csv\.gz:2: 2 fields where the header has 1$"),
        ({"moses/dataset/data/train.csv.gz": _csv_gz(TRAIN, header="smiles,x"), "moses/dataset/data/test.csv.gz": _csv_gz(TEST)},
         r"train\.csv\.gz:1: no column 'SMILES'"),
    ],
)
def test_a_corrupt_wheel_is_one_line_and_leaves_no_complete_cache(tmp_path, members, message):
    wheel = make_wheel(tmp_path / "bad.whl", members=members)
    with pytest.raises(DatasetError, match=message) as e:
        fetch_dataset("moses", wheel=wheel)
    assert "\n" not in str(e.value)
    assert not dataset_status("moses").present
    assert not [p for p in dataset_dir("moses").iterdir() if p.name.startswith(".")]  # no temp files left


def test_not_a_zip(tmp_path):
    bad = tmp_path / "x.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"x\.whl: not a readable wheel \(zip\) file"):
        fetch_dataset("moses", wheel=bad)
    with pytest.raises(DatasetError, match=r"nope\.whl: no such wheel file$"):
        fetch_dataset("moses", wheel=tmp_path / "nope.whl")


def test_no_network_is_one_line(tmp_path, monkeypatch):
    # pip with no configuration, no index and an empty find-links folder: it cannot reach
    # anything, as on a machine without network, and fails at once.
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    with pytest.raises(DatasetError, match=r"^could not download molsets==0\.3\.1 with pip \(no network.*pass --wheel FILE$") as e:
        fetch_dataset("moses")
    assert "\n" not in str(e.value)
    assert not dataset_status("moses").present
    assert not list(dataset_dir("moses").iterdir())


def test_a_download_that_is_not_the_published_wheel_is_refused(tmp_path, monkeypatch, wheel):
    def fake_download(spec, into):
        target = into / spec.wheel_file
        target.write_bytes(wheel.read_bytes())
        return target

    monkeypatch.setattr(datasets, "_download", fake_download)
    with pytest.raises(DatasetError, match=r"sha256 [0-9a-f]{64} is not the published wheel's"):
        fetch_dataset("moses")
    assert not dataset_status("moses").present


def test_a_second_fetch_on_a_locked_cache_is_refused(wheel):
    from gumbelseq.model.rundir import DirLock

    folder = dataset_dir("moses")
    folder.mkdir(parents=True)
    with DirLock(folder, "x"):
        r = subprocess.run([sys.executable, "-m", "gumbelseq", "datasets", "fetch", "moses", "--wheel", str(wheel)],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "in use by another gumbelseq process" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not dataset_status("moses").present


def test_unknown_name_and_unwritable_home(tmp_path, monkeypatch, wheel):
    with pytest.raises(DatasetError, match=r"unknown data set 'zinc'; known data sets: moses$"):
        fetch_dataset("zinc")
    home = tmp_path / "home-file"
    home.write_text("")
    monkeypatch.setenv("GUMBELSEQ_HOME", str(home))
    r = CliRunner().invoke(main, ["datasets", "fetch", "moses", "--wheel", str(wheel)])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and r.output.count("\n") == 1, r.output


def test_cli_fetch_prints_the_path_and_list_reports_it(wheel):
    runner = CliRunner()
    r = runner.invoke(main, ["datasets", "list", "--json"])
    assert r.exit_code == 0, r.output
    (entry,) = json.loads(r.stdout)
    assert entry["name"] == "moses" and entry["present"] is False and entry["lines"] is None
    r = runner.invoke(main, ["datasets", "fetch", "moses", "--wheel", str(wheel)])
    assert r.exit_code == 0, r.output
    assert r.stdout == f"{dataset_dir('moses')}\n"
    r = runner.invoke(main, ["datasets", "fetch", "moses", "--wheel", str(wheel)])  # complete: same path
    assert r.exit_code == 0 and r.stdout == f"{dataset_dir('moses')}\n"
    (entry,) = json.loads(runner.invoke(main, ["datasets", "list", "--json"]).stdout)
    assert entry == {**entry, "present": True, "lines": {"train.txt": 4, "test.txt": 2}, "path": str(dataset_dir("moses"))}
    assert [d.name for d in list_datasets()] == ["moses"]


def test_fetch_and_score_never_import_torch(wheel):
    code = (
        "import sys\n"
        "from gumbelseq.cli import main\n"
        "for argv in (['datasets', 'fetch', 'moses', '--wheel', %r], ['datasets', 'list', '--json']):\n"
        "    sys.argv = ['gumbelseq', *argv]\n"
        "    try:\n        main()\n    except SystemExit as e:\n        assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'datasets imported torch'\n"
    ) % str(wheel)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("bad", ["not a zip", "corrupt csv"])
def test_a_bad_wheel_leaves_a_complete_cache_as_it_was(wheel, tmp_path, bad):
    folder = fetch_dataset("moses", wheel=wheel)
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in folder.iterdir()}
    other = tmp_path / "other.whl"
    if bad == "not a zip":
        other.write_bytes(b"not a zip")
    else:  # a readable wheel whose second file is corrupt: the first was already read
        make_wheel(other, members={"moses/dataset/data/train.csv.gz": _csv_gz(["CCCC"]),
                                   "moses/dataset/data/test.csv.gz": b"not gzip"})
    with pytest.raises(DatasetError):
        fetch_dataset("moses", wheel=other)
    assert {p.name: (p.stat().st_ino, p.read_bytes()) for p in folder.iterdir()} == before
    assert dataset_status("moses").present


def test_a_wheel_that_is_not_a_file_is_refused_whatever_the_cache(wheel, tmp_path):
    for _ in range(2):  # an empty cache, then a complete one
        with pytest.raises(DatasetError, match=r"nope\.whl: no such wheel file$"):
            fetch_dataset("moses", wheel=tmp_path / "nope.whl")
        with pytest.raises(DatasetError, match=r": is a folder, not a wheel file$"):
            fetch_dataset("moses", wheel=tmp_path)
        fetch_dataset("moses", wheel=wheel)


@pytest.mark.parametrize("edit", [
    lambda m: m["files"]["train.txt"].pop("lines"),
    lambda m: m["files"].clear(),
    lambda m: m["files"].pop("test.txt"),
    lambda m: m["files"]["train.txt"].update(lines="many"),
])
def test_a_manifest_missing_a_file_or_a_count_is_not_complete(wheel, edit):
    folder = fetch_dataset("moses", wheel=wheel)
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert not dataset_status("moses").present
    r = CliRunner().invoke(main, ["datasets", "list", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["present"] is False
    fetch_dataset("moses", wheel=wheel)  # fetched again
    assert dataset_status("moses").lines == {"train.txt": 4, "test.txt": 2}


def test_cli_a_bad_wheel_is_one_error_line_and_a_good_one_a_note(tmp_path, wheel):
    """The sha256 note came before the Error line: two lines for one mistake."""
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    r = CliRunner().invoke(main, ["datasets", "fetch", "moses", "--wheel", str(bad)])
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [f"Error: {bad}: not a readable wheel (zip) file: File is not a zip file"]
    r = CliRunner().invoke(main, ["datasets", "fetch", "moses", "--wheel", str(wheel)])  # not the published one
    assert r.exit_code == 0 and r.stdout == f"{dataset_dir('moses')}\n"
    assert "(sha256 differs); read it anyway" in r.stderr


@pytest.mark.parametrize("name", ["manifest.json", "train.txt", "test.txt"])
def test_a_folder_where_a_cache_file_goes_is_one_line_and_nothing_moves(wheel, name):
    """It was an IsADirectoryError traceback, after train.txt had been moved in."""
    folder = dataset_dir("moses")
    (folder / name).mkdir(parents=True)
    with pytest.raises(DatasetError, match=rf"{name}: is a folder, where the data set's file goes; remove it"):
        fetch_dataset("moses", wheel=wheel)
    assert sorted(p.name for p in folder.iterdir()) == [name]
    (folder / name).rmdir()
    fetch_dataset("moses", wheel=wheel)
    assert dataset_status("moses").present


@pytest.mark.parametrize("edit", [lambda m: m.pop("wheel_sha256"), lambda m: m.update(wheel_sha256=None),
                                  lambda m: m["files"]["train.txt"].update(lines=-5),
                                  lambda m: m["files"]["train.txt"].update(lines=True)])
def test_list_and_fetch_agree_on_an_edited_manifest(wheel, edit):
    """`datasets list` said present (lines -5, or true) where `fetch` saw an incomplete cache."""
    folder = fetch_dataset("moses", wheel=wheel)
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert not dataset_status("moses").present
    fetch_dataset("moses", wheel=wheel)  # fetched again, complete
    assert dataset_status("moses").present
