"""External data: only regular files inside the model's folder, complete, and under a size cap.

Every refusal is a CompileError (exit 3 through the CLI) whose one-line message names the tensor.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from icl_compiler.errors import CompileError
from icl_compiler.frontend import import_model, load_onnx
from icl_compiler.ir.interpreter import run
from tests.helpers import cli

W = np.arange(16, dtype=np.float32).reshape(4, 4) / 10
B = np.linspace(-1, 1, 4).astype(np.float32)


def _model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"], name="mm"),
             helper.make_node("Add", ["xw", "B"], ["y"], name="add")]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def save_external(folder: Path, location: str = "w.data", *, write_data: bool = True,
                  data_path: str = "w.data") -> tuple[Path, onnx.ModelProto]:
    """Write ``folder/m.onnx`` with both tensors in one external file, and the data bytes to
    ``folder/data_path``.  The location string is stored verbatim, so it may point anywhere."""
    folder.mkdir(parents=True, exist_ok=True)
    m = _model()
    blob = b""
    for t in m.graph.initializer:
        raw = t.raw_data
        set_external_data(t, location=location, offset=len(blob), length=len(raw))
        t.ClearField("raw_data")
        blob += raw
    if write_data:
        (folder / data_path).parent.mkdir(parents=True, exist_ok=True)
        (folder / data_path).write_bytes(blob)
    p = folder / "m.onnx"
    p.write_bytes(m.SerializeToString())
    return p, m


def set_entry(p: Path, tensor: str, key: str, value: str) -> None:
    m = onnx.load(str(p), load_external_data=False)
    t = next(t for t in m.graph.initializer if t.name == tensor)
    for e in t.external_data:
        if e.key == key:
            e.value = value
            break
    else:
        e = t.external_data.add()
        e.key, e.value = key, value
    p.write_bytes(m.SerializeToString())


def refused(p, needle: str, tensor: str = "W", **kw) -> str:
    with pytest.raises(CompileError) as ei:
        load_onnx(p, **kw)
    msg = str(ei.value)
    assert needle in msg, msg
    assert f"tensor {tensor!r}" in msg, msg
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------------
# accepted

def test_external_data_inside_the_folder_loads(tmp_path):
    p, _ = save_external(tmp_path / "model")
    g = import_model(load_onnx(p))
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    assert np.allclose(run(g, {"x": x})["y"], x @ W + B, atol=1e-6)


def test_external_data_in_a_subfolder_loads(tmp_path):
    p, _ = save_external(tmp_path / "model", "sub/w.data", data_path="sub/w.data")
    import_model(load_onnx(p))


def test_model_path_may_be_relative(tmp_path, monkeypatch):
    save_external(tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    import_model(load_onnx("model/m.onnx"))


# ---------------------------------------------------------------------------------------------
# locations that leave the model's folder

def test_dotdot_is_refused_even_if_the_file_exists(tmp_path):
    save_external(tmp_path)  # tmp_path/w.data exists: the escape would succeed
    p, _ = save_external(tmp_path / "model", "../w.data", write_data=False)
    msg = refused(p, "'..'")
    assert "'../w.data'" in msg


@pytest.mark.parametrize("loc", ["sub/../../w.data", "..\\w.data", "./../w.data"])
def test_hidden_dotdot_is_refused(tmp_path, loc):
    save_external(tmp_path)
    p, _ = save_external(tmp_path / "model", loc, write_data=False)
    (tmp_path / "model" / "sub").mkdir()
    refused(p, "'..'")


def test_absolute_path_is_refused(tmp_path):
    save_external(tmp_path / "elsewhere")
    target = str((tmp_path / "elsewhere" / "w.data").resolve())
    p, _ = save_external(tmp_path / "model", target, write_data=False)
    refused(p, "must be a relative path")


def test_home_relative_path_is_refused(tmp_path):
    p, _ = save_external(tmp_path / "model", "~/w.data", write_data=False)
    refused(p, "must be a relative path")


def test_symlink_pointing_outside_is_refused(tmp_path):
    save_external(tmp_path / "elsewhere")
    p, _ = save_external(tmp_path / "model", "w.data", write_data=False)
    os.symlink(tmp_path / "elsewhere" / "w.data", tmp_path / "model" / "w.data")
    refused(p, "resolves outside the model's folder")


def test_symlinked_directory_pointing_outside_is_refused(tmp_path):
    save_external(tmp_path / "elsewhere")
    p, _ = save_external(tmp_path / "model", "sub/w.data", write_data=False)
    os.symlink(tmp_path / "elsewhere", tmp_path / "model" / "sub")
    refused(p, "resolves outside the model's folder")


def test_symlink_inside_the_folder_is_refused_clearly(tmp_path):
    # onnx itself refuses to read through symbolic links; say so instead of an onnx error
    folder = tmp_path / "model"
    p, _ = save_external(folder, "link.data")
    os.symlink("w.data", folder / "link.data")
    refused(p, "symbolic link")


def test_nul_byte_in_location(tmp_path):
    p, _ = save_external(tmp_path / "model", "w.data\0../../etc/passwd")
    refused(p, "must be a relative path")


# ---------------------------------------------------------------------------------------------
# missing, short or inconsistent data

def test_missing_data_file(tmp_path):
    p, _ = save_external(tmp_path / "model", write_data=False)
    refused(p, "is missing")


def test_directory_instead_of_data_file(tmp_path):
    p, _ = save_external(tmp_path / "model", write_data=False)
    (tmp_path / "model" / "w.data").mkdir()
    refused(p, "is not a regular file")


def test_fifo_instead_of_data_file_does_not_hang(tmp_path):
    p, _ = save_external(tmp_path / "model", write_data=False)
    os.mkfifo(tmp_path / "model" / "w.data")
    refused(p, "is not a regular file")


def test_short_data_file(tmp_path):
    p, _ = save_external(tmp_path / "model")
    data = (tmp_path / "model" / "w.data").read_bytes()
    (tmp_path / "model" / "w.data").write_bytes(data[:70])  # W is 64 bytes, B needs 16 more
    msg = refused(p, "is shorter than offset+length", tensor="B")
    assert "64+16 > 70 bytes" in msg


def test_empty_data_file(tmp_path):
    p, _ = save_external(tmp_path / "model")
    (tmp_path / "model" / "w.data").write_bytes(b"")
    refused(p, "is shorter than offset+length")


def test_length_that_does_not_fit_the_shape(tmp_path):
    p, _ = save_external(tmp_path / "model")
    set_entry(p, "W", "length", "32")
    refused(p, "holds 32 bytes but its shape [4, 4] needs 64")


@pytest.mark.parametrize("key,value,needle", [
    ("offset", "abc", "bad external data offset/length"),
    ("length", "1e3", "bad external data offset/length"),
    ("offset", "-8", "negative external data offset/length"),
    ("offset", str(2**40), "is shorter than offset+length"),
    ("location", "", "has no location"),
])
def test_bad_entries(tmp_path, key, value, needle):
    p, _ = save_external(tmp_path / "model")
    set_entry(p, "W", key, value)
    refused(p, needle)


def test_modelproto_with_external_references_is_refused(tmp_path):
    p, _ = save_external(tmp_path / "model")
    m = onnx.load(str(p), load_external_data=False)
    with pytest.raises(CompileError, match="pass the .onnx path, not a ModelProto"):
        load_onnx(m)


# ---------------------------------------------------------------------------------------------
# size cap

def test_size_cap_is_enforced_before_reading(tmp_path):
    p, _ = save_external(tmp_path / "model")
    msg = refused(p, "exceeds the size cap of 70 bytes", tensor="B", max_external_bytes=70)
    assert "80 bytes so far" in msg and "max_external_bytes" in msg


def test_size_cap_counts_every_tensor(tmp_path):
    p, _ = save_external(tmp_path / "model")
    load_onnx(p, max_external_bytes=80)  # exactly at the cap: fine
    refused(p, "size cap", tensor="B", max_external_bytes=79)


def test_huge_claimed_length_hits_cap_or_size_check(tmp_path):
    p, _ = save_external(tmp_path / "model")
    set_entry(p, "W", "length", str(2**62))
    refused(p, "is shorter than offset+length")


# ---------------------------------------------------------------------------------------------
# CLI: exit 3, one line, no output directory

def test_cli_refuses_escaping_external_data(tmp_path):
    save_external(tmp_path)
    p, _ = save_external(tmp_path / "model", "../w.data", write_data=False)
    out = tmp_path / "out"
    r = cli(p, "-o", out)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot compile" in lines[0] and "tensor 'W'" in lines[0], r.stderr
    assert "outside" in lines[0] or "'..'" in lines[0]
    assert not out.exists()


def test_cli_reports_missing_external_data(tmp_path):
    p, _ = save_external(tmp_path / "model", write_data=False)
    r = cli(p, "-o", tmp_path / "out")
    assert r.returncode == 3 and "is missing" in r.stderr and "tensor 'W'" in r.stderr
    assert not (tmp_path / "out").exists()


def test_checker_and_shape_inference_run_before_the_weights_are_read(tmp_path, monkeypatch):
    """The checker gets the file path and shape inference the graph whose initializers still point
    to their data, so neither serialises a copy of the weights; the weights are read once, after."""
    import onnx.external_data_helper as edh
    from icl_compiler.frontend import load as load_mod

    p, _ = save_external(tmp_path / "m")
    seen = []
    check, infer, read = onnx.checker.check_model, onnx.shape_inference.infer_shapes, \
        edh.load_external_data_for_model

    def spy_check(m, *a, **k):
        seen.append(("check", m if isinstance(m, str) else "proto"))
        return check(m, *a, **k)

    def spy_infer(m, *a, **k):
        seen.append(("infer", any(t.HasField("raw_data") for t in m.graph.initializer)))
        return infer(m, *a, **k)

    def spy_read(m, base):
        seen.append(("read", base))
        return read(m, base)

    monkeypatch.setattr(onnx.checker, "check_model", spy_check)
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", spy_infer)
    monkeypatch.setattr(edh, "load_external_data_for_model", spy_read)
    m = load_mod.load_onnx(p)
    assert seen == [("check", str(p)), ("infer", False), ("read", str(p.parent.resolve()))]
    w = next(t for t in m.graph.initializer if t.name == "W")
    np.testing.assert_array_equal(numpy_helper.to_array(w), W)
    assert m.graph.value_info or m.graph.output[0].type.tensor_type.shape.dim
