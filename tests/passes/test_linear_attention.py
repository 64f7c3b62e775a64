"""linear_attention: a running sum (CumSum) of k ⊗ v read by q becomes scores · tril · V."""
import numpy as np

from icl_compiler.ir.interpreter import run
from icl_compiler.passes.manager import PassContext
from tests.passes.common import B, Builder, T, apply, assert_same_numbers, feeds_for

D = 4


def _qkv(b: Builder, x: str):
    return [b.op("Relu", b.linear(x, D, D)) for _ in range(3)]


def _running_sum_attention(reverse: int = 0, normaliser: bool = False):
    b = Builder()
    x = b.input("x", (B, T, D))
    q, k, v = _qkv(b, x)
    kv = b.op("Einsum", k, v, equation="btd,bte->btde")
    c = b.op("CumSum", kv, axis=1, reverse=reverse)
    out = b.op("Einsum", q, c, equation="btd,btde->bte", onnx_name="attn_read")
    if normaliser:
        z = b.op("Einsum", q, b.op("CumSum", k, axis=1), equation="btd,btd->bt")
        out = b.op("Div", out, b.op("Add", b.op("Unsqueeze", z, axes=[-1]),
                                    b.const(1.0)))
    return b.output(out)


def test_running_sum_becomes_causal_scores_and_numbers_stay():
    g = _running_sum_attention()
    h, summary = apply("linear_attention", g)
    assert summary == "rewrote 1 running-sum linear attention(s) into scores and ·V"
    assert not any(n.op == "CumSum" for n in h.nodes.values())
    assert any(n.op == "Trilu" for n in h.nodes.values())
    assert_same_numbers(g, h)


def test_normaliser_running_sum_rewritten_too():
    g = _running_sum_attention(normaliser=True)
    h, summary = apply("linear_attention", g)
    assert summary.startswith("rewrote 2 ")
    assert not any(n.op == "CumSum" for n in h.nodes.values())
    assert_same_numbers(g, h)


def test_reverse_running_sum_is_not_causal_and_stays():
    g = _running_sum_attention(reverse=1)
    h, summary = apply("linear_attention", g)
    assert summary == "no running-sum linear attention"
    assert any(n.op == "CumSum" for n in h.nodes.values())


def test_cumsum_over_features_is_left_alone():
    b = Builder()
    x = b.input("x", (B, T, D))
    c = b.op("CumSum", b.linear(x, D, D), axis=-1)
    g = b.output(c)
    h, summary = apply("linear_attention", g)
    assert summary == "no running-sum linear attention"
    feeds = feeds_for(g)
    np.testing.assert_allclose(run(h, feeds)[h.outputs[0]], run(g, feeds)[g.outputs[0]])


def test_rewritten_graph_is_recognised_as_attention():
    g = _running_sum_attention()
    h, _ = apply("linear_attention", g)
    h, summary = apply("attention", h, PassContext(max_context=16))
    assert any(n.op == "PlasticAttention" for n in h.nodes.values()), summary
    assert_same_numbers(g, h)
