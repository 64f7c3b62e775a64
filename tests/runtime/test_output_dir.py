"""The output directory as icl-compile and Program.save use it (runtime/outdir.py wired into
Program.save; issue 16 items 3, 4, 5 and 10): written atomically, only the compiler's files are
replaced and the user's are kept, a foreign directory is refused without --force, a symlinked -o
is written through, ``-o .`` replaces files in place, leftovers of killed runs are cleaned up,
and every file-system error exits 3 with one line naming the path and the OS reason, leaving
nothing behind."""
from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.errors import CompileError
from icl_compiler.runtime import outdir
from icl_compiler.runtime.outdir import OutputError
from tests.helpers import SMALL, SOFTMAX, fixture, leftovers, one_line, run_cli


def snapshot(d):
    return {f: (d / f).read_bytes() for f in sorted(os.listdir(d))}


# ---------------------------------------------------------------------------------------------
# through the CLI

def test_success_writes_the_program_and_no_temporaries(tmp_path, capsys):
    src, _, _ = fixture(SMALL)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, src, "-o", out)
    assert code == 0, err
    assert {"report.json", "program.json", "weights.npz", "partition.svg"} == set(os.listdir(out))
    assert json.loads((out / "report.json").read_text())["precision"] == "float"
    assert not leftovers(tmp_path)
    icl.load(out)


def test_softmax_model_exits_3_and_leaves_no_output_dir(tmp_path, capsys):
    src, _, _ = fixture(SOFTMAX)
    out = tmp_path / "sub" / "out"
    code, _, err = run_cli(capsys, src, "-o", out)
    line = one_line(err)
    assert code == 3 and "cannot compile" in line and "Softmax" in line
    assert not out.exists() and not (tmp_path / "sub").exists()


def test_failure_keeps_a_previous_program_intact(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, _ = run_cli(capsys, fixture(SMALL)[0], "-o", out)
    assert code == 0
    before = snapshot(out)
    code, _, err = run_cli(capsys, fixture(SOFTMAX)[0], "-o", out)
    assert code == 3 and "Softmax" in one_line(err)
    assert snapshot(out) == before
    assert not leftovers(tmp_path)


def test_rerun_keeps_the_users_files_and_replaces_only_the_compilers(tmp_path, capsys):
    """Item 3: a re-run deleted everything the user kept in OUT."""
    out = tmp_path / "out"
    np.save(tmp_path / "x.npy", fixture(SMALL)[1])
    assert run_cli(capsys, fixture(SMALL)[0], "-o", out, "--run", tmp_path / "x.npy")[0] == 0
    assert (out / "output.npy").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "data").mkdir()
    (out / "data" / "x.npy").write_bytes(b"precious")
    old_program = (out / "program.json").read_bytes()
    assert run_cli(capsys, fixture(SMALL)[0], "-o", out, "--precision", "fixed")[0] == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "data" / "x.npy").read_bytes() == b"precious"
    assert (out / "program.json").read_bytes() != old_program
    assert icl.load(out).precision == "fixed"
    assert not (out / "output.npy").exists(), "an output of the previous program is removed"
    assert not leftovers(tmp_path)


def test_a_foreign_directory_is_refused_and_force_keeps_its_files(tmp_path, capsys):
    """Item 3: --force deleted the user's files."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    code, stdout, err = run_cli(capsys, fixture(SMALL)[0], "-o", out)
    line = one_line(err)
    assert code == 3 and "not empty and holds no previous program" in line and "--force" in line
    assert str(out) in line and stdout == "", "refused before compiling (no report printed)"
    assert os.listdir(out) == ["thesis.tex"] and (out / "thesis.tex").read_text() == "precious"
    assert not leftovers(tmp_path)
    code, _, _ = run_cli(capsys, fixture(SMALL)[0], "-o", out, "--force")
    assert code == 0 and (out / "program.json").is_file()
    assert (out / "thesis.tex").read_text() == "precious", "--force adds, it does not delete"


def test_empty_existing_directory_is_used(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert run_cli(capsys, fixture(SMALL)[0], "-o", out)[0] == 0
    assert (out / "program.json").is_file()


def test_output_path_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a dir")
    code, _, err = run_cli(capsys, fixture(SMALL)[0], "-o", out)
    line = one_line(err)
    assert code == 3 and f"cannot write output directory {out}" in line
    assert "exists and is not a directory" in line
    assert out.read_text() == "not a dir"


def test_a_symlinked_out_is_written_through(tmp_path, capsys):
    """Item 4: -o link replaced the symlink by a directory (the link's target kept the old
    program)."""
    real = tmp_path / "runs" / "today"
    real.mkdir(parents=True)
    link = tmp_path / "out"
    link.symlink_to(real)
    assert run_cli(capsys, fixture(SMALL)[0], "-o", link)[0] == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert (real / "program.json").is_file()
    (real / "notes.txt").write_text("mine")
    assert run_cli(capsys, fixture(SMALL)[0], "-o", link, "--precision", "fixed")[0] == 0
    assert link.is_symlink() and icl.load(real).precision == "fixed"
    assert (real / "notes.txt").read_text() == "mine"
    assert not leftovers(tmp_path) and not leftovers(tmp_path / "runs")


def test_a_dangling_symlink_is_refused(tmp_path, capsys):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    code, _, err = run_cli(capsys, fixture(SMALL)[0], "-o", link)
    line = one_line(err)
    assert code == 3 and "symlink" in line and "does not exist" in line
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


def test_dot_replaces_files_in_place(tmp_path, capsys, monkeypatch):
    """Item 5: -o . crashed and left an empty ..old-* directory."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    ino = os.stat(".").st_ino
    assert run_cli(capsys, fixture(SMALL)[0], "-o", ".")[0] == 0
    (out / "notes.txt").write_text("mine")
    assert run_cli(capsys, fixture(SMALL)[0], "-o", ".", "--precision", "fixed")[0] == 0
    assert os.stat(".").st_ino == ino and icl.load(".").precision == "fixed"
    assert (out / "notes.txt").read_text() == "mine"
    assert not leftovers(out) and not leftovers(tmp_path)


