"""The tensor-IR loader refuses hostile entries quickly: dims by a bounded grammar (no power
towers, bounded integers), dtypes from the IR's whitelist only (issue 16, item 9)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
import sympy

from icl_compiler.errors import CompileError
from icl_compiler.ir.dtypes import IR_DTYPES
from icl_compiler.ir.graph import Graph
from icl_compiler.ir.serialize import IRFileError, graph_from_json, graph_to_json, load_graph
from icl_compiler.ir.symbolic import dim_from_json, dim_to_json, sym


def _doc(dtype="float32", shape=("$seq", 4), attrs=None):
    g = Graph("t")
    g.add_value("x", [sym("seq"), 4], "float32")
    g.add_value("y", [sym("seq"), 4], "float32")
    g.add_node("Relu", ["x"], ["y"], name="relu")
    g.inputs, g.outputs = ["x"], ["y"]
    doc, tensors = graph_to_json(g)
    doc = json.loads(json.dumps(doc))
    doc["values"][0]["dtype"] = dtype
    doc["values"][0]["shape"] = list(shape)
    if attrs is not None:
        doc["nodes"][0]["attrs"] = attrs
    return doc, tensors


def test_power_tower_dim_is_refused_quickly():
    """"$9**9**9**9" made sympy compute for more than 20 s: run it in a child with a deadline."""
    code = ("import time; from icl_compiler.ir.symbolic import dim_from_json\n"
            "t = time.monotonic()\n"
            "try:\n    dim_from_json('$9**9**9**9')\nexcept ValueError as e:\n"
            "    print(round(time.monotonic() - t, 3), e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    secs, msg = r.stdout.split(" ", 1)
    assert float(secs) < 0.5
    assert "power" in msg and "exponent" in msg


@pytest.mark.parametrize("text, words", [
    ("$seq**9", "exponent"),
    ("$seq**(2*4)", "exponent"),
    ("$seq**seq", "exponent"),
    ("$2**63", "exponent"),
    ("$(2**8)**8", "out of range"),
    ("$(65536*65536)**2", "out of range"),
    ("$4294967296*4294967296", "out of range"),
    ("$-9223372036854775807 - 2", "out of range"),
    ("$99999999999999999999", "not a dimension"),
    ("$" + "9" * 300, "longer than"),
    ("$" + "+".join(["seq"] * 80), "longer than"),
    ("$floor(seq, 2)", "not a dimension"),
    ("$Rational(1, 0)", "not a dimension"),
    ("$Integer(seq)", "not a dimension"),
    ("$seq/0", "not a dimension"),
    ("$floor", "not a dimension"),
    ("$seq(1)", "not a dimension"),
    ("$seq.real", "not a dimension"),
    ('$__import__("os").getpid()', "not a dimension"),
    ("$(seq", "not a dimension"),
    ("$", "not a dimension"),
    ("seq", "not a dimension"),
])
def test_hostile_dims_are_refused_quickly(text, words):
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=words):
        dim_from_json(text)
    assert time.monotonic() - t0 < 0.5


@pytest.mark.parametrize("bad", [2**64, True, None, 1.5, [1]])
def test_non_dim_json_values_are_refused(bad):
    with pytest.raises(ValueError):
        dim_from_json(bad)


def test_every_form_the_compiler_writes_still_loads():
    s, b = sym("seq"), sym("batch")
    for d in (s, s * s, 1 / s, s**-2, s // 2, -(-s // 3), sympy.Max(s - 2, 0),
              sympy.ceiling((s - 1) / 2), sympy.Mod(s, 2), 3 * s / 2, b * s + 1, 5 - s,
              sympy.floor(s / b), sympy.Min(s, 7) * 2**40, s**8, 2**62 - 1 + s):
        assert dim_from_json(dim_to_json(d)) == d, d
    assert dim_from_json(7) == 7 and dim_from_json(f"${2**63 - 1}") == 2**63 - 1
    assert dim_from_json("$Integer(3) + Rational(1, 2)*2") == 4


def test_huge_string_dtype_is_refused_without_allocating():
    """A dtype "S1000000000" allocated a gigabyte; now it is refused by name first."""
    doc, tensors = _doc(dtype="S1000000000")
    tracemalloc.start()
    try:
        with pytest.raises(IRFileError, match=r"value 'x': dtype 'S1000000000' is not a "
                                              r"tensor-IR element type") as ei:
            graph_from_json(doc, tensors)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20
    assert isinstance(ei.value, CompileError) and "\n" not in str(ei.value)
    doc, tensors = _doc(attrs={"fill": {"$array": ["x"], "dtype": "S1000000000"}})
    tracemalloc.start()
    try:
        with pytest.raises(IRFileError, match=r"node 'relu': array dtype 'S1000000000'"):
            graph_from_json(doc, tensors)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


@pytest.mark.parametrize("dtype", ["object", "<f4", "float128", "complex64", "U10", "V8",
                                   "(1000000000,)f8", "datetime64[s]", 5, None])
def test_only_whitelisted_dtypes_load(dtype):
    doc, tensors = _doc(dtype=dtype)
    with pytest.raises(IRFileError, match="is not a tensor-IR element type"):
        graph_from_json(doc, tensors)


def test_bad_dim_in_a_value_names_the_value():
    doc, tensors = _doc(shape=("$9**9**9**9", 4))
    with pytest.raises(IRFileError, match=r"value 'x': dimension expression .* power"):
        graph_from_json(doc, tensors)


def test_constants_must_match_their_declared_value(tmp_path):
    g = Graph("t")
    g.add_value("x", [2], "float32")
    g.add_const(np.ones((2,), np.float32), name="c")
    g.add_value("y", [2], "float32")
    g.add_node("Add", ["x", "c"], ["y"], name="add")
    g.inputs, g.outputs = ["x"], ["y"]
    doc, tensors = graph_to_json(g)
    (tmp_path / "graph.json").write_text(json.dumps(doc))
    np.savez(tmp_path / "graph.npz", **{k: np.ones((3,), np.int64) for k in tensors})
    with pytest.raises(IRFileError, match=r"value 'c': constant 't0' is int64\[3\], declared "
                                          r"float32\[2\]"):
        load_graph(tmp_path)
    np.savez(tmp_path / "graph.npz", **tensors)
    assert np.array_equal(load_graph(tmp_path).values["c"].data, np.ones(2))


def test_malformed_entries_are_one_error_type():
    doc, tensors = _doc()
    del doc["values"][1]["shape"]
    with pytest.raises(IRFileError, match=r"value 'y': missing or malformed entry"):
        graph_from_json(doc, tensors)
    with pytest.raises(IRFileError, match="not a tensor IR file"):
        graph_from_json([], tensors)


def test_the_frontend_uses_the_ir_whitelist():
    from icl_compiler.frontend import decode, load

    assert decode.IR_DTYPES is IR_DTYPES and load.IR_DTYPES is IR_DTYPES
