"""attention: causal softmax-free attention in each exporter form → one PlasticAttention."""
import numpy as np
import pytest

from icl_compiler.errors import CompileError
from icl_compiler.passes.attention import attention_report
from icl_compiler.passes.manager import PassContext
from tests.passes.common import B, Builder, T, apply, assert_same_numbers

BUFFER = 16
CTX = PassContext(max_context=12, lowering="kv_slot")


def _buffer(b: Builder, dtype="float32"):
    m = b.const(np.tril(np.ones((BUFFER, BUFFER))), "mask_buf", dtype=dtype)
    m = b.op("Slice", m, starts=[0], ends=[T], axes=[0], steps=[1])
    return b.op("Slice", m, starts=[0], ends=[T], axes=[1], steps=[1])


def _pre_mask(b: Builder, s: str, mask: str) -> str:
    """Masks applied to the scores before f."""
    if mask == "where_bool":
        return b.op("Where", _buffer(b, "bool"), s, b.const(0.0))
    if mask in ("fill_neg", "fill_neginf"):
        eq = b.op("Equal", _buffer(b), b.const(0.0))
        return b.op("Where", eq, b.const(-1e4 if mask == "fill_neg" else -np.inf), s)
    if mask == "additive":
        return b.op("Add", s, b.op("Mul", b.op("Sub", b.const(1.0), _buffer(b)), b.const(-1e4)))
    if mask == "arange":
        r = b.op("Range", start=0, limit=T, delta=1, dtype="int64")
        ge = b.op("GreaterOrEqual", b.op("Unsqueeze", r, axes=[1]), b.op("Unsqueeze", r, axes=[0]))
        return b.op("Where", ge, s, b.const(0.0))
    return s


def _post_mask(b: Builder, a: str, mask: str) -> str:
    """Masks applied to f's output."""
    if mask == "tril_mul":
        ones = b.op("ConstantOfShape", shape=[T, T], value=1.0, dtype="float32")
        return b.op("Mul", a, b.op("Trilu", ones, upper=0))
    if mask == "fill0":
        return b.op("Where", b.op("Equal", _buffer(b), b.const(0.0)), b.const(0.0), a)
    return a


def _core(b, qh, kh, vh, *, mask, f, scale, norm, einsum, softmax=False, extra=None):
    if scale == "q_mul":
        qh = b.op("Mul", qh, b.const(0.5))
    rank = b.g.values[qh].rank
    if einsum:
        p = "bh"[:rank - 2]
        s = b.op("Einsum", qh, kh, equation=f"{p}td,{p}sd->{p}ts", onnx_name="/attn/QK")
    else:
        perm = list(range(rank - 2)) + [rank - 1, rank - 2]
        s = b.op("MatMul", qh, b.op("Transpose", kh, perm=perm), onnx_name="/attn/QK")
    if scale == "scores_mul":
        s = b.op("Mul", s, b.const(0.5))
    elif scale == "scores_div":
        s = b.op("Div", s, b.const(2.0))
    s = _pre_mask(b, s, mask)
    if extra:
        s = extra(b, s)
    if softmax:
        a = b.op("Softmax", s, axis=-1, onnx_name="/blocks.0/attn/Softmax")
    elif f == "identity":
        a = s
    else:
        a = b.op("Relu", s)
        if f == "relu2":
            a = b.op("Pow", a, b.const(2.0))
    a = _post_mask(b, a, mask)
    rowsum = None
    if norm != "none":
        rowsum = b.op("ReduceSum", a, axes=[-1], keepdims=1)
        # Σ + eps, or the row sum clamped from below (torch's .clamp(min=eps): Max here, Clip in
        # the corpus' exports)
        rowsum = (b.op("Max", rowsum, b.const(1e-3)) if norm.endswith("_max") else
                  b.op("Add", rowsum, b.const(1e-3)))
        norm = norm.split("_")[0]
    if norm == "pre":
        a = b.op("Div", a, rowsum)
    if einsum:
        p = "bh"[:rank - 2]
        o = b.op("Einsum", a, vh, equation=f"{p}ts,{p}se->{p}te")
    else:
        o = b.op("MatMul", a, vh)
    if norm == "post":
        o = b.op("Div", o, rowsum)
    return o


