"""canonical_products: broadcast-and-sum products, unary, n-ary and elementwise Einsums become
binary contracting Einsums and Muls, computing the same numbers."""
import numpy as np

from icl_compiler.passes.manager import PassContext
from tests.passes.common import B, Builder, T, apply, assert_same_numbers

D = 4


def _ops(g):
    return sorted(n.op for n in g.nodes.values())


def _qkv(b):
    x = b.input("x", (B, T, D))
    return x, [b.op("SplitHeads", b.linear(x, D, D), heads=2) for _ in range(3)]  # [B,2,T,2]


def _scores(b):
    _, (q, k, _) = _qkv(b)
    return b.op("MatMul", q, b.op("Transpose", k, perm=[0, 1, 3, 2]))


def test_broadcast_product_and_sum_is_one_einsum():
    b = Builder()
    _, (q, k, _) = _qkv(b)
    s = b.op("Mul", b.op("Unsqueeze", q, axes=[3]), b.op("Unsqueeze", k, axes=[2]))  # [B,2,T,T,2]
    g = b.output(b.op("ReduceSum", s, axes=[-1], keepdims=0))
    h, summary = apply("canonical_products", g)
    assert summary == "rewrote 1 mul+sum"
    assert "Mul" not in _ops(h) and _ops(h).count("Einsum") == 1
    assert_same_numbers(g, h)


def test_keepdims_sum_keeps_its_axis():
    b = Builder()
    x = b.input("x", (B, T, D))
    y = b.linear(x, D, D)
    g = b.output(b.op("ReduceSum", b.op("Mul", x, y), axes=[-1], keepdims=1))
    h, _ = apply("canonical_products", g)
    assert "Einsum" in _ops(h) and "Unsqueeze" in _ops(h)
    assert h.values[h.outputs[0]].shape == g.values[g.outputs[0]].shape
    assert_same_numbers(g, h)


def test_a_product_with_a_constant_stays():
    b = Builder()
    x = b.input("x", (B, T, D))
    g = b.output(b.op("ReduceSum", b.op("Mul", x, b.rand(D)), axes=[-1], keepdims=0))
    _, summary = apply("canonical_products", g)
    assert summary == "no product to rewrite"


def test_unary_einsum_row_sum_and_permutation():
    b = Builder()
    x = b.input("x", (B, T, D))
    y = b.op("Einsum", b.op("Relu", x), equation="btd->bt")
    z = b.op("Einsum", x, equation="btd->dbt")
    g = b.output(y, z)
    h, summary = apply("canonical_products", g)
    assert summary == "rewrote 2 unary"
    assert "Einsum" not in _ops(h) and "ReduceSum" in _ops(h) and "Transpose" in _ops(h)
    assert_same_numbers(g, h)


def test_three_operand_einsum_with_a_causal_mask_becomes_attention():
    """einsum("bhts,ts,bhsd->bhtd", relu(q·kᵀ), tril, v): the chain's first step is an
    elementwise product (a Mul by the mask), its second the read; then attention."""
    b = Builder()
    _, (q, k, v) = _qkv(b)
    s = b.op("Relu", b.op("Einsum", q, k, equation="bhtd,bhsd->bhts"))
    ones = b.op("ConstantOfShape", shape=[T, T], value=1.0, dtype="float32")
    tril = b.op("Trilu", ones, upper=0)
    o = b.op("Einsum", s, tril, v, equation="bhts,ts,bhsd->bhtd")
    g = b.output(b.op("MergeHeads", o))
    h, summary = apply("canonical_products", g)
    assert summary == "rewrote 1 n-ary, 1 elementwise"
    assert_same_numbers(g, h)
    h, _ = apply("attention", h, PassContext(max_context=12))
    assert "PlasticAttention" in _ops(h)
    assert_same_numbers(g, h)


def test_outer_product_einsum_is_a_broadcast_mul():
    b = Builder()
    x = b.input("x", (B, T, D))
    y = b.linear(x, D, 3)
    g = b.output(b.op("Einsum", y, x, equation="bte,btd->btde"))
    h, summary = apply("canonical_products", g)
    assert summary == "rewrote 1 elementwise"
    assert "Mul" in _ops(h) and "Einsum" not in _ops(h)
    assert_same_numbers(g, h)


def test_broadcast_sum_attention_compiles_to_plastic_attention():
    """Scores and read both as broadcast products and sums (no MatMul, no Einsum in the model)."""
    b = Builder()
    _, (q, k, v) = _qkv(b)
    s = b.op("ReduceSum", b.op("Mul", b.op("Unsqueeze", q, axes=[3]),
                               b.op("Unsqueeze", k, axes=[2])), axes=[-1], keepdims=0)
    r = b.op("Range", start=0, limit=T, delta=1, dtype="int64")
    causal = b.op("GreaterOrEqual", b.op("Unsqueeze", r, axes=[1]), b.op("Unsqueeze", r, axes=[0]))
    w = b.op("Relu", b.op("Where", causal, s, b.const(0.0)))
    o = b.op("ReduceSum", b.op("Mul", b.op("Unsqueeze", w, axes=[4]),
                               b.op("Unsqueeze", v, axes=[2])), axes=[3], keepdims=0)
    g = b.output(b.op("MergeHeads", o))
    h, _ = apply("canonical_products", g)
    h, _ = apply("attention", h, PassContext(max_context=12))
    assert "PlasticAttention" in _ops(h), _ops(h)
    assert_same_numbers(g, h)


def test_a_per_head_scale_of_the_scores_moves_onto_q():
    """s = (q @ kᵀ) * c[H, 1, 1] (a learned per-head temperature) → (q * c) @ kᵀ."""
    b = Builder()
    s = _scores(b)
    scale = b.const(np.array([[[0.5]], [[3.0]]]))
    g = b.output(b.op("Relu", b.op("Mul", s, scale)))
    h, summary = apply("canonical_products", g)
    assert summary == "rewrote 1 scaled product"
    mm = next(n for n in h.nodes.values() if n.op == "MatMul")
    assert h.producer(mm.inputs[0]).op == "Mul"
    assert_same_numbers(g, h)


def test_a_scale_that_varies_along_the_keys_stays():
    b = Builder()
    s = _scores(b)
    g = b.output(b.op("Mul", s, b.rand(1, 5)))  # along the key axis: not a factor of q
    _, summary = apply("canonical_products", g)
    assert summary == "no product to rewrite"


def test_a_per_head_scale_of_einsum_scores_moves_onto_q():
    b = Builder()
    _, (q, k, _) = _qkv(b)
    s = b.op("Einsum", q, k, equation="bhtd,bhsd->bhts")
    g = b.output(b.op("Div", s, b.const(np.array([[[2.0]], [[0.25]]]))))
    h, summary = apply("canonical_products", g)
    assert summary == "rewrote 1 scaled product"
    e = next(n for n in h.nodes.values() if n.op == "Einsum")
    assert h.producer(e.inputs[0]).op == "Div"
    assert_same_numbers(g, h)


def test_a_per_query_factor_stays():
    """c[T, 1] varies along the queries: moving it onto q would make q position-dependent."""
    b = Builder()
    s = _scores(b)
    g = b.output(b.op("Mul", s, b.rand(5, 1)))
    _, summary = apply("canonical_products", g)
    assert summary == "no product to rewrite"
