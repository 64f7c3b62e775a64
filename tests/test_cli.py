"""CLI error paths: exit codes and one-line messages, never a traceback."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.helpers import cli, fixture


def unsupported_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])
    node = helper.make_node("Cos", ["x"], ["y"], name="my_cos")
    m = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, path)


def test_not_an_onnx_file(tmp_path):
    p = tmp_path / "junk.onnx"
    p.write_text("this is not a protobuf at all " * 10)
    r = cli(p, "-o", tmp_path / "out")
    assert r.returncode == 3
    assert "cannot compile" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists(), "no half-written output"


def test_truncated_file(tmp_path):
    src, _, _ = fixture("tok_identity_trilmul_1l1h")
    data = src.read_bytes()
    p = tmp_path / "trunc.onnx"
    p.write_bytes(data[: len(data) // 2])
    r = cli(p, "-o", tmp_path / "out")
    assert r.returncode == 3, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unsupported_op_names_node_and_supported_list(tmp_path):
    p = tmp_path / "cos.onnx"
    unsupported_model(p)
    r = cli(p, "-o", tmp_path / "out")
    assert r.returncode == 3
    assert "no causal softmax-free attention" in r.stderr
    assert "my_cos" in r.stderr and "Cos" in r.stderr
    r = cli(p, "-o", tmp_path / "out", "--explain")  # every problem, one per line
    assert r.returncode == 3
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3 and "my_cos" in lines[2] and "Relu" in lines[2]


def test_missing_model_file(tmp_path):
    r = cli(tmp_path / "nope.onnx")
    assert r.returncode == 3 and "no such file" in r.stderr


@pytest.mark.parametrize("args,needle", [
    ((), "required"),
    (("m.onnx", "--precision", "double"), "invalid choice"),
    (("m.onnx", "--max-context", "zero"), "invalid int"),
    (("m.onnx", "--bogus"), "unrecognized arguments"),
    (("m.onnx", "--weight-bits", "12"), "invalid choice"),
    (("m.onnx", "--error-target", "lots"), "invalid float"),
])
def test_usage_errors_exit_2(args, needle):
    r = cli(*args)
    assert r.returncode == 2 and needle in r.stderr


def test_bad_run_file_is_usage_error(tmp_path):
    src, _, _ = fixture("tok_identity_trilmul_1l1h")
    r = cli(src, "--run", tmp_path / "missing.npy", "-o", tmp_path / "o")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_help_explains_exit_codes():
    r = cli("--help")
    assert r.returncode == 0 and "exit codes" in r.stdout and "--precision" in r.stdout


SOFTMAX_FREE = "tok_relu_perhead_fillneginf_1l2h"


def test_softmax_model_exits_3_naming_the_softmax_node(tmp_path):
    src, _, _ = fixture("tok_softmax_2h")
    r = cli(src, "-o", tmp_path / "out")
    assert r.returncode == 3
    assert "/blocks.0/attn/Softmax" in r.stderr and "softmax-free" in r.stderr
    assert not (tmp_path / "out").exists()


def test_compile_run_verify_writes_program(tmp_path):
    src, x, _ = fixture(SOFTMAX_FREE)
    np.save(tmp_path / "x.npy", x)
    r = cli(src, "-o", tmp_path / "out", "--precision", "fixed", "--calibrate", tmp_path / "x.npy",
            "--run", tmp_path / "x.npy", "--verify")
    assert r.returncode == 0, r.stderr
    assert "verification against onnxruntime on --run data" in r.stdout and "-> ok" in r.stdout
    out = tmp_path / "out"
    for f in ("report.json", "program.json", "weights.npz", "output.npy"):
        assert (out / f).is_file()
    y = np.load(out / "output.npy")
    assert y.shape == (x.shape[0], x.shape[1], 20)
    rep = json.loads((out / "report.json").read_text())
    assert rep["verification"]["ok"] and rep["precision"] == "fixed"


def test_auto_weight_bits_choose_16_for_an_ill_conditioned_model(tmp_path):
    src, x, _ = fixture("dyn_feat_relu_trilmul_2l2h_rms_ext")
    np.save(tmp_path / "x.npy", x)
    r = cli(src, "-o", tmp_path / "out", "--precision", "fixed", "--calibrate", tmp_path / "x.npy",
            "--max-context", 16, "--verify")
    assert r.returncode == 0, r.stderr
    assert "> target 5.00%, so 16-bit" in r.stdout and "-> ok" in r.stdout
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["quantisation"]["weight_bits"] == 16 and rep["quantisation"]["kv_bits"] == 16
    r = cli(src, "-o", tmp_path / "o8", "--precision", "fixed", "--calibrate", tmp_path / "x.npy",
            "--max-context", 16, "--weight-bits", 8, "--verify")
    assert r.returncode == 4 and "verification failed" in r.stderr
    r = cli(src, "-o", tmp_path / "o3", "--precision", "fixed", "--max-context", 16,
            "--error-target", "-1")
    assert r.returncode == 2 and "error_target" in r.stderr


def test_verification_failure_exits_4(tmp_path):
    src, _, _ = fixture(SOFTMAX_FREE)
    r = cli(src, "-o", tmp_path / "out", "--precision", "fixed", "--verify", "--tolerance", "1e-9")
    assert r.returncode == 4 and "verification failed" in r.stderr


def test_dump_ir_after_a_pass_and_unknown_pass(tmp_path):
    src, _, _ = fixture(SOFTMAX_FREE)
    r = cli(src, "-o", tmp_path / "out", "--dump-ir", "attention")
    assert r.returncode == 0 and "PlasticAttention(" in r.stdout
    r = cli(src, "-o", tmp_path / "out2", "--dump-ir", "nonsense")
    assert r.returncode == 2 and "fuse_linear" in r.stderr


def test_non_empty_foreign_directory_needs_force(tmp_path):
    src, _, _ = fixture(SOFTMAX_FREE)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = cli(src, "-o", out)
    assert r.returncode == 3 and "--force" in r.stderr
    assert (out / "notes.txt").read_text() == "mine"
    r = cli(src, "-o", out, "--force")
    assert r.returncode == 0 and (out / "report.json").is_file()


@pytest.mark.lava
def test_lava_backend_run_matches_numpy(tmp_path):
    pytest.importorskip("lava")
    src, x, _ = fixture(SOFTMAX_FREE)
    np.save(tmp_path / "x.npy", x[:1, :4])
    outs = []
    for backend in ("numpy", "lava"):
        r = cli(src, "-o", tmp_path / backend, "--precision", "fixed", "--calibrate",
                tmp_path / "x.npy", "--run", tmp_path / "x.npy", "--backend", backend)
        assert r.returncode == 0, r.stderr
        outs.append(np.load(tmp_path / backend / "output.npy"))
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.lava
def test_lava_timeout_is_one_line_exit_1(tmp_path):
    pytest.importorskip("lava")
    src, x, _ = fixture(SOFTMAX_FREE)
    np.save(tmp_path / "x.npy", x[:1, :4])
    r = cli(src, "-o", tmp_path / "o", "--run", tmp_path / "x.npy", "--backend", "lava",
            "--timeout", "0.01")
    assert r.returncode == 1 and "timeout" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, said", [(["m.onnx", "--precision", "fixed"], True),
                                        (["m.onnx", "--run", "x.npy"], True),
                                        (["m.onnx", "--verify"], True),
                                        (["m.onnx"], False)])  # (no emulator run: no note)
def test_narrow_blas_kernels_are_one_note_line(monkeypatch, capsys, argv, said):
    import warnings

    from icl_compiler import cli as cli_mod
    from icl_compiler.semantics import blas

    monkeypatch.setattr(blas, "advice", lambda: ("SkylakeX", "numpy's OpenBLAS chose Prescott"))
    with warnings.catch_warnings():
        cli_mod.silence_slow_kernels()
        with warnings.catch_warnings(record=True) as seen:  # (the emulator's warning: silenced)
            warnings.warn("x", blas.SlowKernelsWarning, stacklevel=1)
        cli_mod._note_blas_kernels(cli_mod.build_parser().parse_args(argv))
    err = capsys.readouterr().err
    assert err == ("note: numpy's OpenBLAS chose Prescott\n" if said else "") and not seen


def test_the_note_comes_after_a_successful_run(tmp_path):
    """In a real run the note (where this host's kernels fall short) is the only stderr line,
    after the report and the files: never before an error, which stays the first line."""
    from icl_compiler.runtime.program import slow_kernels_note

    src, x, _ = fixture(SOFTMAX_FREE)
    np.save(tmp_path / "x.npy", x[:1, :4])
    r = cli(src, "-o", tmp_path / "o", "--run", tmp_path / "x.npy")
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr  # (Python's two-line warning format: never)
    note = slow_kernels_note()
    assert r.stderr.strip() == (f"note: {note}" if note else "")