def build(layout="batched", mask="tril_mul", f="relu", scale="scores_mul", norm="none",
          einsum=False, heads=2, dk=3, dv=4, feat=6, seq=T, **kw):
    b = Builder(seed=3)
    x = b.input("x", (B, seq, feat))
    if layout == "per_head":
        outs = []
        for _ in range(heads):
            q, k, v = b.linear(x, feat, dk), b.linear(x, feat, dk), b.linear(x, feat, dv)
            outs.append(_core(b, q, k, v, mask=mask, f=f, scale=scale, norm=norm, einsum=einsum, **kw))
        y = b.op("Concat", *outs, axis=-1)
    else:
        h = heads if layout == "batched" else 1
        q, k, v = b.linear(x, feat, h * dk), b.linear(x, feat, h * dk), b.linear(x, feat, h * dv)
        if layout == "batched":
            q, k, v = (b.op("SplitHeads", t, heads=h) for t in (q, k, v))
        y = _core(b, q, k, v, mask=mask, f=f, scale=scale, norm=norm, einsum=einsum, **kw)
        if layout == "batched":
            y = b.op("MergeHeads", y)
    return b.output(b.linear(y, heads * dv if layout != "single" else dv, feat))


def _pa(g):
    pas = [n for n in g.nodes.values() if n.op == "PlasticAttention"]
    assert len(pas) == 1, g.op_counts()
    return pas[0]


def _check(g, h, *, heads, f="relu", norm="none", t_max=12):
    pa = _pa(h)
    a = pa.attrs
    assert (a["heads"], a["f"], a["normalisation"], a["T_max"], a["lowering"], a["layer"]) == \
        (heads, f, norm, t_max, "kv_slot", 0)
    assert a["scale"] == pytest.approx(0.5, rel=1e-12)
    assert all(h.producer(i).op == "Linear" for i in pa.inputs), "q/k/v straight from Linears"
    assert not any(n.op in ("MatMul", "Einsum", "SplitHeads", "MergeHeads", "Transpose", "Concat")
                   for n in h.nodes.values())
    assert_same_numbers(g, h, seqs=(5, 9))


MASKS_BEFORE_RELU = ["where_bool", "fill_neg", "fill_neginf", "additive", "arange"]
MASKS_ANY_F = ["tril_mul", "fill0"]


@pytest.mark.parametrize("layout", ["batched", "single", "per_head"])
@pytest.mark.parametrize("mask", MASKS_BEFORE_RELU + MASKS_ANY_F)
def test_masks_and_layouts(layout, mask):
    g = build(layout, mask, heads=1 if layout == "single" else 2)
    h, summary = apply("attention", g, CTX)
    _check(g, h, heads=1 if layout == "single" else 2)
    assert summary.startswith("rewrote 1 attention layer(s)")


@pytest.mark.parametrize("f", ["identity", "relu", "relu2"])
@pytest.mark.parametrize("scale", ["scores_mul", "scores_div", "q_mul"])
def test_score_functions_and_scales(f, scale):
    g = build(f=f, scale=scale, mask="fill0")
    h, _ = apply("attention", g, CTX)
    _check(g, h, heads=2, f=f)


@pytest.mark.parametrize("norm", ["pre", "post", "pre_max", "post_max"])
@pytest.mark.parametrize("layout", ["batched", "per_head"])
def test_row_sum_normalisation(norm, layout):
    """÷ (Σ + eps) is "rowsum"; ÷ max(Σ, eps) (a clamped row sum) is "rowsum_max": told apart
    by the numbers at row sums far below eps."""
    g = build(layout, norm=norm)
    h, _ = apply("attention", g, CTX)
    _check(g, h, heads=2, norm="rowsum" if "_" not in norm else "rowsum_max")
    assert _pa(h).attrs["eps"] == pytest.approx(1e-3)


