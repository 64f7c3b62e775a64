"""Float Range over a dynamic length: torch.arange(T, dtype=float32) (Cast of the dim, then a
float Range), torch.arange(0, T).float() (int Range, then Cast), float bounds with arithmetic
on the cast dim, and a float Range of constants, feeding a sinusoidal table computed at run time."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP

import icl_compiler as icl
from icl_compiler.backends.lava import lava_available
from icl_compiler.errors import CompileError
from icl_compiler.frontend import import_model as import_onnx
from icl_compiler.ir.interpreter import run as run_graph
from tests.onnx_builder import Net, ort_run, rel_err

D = 8


def positions(n: Net, kind: str) -> str:
    T = n.seq_len()
    Tf = n.op("Cast", T, to=TP.FLOAT)
    if kind == "cast_then_range":  # torch.arange(T, dtype=torch.float32)
        return n.op("Range", n.c(0.0), Tf, n.c(1.0))
    if kind == "range_then_cast":  # torch.arange(0, T).float()
        return n.op("Cast", n.op("Range", n.i64(0), T, n.i64(1)), to=TP.FLOAT)
    if kind == "half_steps":  # arange(0.5, T/2 + 0.25, 0.5): exact count T, float start/delta
        lim = n.op("Add", n.op("Div", Tf, n.c(2.0)), n.c(0.25))
        return n.op("Range", n.c(0.5), lim, n.c(0.5))
    if kind == "int_start_float_limit":  # Range(1.0, Tf + 1, 1.0): positions 1..T
        return n.op("Range", n.c(1.0), n.op("Add", Tf, n.c(1.0)), n.c(1.0))
    raise ValueError(kind)


def sinusoid_model(kind: str, t="T"):
    n = Net(d=D, t=t)
    r = positions(n, kind)
    inv = 1.0 / (10000 ** (np.arange(0, D, 2) / D))
    ang = n.op("Mul", n.op("Unsqueeze", r, n.i64([1])), n.c(inv))  # outer(pos, inv_freq)
    pe = n.op("Concat", n.op("Sin", ang), n.op("Cos", ang), axis=-1)
    h = n.op("Add", n.linear("x", D, D), pe)
    return n.model(n.op("Add", h, n.attention(h)))


X = np.random.default_rng(1).normal(size=(1, 6, D)).astype(np.float32)
KINDS = ["cast_then_range", "range_then_cast", "half_steps", "int_start_float_limit"]


@pytest.mark.parametrize("kind", KINDS)
def test_import_matches_onnxruntime_at_several_lengths(kind):
    m = sinusoid_model(kind)
    g = import_onnx(m)
    for T in (1, 3, 6):
        x = X[:, :T]
        got = run_graph(g, {"x": x})[g.outputs[0]]
        assert got.shape == (1, T, D)
        assert rel_err(got, ort_run(m, x)) < 1e-5


@pytest.mark.parametrize("kind, t", [("cast_then_range", "T"), ("cast_then_range", 6),
                                     ("half_steps", "T"), ("range_then_cast", "T")])
def test_compiles_float_and_fixed(kind, t):
    m = sinusoid_model(kind, t)
    ref = ort_run(m, X)
    ctx = 16 if t == "T" else None
    assert rel_err(icl.compile(m, max_context=ctx).run(X), ref) < 1e-4
    fixed = icl.compile(m, precision="fixed", calibration=X, max_context=ctx)
    assert rel_err(fixed.run(X), ref) < 0.05


def test_count_is_exact_and_constant_float_range_folds():
    n = Net(d=D, t=6)
    r = n.op("Range", n.c(0.0), n.c(6.0), n.c(1.0))  # a float Range of constants (no folding)
    pe = n.op("Mul", n.op("Unsqueeze", r, n.i64([1])), n.c(np.full(D, 0.1)))
    m = n.model(n.op("Add", n.linear("x", D, D), pe))
    g = import_onnx(m)
    assert not any(nd.op == "Range" for nd in g.nodes.values())  # folded
    np.testing.assert_allclose(run_graph(g, {"x": X})[g.outputs[0]], ort_run(m, X), atol=1e-6)
    n = Net(d=D)
    r = n.op("Range", n.c(0.0), n.op("Cast", n.seq_len(), to=TP.FLOAT), n.c(0.0))
    with pytest.raises(CompileError, match="delta is 0"):
        import_onnx(n.model(n.op("Add", "x", n.op("Unsqueeze", r, n.i64([1])))))


@pytest.mark.lava
@pytest.mark.skipif(not lava_available(), reason="Lava is not available")
def test_fixed_lava_equals_numpy_bit_for_bit():
    prog = icl.compile(sinusoid_model("cast_then_range"), precision="fixed", calibration=X,
                       max_context=8)
    want = prog.run(X, backend="numpy", return_payload=True)
    assert np.count_nonzero(want) > want.size // 2
    np.testing.assert_array_equal(prog.run(X, backend="lava", return_payload=True), want)


def test_float_shape_arithmetic_keeps_fractions():
    """pos / (T / 2) and pos · (T / 2 − 1 / 2): fractional values of the dynamic length
    (truncating them would be off at odd T)."""
    n = Net(d=D)
    Tf = n.op("Cast", n.seq_len(), to=TP.FLOAT)
    half = n.op("Div", Tf, n.c(2.0))
    r = n.op("Range", n.c(0.0), Tf, n.c(1.0))
    a = n.op("Div", r, half)
    c = n.op("Unsqueeze", n.op("Identity", n.op("Sub", half, n.c(0.5))), n.i64([0]))
    c = n.op("Gather", n.op("Concat", n.c([0.25]), c, axis=0), n.i64(1), axis=0)
    b = n.op("Mul", r, c)  # through Identity, Unsqueeze, Concat, Gather: still T/2 − 1/2
    pe = n.op("Unsqueeze", n.op("Add", a, b), n.i64([1]))
    m = n.model(n.op("Add", "x", n.op("Mul", pe, n.c(np.full(D, 0.1)))))
    g = import_onnx(m)
    for T in (1, 2, 5):
        got = run_graph(g, {"x": X[:, :T]})[g.outputs[0]]
        np.testing.assert_allclose(got, ort_run(m, X[:, :T]), rtol=1e-6, atol=1e-6)
