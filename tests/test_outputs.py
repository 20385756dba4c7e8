"""User-given output paths (``-o``) never destroy what is there; stdin closed is an error.

Everything is written inside tmp_path; device nodes are only classified, never written."""

import os
import socket
import signal
import stat
import subprocess
import sys
import threading

import pytest

from gumbelseq.errors import InputFileError, OutputFileError
from gumbelseq.inputs import open_binary, read_lines
from gumbelseq.outputs import DIRECT, REPLACE, STDOUT, check_output, is_special_path, open_output, own_descriptor

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _write(path, text):
    with open_output(path) as f:
        f.write(text)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- open_output ---------------------------------------------------------------------------------


def test_symlink_stays_a_link_and_its_target_gets_the_content(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link"
    link.symlink_to("real.txt")
    _write(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == "real.txt"
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link"
    link.symlink_to("later.txt")
    _write(link, "x\n")
    assert link.is_symlink() and (tmp_path / "later.txt").read_text() == "x\n"


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o755])
def test_permission_bits_are_kept(tmp_path, mode):
    p = tmp_path / "out.txt"
    p.write_text("old\n")
    p.chmod(mode)
    _write(p, "new\n")
    assert p.read_text() == "new\n"
    assert stat.S_IMODE(p.stat().st_mode) == mode


def test_new_file_gets_the_umask_mode_and_content(tmp_path):
    umask = os.umask(0o022)
    try:
        _write(tmp_path / "new.txt", "a\nb\n")
    finally:
        os.umask(umask)
    p = tmp_path / "new.txt"
    assert p.read_text() == "a\nb\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644  # not the temp file's 600
    assert check_output(p).kind == REPLACE
    assert _leftovers(tmp_path) == []


def test_fifo_is_written_directly(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert check_output(fifo).kind == DIRECT
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    _write(fifo, "x\nx+x\n")
    reader.join(timeout=10)
    assert got == ["x\nx+x\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "path", ["/dev/null", "/dev/sda", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1", "/dev/shm/x.txt"]
)
def test_dev_and_proc_paths_are_classified_as_direct_by_their_name(path):
    assert is_special_path(path)  # pure: only the string is looked at


def test_ordinary_paths_are_not_special(tmp_path):
    assert not is_special_path(tmp_path / "dev" / "x")
    assert not is_special_path("/devices.txt")
    assert not is_special_path("relative/out.txt")


def test_own_descriptor_names():
    assert own_descriptor("/dev/stdout") == 1
    assert own_descriptor("/dev/stderr") == 2
    assert own_descriptor("/dev/fd/3") == 3
    assert own_descriptor("/proc/self/fd/1") == 1
    assert own_descriptor(f"/proc/{os.getpid()}/fd/2") == 2
    assert own_descriptor(f"/proc/{os.getpid() + 1}/fd/1") is None  # another process's
    assert own_descriptor("/dev/null") is None


def test_dev_stdout_redirected_to_a_file_is_written_through_the_descriptor(tmp_path):
    # Under pytest's capture fd 1 is a regular temp file: /dev/stdout still means "fd 1",
    # never "replace the file fd 1 points at". Only classified here, not written.
    plan = check_output("/dev/stdout")
    assert plan.kind == DIRECT and plan.fd == 1
    assert check_output("/dev/null").kind == DIRECT  # a stat, no open


def test_dash_writes_to_stdout_and_leaves_it_open(capsys):
    with open_output("-") as f:
        f.write("x\nx*x\n")
    assert check_output("-").kind == STDOUT
    assert not sys.stdout.closed
    assert capsys.readouterr().out == "x\nx*x\n"


