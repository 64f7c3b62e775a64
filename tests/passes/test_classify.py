"""classify: constant / position / token / pairwise / mixing, whatever the layout."""
import numpy as np

from icl_compiler.passes.classify import Kind, classify, first_mixing, run
from tests.passes.common import B, Builder, T


def _info(b: Builder, *outs):
    g = b.output(*outs)
    return g, classify(g)


def test_layouts_of_projections_heads_and_hf_conv1d():
    b = Builder()
    x = b.input("x", (B, T, 8))
    flat = b.op("Reshape", x, shape=[B * T, 8])  # HF Conv1D: Reshape → Gemm → Reshape
    gemm = b.op("Gemm", flat, b.rand(8, 8))
    h = b.op("Reshape", gemm, shape=[B, T, 8])
    heads = b.op("Transpose", b.op("Reshape", h, shape=[B, T, 2, 4]), perm=[0, 2, 1, 3])
    g, info = _info(b, heads)
    assert repr(info[gemm]) == "token [B·T, F8]"
    assert repr(info[heads]) == "token [B, F2, T, F4]"
    assert info[x].kind == Kind.TOKEN and run(g).startswith("const")


def test_scores_are_pairwise_and_the_read_is_token_again():
    b = Builder()
    x = b.input("x", (B, T, 4))
    q, k, v = b.linear(x, 4, 4), b.linear(x, 4, 4), b.linear(x, 4, 4)
    s = b.op("MatMul", q, b.op("Transpose", k, perm=[0, 2, 1]))
    tril = b.op("Trilu", b.op("ConstantOfShape", shape=[T, T], value=1.0, dtype="float32"),
                upper=0)
    a = b.op("Mul", b.op("Relu", s), tril)
    o = b.op("MatMul", a, v)
    _, info = _info(b, o)
    assert info[tril].kind == Kind.POS
    assert repr(info[s]) == "pairwise [B, T, S] {scores}"
    assert info[a].kind == Kind.PAIR
    assert repr(info[o]) == "token [B, T, F4] {attention}"


def test_sequence_first_batch_heads_merged():
    """torch's nn.MultiheadAttention: [T, B, d] → [T, B·H, d_h] → [B·H, T, d_h]."""
    b = Builder()
    x = b.input("x", (B, T, 4))
    sf = b.op("Transpose", x, perm=[1, 0, 2])
    qh = b.op("Transpose", b.op("Reshape", sf, shape=[T, B * 2, 2]), perm=[1, 0, 2])
    s = b.op("MatMul", qh, b.op("Transpose", qh, perm=[0, 2, 1]))
    _, info = _info(b, s)
    assert repr(info[qh]) == "token [B·F2, T, F2]"
    assert repr(info[s]) == "pairwise [B·F2, T, S] {scores}"


def test_products_and_reductions():
    b = Builder()
    x = b.input("x", (B, T, 4))
    gate = b.op("Mul", b.op("Relu", x), x)  # a gated product of two token values
    mean = b.op("ReduceMean", x, axes=[-1], keepdims=1)  # over features: token-local
    over_t = b.op("ReduceSum", x, axes=[1], keepdims=1)  # over positions: mixing
    gram = b.op("MatMul", b.op("Transpose", x, perm=[0, 2, 1]), x, onnx_name="/gram")
    g, info = _info(b, gate, mean, over_t, gram)
    assert info[gate].kind == Kind.TOKEN and "product" in info[gate].flags
    assert repr(info[mean]) == "token [B, T, 1]"
    assert info[over_t].kind == Kind.MIXED and "batch or sequence" in info[over_t].reason
    assert info[gram].kind == Kind.MIXED and info[gram].code == "sum_positions"
    origins = [i.node.onnx_name or i.node.op for i in first_mixing(g, info)]
    assert origins == ["ReduceSum", "/gram"]


def test_position_only_values_and_data_dependent_masks():
    b = Builder()
    x = b.input("x", (B, T, 4))
    pos = b.op("Gather", b.rand(16, 4), b.op("Range", start=0, limit=T, delta=1, dtype="int64"))
    h = b.op("Add", x, pos)
    s = b.op("MatMul", h, b.op("Transpose", h, perm=[0, 2, 1]))
    gated = b.op("Mul", s, b.op("ReduceMean", x, axes=[-1], keepdims=1))
    _, info = _info(b, h, gated)
    assert info[pos].kind == Kind.POS and info[h].kind == Kind.TOKEN
    assert info[gated].kind == Kind.MIXED and info[gated].code == "data_mask"


def test_softmax_over_keys_is_flagged_and_rowsum_normalisation_stays_pairwise():
    b = Builder()
    x = b.input("x", (B, T, 4))
    s = b.op("MatMul", x, b.op("Transpose", x, perm=[0, 2, 1]))
    sm = b.op("Softmax", s, axis=-1)
    rs = b.op("ReduceSum", b.op("Relu", s), axes=[-1], keepdims=1)
    normed = b.op("Div", b.op("Relu", s), b.op("Add", rs, b.const(1e-3)))
    _, info = _info(b, sm, normed)
    assert "softmax" in info[sm].flags
    assert info[rs].kind == Kind.MIXED and "rowsum" in info[rs].flags
    assert info[normed].kind == Kind.PAIR and "rownorm" in info[normed].flags


def test_conv_within_a_token_and_tile():
    b = Builder()
    x = b.input("x", (B, T, 16))
    img = b.op("Reshape", x, shape=[B * T, 1, 4, 4])
    conv = b.op("Onnx", img, b.const(np.ones((2, 1, 3, 3), np.float32)), op_type="Conv",
                opset=17, onnx_attrs={"pads": [1, 1, 1, 1]})
    tiled = b.op("Tile", x, repeats=[1, 1, 2])
    _, info = _info(b, conv, tiled)
    assert repr(info[conv]) == "token [B·T, F2, F4, F4]"
    assert repr(info[tiled]) == "token [B, T, F2*·F16]"
