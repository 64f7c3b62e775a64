"""Compiled programs on the Lava backend (Loihi2SimCfg): fixed == numpy emulator bit for bit,
float == onnxruntime, real steps per token, timeouts, no leaks (~1 min in all)."""
from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.backends.lava import lava_available, lava_unavailable_reason
from icl_compiler.runtime.reference import onnxruntime_run
from tests.helpers import fixture

pytestmark = [pytest.mark.lava,
              pytest.mark.skipif(not lava_available(), reason=str(lava_unavailable_reason()))]

# 1 layer × 2 heads with LayerNorm; 1 layer × 4 heads on features, no MLP; 2 layers × 2 heads
# with LayerNorms, positions and MLPs (residual paths of many depths); row-sum normalisation
# (the embedded divide)
NAMES = ["tok_relu_perhead_fillneginf_1l2h", "feat_identity_trilmul_1l4h_noMLP",
         "tok_relu_fillneg_2l2h_ln_pos", "tok_relu_rownorm_trilmul_1l2h"]
B, T = 2, 5
_PROGS: dict = {}


def _prog(name, precision, bits=8):
    key = (name, precision, bits)
    if key not in _PROGS:
        path, x, meta = fixture(name)
        _PROGS[key] = icl.compile(path, precision=precision,
                                  calibration=x if precision == "fixed" else None,
                                  max_context=meta["t_max"], weight_bits=bits)
    return _PROGS[key]


def _x(name):
    path, x, meta = fixture(name)
    rng = np.random.default_rng(7)
    if meta["input"] == "tokens":
        return path, rng.integers(0, meta["in_dim"], size=(B, T)).astype(np.int64)
    return path, rng.uniform(0, 1, size=(B, T, meta["in_dim"])).astype(np.float32)


def _gone(names):
    return not any(os.path.exists(f"/dev/shm/{n}") for n in names)


# default layout (merged, exponents in the neurons) on every program; the two older layouts on
# one; 16-bit: the high and low plastic synapses of K and V (two layers with RMSNorm; row-sum
# divide)
@pytest.mark.parametrize("name, layout, bits", [(n, None, 8) for n in NAMES]
                         + [("tok_relu_fillneg_2l2h_ln_pos", ("separate", "dense"), 8),
                            ("tok_relu_fillneg_2l2h_ln_pos", ("separate", "neuron"), 8),
                            ("dyn_feat_relu_trilmul_2l2h_rms_ext", None, 16),
                            ("tok_relu_rownorm_trilmul_1l2h", ("separate", "dense"), 16)])
def test_fixed_bit_exact_with_emulator(name, layout, bits):
    prog = _prog(name, "fixed", bits)
    assert all(h.kv_bits == bits for h in prog.ng.heads)
    _, x = _x(name)
    kw = {} if layout is None else {"layout": layout[0], "exp_in": layout[1]}
    y = prog.run(x, backend="lava", return_payload=True, **kw)
    extra = prog.last_lava
    assert (extra["layout"], extra["exp_in"]) == (layout or ("merged", "neuron"))
    want = prog.run(x, backend="numpy", return_payload=True)
    assert y.dtype == want.dtype and y.shape == want.shape
    assert np.count_nonzero(want) > want.size // 2  # not vacuous
    np.testing.assert_array_equal(y, want)
    # the K and V weights each sequence left in the LearningDense synapses == the emulator's
    assert set(extra["weights"]) == set(prog.last_state)
    for syn, w in extra["weights"].items():
        assert np.count_nonzero(w), syn
        np.testing.assert_array_equal(w, prog.last_state[syn], err_msg=syn)


@pytest.mark.parametrize("name", NAMES)
def test_float_matches_onnxruntime(name):
    prog = _prog(name, "float")
    path, x = _x(name)
    ref = onnxruntime_run(str(path), x)
    y = prog.run(x, backend="lava")
    assert y.shape == ref.shape and y.dtype == np.float64
    assert np.max(np.abs(y - ref)) <= 1e-4 * np.max(np.abs(ref))
    weights = prog.last_lava["weights"]
    prog.run(x)
    for syn, w in weights.items():  # the float K/V storage (FloatPlasticDense)
        np.testing.assert_allclose(w, prog.last_state[syn], rtol=1e-12, atol=1e-12)


# issue 13: activation and product neurons (GELU tanh form; SwiGLU, RoPE, RMSNorm), from the corpus
CORPUS_NAMES = ["gpt2_relu_gelutanh__dynamo18_dynamic",
                "llama_swiglu_rope_relu_attn__dynamo18_dynamic"]


def _corpus_prog(name, precision):
    from tests.test_corpus import CORPUS

    key = (name, precision, "corpus")
    x = np.load(CORPUS / f"{name}.input.npy")
    if key not in _PROGS:
        _PROGS[key] = icl.compile(CORPUS / f"{name}.onnx", precision=precision,
                                  calibration=x if precision == "fixed" else None,
                                  max_context=32)
    return _PROGS[key], x[:2, :4], CORPUS / f"{name}.onnx"


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_activation_and_product_neurons_bit_exact_with_emulator(name):
    prog, x, _ = _corpus_prog(name, "fixed")
    models = {p.model for p in prog.ng.populations()}
    assert {"activation", "product"} & models == (
        {"activation"} if "gelu" in name else {"activation", "product"})
    y = prog.run(x, backend="lava", return_payload=True)
    want = prog.run(x, backend="numpy", return_payload=True)
    assert np.count_nonzero(want) > want.size // 2
    np.testing.assert_array_equal(y, want)
    for syn, w in prog.last_lava["weights"].items():
        np.testing.assert_array_equal(w, prog.last_state[syn], err_msg=syn)