def test_t_max_from_a_positional_table_read_at_an_offset():
    """OPT looks its learned positions up at arange(T) + 2: a 16-row table holds 14 positions."""
    b = Builder(seed=3)
    x = b.input("x", (B, T, 6))
    r = b.op("Range", start=0, limit=T, delta=1, dtype="int64")
    x = b.op("Add", x, b.op("Gather", b.rand(16, 6), b.op("Add", r, b.const(2, dtype="int64")),
                            axis=0))
    q, k, v = (b.op("SplitHeads", b.linear(x, 6, 6), heads=2) for _ in range(3))
    y = _core(b, q, k, v, mask="tril_mul", f="relu", scale="scores_mul", norm="none",
              einsum=False)
    g = b.output(b.op("MergeHeads", y))
    h, _ = apply("attention", g, PassContext())
    assert _pa(h).attrs["T_max"] == 14


@pytest.mark.parametrize("layout", ["batched", "single"])
def test_einsum(layout):
    g = build(layout, einsum=True, heads=2 if layout == "batched" else 1)
    h, _ = apply("attention", g, CTX)
    _check(g, h, heads=2 if layout == "batched" else 1)


def test_t_max_from_buffer_and_static_length():
    h, _ = apply("attention", build(mask="where_bool"), PassContext())
    assert _pa(h).attrs["T_max"] == BUFFER
    def tril7(b, s):
        return b.op("Where", b.const(np.tril(np.ones((7, 7))), dtype="bool"), s, b.const(0.0))
    h, _ = apply("attention", build(mask="none", seq=7, extra=tril7), PassContext())
    assert _pa(h).attrs["T_max"] == 7


def test_report_and_lowering():
    h, _ = apply("attention", build(f="relu2"), PassContext(max_context=10, lowering="fast_weight"))
    rep = attention_report(h)
    assert [(r["layer"], r["head"]) for r in rep] == [(0, 0), (0, 1)]
    assert {(r["f"], r["normalisation"], r["T_max"], r["lowering"]) for r in rep} == \
        {("relu2", "none", 10, "fast_weight")}
    assert rep[0]["scale"] == pytest.approx(0.5)


# -- errors ------------------------------------------------------------------------------------

def _raises(g, ctx=CTX, *, match, node):
    with pytest.raises(CompileError, match=match) as e:
        apply("attention", g, ctx)
    assert e.value.node == node
    return e.value


def test_softmax_names_the_node():
    err = _raises(build(mask="fill_neginf", softmax=True), match="softmax",
                  node="/blocks.0/attn/Softmax")
    assert "/blocks.0/attn/Softmax" in str(err) and "one slot per token" in str(err)
    assert "retrain" in err.hint and "ReLU" in err.hint


@pytest.mark.parametrize("mask,f", [("none", "relu"), ("additive", "identity"),
                                    ("fill_neg", "identity")])
def test_non_causal(mask, f):
    _raises(build(mask=mask, f=f), match="not causal", node="/attn/QK")


def test_anti_causal_mask_is_rejected():
    def triu(b, s):
        ones = b.op("ConstantOfShape", shape=[T, T], value=1.0, dtype="float32")
        return b.op("Mul", s, b.op("Trilu", ones, upper=1))
    _raises(build(mask="none", extra=triu), match="not causal", node="/attn/QK")


def test_score_function_not_elementwise():
    def transpose(b, s):
        return b.op("Transpose", s, perm=[0, 1, 3, 2], onnx_name="/attn/T")
    _raises(build(mask="tril_mul", extra=transpose), match="not elementwise", node="/attn/T")


def test_unsupported_elementwise_f():
    _raises(build(mask="tril_mul", extra=lambda b, s: b.op("Exp", s, onnx_name="/attn/Exp")),
            match="Exp is not supported", node="/attn/Exp")


def test_data_dependent_mask():
    def gate(b, s):
        m = b.op("ReduceMean", "x", axes=[-1], keepdims=1)       # [B, T, 1] from the input
        return b.op("Mul", s, m, onnx_name="/attn/Gate")
    _raises(build("single", mask="tril_mul", heads=1, extra=gate), match="depends on the input",
            node="/attn/Gate")


