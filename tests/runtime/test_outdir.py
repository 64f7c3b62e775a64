"""Output directories (runtime/outdir.py; issue 16 items 3, 4, 5 and 10): foreign files kept,
symlinks written through, an atomic exchange, leftovers of killed runs cleaned, and every
file-system error one OutputError with nothing left behind."""
from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import shutil
import signal
from pathlib import Path

import pytest

from icl_compiler.errors import CompileError
from icl_compiler.runtime import outdir
from icl_compiler.runtime.outdir import OutputError, write_output_dir

OWNED = ("program.json", "weights.npz", "report.json", "output.npy", "partition.svg")


def program(tag: str, extra: dict | None = None) -> dict:
    """A program's files: a writer callback, plain bytes, and program.json last."""
    return {"weights.npz": lambda p: p.write_bytes(f"weights {tag}".encode()),
            "report.json": json.dumps({"tag": tag}).encode(),
            **(extra or {}),
            "program.json": json.dumps({"format": "test-program", "tag": tag}).encode()}


def is_previous(d: Path) -> bool:
    try:
        return json.loads((d / "program.json").read_text())["format"] == "test-program"
    except (OSError, ValueError, KeyError):
        return False


def save(target, tag="new", **kw):
    kw.setdefault("is_previous", is_previous)
    kw.setdefault("owned", OWNED)
    return write_output_dir(target, program(tag, kw.pop("extra", None)), **kw)


def tag_of(d: Path) -> str:
    t = json.loads((d / "program.json").read_text())["tag"]
    assert (d / "weights.npz").read_bytes() == f"weights {t}".encode()  # a consistent pair
    assert json.loads((d / "report.json").read_text())["tag"] == t
    return t


def leftovers(*dirs: Path) -> list[str]:
    return sorted(str(d / e) for d in dirs if d.is_dir() for e in os.listdir(d)
                  if ".tmp-" in e or ".old-" in e)


def test_new_directory_and_parents(tmp_path):
    w = save(tmp_path / "a" / "b" / "out", "one")
    assert w.method == "new" and tag_of(tmp_path / "a/b/out") == "one"
    assert leftovers(tmp_path / "a/b") == []


def test_rerun_keeps_the_users_files_and_replaces_only_the_programs(tmp_path):
    """Item 3: a re-run deleted every other file in out/ (notes, inputs), without --force."""
    out = tmp_path / "out"
    save(out, "old", extra={"output.npy": b"old output"})
    (out / "notes.txt").write_text("mine")
    (out / "inputs").mkdir()
    (out / "inputs" / "x.npy").write_bytes(b"x" * 1000)
    (out / "link-to-notes").symlink_to("notes.txt")
    ino = os.stat(out / "inputs" / "x.npy").st_ino
    w = save(out, "new")  # no --force: out holds a previous program
    assert tag_of(out) == "new"
    assert (out / "notes.txt").read_text() == "mine"
    assert os.stat(out / "inputs" / "x.npy").st_ino == ino  # the same file, not a copy
    assert os.readlink(out / "link-to-notes") == "notes.txt"
    assert not (out / "output.npy").exists()  # the old program's output, no longer true
    assert w.method == "exchange" and w.kept == ["inputs", "link-to-notes", "notes.txt"]
    assert w.removed == ["output.npy"]
    assert leftovers(tmp_path, out) == []


def test_a_foreign_directory_needs_force_and_keeps_its_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.csv").write_text("1,2")
    (out / "output.npy").write_bytes(b"the user's own")  # not ours: no previous program here
    with pytest.raises(OutputError, match=r"not empty and holds no previous program; choose "
                                          r"another directory or pass --force"):
        save(out)
    assert sorted(os.listdir(out)) == ["data.csv", "output.npy"]
    w = save(out, force=True)
    assert tag_of(out) == "new" and (out / "data.csv").read_text() == "1,2"
    assert (out / "output.npy").read_bytes() == b"the user's own" and w.removed == []


def test_symlink_is_written_through_and_stays_a_link(tmp_path):
    """Item 4: -o link replaced the link with a directory; the target kept the old program."""
    real = tmp_path / "real"
    save(real, "old")
    link = tmp_path / "link"
    link.symlink_to("real")
    w = save(link, "new")
    assert link.is_symlink() and os.readlink(link) == "real"
    assert tag_of(real) == "new" and w.real == real and w.path == link
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("make, words", [
    (lambda t: (t / "out").symlink_to(t / "nowhere"), r"a symlink to .*nowhere, which does "
                                                      r"not exist"),
    (lambda t: (t / "out").symlink_to(t / "out"), r"a symlink loop"),
    (lambda t: ((t / "f").write_text("x"), (t / "out").symlink_to(t / "f")), r"not a directory"),
    (lambda t: (t / "out").write_text("x"), r"exists and is not a directory"),
])
def test_paths_that_cannot_be_a_directory(tmp_path, make, words):
    make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(OutputError, match=words) as ei:
        save(tmp_path / "out")
    assert "\n" not in str(ei.value) and str(tmp_path / "out") in str(ei.value)
    assert sorted(os.listdir(tmp_path)) == before  # nothing created, e.g. no "nowhere"