def test_activation_and_product_neurons_float_match_onnxruntime():
    prog, x, path = _corpus_prog(CORPUS_NAMES[1], "float")
    ref = onnxruntime_run(str(path), x)
    y = prog.run(x, backend="lava")
    assert np.max(np.abs(y - ref)) <= 1e-4 * np.max(np.abs(ref))


def test_clamped_row_sum_divide_bit_exact():
    """A third-party export whose attention divides by its row sum clamped from below
    (transformers OPT, ``w / w.sum(-1).clamp(min=1e-4)``): the embedded divide of Lava ==
    the emulator's, and both follow max(Σ, eps), not Σ + eps."""
    from pathlib import Path
    corpus = Path(__file__).resolve().parent.parent / "fixtures" / "corpus"
    path = corpus / "opt_relu_rownorm_clamp__dynamo18_dynamic.onnx"
    rng = np.random.default_rng(3)
    x = rng.integers(0, 64, size=(B, T)).astype(np.int64)
    prog = icl.compile(path, precision="fixed", calibration=x, max_context=8)
    assert {h.normalise for h in prog.ng.heads} == {"rowsum_max"}
    y = prog.run(x, backend="lava", return_payload=True)
    want = prog.run(x, backend="numpy", return_payload=True)
    assert np.count_nonzero(want) > want.size // 2
    np.testing.assert_array_equal(y, want)


def test_steps_per_token_are_the_schedule():
    """The output population fires exactly every steps_per_token steps, once per token."""
    name = "tok_relu_fillneg_2l2h_ln_pos"
    prog = _prog(name, "fixed")
    _, x = _x(name)
    y = prog.run(x, backend="lava", timeout=120)  # dequantised: the emulator's floats
    np.testing.assert_array_equal(y, prog.run(x))
    ex = prog.last_lava
    sched = prog.report["schedule"]
    S, depth = sched["steps_per_token"], sched["pipeline_depth"]
    assert ex["steps_per_token"] == S == 2 and ex["pipeline_depth"] == depth
    L = ex["steps_per_sequence"]
    assert ex["steps"] == B * L == B * (S * (T - 1) + depth + 1)
    sink = ex["sink"][0]  # [n_out, steps]: the output population's spikes at every Lava step
    fired = np.flatnonzero(np.any(sink != 0, axis=0))
    expect = np.concatenate([b * L + depth + S * np.arange(T) for b in range(B)])
    np.testing.assert_array_equal(fired, expect)
    assert set(np.diff(fired[:T])) == {S}
    assert ex["processes"] == sum(ex["process_counts"].values())
    assert ex["process_counts"]["LearningDense"] == 2 * len(prog.ng.heads)


def test_fresh_network_per_sequence_gives_the_same_result():
    name = "tok_relu_perhead_fillneginf_1l2h"
    prog = _prog(name, "fixed")
    _, x = _x(name)
    y = prog.run(x, backend="lava", return_payload=True, fresh_network=True)
    assert prog.last_lava["networks"] == B
    np.testing.assert_array_equal(y, prog.run(x, return_payload=True))


def test_timeout_raises_and_cleans_up(monkeypatch):
    import time

    from icl_compiler.backends.lava import LavaTimeoutError, units

    name = "tok_relu_perhead_fillneginf_1l2h"
    prog = _prog(name, "fixed")
    _, x = _x(name)
    orig = units.Bank.compute

    def hang(self, unit, time_step):
        if time_step > 4:
            time.sleep(3600)  # a model process that never answers
        return orig(self, unit, time_step)

    with monkeypatch.context() as m:
        m.setattr(units.Bank, "compute", hang)  # inherited by the forked model processes
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"timeout of 5 s") as ei:
            prog.run(x, backend="lava", timeout=5)
        assert time.monotonic() - t0 < 30
    assert isinstance(ei.value, LavaTimeoutError)
    assert mp.active_children() == []  # every Lava OS process was killed and joined
    # the network works again right after (no stale shared memory or processes)
    y = prog.run(x, backend="lava", return_payload=True)
    np.testing.assert_array_equal(y, prog.run(x, return_payload=True))


def test_model_failure_raises_instead_of_hanging(monkeypatch):
    from icl_compiler.backends.lava import LavaRunError, units

    name = "tok_relu_perhead_fillneginf_1l2h"
    prog = _prog(name, "fixed")
    _, x = _x(name)
    orig = units.Bank.compute

    def broken(self, unit, time_step):
        if time_step > 4:
            raise ValueError("injected failure")
        return orig(self, unit, time_step)

    monkeypatch.setattr(units.Bank, "compute", broken)  # inherited by the forked model processes
    with pytest.raises(LavaRunError, match="injected failure"):
        prog.run(x, backend="lava", timeout=60)
    assert mp.active_children() == []


def test_two_programs_in_a_row_leak_nothing():
    outs = []
    for name in ("feat_identity_trilmul_1l4h_noMLP", "tok_relu_perhead_fillneginf_1l2h"):
        prog = _prog(name, "fixed")
        _, x = _x(name)
        y = prog.run(x, backend="lava", return_payload=True)
        np.testing.assert_array_equal(y, prog.run(x, return_payload=True))
        rel = prog.last_lava["released"]
        shm = [n for r in rel for n in r["shm"]]
        assert shm and _gone(shm)  # Lava's shared-memory segments were unlinked
        assert mp.active_children() == []
        outs.append(y)
    assert outs[0].shape != outs[1].shape
