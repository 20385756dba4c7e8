"""The table of hostile inputs for ``test_hostile.py``, and the harness that runs one.

Each case is run through the real CLI in a subprocess, in a folder of its own::

    <case>/work   the current directory (the case's setup fills it: copied runs, bad files)
    <case>/home   $GUMBELSEQ_HOME, an existing empty folder (as a user's ~/.gumbelseq would be):
                  a failing command must not write into it (no last-run pointer, no lock left)

and every file under ``<case>`` is hashed before and after (path, type, mode, content,
symlink target); only the paths a case lists in ``allowed`` may change.

Every child runs under ``ulimit -v`` (address space): the out-of-memory cases must not be able
to take the machine (or a CI runner) down with them. An allocation past the limit fails in the
allocator exactly as it would on a smaller machine, and the CLI must still say so in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

TIMEOUT = 300  # generous: CI machines are noisy; a case normally takes seconds
#: What "fail fast" means for the out-of-memory cases.
FAST = 60
#: Address-space limit of every child, in KiB (8 GiB: torch itself needs well under 2).
MEM_LIMIT_KIB = 8 * 1024 * 1024
SEED_2_64 = str(2**64)

Setup = Callable[[Path, Path, Path], None]  # (work, home, base)


# -- running the CLI ----------------------------------------------------------------------------


def cli_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GUMBELSEQ_PLUGINS_DIR", None)
    env["GUMBELSEQ_HOME"] = str(home)
    # Bytecode caches next to a user's plugin file are Python's doing, not the CLI's.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def cli_command(args: Sequence[str], *, stdin_closed: bool = False) -> list[str]:
    """``python -m gumbelseq ARGS`` under an address-space limit, optionally with fd 0 closed."""
    redirect = " <&-" if stdin_closed else ""
    script = f'ulimit -v {MEM_LIMIT_KIB} 2>/dev/null; exec "$0" -m gumbelseq "$@"{redirect}'
    return ["bash", "-c", script, sys.executable, *args]


@dataclass
class Result:
    rc: int | None  # None: timed out
    stdout: str
    stderr: str
    seconds: float


def run_cli(args: Sequence[str], cwd: Path, home: Path, *, env: dict[str, str] | None = None,
            stdin_closed: bool = False, timeout: float = TIMEOUT) -> Result:
    t0 = time.monotonic()
    try:
        p = subprocess.run(cli_command(args, stdin_closed=stdin_closed), cwd=cwd, env=cli_env(home, env),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = None, e.stdout or b"", e.stderr or b""
    dec = lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
    return Result(rc, dec(out), dec(err), time.monotonic() - t0)


def popen_cli(args: Sequence[str], cwd: Path, home: Path) -> subprocess.Popen:
    return subprocess.Popen(cli_command(args), cwd=cwd, env=cli_env(home), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# -- snapshots ----------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: type, permission bits, and content hash or link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", mode, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                out[rel] = ("file", mode, st.st_size, h.hexdigest())
            else:
                out[rel] = ("other", mode, stat.S_IFMT(st.st_mode))
    return out


def changed(before: dict[str, tuple], after: dict[str, tuple], allowed: Sequence[str]) -> list[str]:
    """Paths that differ, minus those at or under an allowed path (relative to the case root)."""
    def ok(path: str) -> bool:
        return any(path == a or path.startswith(a.rstrip("/") + "/") for a in allowed)

    diffs = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) != after.get(path) and not ok(path):
            what = "added" if path not in before else "removed" if path not in after else "changed"
            diffs.append(f"{what}: {path}")
    return diffs


# -- the cases ----------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    setup: Setup
    argv: list[str]
    allowed: tuple[str, ...] = ()  # paths relative to the case folder ("work/out.txt")
    env: dict[str, str] = field(default_factory=dict)  # "{home}"/"{work}" are filled in
    usage: bool = False  # a click usage error (exit 2, "Usage:" lines) is acceptable
    stdin_closed: bool = False
    max_seconds: float | None = None
    must_mention: tuple[str, ...] = ()  # substrings (case-insensitive) the Error line must contain
    #: For an input that a correct implementation may also *honour* instead of refusing (a regex
    #: feature the sampler learns to handle exactly): exit 0 is then accepted only if this says
    #: the output is right (returns the problem, or None). Without it, exit 0 is a failure.
    correct_if_accepted: Callable[["Result"], str | None] | None = None


def seq(*steps: Setup) -> Setup:
    def setup(work: Path, home: Path, base: Path) -> None:
        for s in steps:
            s(work, home, base)

    return setup


def nothing(work: Path, home: Path, base: Path) -> None:
    pass


def copy(name: str, to: str | None = None) -> Setup:
    def setup(work: Path, home: Path, base: Path) -> None:
        shutil.copytree(base / name, work / (to or name), symlinks=True)

    return setup


def write(rel: str, data: str | bytes) -> Setup:
    def setup(work: Path, home: Path, base: Path) -> None:
        p = work / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())

    return setup


def mkdir(rel: str) -> Setup:
    def setup(work: Path, home: Path, base: Path) -> None:
        (work / rel).mkdir(parents=True, exist_ok=True)

    return setup


def remove(rel: str) -> Setup:
    def setup(work: Path, home: Path, base: Path) -> None:
        p = work / rel
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    return setup


def edit_config(fn: Callable[[dict], None], run: str = "RUN") -> Setup:
    def setup(work: Path, home: Path, base: Path) -> None:
        p = work / run / "config.json"
        cfg = json.loads(p.read_text())
        fn(cfg)
        p.write_text(json.dumps(cfg, indent=2) + "\n")

    return setup


def setter(key: str, value) -> Callable[[dict], None]:
    def fn(cfg: dict) -> None:
        cfg[key] = value

    return fn


def save_checkpoint(make: Callable[[Path], object], run: str = "RUN") -> Setup:
    def setup(work: Path, home: Path, base: Path) -> None:
        import torch

        p = work / run / "checkpoint.pt"
        torch.save(make(p), p)

    return setup


def _iteration_abc(p: Path) -> object:
    import torch

    state = torch.load(p, map_location="cpu", weights_only=True)
    state["iteration"] = "abc"
    return state


def insert_metrics_line(line: str, run: str = "RUN") -> Setup:
    def setup(work: Path, home: Path, base: Path) -> None:
        p = work / run / "metrics.jsonl"
        lines = p.read_text().splitlines(keepends=True)
        assert len(lines) >= 1, "the fixture run should have logged metrics"
        lines.insert(1 if len(lines) >= 2 else 0, line + "\n")
        p.write_text("".join(lines))

    return setup


def write_home(rel: str | None, data: bytes) -> Setup:
    """Write ``$GUMBELSEQ_HOME`` itself (rel None) or a file in it."""
    def setup(work: Path, home: Path, base: Path) -> None:
        if rel is None:
            home.rmdir()
            home.write_bytes(data)
        else:
            home.mkdir(parents=True, exist_ok=True)
            (home / rel).write_bytes(data)

    return setup


HOOK_RAISES = '''
from gumbelseq.model.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    raise RuntimeError("boom in register_backends")
'''

CREATE_RAISES = '''
from dataclasses import dataclass

from gumbelseq.model.backend import Backend, BaseOptions
from gumbelseq.model.hookspecs import hookimpl


@dataclass
class Options(BaseOptions):
    iterations: int = 5


class Bad(Backend):
    name = "bad"
    description = "A backend whose create() raises (test plugin)."
    Options = Options

    def create(self, *, vocab_size, max_len, data, options, device, seed):
        raise RuntimeError("boom in create\\nsecond line of the message")

    def sample_ids(self, n, tau, generator):  # never reached
        raise AssertionError


@hookimpl
def register_backends(register):
    register(Bad())
'''

FLAGS_GRAMMAR = "start: A\nA: /(?i)x/\n"
BACKREF_GRAMMAR = "start: A\nA: /(a|b)\\1/\n"
RELATIVE_IMPORT_GRAMMAR = "start: rule\n%import .other.rule\n"
NOSUCHMODULE_GRAMMAR = "start: X\n%import nosuchmodule.X\n"

TINY_MLE = ["--backend", "mle-lstm", "--iterations", "2", "--batch-size", "8", "--data-size", "50"]
TINY_GAN = ["--backend", "gumbel-lstm-gan", "--iterations", "2", "--batch-size", "8", "--data-size", "50"]
SAMPLE = ["sample", "--run", "RUN", "-n", "3"]


def _random_bytes(n: int) -> bytes:
    return random.Random(0).randbytes(n)


def _data_is(language: set[str]) -> Callable[[Result], str | None]:
    def check(r: Result) -> str | None:
        got = r.stdout.splitlines()
        if len(got) != 40 or set(got) != language:
            return f"accepted, but drew {sorted(set(got))[:6]} ({len(got)} lines), not 40 strings covering {sorted(language)}"
        return None

    return check


def _score_is(size: int, validity: float) -> Callable[[Result], str | None]:
    def check(r: Result) -> str | None:
        try:
            rep = json.loads(r.stdout)
        except ValueError:
            return f"accepted, but stdout is not the JSON report: {r.stdout[:200]!r}"
        if rep.get("language_size") != size or rep.get("validity") != validity:
            return (f"accepted, but language_size={rep.get('language_size')!r} validity={rep.get('validity')!r}; "
                    f"expected {size} and {validity}")
        return None

    return check


def build_cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    # -- where outputs go -------------------------------------------------------------------
    add(Case("train-out-dot-with-user-data", write("data.txt", "keep\n"), ["train", "--iterations", "2", "--out", "."]))
    add(Case("train-out-stray-checkpoint", seq(mkdir("D"), lambda w, h, b: shutil.copy(b / "RUN" / "checkpoint.pt", w / "D")),
             ["train", *TINY_MLE, "--out", "D"]))
    add(Case("train-out-regular-file", write("D", "a user's file\n"), ["train", "--iterations", "2", "--out", "D"], usage=True))
    add(Case("score-stdin-closed", nothing, ["score", "-"], stdin_closed=True))
    add(Case("data-o-missing-folder", nothing, ["data", "-n", "3", "-o", "missing/out.txt"]))
    add(Case("data-o-under-regular-file", write("f", "user\n"), ["data", "-n", "3", "-o", "f/out.txt"]))
    add(Case("sample-o-missing-folder", copy("RUN"), [*SAMPLE, "-o", "missing/out.txt"]))
    add(Case("sample-o-under-regular-file", seq(copy("RUN"), write("f", "user\n")), [*SAMPLE, "-o", "f/out.txt"]))
    add(Case("train-out-under-regular-file", write("f", "user\n"), ["train", *TINY_MLE, "--out", "f/sub"]))

    # -- seeds out of range -----------------------------------------------------------------
    add(Case("train-seed-2**64", nothing, ["train", *TINY_MLE, "--out", "run", "--seed", SEED_2_64], usage=True, must_mention=("seed",)))
    add(Case("sample-seed-2**64", copy("RUN"), [*SAMPLE, "--seed", SEED_2_64], usage=True, must_mention=("seed",)))
    add(Case("reproduce-seed-2**64", nothing, ["reproduce", "--quick", "--only", "mle", "--out", "R", "--seed", SEED_2_64],
             usage=True, must_mention=("seed",)))

    # -- data -------------------------------------------------------------------------------
    add(Case("train-data-blank-lines", write("blank.txt", "\n \n\n"), ["train", "--data", "blank.txt", "--iterations", "1", "--out", "run"]))

    # -- sizes that cannot fit: refused fast, nothing left behind ---------------------------
    add(Case("oom-hidden_g", nothing, ["train", "-o", "hidden_g=100000", "--iterations", "1"], max_seconds=FAST))
    add(Case("oom-batch-size", nothing, ["train", "--batch-size", "1000000000", "--iterations", "1"], max_seconds=FAST))
    add(Case("oom-gen_batch", nothing, ["train", "-o", "gen_batch=1000000000", "--iterations", "1"], max_seconds=FAST))
    add(Case("oom-50MB-line", write("big.txt", b"x" * (50 * 1024 * 1024) + b"\n"),
             ["train", "--data", "big.txt", "--iterations", "1"], max_seconds=FAST))

    # -- checkpoints of the wrong shape ------------------------------------------------------
    add(Case("ckpt-dict-foo", seq(copy("RUN"), save_checkpoint(lambda p: {"foo": 1})), SAMPLE))
    add(Case("ckpt-list", seq(copy("RUN"), save_checkpoint(lambda p: [1, 2])), SAMPLE))
    add(Case("ckpt-iteration-abc", seq(copy("RUN"), save_checkpoint(_iteration_abc)), SAMPLE))
    add(Case("ckpt-mle-in-gan-run", seq(copy("GAN", "RUN"), lambda w, h, b: shutil.copy(b / "RUN" / "checkpoint.pt", w / "RUN")),
             SAMPLE))
    add(Case("ckpt-random-bytes", seq(copy("RUN"), write("RUN/checkpoint.pt", _random_bytes(4096))), SAMPLE))
    add(Case("ckpt-empty", seq(copy("RUN"), write("RUN/checkpoint.pt", b"")), SAMPLE))

    # -- config.json mutations ---------------------------------------------------------------
    add(Case("config-max_len-string", seq(copy("RUN"), edit_config(setter("max_len", "12"))), SAMPLE))
    add(Case("config-max_len-negative", seq(copy("RUN"), edit_config(setter("max_len", -1))), SAMPLE))
    add(Case("config-max_len-1e9-float", seq(copy("RUN"), edit_config(setter("max_len", 1e9))), SAMPLE))
    add(Case("config-max_len-1e9-int", seq(copy("RUN"), edit_config(setter("max_len", 10**9))), SAMPLE))
    add(Case("config-vocab-list", seq(copy("RUN"), edit_config(lambda c: c.__setitem__("vocab", list(c["vocab"]["chars"])))), SAMPLE))
    add(Case("config-options-null", seq(copy("RUN"), edit_config(setter("options", None))), SAMPLE))
    add(Case("config-backend-unknown", seq(copy("RUN"), edit_config(setter("backend", "no-such-backend"))), SAMPLE))
    add(Case("config-not-utf8", seq(copy("RUN"), write("RUN/config.json", b"\xff\xfe")), SAMPLE))
    add(Case("config-not-json", seq(copy("RUN"), write("RUN/config.json", "{not json\n")), SAMPLE))
    add(Case("config-is-directory", seq(copy("RUN"), remove("RUN/config.json"), mkdir("RUN/config.json")), SAMPLE))

    def other_alphabet(cfg: dict) -> None:
        chars = cfg["vocab"]["chars"]
        cfg["vocab"]["chars"] = [chr(ord("a") + i) for i in range(len(chars))]

    add(Case("config-vocab-other-chars-same-count", seq(copy("RUN"), edit_config(other_alphabet)), SAMPLE))

    # -- resuming over damaged logs ---------------------------------------------------------
    add(Case("resume-corrupt-metrics-line", seq(copy("RUN"), insert_metrics_line('{"iteration": 1, "loss": ')),
             ["train", "--resume", "RUN"]))
    add(Case("reproduce-corrupt-timing", seq(copy("R"), write("R/runs/mle/timing.json", "{corrupt")),
             ["reproduce", "--quick", "--only", "mle", "--out", "R"]))

    # -- plugins that raise ------------------------------------------------------------------
    add(Case("plugin-hook-raises-backends", write("P/badhook.py", HOOK_RAISES), ["backends", "--plugins-dir", "P"],
             must_mention=("badhook",)))
    add(Case("plugin-hook-raises-train", write("P/badhook.py", HOOK_RAISES),
             ["train", "--backend", "bad", "--plugins-dir", "P", "--iterations", "1"], must_mention=("badhook",)))
    add(Case("plugin-create-raises-train", write("Q/badcreate.py", CREATE_RAISES),
             ["train", "--backend", "bad", "--plugins-dir", "Q", "--iterations", "1"], must_mention=("badcreate",)))

    # Plugin files that exit, print, declare a hook wrongly or misspell it, or fail in several lines.
    hook = "from gumbelseq.model.hookspecs import hookimpl\n@hookimpl\n"
    for case, source, mention in [
        ("exit-0", "import sys\nsys.exit(0)\n", "it called sys.exit(0)"),
        ("exit-message", "import sys\nsys.exit('bye')\n", "it called sys.exit('bye')"),
        ("extra-argument", hook + "def register_backends(register, extra):\n    pass\n", "not a valid plugin"),
        ("misspelt-hook", hook + "def register_backend(register):\n    pass\n", "unknown hook 'register_backend'"),
        ("multi-line-error", "raise ValueError('first line\\nsecond line')\n", "ValueError: first line"),
    ]:
        add(Case(f"plugin-{case}", write("P/p.py", source), ["backends", "--plugins-dir", "P", "--json"], must_mention=(mention,)))

    # A file or a missing folder as --plugins-dir: the same one Error line (exit 1) for both.
    for argv in (["backends"], ["train", *TINY_MLE, "--out", "run"], SAMPLE):
        add(Case(f"plugins-dir-is-a-file-{argv[0]}", seq(copy("RUN"), write("P", "not a folder\n")),
                 [*argv, "--plugins-dir", "P"], must_mention=("P: plugins dir is not a directory",)))
        add(Case(f"plugins-dir-missing-{argv[0]}", copy("RUN"), [*argv, "--plugins-dir", "P"],
                 must_mention=("P: plugins dir is not a directory",)))

    # -- $GUMBELSEQ_HOME ----------------------------------------------------------------------
    add(Case("home-is-regular-file-sample", write_home(None, b"not a folder\n"), ["sample"]))
    add(Case("home-is-regular-file-train", write_home(None, b"not a folder\n"), ["train", "--iterations", "1"]))
    add(Case("last-run-not-utf8-sample", write_home("last_run", b"\xff\xfe/tmp/run\n"), ["sample"]))

    # -- grammars the sampler or counter cannot honour --------------------------------------
    # Refusing in one line is right; so is handling the feature exactly (then the output is checked).
    for gid, text, samples, language, validity in [
        ("inline-flags", FLAGS_GRAMMAR, "x\nX\n", {"x", "X"}, 1.0),
        ("backref", BACKREF_GRAMMAR, "aa\nab\n", {"aa", "bb"}, 0.5),
    ]:
        add(Case(f"grammar-{gid}-data", write("g.lark", text), ["data", "--grammar", "g.lark", "-n", "40"],
                 correct_if_accepted=_data_is(language)))
        add(Case(f"grammar-{gid}-score", seq(write("g.lark", text), write("f", samples)),
                 ["score", "f", "--grammar", "g.lark", "--json"], correct_if_accepted=_score_is(len(language), validity)))
    add(Case("grammar-relative-import-missing", write("g.lark", RELATIVE_IMPORT_GRAMMAR), ["data", "--grammar", "g.lark", "-n", "3"]))
    add(Case("grammar-import-nosuchmodule", write("g.lark", NOSUCHMODULE_GRAMMAR), ["data", "--grammar", "g.lark", "-n", "3"]))

    # -- temperatures ------------------------------------------------------------------------
    for tau in ["1e-40", "inf", "nan", "-1"]:
        add(Case(f"sample-tau-{tau}", copy("RUN"), [*SAMPLE, "--tau", tau]))

    # -- reproduce folders ---------------------------------------------------------------------
    add(Case("reproduce-seed-differs", copy("R"), ["reproduce", "--quick", "--only", "mle", "--out", "R", "--seed", "1"],
             must_mention=("seed",)))
    add(Case("reproduce-full-over-quick", copy("R"), ["reproduce", "--only", "mle", "--out", "R"]))
    add(Case("reproduce-into-user-folder", write("D/notes.txt", "my notes\n"), ["reproduce", "--quick", "--only", "mle", "--out", "D"]))

    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return cases


@dataclass
class Outcome:
    case: Case
    result: Result
    diffs: list[str]
    folder: Path


def run_case(case: Case, root: Path, base: Path) -> Outcome:
    folder = root / case.id.replace("*", "x")
    work, home = folder / "work", folder / "home"
    work.mkdir(parents=True)
    home.mkdir()
    case.setup(work, home, base)
    env = {k: v.format(home=home, work=work) for k, v in case.env.items()}
    before = snapshot(folder)
    result = run_cli(case.argv, work, home, env=env, stdin_closed=case.stdin_closed)
    after = snapshot(folder)
    return Outcome(case, result, changed(before, after, case.allowed), folder)


def problems(o: Outcome) -> list[str]:
    """Everything wrong with one outcome, most telling first (empty: the case passes)."""
    case, r = o.case, o.result
    out: list[str] = []
    both = r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    if r.rc is None:
        out.append(f"timed out after {TIMEOUT} s")
    elif r.rc == 0:
        wrong = case.correct_if_accepted(r) if case.correct_if_accepted else "exit status 0 (the hostile input was accepted)"
        if wrong:
            out.append(wrong)
    elif r.rc < 0:
        out.append(f"killed by signal {-r.rc}")
    if "Traceback" in both:
        tb = [ln for ln in both.splitlines() if ln.strip()]
        out.append(f"Traceback; last line: {tb[-1][:200] if tb else ''}")
    usage_ok = case.usage and r.rc == 2 and any(ln.startswith("Usage:") for ln in lines) and any("Error:" in ln for ln in lines)
    one_error_line = len(lines) == 1 and lines[0].startswith("Error:") and r.rc not in (None, 0)
    if r.rc is not None and r.rc != 0 and not (usage_ok or one_error_line):
        shown = " | ".join(lines[:4])[:300]
        out.append(f"stderr is {len(lines)} line(s), not one 'Error:' line (rc {r.rc}): {shown!r}")
    if case.max_seconds is not None and r.seconds > case.max_seconds:
        out.append(f"took {r.seconds:.0f} s, more than {case.max_seconds} s")
    if o.diffs:
        out.append(f"files changed outside the allowed outputs: {', '.join(o.diffs[:6])}" + (" ..." if len(o.diffs) > 6 else ""))
    for word in case.must_mention:
        if r.rc not in (None, 0) and word.lower() not in r.stderr.lower():
            out.append(f"the error does not mention {word!r}")
    return out