def test_leftovers_of_a_killed_run_are_cleaned_by_the_next(tmp_path, capsys):
    """Item 10: .out.tmp-* of killed runs were never cleaned up."""
    out = tmp_path / "out"
    assert run_cli(capsys, fixture(SMALL)[0], "-o", out)[0] == 0
    dead = tmp_path / ".out.tmp-999999999-1-deadbeef"  # no such process
    dead.mkdir()
    (dead / "weights.npz").write_bytes(b"half")
    assert run_cli(capsys, fixture(SMALL)[0], "-o", out)[0] == 0
    assert not dead.exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("how, err", [("write", errno.ENOSPC), ("mkdir", errno.EROFS),
                                      ("exchange", errno.EACCES)])
def test_file_system_errors_exit_3_with_one_line(tmp_path, capsys, monkeypatch, how, err):
    """Item 5: read-only or full file systems ended in a traceback and exit 1."""
    out = tmp_path / "out"
    assert run_cli(capsys, fixture(SMALL)[0], "-o", out)[0] == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    target, name = (outdir, "_exchange") if how == "exchange" else (os, how)
    orig = getattr(target, name)

    def fail(*a, **k):
        if how == "write" and a and a[0] in (0, 1, 2):  # the terminal, not a file
            return orig(*a, **k)
        raise OSError(err, os.strerror(err), str(a[0]) if how != "write" else None)

    monkeypatch.setattr(target, name, fail)
    code, _, e = run_cli(capsys, fixture(SMALL)[0], "-o", out)
    monkeypatch.undo()
    line = one_line(e)
    assert code == 3 and line.startswith(f"icl-compile: cannot write output directory {out}: "
                                         f"{os.strerror(err)}")
    assert snapshot(out) == before and not leftovers(tmp_path)


def test_a_real_read_only_location_exits_3(tmp_path, capsys):
    # /sys refuses new entries (EPERM, or EROFS where sysfs is mounted read-only), even for root
    code, _, err = run_cli(capsys, fixture(SMALL)[0], "-o", "/sys/icl-out-test")
    line = one_line(err)
    assert code == 3 and "/sys/icl-out-test" in line
    assert "Operation not permitted" in line or "Read-only file system" in line


# ---------------------------------------------------------------------------------------------
# Program.save

@pytest.fixture(scope="module")
def small_program():
    return icl.compile(str(fixture(SMALL)[0]), max_context=16)


def _disk_full(monkeypatch, exc=None):
    def boom(path, **arrays):
        open(path, "wb").write(b"PK half")
        raise exc or OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("icl_compiler.runtime.program.np.savez_compressed", boom)


def test_save_failing_midway_leaves_nothing(tmp_path, small_program, monkeypatch):
    _disk_full(monkeypatch)
    with pytest.raises(OutputError, match=rf"^cannot write output directory {tmp_path / 'out'}: "
                                          r"No space left on device"):
        small_program.save(tmp_path / "out")
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_failed_save_removes_the_parent_folders_it_created(tmp_path, small_program, monkeypatch):
    (tmp_path / "a").mkdir()
    _disk_full(monkeypatch)
    with pytest.raises(OutputError, match="No space left on device"):
        small_program.save(tmp_path / "a" / "b" / "c" / "out")
    assert os.listdir(tmp_path) == ["a"] and os.listdir(tmp_path / "a") == []


def test_interrupt_during_save_leaves_nothing(tmp_path, small_program, monkeypatch):
    _disk_full(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        small_program.save(tmp_path / "out")
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_save_failing_midway_keeps_the_previous_program(tmp_path, small_program, monkeypatch):
    out = small_program.save(tmp_path / "out")
    before = snapshot(out)
    _disk_full(monkeypatch)
    with pytest.raises(OutputError):
        small_program.save(out)
    assert snapshot(out) == before and not leftovers(tmp_path)


def test_failed_swap_restores_the_previous_program(tmp_path, small_program, monkeypatch):
    out = small_program.save(tmp_path / "out")
    before = snapshot(out)

    def no_exchange(a, b):
        raise OSError(errno.EINVAL, "unsupported")  # the fallback: two renames

    real_rename, calls = os.rename, []

    def flaky_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the rename of the new program into place
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(src))
        return real_rename(src, dst)

    monkeypatch.setattr(outdir, "_exchange", no_exchange)
    monkeypatch.setattr(outdir.os, "rename", flaky_rename)
    with pytest.raises(OutputError, match="Input/output error"):
        small_program.save(out)
    monkeypatch.undo()
    assert out.is_dir() and snapshot(out) == before and not leftovers(tmp_path)


def test_foreign_program_json_does_not_count_as_a_previous_program(tmp_path, small_program):
    out = tmp_path / "out"
    out.mkdir()
    (out / "program.json").write_text('{"something": "else"}')
    with pytest.raises(CompileError, match="--force"):
        small_program.save(out)
    assert (out / "program.json").read_text() == '{"something": "else"}'


def test_a_fifo_named_program_json_is_not_waited_for(tmp_path, small_program):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "program.json")  # reading it to see whether it is a program would block
    with pytest.raises(OutputError, match="holds no previous program"):
        small_program.save(out)


def test_save_returns_the_path_as_given(tmp_path, small_program):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert small_program.save(tmp_path / "link") == tmp_path / "link"
    assert icl.load(tmp_path / "link").report == icl.load(real).report
