"""The sequence-parallel interpreter (the default of ``Interpreter.run``) against the token-by-token
definition (``mode="token"``): outputs, RunStats (ops, learning updates, spikes, saturation
counts), the calibration record and the final K/V, bit for bit, in float and fixed point (8 and
16 bits), on every fixture, on long inputs near T_max, across chunk boundaries and on inputs that
saturate."""
import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.ir.neuro import verify_neuro
from icl_compiler.passes.lower import lower
from icl_compiler.semantics.interpreter import Interpreter, RunStats
from tests.helpers import attention_graph, fixture, fixture_names

NAMES = fixture_names(softmax=False)
MODES = [("float", None), ("fixed", 8), ("fixed", 16)]


def assert_same(ng, x, *, budget=None, record=True):
    """Token by token vs sequence-parallel on x: everything equal, bit for bit."""
    ref, seq = Interpreter(ng), Interpreter(ng)
    if budget is not None:
        seq.memory_budget = budget
    if record:
        ref.record, seq.record = {}, {}
    y0, s0 = ref.run(x, mode="token")
    y1, s1 = seq.run(x)
    assert y0.dtype == y1.dtype
    np.testing.assert_array_equal(y1, y0)
    assert s1 == s0
    assert seq.record == ref.record
    assert set(seq.last_state) == set(ref.last_state)
    for k in ref.last_state:
        np.testing.assert_array_equal(seq.last_state[k], ref.last_state[k], err_msg=k)
    return s0


def _compile(name, precision, bits, **kw):
    path, x, meta = fixture(name)
    opts = {} if precision == "float" else {"weight_bits": bits, "calibration": x}
    kw.setdefault("max_context", meta["t_max"])
    return icl.compile(path, precision=precision, **opts, **kw), x, meta


def _random(meta, B, T, rng, scale=1.0):
    if meta["input"] == "tokens":
        return rng.integers(0, meta["in_dim"], size=(B, T))
    return (scale * rng.uniform(0, 1, size=(B, T, meta["in_dim"]))).astype(np.float32)


