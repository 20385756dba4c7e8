"""Writing files: the tool's own (``atomic_open``) and the paths a user names (``open_output``).

The tool's own files (run directories, reports, checkpoints) are plain files it created, so
a temp file beside them, fsync and one rename is all they need: a crash or a Ctrl-C mid-write
leaves the old file intact (or no file), never a truncated one.

A path the user gives with ``-o`` is different: whatever is there belongs to the user, and the
rename trick, applied blindly, destroys it. Renaming over a symlink replaces the link with a
regular file; renaming over a FIFO or a device node deletes the node (as root, ``-o /dev/null``
would remove the device); and a freshly made temp file has mode 600, so the result would lose
the permissions the user had given the old file. Hence the rules of ``open_output``:

- ``-`` is standard output, written through and left open, as every Unix tool does.
- A symlink is followed to its final target, and the target is replaced: the user pointed the
  link somewhere on purpose, and the link stays a link.
- A FIFO or a device node, or any path under ``/dev/`` or ``/proc/`` (given or resolved), is
  opened and written directly. Those are not files holding data to protect but channels the
  user wants the lines to go through (``-o /dev/stdout``, a named pipe into another program);
  renaming over them would destroy them, and realpath of ``/dev/stdout`` can name the regular
  file stdout is redirected to, which must not be replaced behind the shell's back. The
  ``/dev/stdout``, ``/dev/fd/N`` and ``/proc/self/fd/N`` names duplicate the descriptor
  instead of reopening the file, so ``>> log`` still appends and the shell's truncation is not
  repeated.
- A regular file, or a new name, is replaced atomically as above, so a failed or interrupted
  run (an exception, Ctrl-C, a full disk) leaves the old content and no temp file behind. The
  new file keeps the old one's permission bits (and, where allowed, owner and group); a new
  file gets the mode a plain ``open`` would give it (0666 less the umask), not the temp file's
  600.
- Anything else (a directory, a socket, a missing parent folder, a parent that is not a folder,
  a folder we cannot write in) is an ``OutputFileError`` with one line ``PATH: reason``.
  ``check_output`` runs those checks alone, so the CLI can call it before minutes of sampling
  and fail in milliseconds without creating anything.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from .errors import OutputFileError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path`` in one rename.

    For the tool's own files only; a path the user names goes through ``open_output``."""
    path = Path(path)
    binary = "b" in mode
    # Created 0o666 less the umask, as a plain open() would: mkstemp's 0600 would make every
    # report and run file unreadable to the user's group.
    tmp, fd = _create_temp(str(path), str(path.parent or "."), path.name)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


# -- user-given output paths -------------------------------------------------------------------

#: How ``open_output`` writes: to stdout, directly into the target, or by replacing it.
STDOUT, DIRECT, REPLACE = "stdout", "direct", "replace"

_SPECIAL_ROOTS = ("/dev", "/proc")
#: Names of the process's own descriptors: written through a duplicate of the descriptor.
_FD_NAME = re.compile(r"/(?:dev/fd|proc/self/fd|proc/thread-self/fd|proc/(\d+)/fd)/(\d+)")
_STD_NAMES = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
#: Errors of writing itself, reported as a one-line error about the output path.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EPIPE, errno.EROFS}


@dataclass(frozen=True)
class OutputPlan:
    """What ``open_output`` will do with a path: ``kind`` is STDOUT, DIRECT or REPLACE and
    ``target`` the file it writes (the symlink's final target, for REPLACE)."""

    path: str
    kind: str
    target: str
    fd: int | None = None  # DIRECT through a duplicate of this descriptor of ours


def is_special_path(path: str | Path) -> bool:
    """True when ``path`` (as given, made absolute but with symlinks kept) is under /dev/ or
    /proc/. Pure: looks at the string only, never at the file system."""
    p = os.path.normpath(os.path.join(os.getcwd(), os.fspath(path)))
    return any(p == root or p.startswith(root + "/") for root in _SPECIAL_ROOTS)


def own_descriptor(path: str | Path) -> int | None:
    """The descriptor number a name like ``/dev/stdout``, ``/dev/fd/3`` or ``/proc/self/fd/1``
    stands for (in this process), or None. Pure: looks at the string only."""
    p = os.path.normpath(os.path.join(os.getcwd(), os.fspath(path)))
    if p in _STD_NAMES:
        return _STD_NAMES[p]
    m = _FD_NAME.fullmatch(p)
    if m is None or (m.group(1) is not None and int(m.group(1)) != os.getpid()):
        return None
    return int(m.group(2))


def _fail(path: str, reason: str) -> OutputFileError:
    return OutputFileError(f"{path}: {reason}")


def _describe(path: str) -> str:
    return path if path else "."