def test_dangling_symlink_in_the_middle_creates_nothing(tmp_path):
    (tmp_path / "dang").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match=r"File exists"):
        save(tmp_path / "dang" / "out")
    assert not (tmp_path / "nowhere").exists()


def test_output_error_is_a_compile_error_with_exit_code_3():
    assert issubclass(OutputError, CompileError) and OutputError.exit_code == 3


def _fail(monkeypatch, name, err, *, after=0, times=None, target=os):
    """Make ``target.name`` raise OSError(err) from its (after+1)-th call on (``times`` calls)."""
    orig = getattr(target, name)
    calls = []

    def f(*a, **k):
        calls.append(a)
        if len(calls) > after and (times is None or len(calls) <= after + times):
            raise OSError(err, os.strerror(err), str(a[0]) if a else None)
        return orig(*a, **k)

    monkeypatch.setattr(target, name, f)
    return calls


@pytest.mark.parametrize("how, err", [
    ("write", errno.ENOSPC),     # a full file system while writing bytes
    ("writer", errno.ENOSPC),    # ... while a writer callback (np.savez) writes
    ("mkdir", errno.EROFS),      # a read-only file system
    ("exchange", errno.EACCES),  # permission refused at the swap
    ("link", errno.EIO),         # keeping the user's files fails
])
def test_file_system_errors_are_one_line_and_keep_the_previous_program(tmp_path, monkeypatch,
                                                                       how, err):
    """Item 5: read-only or full file systems ended in a traceback and exit 1."""
    out = tmp_path / "out"
    save(out, "old")
    (out / "notes.txt").write_text("mine")
    extra = None
    if how == "write":
        _fail(monkeypatch, "write", err)
    elif how == "writer":
        def full(p):
            p.write_bytes(b"half")
            raise OSError(err, os.strerror(err), str(p))
        extra = {"output.npy": full}
    elif how == "mkdir":
        _fail(monkeypatch, "mkdir", err)
    elif how == "exchange":
        _fail(monkeypatch, "_exchange", err, target=outdir)
    else:
        _fail(monkeypatch, "link", err)
    with pytest.raises(OutputError) as ei:
        save(out, "new", extra=extra)
    msg = str(ei.value)
    assert msg.startswith(f"cannot write output directory {out}: {os.strerror(err)}")
    assert "\n" not in msg
    monkeypatch.undo()
    assert tag_of(out) == "old" and (out / "notes.txt").read_text() == "mine"
    assert leftovers(tmp_path, out) == []


def test_failure_removes_the_parent_folders_it_created(tmp_path, monkeypatch):
    _fail(monkeypatch, "write", errno.ENOSPC)
    with pytest.raises(OutputError, match="No space left on device"):
        save(tmp_path / "a" / "b" / "out")
    assert os.listdir(tmp_path) == []


def test_writer_exceptions_propagate_after_the_same_cleanup(tmp_path):
    def broken(p):
        raise ValueError("not serialisable")

    with pytest.raises(ValueError, match="not serialisable"):
        save(tmp_path / "out", extra={"x.bin": broken})
    assert os.listdir(tmp_path) == []


