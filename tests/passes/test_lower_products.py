"""Product neurons in the lowering (passes/lower/products.py): gated MLPs and rotary embeddings in
both layouts, built with onnx.helper, compiled end to end (float vs onnxruntime, fixed within 5 %),
and the structure they lower to: product populations whose port 1 is the other activation or
the one-hot position table."""
from __future__ import annotations

import numpy as np
import pytest
import icl_compiler as icl
from icl_compiler.errors import CompileError
from icl_compiler.ir.neuro import Encoding, NeuronModel, verify_neuro
from icl_compiler.passes.lower import lower
from icl_compiler.runtime.reference import onnxruntime_run
from tests.passes.common import B, Builder, T
from tests.passes.test_lower_layouts import G, _causal, _length

RNG = np.random.default_rng(11)
D, CTX = 8, 12


def _rotary_tables(interleaved: bool):
    inv = 1.0 / 10000 ** (np.arange(0, D, 2) / D)
    ang = np.arange(CTX)[:, None] * inv[None, :]  # [CTX, D/2]
    ang = np.repeat(ang, 2, axis=1) if interleaved else np.concatenate([ang, ang], axis=1)
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def _rope(g: G, x: str, T: str, interleaved: bool, computed: bool) -> str:
    """x·cos + rotate(x)·sin; rotate = rotate_half (half-split) or rotate_every_two
    (interleaved); cos/sin from a sliced constant table or computed from Range(T)."""
    if computed:  # HF: freqs = positions ⊗ inv_freq, emb = cat(freqs, freqs), cos(emb), sin(emb)
        pos = g.op("Cast", g.op("Range", g.c(np.array(0, np.int64)),
                                g.op("Squeeze", T, g.c(np.array([0], np.int64))),
                                g.c(np.array(1, np.int64))), to=1)
        inv = (1.0 / 10000 ** (np.arange(0, D, 2) / D)).astype(np.float32)
        fr = g.op("Mul", g.op("Unsqueeze", pos, g.c(np.array([1], np.int64))), g.c(inv[None]))
        emb = g.op("Concat", fr, fr, axis=-1)
        cos, sin = g.op("Cos", emb), g.op("Sin", emb)
    else:
        ct, st = _rotary_tables(interleaved)
        sl = lambda t: g.op("Slice", g.c(t), g.c(np.array([0], np.int64)), T,  # noqa: E731
                            g.c(np.array([0], np.int64)))
        cos, sin = sl(ct), sl(st)
    if interleaved:
        even = g.op("Slice", x, g.c(np.array([0], np.int64)), g.c(np.array([D], np.int64)),
                    g.c(np.array([2], np.int64)), g.c(np.array([2], np.int64)))
        odd = g.op("Slice", x, g.c(np.array([1], np.int64)), g.c(np.array([D], np.int64)),
                   g.c(np.array([2], np.int64)), g.c(np.array([2], np.int64)))
        pair = g.op("Concat", g.op("Unsqueeze", g.op("Neg", odd), g.c(np.array([-1], np.int64))),
                    g.op("Unsqueeze", even, g.c(np.array([-1], np.int64))), axis=-1)
        rot = g.op("Reshape", pair, g.c(np.array([0, 0, D], np.int64)))
    else:
        a, b = g.op("Split", x, g.c(np.array([D // 2, D // 2], np.int64)), axis=-1), None
        g.nodes[-1].output.append(f"{a}_b")
        b = f"{a}_b"
        rot = g.op("Concat", g.op("Neg", b), a, axis=-1)
    return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rot, sin))


def _model(interleaved=False, computed=False, gated="silu", rope=True):
    g = G(["batch", "seq", D])
    T = _length(g, "x", 1)
    q, k, v = (g.op("MatMul", "x", g.w(D, D)) for _ in range(3))
    if rope:
        q, k = _rope(g, q, T, interleaved, computed), _rope(g, k, T, interleaved, computed)
    s = g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 2, 1])),
             g.c(np.float32(0.3)))
    h = g.op("Add", "x", g.op("MatMul", _causal(g, s, T), v))
    if gated:
        a = g.op("MatMul", h, g.w(D, 2 * D))
        act = g.op("Mul", a, g.op("Sigmoid", a)) if gated == "silu" else g.op("Relu", a)
        up = g.op("Add", g.op("MatMul", h, g.w(D, 2 * D)), g.c(RNG.normal(size=2 * D).astype(
            np.float32)))
        h = g.op("Add", h, g.op("MatMul", g.op("Mul", act, up, name="/mlp/gate"),
                                g.w(2 * D, D)))
    return g.model(g.op("MatMul", h, g.w(D, 4)), ["batch", "seq", 4])


def _x(n=3, t=CTX):
    return RNG.normal(size=(n, t, D)).astype(np.float32)