def check_output(path: str | Path) -> OutputPlan:
    """Decide how ``path`` will be written, or raise ``OutputFileError`` if it cannot be.

    Creates and changes nothing; cheap enough to call before any expensive work."""
    given = os.fspath(path)
    if given == "-":
        return OutputPlan(given, STDOUT, given)
    if given == "":
        raise _fail("''", "empty output path")
    special = is_special_path(given)
    if special:
        fd = own_descriptor(given)
        if fd is not None:
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                raise _fail(given, f"descriptor {fd} is not open") from None
            if stat.S_ISDIR(mode):
                raise _fail(given, "is a directory, not a file")
            return OutputPlan(given, DIRECT, given, fd)
    target = os.path.realpath(given)
    special = special or is_special_path(target)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:  # a symlink loop, a component that is not a folder, no permission...
        if e.errno == errno.ENOTDIR:
            raise _fail(given, f"{_parent_not_folder(given)} is not a folder") from None
        raise _fail(given, e.strerror or str(e)) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise _fail(given, "is a directory, not a file")
        if stat.S_ISSOCK(st.st_mode):
            raise _fail(given, "is a socket, not a file")
        if not stat.S_ISREG(st.st_mode) or special:  # FIFO, character or block device
            return OutputPlan(given, DIRECT, target)
        if not os.access(target, os.W_OK):
            raise _fail(given, "file is not writable (permission denied)")
    elif given.endswith("/"):
        raise _fail(given, "no such folder (a file name cannot end with /)")
    folder = os.path.dirname(target) or "."
    try:
        fst = os.stat(folder)
    except FileNotFoundError:
        raise _fail(given, f"folder {_describe(os.path.dirname(given))} does not exist") from None
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            raise _fail(given, f"{_parent_not_folder(given)} is not a folder") from None
        raise _fail(given, e.strerror or str(e)) from None
    if not stat.S_ISDIR(fst.st_mode):
        raise _fail(given, f"{_describe(os.path.dirname(given))} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _fail(given, f"cannot create files in folder {_describe(os.path.dirname(given))} (permission denied)")
    return OutputPlan(given, DIRECT if special else REPLACE, target)


def _parent_not_folder(given: str) -> str:
    """The first leading part of ``given`` that exists but is not a folder (for messages)."""
    parts = Path(given).parts
    for i in range(1, len(parts)):
        head = os.path.join(*parts[:i])
        if os.path.exists(head) and not os.path.isdir(head):
            return head
    return _describe(os.path.dirname(given))


@contextlib.contextmanager
def open_output(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a user-given output path for writing, by the rules in this module's docstring.

    Raises ``OutputFileError`` (one line, naming the path) for a path that cannot be written."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_output writes whole files: mode 'w' or 'wb', not {mode!r}")
    binary = mode == "wb"
    enc = None if binary else encoding
    plan = check_output(path)
    if plan.kind == STDOUT:
        stream = sys.stdout
        if stream is None or stream.closed:
            raise _fail("-", "standard output is closed")
        f = stream.buffer if binary else stream
        yield f
        f.flush()
        return
    if plan.kind == DIRECT:
        # The try covers the close too: a write that fits the buffer fails only there (a full
        # device, a quota).
        try:
            with _open_direct(plan, mode, enc) as f:
                yield f
                f.flush()
        except OSError as e:
            if e.errno in _WRITE_ERRNOS:
                raise _fail(plan.path, e.strerror or str(e)) from None
            raise
        return
    with _replace(plan, mode, enc) as f:
        yield f


@contextlib.contextmanager
def _open_direct(plan: OutputPlan, mode: str, encoding: str | None) -> Iterator[IO]:
    if plan.fd is not None:
        for s in (sys.stdout, sys.stderr):  # what was printed before goes out first
            if s is not None and not s.closed:
                s.flush()
        try:
            fd = os.dup(plan.fd)
        except OSError as e:
            raise _fail(plan.path, e.strerror or str(e)) from None
        f = os.fdopen(fd, mode, encoding=encoding)
    else:
        try:
            f = open(plan.target, mode, encoding=encoding)
        except OSError as e:
            raise _fail(plan.path, e.strerror or str(e)) from None
    with f:
        yield f


@contextlib.contextmanager
def _replace(plan: OutputPlan, mode: str, encoding: str | None) -> Iterator[IO]:
    """Temp file beside ``plan.target``, fsync, rename over it; the old file's mode (and owner,
    where allowed) carried over; on any failure the temp file is removed."""
    target = plan.target
    folder = os.path.dirname(target) or "."
    name = os.path.basename(target)
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    except OSError as e:
        raise _fail(plan.path, e.strerror or str(e)) from None
    with _terminate_cleanly():  # from before the temp file exists until it is renamed or removed
        # 0o666 so that a new file gets what the umask allows, as with a plain open().
        tmp, fd = _create_temp(plan.path, folder, name)
        try:
            try:
                if old is not None:
                    new = os.fstat(fd)
                    if (old.st_uid, old.st_gid) != (new.st_uid, new.st_gid):
                        with contextlib.suppress(OSError):  # only root (or a member of the group) may
                            os.fchown(fd, old.st_uid, old.st_gid)
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))  # after chown, which may clear setuid bits
            except OSError:
                pass  # best effort: content matters more than mode bits on exotic file systems
            f = os.fdopen(fd, mode, encoding=encoding)
            try:
                with f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except OSError as e:
                if e.errno in _WRITE_ERRNOS or e.filename in (tmp, target):
                    raise _fail(plan.path, e.strerror or str(e)) from None
                raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """While a temp file is being written: SIGTERM (``kill``, ``timeout``, a scheduler) raises
    ``SystemExit(143)`` instead of ending the process on the spot, so that the temp file is
    removed (a killed ``sample -n 100000000 -o FILE`` left half a gigabyte beside FILE).
    Only where SIGTERM still has its default action and in the main thread (where Python
    runs handlers); the default comes back after."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _create_temp(path: str, folder: str, name: str) -> tuple[str, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{os.urandom(4).hex()}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise _fail(path, f"cannot create a file in {_describe(os.path.dirname(path))}: {e.strerror}") from None
    raise _fail(path, f"cannot create a temporary file in {_describe(os.path.dirname(path))}")


def write_lines(path: str | Path, lines: Iterable[str]) -> None:
    """Write one string per line to a user-given path (``-`` for stdout), by the rules of
    ``gumbelseq.outputs.open_output``: an existing regular file is only replaced on success."""
    with open_output(path, "w") as f:
        for line in lines:
            f.write(line)
            f.write("\n")
