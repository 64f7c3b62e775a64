"""ONNX's own backend node test cases (from onnx's case generators) through the frontend and the
tensor-IR interpreter: no case may crash or give wrong numbers.

Inputs that a case feeds as tensors but that the compiler needs at compile time (int/bool
operands: shapes, axes, indices, k) become initializers with the case's values; the float inputs
stay graph inputs.  A case may be refused with a CompileError (a dtype the IR lacks, a constant
model output ...), but one whose ops are all in the registry may only be refused for the reasons
listed in ``ALLOWED_REFUSALS``; LayerNormalization with its optional outputs and Dropout with its
mask output must import and compute the expected numbers.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from icl_compiler.errors import CompileError
from icl_compiler.frontend import SUPPORTED_OPS, import_model, load_onnx
from icl_compiler.ir.interpreter import run

ALLOWED_REFUSALS = ("element type", "ellipsis", "is a constant: the model ignores its input",
                    "is empty", "bad dimension 0")


@functools.lru_cache(maxsize=1)
def _cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(collect_testcases(None))


def _prepared(case):
    """(model with compile-time operands as initializers, data input names, their values,
    expected outputs), or None when the case has no float input or no tensor data."""
    if not case.data_sets:
        return None
    ins, outs = case.data_sets[0]
    ins, outs = list(ins), list(outs)
    if any(not isinstance(a, np.ndarray) for a in ins + outs):
        return None  # sequences / optionals
    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    inits = {t.name for t in m.graph.initializer}
    names = [v.name for v in m.graph.input if v.name not in inits]
    keep, vals = [], []
    for name, arr in zip(names, ins):
        if arr.dtype.kind in "iub" or arr.size == 0:
            m.graph.initializer.append(numpy_helper.from_array(arr, name))
        else:
            keep.append(name)
            vals.append(arr)
    if not keep:
        return None
    for v in list(m.graph.input):
        if v.name not in keep:
            m.graph.input.remove(v)
    return m, keep, vals, outs


def _run_case(case):
    """'ok', 'refused: <reason>', or raises AssertionError (a crash or wrong numbers)."""
    prep = _prepared(case)
    if prep is None:
        return "skipped"
    m, keep, vals, outs = prep
    try:
        g = import_model(load_onnx(m))
        got = run(g, dict(zip(keep, vals)))
    except CompileError as e:
        return f"refused: {e}"
    for o, want in zip([o.name for o in m.graph.output], outs):
        y = got[o]
        assert y.shape == want.shape, (case.name, o, y.shape, want.shape)
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(y.astype(np.float64), want.astype(np.float64), rtol=1e-3,
                                       atol=1e-5, equal_nan=True, err_msg=f"{case.name}: {o}")
        else:
            np.testing.assert_array_equal(y, want, err_msg=f"{case.name}: {o}")
    return "ok"


def test_every_node_case_imports_and_computes_or_is_refused_cleanly():
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in _cases():
            if any(n.domain not in ("", "ai.onnx") for n in case.model.graph.node):
                continue
            results[case.name] = _run_case(case)
    ok = sum(r == "ok" for r in results.values())
    assert ok > 1000, ok  # onnx 1.23: 1064 cases run through import and the interpreter
    registry = {c.name for c in _cases()
                if {n.op_type for n in c.model.graph.node} <= set(SUPPORTED_OPS)}
    bad = {n: r for n, r in results.items() if n in registry and r.startswith("refused")
           and not any(a in r for a in ALLOWED_REFUSALS)}
    assert not bad, bad


@pytest.mark.parametrize("prefix", ["test_layer_normalization", "test_dropout"])
def test_optional_outputs_import(prefix):
    cases = [c for c in _cases() if c.name.startswith(prefix) and _prepared(c) is not None]
    assert cases
    for c in cases:
        assert _run_case(c) == "ok", c.name