@pytest.mark.parametrize("precision,bits", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_every_fixture(name, precision, bits):
    prog, x, _ = _compile(name, precision, bits)
    assert_same(prog.ng, x)


def _long(ng, x):
    assert_same(ng, x)  # one chunk
    width = Interpreter(ng).width
    for tc in (1, 5, 16):  # chunks of tc tokens: the boundaries fall inside the sequence
        assert_same(ng, x, budget=8 * x.shape[0] * width * tc)


@pytest.mark.parametrize("precision,bits", MODES)
@pytest.mark.parametrize("name", ["tok_identity_trilmul_1l1h", "feat_identity_trilmul_1l4h_noMLP"])
def test_long_inputs_near_t_max_in_chunks(name, precision, bits):
    prog, _, meta = _compile(name, precision, bits, max_context=48)  # masks built at run time
    assert prog.t_max == 48
    rng = np.random.default_rng(3)
    for T in (47, 48):
        _long(prog.ng, _random(meta, 3, T, rng))


@pytest.mark.parametrize("bits", [None, 8, 16])
def test_long_rowsum_relu2_heads(bits):
    from icl_compiler.passes.quantise import quantise

    rng = np.random.default_rng(7)
    ng = lower(attention_graph(rng, f="relu2", norm="rowsum", t_max=48))
    x = rng.uniform(-1, 1, (3, 48, 6))
    if bits is not None:
        ng, _ = quantise(ng, x, weight_bits=bits)
    _long(ng, x)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("name", ["feat_relu_where_1l2h_rms", "feat_identity_trilmul_1l4h_noMLP",
                                  "tok_identity_fill0_2l2h_ln"])
def test_saturating_inputs(name, bits):
    prog, x, meta = _compile(name, "fixed", bits)
    rng = np.random.default_rng(4)
    if meta["input"] == "tokens":  # calibrate on one token, run whole sequences: k, v, payloads clip
        path, x0, _ = fixture(name)
        prog = icl.compile(path, precision="fixed", weight_bits=bits, calibration=x0[:1, :1],
                           max_context=meta["t_max"])
        xs = _random(meta, 4, meta["t_max"], rng)
    else:
        xs = _random(meta, 4, meta["t_max"], rng, scale=60.0)
    stats = assert_same(prog.ng, xs)
    assert sum(stats.saturations.values()) > 0, "the stress input must saturate"


def test_writes_past_t_max_are_lost_alike():
    """Fixed point: tokens beyond T_max write nothing (counted); float refuses them."""
    prog, _, meta = _compile("tok_identity_trilmul_1l1h", "fixed", 8)
    x = _random(meta, 2, prog.t_max + 3, np.random.default_rng(5))
    stats = assert_same(prog.ng, x)
    assert any(k.startswith(("k:", "v:")) for k in stats.saturations)
    fprog, _, _ = _compile("tok_identity_trilmul_1l1h", "float", None)
    for mode in ("token", "sequence"):
        with pytest.raises(ValueError, match="T_max"):
            Interpreter(fprog.ng).run(x, mode=mode)


def test_a_used_state_falls_back_to_token_steps(monkeypatch):
    """A chunk whose slots ≥ t0 already hold weights (a caller's state) runs token by token."""
    prog, x, _ = _compile("tok_identity_fill0_2l2h_ln", "fixed", 8)
    it = Interpreter(prog.ng)
    warm = it.fresh_state(x.shape[0])
    it.advance(x, 0, warm, RunStats())  # slots 0 … T−1 written
    ref_state = {k: v.copy() for k, v in warm.items()}
    s_ref, s_seq = RunStats(), RunStats()
    y_ref = np.stack([it.step(x[:, i], 1 + i, ref_state, s_ref) for i in range(2)], 1)
    calls = []
    monkeypatch.setattr(it, "step", lambda *a: calls.append(a[1]) or Interpreter.step(it, *a))
    y_seq = it.advance(x[:, :2], 1, warm, s_seq)  # slots 1, 2 are not fresh
    assert calls == [1, 2]
    np.testing.assert_array_equal(y_seq, y_ref)
    for k in ref_state:
        np.testing.assert_array_equal(warm[k], ref_state[k])
    s_ref.tokens = 2
    assert s_seq == s_ref


@pytest.mark.parametrize("f,norm,lowering", [("relu", "none", "kv_slot"),
                                              ("relu2", "rowsum", "kv_slot"),
                                              ("identity", "none", "fast_weight")])
def test_hand_built_graphs(f, norm, lowering):
    rng = np.random.default_rng(6)
    ng = lower(attention_graph(rng, f=f, norm=norm, lowering=lowering))
    verify_neuro(ng)
    for B in (1, 3):  # one sequence: products of a single row
        assert_same(ng, rng.uniform(-1, 1, (B, 9, 6)))


@pytest.mark.parametrize("name", ["feat_relu2_additive_2l4h_lndec", "tok_identity_fill0_2l2h_ln"])
def test_float_products_in_the_reference_layout(name, monkeypatch):
    """Float: where one BLAS call per chunk would round otherwise than token by token
    (``products.one_call_exact`` / ``whole_call_exact`` say no), the static products and the
    heads' reads keep the reference layout, still bit for bit; where it says yes, one stacked
    matrix per pre population is prepared."""
    import icl_compiler.semantics.interpreter as interp
    from icl_compiler.semantics import products

    prog, x, _ = _compile(name, "float", None)
    answers = []
    real = interp.one_call_exact
    monkeypatch.setattr(interp, "one_call_exact",
                        lambda *a: answers.append(real(*a)) or answers[-1])
    it = Interpreter(prog.ng)
    it.run(x)
    assert answers and bool(it.float_stacks) == any(answers)
    monkeypatch.setattr(interp, "one_call_exact", lambda *a: False)
    monkeypatch.setattr(products, "whole_call_exact", lambda *a: False)
    assert_same(prog.ng, x)
    it = Interpreter(prog.ng)
    it.run(x)
    assert not it.float_stacks


def test_chunk_size_follows_the_memory_budget():
    prog, _, _ = _compile("feat_relu2_additive_2l4h_lndec", "fixed", 8)
    it = Interpreter(prog.ng)
    assert it.chunk_tokens(4) == it.memory_budget // (8 * 4 * it.width)
    it.memory_budget = 1
    assert it.chunk_tokens(4) == 1  # at least one token


@pytest.mark.parametrize("name", ["feat_relu2_additive_2l4h_lndec", "dyn_feat_relu_trilmul_2l2h_rms_ext"])
def test_quantiser_gives_the_same_program_either_way(name, monkeypatch):
    """Calibration and the auto-bits runs use the sequence-parallel order: same program, scales
    included, as with token by token (the second fixture needs 16 bits)."""
    from icl_compiler.ir import neuro_serialize

    path, x, meta = fixture(name)
    progs = []
    for mode in ("token", "sequence"):
        monkeypatch.setattr(Interpreter, "default_mode", mode)
        progs.append(icl.compile(path, precision="fixed", calibration=x, max_context=meta["t_max"]))
    (da, wa), (db, wb) = (neuro_serialize.to_dict(p.ng) for p in progs)
    assert da == db
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert progs[0].report["quantisation"] == progs[1].report["quantisation"]