def _one_line_error(path, match):
    with pytest.raises(OutputFileError) as e:
        check_output(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and match in msg, msg
    with pytest.raises(OutputFileError, match=match):
        _write(path, "never\n")


def test_missing_parent_folder(tmp_path):
    _one_line_error(tmp_path / "missing" / "x.txt", "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_parent_is_a_file(tmp_path):
    (tmp_path / "somefile").write_text("keep\n")
    _one_line_error(tmp_path / "somefile" / "x.txt", "is not a folder")
    assert [p.name for p in tmp_path.iterdir()] == ["somefile"]
    assert (tmp_path / "somefile").read_text() == "keep\n"


def test_target_is_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    _one_line_error(tmp_path / "d", "is a directory")
    assert list((tmp_path / "d").iterdir()) == [] and [p.name for p in tmp_path.iterdir()] == ["d"]


def test_target_is_a_socket(tmp_path):
    path = tmp_path / "s"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        _one_line_error(path, "is a socket")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        sock.close()


def test_unwritable_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if AS_ROOT:  # root may write in any folder: pretend it may not
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if os.path.realpath(p) == os.path.realpath(folder) else real(p, m))
    try:
        _one_line_error(folder / "x.txt", "permission denied")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failure_mid_write_keeps_the_old_file_and_no_temp_file(tmp_path, exc):
    p = tmp_path / "out.txt"
    p.write_text("precious\n")
    with pytest.raises(exc):
        with open_output(p) as f:
            f.write("half a line")
            f.flush()
            assert _leftovers(tmp_path)  # the content goes to a temp file...
            raise exc()
    assert p.read_text() == "precious\n"  # ...and is dropped with it
    assert _leftovers(tmp_path) == []


# -- inputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stdin", ["none", "closed"])
def test_open_binary_dash_with_stdin_closed(monkeypatch, stdin):
    if stdin == "none":
        monkeypatch.setattr(sys, "stdin", None)
    else:
        r, w = os.pipe()
        os.close(w)
        closed = os.fdopen(r)
        closed.close()
        monkeypatch.setattr(sys, "stdin", closed)
    with pytest.raises(InputFileError, match=r"^-: standard input is closed$"):
        open_binary("-")


def test_reading_a_fifo_streams(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("x\nx+x   \n"), daemon=True)
    writer.start()
    assert read_lines(fifo) == ["x", "x+x"]
    writer.join(timeout=10)


# -- through the real command line ----------------------------------------------------------------


def _gumbelseq(*args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "gumbelseq", *args], cwd=cwd, capture_output=True, text=True, timeout=120, **kw)


def test_cli_data_into_a_symlink_keeps_the_link(tmp_path):
    (tmp_path / "real.txt").write_text("old\n")
    (tmp_path / "link").symlink_to("real.txt")
    r = _gumbelseq("data", "-n", "3", "-o", "link", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "link").is_symlink()
    assert len((tmp_path / "real.txt").read_text().splitlines()) == 3