def test_dynamic_length_without_bound():
    err = _raises(build(mask="tril_mul"), PassContext(), match="max-context", node="/attn/QK")
    assert "T_max" in err.reason


def test_other_activation_products_are_rejected():
    b = Builder()
    x = b.input("x", (B, T, 4))
    gram = b.op("MatMul", b.op("Transpose", x, perm=[0, 2, 1]), x, onnx_name="/gram")
    g = b.output(gram)
    _raises(g, match="not causal attention", node="/gram")


def test_layout_fallbacks_keep_the_numbers():
    """Without SplitHeads/MergeHeads (head_layout not run) the heads are found from the values'
    layouts: the operands are selected from the projections and the numbers stay the same."""
    b = Builder(seed=5)
    x = b.input("x", (B, T, 6))
    q, k, v = (b.op("Transpose", b.op("Reshape", b.linear(x, 6, 6), shape=[0, 0, 2, 3]),
                    perm=[0, 2, 1, 3]) for _ in range(3))
    o = _core(b, q, k, v, mask="tril_mul", f="relu", scale="scores_mul", norm="none", einsum=False)
    g = b.output(b.op("Reshape", b.op("Transpose", o, perm=[0, 2, 1, 3]), shape=[0, 0, 6]))
    h, _ = apply("attention", g, CTX)
    assert h.op_counts()["PlasticAttention"] == 1
    pa = _pa(h)
    assert all(h.producer(i).op == "Linear" for i in pa.inputs), "q/k/v straight from Linears"
    assert not any(n.op in ("MatMul", "Einsum") for n in h.nodes.values())
    assert_same_numbers(g, h)


@pytest.mark.parametrize("mask", ["mul", "additive"])
def test_alibi_position_bias_is_refused_naming_its_add(mask):
    """ALiBi: scores + m·(s − t) before f.  f(q·k + b(t, s)) is not elementwise in q·k, so the
    refusal names the Add of the bias, not the mask (multiplied after f, or added as −inf)."""
    import icl_compiler as icl
    from icl_compiler.errors import CompileError
    from tests.passes.test_lower_layouts import G, _causal, _length

    D, CTX = 8, 10
    rng = np.random.default_rng(0)
    g = G(["batch", "seq", D])
    T = _length(g, "x", 1)
    q, k, v = (g.op("MatMul", "x", g.c(rng.normal(size=(D, D)).astype(np.float32)))
               for _ in range(3))
    s = g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 2, 1])),
             g.c(np.float32(0.3)))
    rel = (np.arange(CTX)[None, :] - np.arange(CTX)[:, None]).astype(np.float32) * 0.5

    def window(table):
        z = g.c(np.array([0], np.int64))
        return g.op("Slice", g.op("Slice", g.c(table), z, T, z), z, T,
                    g.c(np.array([1], np.int64)))

    s = g.op("Add", s, window(rel), name="/alibi/add")
    if mask == "mul":
        a = _causal(g, s, T)
    else:
        neg = np.triu(np.full((CTX, CTX), -np.inf, np.float32), 1)
        a = g.op("Relu", g.op("Add", s, window(neg), name="/mask/add"))
    h = g.op("Add", "x", g.op("MatMul", a, v))
    m = g.model(g.op("MatMul", h, g.c(rng.normal(size=(D, 3)).astype(np.float32))),
                ["batch", "seq", 3])
    with pytest.raises(CompileError, match="additive position bias such as ALiBi") as e:
        icl.compile(m, max_context=CTX)
    assert e.value.node == "/alibi/add" and "rotary" in e.value.hint


@pytest.mark.parametrize("norm", ["post", "post_max"])
def test_two_layers_normalised_after_the_read(norm):
    """(A·V) / (Σ A + eps) in layer 0 is a token value for layer 1 (whose own denominator has
    layer 0 upstream): both layers become PlasticAttention with the row-sum divide."""
    b = Builder(seed=5)
    x = b.input("x", (B, T, 6))
    h = x
    for _ in range(2):
        q, k, v = (b.op("SplitHeads", b.linear(h, 6, 6), heads=2) for _ in range(3))
        y = _core(b, q, k, v, mask="tril_mul", f="relu", scale="scores_mul", norm=norm,
                  einsum=False)
        h = b.op("Add", h, b.linear(b.op("MergeHeads", y), 6, 6))
    g = b.output(h)
    out, summary = apply("attention", g, CTX)
    pas = [n for n in out.nodes.values() if n.op == "PlasticAttention"]
    assert len(pas) == 2, summary
    assert {p.attrs["normalisation"] for p in pas} == {"rowsum" if norm == "post" else "rowsum_max"}
    assert_same_numbers(g, out, seqs=(5, 9))


