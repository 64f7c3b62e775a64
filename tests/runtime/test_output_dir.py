"""Hardening of the output directory: written atomically, a previous program is replaced or kept
intact, a failing or interrupted save leaves nothing behind, a foreign directory is never
overwritten."""
from __future__ import annotations

import json
import os

import pytest

import icl_compiler as icl
from icl_compiler.errors import CompileError
from icl_compiler.runtime import program as program_mod
from tests.helpers import SMALL, SOFTMAX, fixture, leftovers, one_line, run_cli

# ---------------------------------------------------------------------------------------------
# output directory atomicity

def test_success_writes_the_program_and_no_temporaries(tmp_path, capsys):
    src, _, _ = fixture(SMALL)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, src, "-o", out)
    assert code == 0, err
    assert {"report.json", "program.json", "weights.npz"} <= set(os.listdir(out))
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
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    code, _, err = run_cli(capsys, fixture(SOFTMAX)[0], "-o", out)
    assert code == 3 and "Softmax" in one_line(err)
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    assert not leftovers(tmp_path)


def test_previous_program_is_replaced_without_force(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(capsys, fixture(SMALL)[0], "-o", out)[0] == 0
    (out / "stale.txt").write_text("from an older run")
    assert run_cli(capsys, fixture(SMALL)[0], "-o", out)[0] == 0
    assert not (out / "stale.txt").exists(), "the directory is replaced as a whole"
    assert not leftovers(tmp_path)


def test_non_empty_foreign_directory_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    code, _, err = run_cli(capsys, fixture(SMALL)[0], "-o", out)
    line = one_line(err)
    assert code == 3 and "not empty and holds no previous program" in line and "--force" in line
    assert os.listdir(out) == ["thesis.tex"] and (out / "thesis.tex").read_text() == "precious"
    assert not leftovers(tmp_path)
    code, _, _ = run_cli(capsys, fixture(SMALL)[0], "-o", out, "--force")
    assert code == 0 and (out / "program.json").is_file() and not (out / "thesis.tex").exists()


def test_empty_existing_directory_is_used(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert run_cli(capsys, fixture(SMALL)[0], "-o", out)[0] == 0
    assert (out / "program.json").is_file()


def test_output_path_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a dir")
    code, _, err = run_cli(capsys, fixture(SMALL)[0], "-o", out)
    assert code == 3 and "exists and is not a directory" in one_line(err)
    assert out.read_text() == "not a dir"


@pytest.fixture(scope="module")
def small_program():
    return icl.compile(str(fixture(SMALL)[0]), max_context=16)


def test_save_failing_midway_leaves_nothing(tmp_path, small_program, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(program_mod.np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        small_program.save(tmp_path / "out")
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_failed_save_removes_the_parent_folders_it_created(tmp_path, small_program, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    (tmp_path / "a").mkdir()
    monkeypatch.setattr(program_mod.np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        small_program.save(tmp_path / "a" / "b" / "c" / "out")
    assert os.listdir(tmp_path) == ["a"] and os.listdir(tmp_path / "a") == []


def test_interrupt_during_save_leaves_nothing(tmp_path, small_program, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(program_mod.np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        small_program.save(tmp_path / "out")
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_save_failing_midway_keeps_the_previous_program(tmp_path, small_program, monkeypatch):
    out = small_program.save(tmp_path / "out")
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(program_mod.np, "savez_compressed", boom)
    with pytest.raises(OSError):
        small_program.save(out)
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    assert not leftovers(tmp_path)


def test_failed_swap_restores_the_previous_program(tmp_path, small_program, monkeypatch):
    out = small_program.save(tmp_path / "out")
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    real_rename = os.rename
    calls = []

    def flaky_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the rename of the new program into place
            raise OSError("rename failed")
        return real_rename(src, dst)

    monkeypatch.setattr(program_mod.os, "rename", flaky_rename)
    with pytest.raises(OSError):
        small_program.save(out)
    monkeypatch.setattr(program_mod.os, "rename", real_rename)
    assert out.is_dir() and {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    assert not leftovers(tmp_path)


def test_foreign_program_json_does_not_count_as_a_previous_program(tmp_path, small_program):
    out = tmp_path / "out"
    out.mkdir()
    (out / "program.json").write_text('{"something": "else"}')
    with pytest.raises(CompileError, match="--force"):
        small_program.save(out)
    assert (out / "program.json").read_text() == '{"something": "else"}'