def test_cli_data_to_dev_stdout(tmp_path):
    r = _gumbelseq("data", "-n", "3", "-o", "/dev/stdout", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3


def test_cli_data_to_dev_stdout_redirected_to_a_file_appends(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("first\n")
    inode = log.stat().st_ino
    with open(log, "a") as f:
        r = subprocess.run([sys.executable, "-m", "gumbelseq", "data", "-n", "3", "-o", "/dev/stdout"],
                           cwd=tmp_path, stdout=f, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "first" and len(lines) == 4
    assert log.stat().st_ino == inode  # written through, not replaced


def test_cli_data_into_a_missing_folder_is_one_line(tmp_path):
    r = _gumbelseq("data", "-o", "missing/x.txt", cwd=tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("Error:"), r.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_score_with_stdin_closed(tmp_path):
    r = subprocess.run(["bash", "-c", 'exec "$0" -m gumbelseq score - <&-', sys.executable],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.strip() == "Error: -: standard input is closed"


def test_the_tools_own_files_get_the_mode_a_plain_open_gives(tmp_path):
    # Reports and run files are read by the user's group on shared machines: not mkstemp's 0600.
    from gumbelseq.outputs import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "report.md", "x\n")
        (tmp_path / "plain.md").write_text("x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.md").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _with_file_size_limit(limit):
    import resource

    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as on a full device.
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _run_into_full_file(tmp_path, *args):
    out = tmp_path / "results.txt"
    with open(out, "w") as f:
        r = subprocess.run([sys.executable, "-m", "gumbelseq", *args], cwd=tmp_path, stdout=f, stderr=subprocess.PIPE,
                           text=True, timeout=120, preexec_fn=_with_file_size_limit(0))
    return r


@pytest.mark.parametrize("args", [("grammars",), ("grammars", "--json"), ("data", "-n", "500"),
                                  ("score", "s.txt"), ("score", "s.txt", "--json")])
def test_cli_results_that_stdout_cannot_take_are_one_line(tmp_path, args):
    (tmp_path / "s.txt").write_text("1+1\n" * 50)
    r = _run_into_full_file(tmp_path, *args)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    assert r.stderr.splitlines() == ["Error: -: cannot write the results to standard output: File too large"]


def test_cli_output_to_dev_stdout_that_cannot_take_it_is_one_line(tmp_path):
    # Written through the descriptor (not replaced): a small write fails only when it is closed.
    r = _run_into_full_file(tmp_path, "data", "-n", "500", "-o", "/dev/stdout")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.splitlines() == ["Error: /dev/stdout: File too large"]


@pytest.mark.parametrize("args", [("grammars",), ("data", "-n", "5"), ("score", "s.txt"), ("score", "s.txt", "--json")])
@pytest.mark.parametrize("how", ["closed", "read-only"])
def test_cli_results_with_no_usable_stdout_are_one_line(tmp_path, args, how):
    """``>&-`` (Python starts with sys.stdout None: results vanished with exit 0, or a
    traceback) and ``1<file`` (EBADF on write) both say so in one line."""
    (tmp_path / "s.txt").write_text("1+1\n" * 5)
    if how == "closed":
        stdout, pre = subprocess.DEVNULL, (lambda: os.close(1))
    else:
        stdout, pre = open(tmp_path / "s.txt", "rb"), None
    try:
        r = subprocess.run([sys.executable, "-m", "gumbelseq", *args], cwd=tmp_path, stdout=stdout,
                           stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=pre)
    finally:
        if how != "closed":
            stdout.close()
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("Error: -: cannot write the results to standard output: "), r.stderr
    assert (tmp_path / "s.txt").read_text() == "1+1\n" * 5


def test_cli_with_stdout_closed_still_writes_its_output_file(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gumbelseq", "data", "-n", "5", "--seed", "1", "-o", "d.txt"], cwd=tmp_path,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=lambda: os.close(1))
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "d.txt").read_text().splitlines()) == 5


@pytest.mark.parametrize("args", [("grammars",), ("grammars", "--json"), ("data", "-n", "20000"), ("score", "s.txt"),
                                  ("score", "s.txt", "--json"), ("backends",)])
def test_cli_results_to_a_reader_that_left_are_a_quiet_exit_0(tmp_path, args):
    """``gumbelseq score big.txt | head -1``: the reader leaving is not the program's failure.
    Rich exited 1 for tables, plain writes 0: now every command exits 0 and says nothing."""
    (tmp_path / "s.txt").write_text("1+1\n" * 50)
    read_end, write_end = os.pipe()
    os.close(read_end)  # gone before the first write: EPIPE every time, no race with a reader
    try:
        r = subprocess.run([sys.executable, "-m", "gumbelseq", *args], cwd=tmp_path, stdout=write_end,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (0, "")


def test_sigterm_while_sampling_into_a_file_removes_the_temp_file(tmp_path):
    """`timeout`/`kill` send SIGTERM, which ended the process on the spot: `sample -o FILE`
    left its temp file (half a gigabyte for -n 100000000) beside an intact FILE."""
    import time

    env = {**os.environ, "GUMBELSEQ_HOME": str(tmp_path / "home")}
    run = [sys.executable, "-m", "gumbelseq"]
    subprocess.run([*run, "train", "-b", "mle-lstm", "--iterations", "2", "--data-size", "20", "--out", "r"], cwd=tmp_path,
                   env=env, check=True, capture_output=True, timeout=120)
    (tmp_path / "out.txt").write_text("precious\n")
    # SIGTERM's default action, whatever this test process inherited (a CI runner may ignore it).
    p = subprocess.Popen([*run, "sample", "--run", "r", "-n", "100000000", "-o", "out.txt"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # well into the writing
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and "Traceback" not in err, (p.returncode, err)
    assert (tmp_path / "out.txt").read_text() == "precious\n"
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_the_sigterm_handler_is_only_lent_while_a_file_is_replaced(tmp_path):
    from gumbelseq.outputs import open_output

    inherited = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a CI runner may ignore it
    try:
        _check_the_handler_is_lent(tmp_path, open_output)
    finally:
        signal.signal(signal.SIGTERM, inherited)


def _check_the_handler_is_lent(tmp_path, open_output):
    with open_output(tmp_path / "a.txt") as f:
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        f.write("x\n")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    mine = lambda *_: None  # noqa: E731 - a caller's own handler is left alone
    signal.signal(signal.SIGTERM, mine)
    try:
        with open_output(tmp_path / "b.txt") as f:
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