@pytest.mark.parametrize("interleaved, computed", [(False, False), (True, False), (False, True)])
def test_rotary_embeddings_become_products_with_the_position_table(interleaved, computed):
    m = _model(interleaved, computed, gated=None)
    x = _x()
    prog = icl.compile(m, max_context=CTX)
    ref = onnxruntime_run(m, x)
    assert np.abs(prog.run(x) - ref).max() <= 1e-5 * np.abs(ref).max()
    ng = prog.ng
    (pos,) = [p for p in ng.populations() if p.encoding == Encoding.POSITION]
    prods = [p for p in ng.populations() if p.model == NeuronModel.PRODUCT]
    assert len(prods) == 4 and all(p.size == D for p in prods)  # q·cos, rot(q)·sin, k·…, k·…
    for p in prods:
        (b,) = [s for s in ng.incoming(p.name) if s.port == 1]
        assert b.pre == pos.name and b.weights.shape == (D, CTX)  # a column per position
    # the K written into the plastic synapses is the rotated k: the head's k population reads
    # only product neurons
    (h,) = ng.heads
    assert {ng.pop(s.pre).model for s in ng.incoming(h.k)} == {NeuronModel.PRODUCT}
    fixed = icl.compile(m, precision="fixed", calibration=x, max_context=CTX)
    assert np.abs(fixed.run(x) - ref).max() <= 0.05 * np.abs(ref).max()


@pytest.mark.parametrize("gated", ["silu", "relu"])
def test_gated_mlps_become_product_neurons(gated):
    m = _model(rope=False, gated=gated)
    x = _x()
    prog = icl.compile(m, max_context=CTX)
    ref = onnxruntime_run(m, x)
    assert np.abs(prog.run(x) - ref).max() <= 1e-5 * np.abs(ref).max()
    (p,) = [p for p in prog.ng.populations() if p.model == NeuronModel.PRODUCT]
    act = NeuronModel.ACTIVATION if gated == "silu" else NeuronModel.GRADED_RELU
    ports = {s.port: prog.ng.pop(s.pre).model for s in prog.ng.incoming(p.name)}
    # the up projection has a bias, the activation none: the biased operand is port 0
    assert ports[1] == act and p.bias is not None and p.size == 2 * D
    fixed = icl.compile(m, precision="fixed", calibration=x, max_context=CTX)
    assert np.abs(fixed.run(x) - ref).max() <= 0.05 * np.abs(ref).max()
    q = fixed.ng.pop(p.name).q
    assert q.in_scale and q.in_scale_b and q.prod_shift >= 0
    entry = next(a for a in fixed.report["quantisation"]["activations"]
                 if a["population"] == p.name)
    assert entry["neuron"] == "product" and entry["prod_shift"] == q.prod_shift


def test_both_operands_biased_gives_one_a_graded_population():
    b = Builder()
    x = b.input("x", (B, T, 4))
    g = b.output(b.op("Mul", b.linear(x, 4, 4), b.linear(x, 4, 4)))
    ng = lower(g)
    verify_neuro(ng)
    (p,) = [p for p in ng.populations() if p.model == NeuronModel.PRODUCT]
    (s1,) = [s for s in ng.incoming(p.name) if s.port == 1]
    assert ng.pop(s1.pre).model == NeuronModel.GRADED and ng.pop(s1.pre).bias is not None
    assert p.bias is not None


def test_an_outer_product_within_a_token_is_elementwise_bilinear():
    b = Builder()
    x = b.input("x", (B, T, 3))
    y = b.op("Einsum", b.linear(x, 3, 3, bias=False), b.op("Relu", x), equation="bti,btj->btij")
    g = b.output(b.op("Reshape", y, shape=[0, 0, 9]))
    ng = lower(g)
    (p,) = [p for p in ng.populations() if p.model == NeuronModel.PRODUCT]
    assert p.size == 9


def test_a_weight_that_depends_on_later_tokens_is_refused():
    b = Builder()
    x = b.input("x", (B, T, 4))
    # x_t · mean over all positions of a table: changes with the sequence length
    table = b.op("ReduceMean", b.op("Unsqueeze", b.op("Cast", b.op(
        "Range", start=0, limit=T, delta=1, dtype="int64"), to="float32"), axes=[1]),
        axes=[0], keepdims=1)
    y = b.op("Mul", x, b.op("Add", b.op("Unsqueeze", b.op("Cast", b.op(
        "Range", start=0, limit=T, delta=1, dtype="int64"), to="float32"), axes=[1]), table),
        onnx_name="/w/Mul")
    g = b.output(y)
    with pytest.raises(CompileError, match="changes with the sequence length") as e:
        lower(g)
    assert e.value.node == "/w/Mul"


def test_position_dependent_mask_on_features_is_a_product_with_a_zero_one_table():
    g = G(["batch", "seq", D])
    T = _length(g, "x", 1)
    table = (RNG.uniform(size=(CTX, D)) > 0.5).astype(np.float32)
    mask = g.op("Slice", g.c(table), g.c(np.array([0], np.int64)), T, g.c(np.array([0], np.int64)))
    h = g.op("Mul", g.op("MatMul", "x", g.w(D, D)), mask)
    s = g.op("MatMul", h, g.op("Transpose", h, perm=[0, 2, 1]))
    m = g.model(g.op("MatMul", g.op("MatMul", _causal(g, s, T), h), g.w(D, 3)),
                ["batch", "seq", 3])
    x = _x()
    prog = icl.compile(m, max_context=CTX)
    ref = onnxruntime_run(m, x)
    assert np.abs(prog.run(x) - ref).max() <= 1e-5 * np.abs(ref).max()
    (p,) = [p for p in prog.ng.populations() if p.model == NeuronModel.PRODUCT]
    (b,) = [s for s in prog.ng.incoming(p.name) if s.port == 1]
    # only the features the mask switches on and off at some position need product neurons
    varying = int(np.count_nonzero(np.any(table != table[:1], axis=0)))
    assert p.size == varying and set(np.unique(b.weights)) <= {0.0, 1.0}