def test_a_sliding_window_is_refused_as_such_naming_the_mask():
    """A mask that also hides keys 3 or more positions back: not a position bias (no ALiBi
    hint) but a window, and --max-context 3 is the way out."""
    def window(b, s):
        r = b.op("Range", start=0, limit=T, delta=1, dtype="int64")
        dist = b.op("Sub", b.op("Unsqueeze", r, axes=[1]), b.op("Unsqueeze", r, axes=[0]))
        far = b.op("GreaterOrEqual", dist, b.const(3, dtype="int64"))
        return b.op("Where", far, b.const(-np.inf), s, onnx_name="/attn/window_fill")
    g = build(mask="where_bool", extra=window)
    with pytest.raises(CompileError, match=r"hides keys 3 or more positions back .* sliding "
                                           r"window of the last 3 tokens") as e:
        apply("attention", g, CTX)
    assert e.value.node == "/attn/window_fill" and "--max-context 3" in e.value.hint
    h, _ = apply("attention", g, PassContext(max_context=3))
    assert _pa(h).attrs["T_max"] == 3


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_softmax_written_by_hand_is_refused_as_softmax(norm):
    """exp(s) · tril / Σ: softmax without a Softmax node is still softmax, named at its Exp."""
    g = build(f="identity", norm=norm, extra=lambda b, s: b.op("Exp", s, onnx_name="/attn/exp"))
    with pytest.raises(CompileError, match=r"softmax attention cannot be mapped .* written by "
                                           r"hand") as e:
        apply("attention", g, CTX)
    assert e.value.node == "/attn/exp"


def _query_factor(start, offset=0.0):
    def factor(b, s):
        n = b.op("Range", start=start, limit=T + start, delta=1, dtype="float32")
        if offset:
            n = b.op("Add", n, b.const(offset))
        return b.op("Div", s, b.op("Unsqueeze", n, axes=[1]), onnx_name="/attn/running_mean")
    return factor


@pytest.mark.parametrize("f", ["identity", "relu", "relu2"])
def test_a_query_position_factor_moves_onto_q(f):
    """A running mean (÷(t+1) on query t's scores): c_t·f(S) = f(S') with q_t scaled by c_t
    (√c_t for ReLU²): q gets a per-position factor, the attention keeps scale 1."""
    g = build(mask="where_bool", f=f, extra=_query_factor(1))
    h, _ = apply("attention", g, CTX)
    pa = _pa(h)
    assert pa.attrs["scale"] == 1.0 and pa.attrs["f"] == f
    q = h.producer(pa.inputs[0])
    assert q.op == "Mul" and any(h.producer(i) is not None and h.producer(i).op == "Cast"
                                 for i in q.inputs)
    assert_same_numbers(g, h, seqs=(5, 12))


def test_a_query_factor_that_is_zero_somewhere_is_refused_naming_its_div():
    """÷(t − 0.5)·… has a zero-crossing: relu(c·s) with c ≤ 0 at some t cannot be c·relu(s)."""
    def times_t(b, s):
        n = b.op("Range", start=0, limit=T, delta=1, dtype="float32")
        return b.op("Mul", s, b.op("Unsqueeze", n, axes=[1]), onnx_name="/attn/times_t")
    g = build(mask="where_bool", extra=times_t)
    with pytest.raises(CompileError, match=r"multiplied by a factor that depends on t "
                                           r"\(c_0, c_1, … = 0, 0\.5.*cannot be moved onto q") as e:
        apply("attention", g, CTX)
    assert e.value.node == "/attn/times_t" and "ALiBi" not in str(e.value)