def test_real_os_errors_without_root_tricks(tmp_path):
    # /sys refuses new entries (EPERM, or EROFS where sysfs is mounted read-only)
    with pytest.raises(OutputError, match=r"cannot write output directory /sys/icl-out-test: "
                                          r"(Operation not permitted|Read-only file system)"):
        save("/sys/icl-out-test")
    long = tmp_path / ("x" * 300)
    with pytest.raises(OutputError, match="File name too long"):
        save(long)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"File exists|Not a directory"):
        save(tmp_path / "file" / "out")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_dot_writes_in_place_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """Item 5: -o . crashed and left an empty ..old-* directory.  In place, the directory (a
    shell's current directory) stays the same inode."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    ino = os.stat(".").st_ino
    w = save(".", "one")
    assert w.method == "in-place" and tag_of(out) == "one"
    (out / "notes.txt").write_text("mine")
    w = save(".", "two", extra={"output.npy": b"o"})
    w = save(".", "three")
    assert tag_of(out) == "three" and (out / "notes.txt").read_text() == "mine"
    assert w.removed == ["output.npy"] and not (out / "output.npy").exists()
    assert os.stat(".").st_ino == ino
    assert leftovers(tmp_path, out) == []


def test_in_place_failure_rolls_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    save(out, "old")
    monkeypatch.chdir(out)
    # weights and report replaced, then program.json fails: the two are put back
    _fail(monkeypatch, "replace", errno.EIO, after=2, times=1)
    with pytest.raises(OutputError, match="Input/output error"):
        save(".", "new")
    monkeypatch.undo()
    assert tag_of(out) == "old" and leftovers(tmp_path, out) == []


def test_exchange_is_atomic_the_target_is_never_missing(tmp_path):
    out = tmp_path / "out"
    save(out, "old")
    ino = os.stat(out).st_ino
    os.chmod(out, 0o750)
    w = save(out, "new")
    assert w.method == "exchange" and os.stat(out).st_ino != ino
    assert stat_mode(out) == 0o750  # the directory's mode is kept


def stat_mode(p):
    return os.stat(p).st_mode & 0o777


def test_fallback_two_renames(tmp_path, monkeypatch):
    out = tmp_path / "out"
    save(out, "old")
    (out / "notes.txt").write_text("mine")
    _fail(monkeypatch, "_exchange", errno.EINVAL, target=outdir)  # a file system without it
    w = save(out, "new")
    assert w.method == "renames" and tag_of(out) == "new"
    assert (out / "notes.txt").read_text() == "mine" and leftovers(tmp_path) == []


def _killed_run(out: Path, point: str) -> None:
    """In a forked child: save, and die by SIGKILL at ``point``."""
    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "after-exchange":  # the exchange happened, the old directory is not removed
        outdir._rmtree = die
    elif point == "before-exchange":
        outdir._exchange = die
    elif point == "between-renames":
        def no_exchange(a, b):
            raise OSError(errno.EINVAL, "unsupported")
        outdir._exchange = no_exchange
        orig, calls = os.rename, []

        def rename(a, b):
            calls.append(a)
            if len(calls) == 2:  # the target was moved aside; the new one is not in place
                die()
            return orig(a, b)
        os.rename = rename
    elif point == "in-place":
        os.chdir(out)
        orig, calls = os.replace, []

        def replace(a, b):
            calls.append(a)
            if len(calls) == 2:
                die()
            return orig(a, b)
        os.replace = replace
    save("." if point == "in-place" else out, "new")


@pytest.mark.parametrize("point, expect", [
    ("before-exchange", "old"), ("after-exchange", "new"), ("between-renames", "old")])
def test_a_killed_run_leaves_a_program_and_the_next_run_cleans_up(tmp_path, point, expect):
    """Item 10: a kill between the two renames left -o missing (the old program only inside
    .out.old-*), and .out.tmp-* of killed runs were never cleaned up."""
    out = tmp_path / "out"
    save(out, "old")
    (out / "notes.txt").write_text("mine")
    child = mp.get_context("fork").Process(target=_killed_run, args=(out, point))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    left = leftovers(tmp_path)
    assert left  # the killed run's temp (or old) directory
    if point == "between-renames":
        assert not out.exists()  # the one moment the fallback cannot avoid ...
    else:
        assert tag_of(out) == expect  # ... while the exchange never leaves out missing
    w = save(out, "next")  # the next run restores / cleans, then writes
    assert tag_of(out) == "next" and (out / "notes.txt").read_text() == "mine"
    assert leftovers(tmp_path) == [] and sorted(w.cleaned) and all(
        any(c.startswith(x) for c in w.cleaned) for x in left)


def test_a_killed_in_place_run_is_cleaned_by_the_next(tmp_path, monkeypatch):
    out = tmp_path / "out"
    save(out, "old")
    child = mp.get_context("fork").Process(target=_killed_run, args=(out, "in-place"))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert leftovers(out)  # the stage inside out
    monkeypatch.chdir(out)
    w = save(".", "next")
    assert tag_of(out) == "next" and leftovers(tmp_path, out) == [] and w.cleaned


def test_leftovers_of_a_live_run_are_not_touched(tmp_path):
    out = tmp_path / "out"
    save(out, "old")
    live = tmp_path / f".out.tmp-{outdir._tag()}"  # this process: alive
    live.mkdir()
    legacy = tmp_path / ".out.tmp-k2j3x9a1"  # tempfile.mkdtemp name of an older version
    legacy.mkdir()
    w = save(out, "new")
    assert live.exists() and not legacy.exists() and w.cleaned == [str(legacy)]
    shutil.rmtree(live)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "x\0y"])
def test_file_names_must_be_plain(tmp_path, bad):
    with pytest.raises(ValueError, match="not a plain file name"):
        write_output_dir(tmp_path / "out", {bad: b"x"})
    assert not (tmp_path / "out").exists()


def test_a_reader_never_finds_the_program_missing(tmp_path):
    import threading

    out = tmp_path / "out"
    save(out, "0")
    stop, missing, seen = threading.Event(), [], set()

    def read():
        while not stop.is_set():
            try:
                seen.add(json.loads((out / "program.json").read_text())["tag"])
            except FileNotFoundError:
                missing.append(1)

    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(1, 30):
            save(out, str(i))
    finally:
        stop.set()
        t.join()
    assert not missing and len(seen) > 1
