"""CLI error paths: exit codes and one-line messages, never a traceback."""
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from tests.helpers import fixture


def cli(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "icl_compiler.cli", *map(str, args)],
                       capture_output=True, text=True, cwd=cwd, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r


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
    assert "my_cos" in r.stderr and "Cos" in r.stderr and "Supported ONNX ops" in r.stderr
    assert "MatMul" in r.stderr


def test_missing_model_file(tmp_path):
    r = cli(tmp_path / "nope.onnx")
    assert r.returncode == 3 and "no such file" in r.stderr


@pytest.mark.parametrize("args,needle", [
    ((), "required"),
    (("m.onnx", "--precision", "double"), "invalid choice"),
    (("m.onnx", "--max-context", "zero"), "invalid int"),
    (("m.onnx", "--bogus"), "unrecognized arguments"),
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
