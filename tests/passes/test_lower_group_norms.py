"""Per-head (grouped) norms: RMSNorm / L2 norm / LayerNorm of q and k over d_head of
[B, H, T, d_h] (x-transformers attn_qk_norm, Qwen3/OLMo2-style q_norm/k_norm) are lowered to one
norm population per token whose units are the heads (``NormParams.group`` = d_h): float and
fixed match onnxruntime, the fixed NumPy emulator and Lava agree bit for bit, the group survives
save/load."""
from __future__ import annotations

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.backends.lava import lava_available
from icl_compiler.ir.neuro import NormParams, Population
from icl_compiler.semantics.neurons import norm
from tests.onnx_builder import Net, ort_run, rel_err

D, H = 8, 2
DH = D // H
X = np.random.default_rng(1).normal(size=(1, 6, D)).astype(np.float32)


def rms(n, x):  # decomposed, gain over d_head
    ms = n.op("ReduceMean", n.op("Pow", x, n.c(2.0)), axes=[-1], keepdims=1)
    y = n.op("Div", x, n.op("Sqrt", n.op("Add", ms, n.c(1e-6))))
    return n.op("Mul", y, n.c(1 + 0.1 * n.rng.normal(size=DH)))


def l2(n, x):  # F.normalize(x, dim=-1) · scale (x-transformers qk_norm)
    nr = n.op("ReduceL2", x, axes=[-1], keepdims=1)
    y = n.op("Div", x, n.op("Expand", n.op("Clip", nr, n.c(1e-12)), n.op("Shape", x)))
    return n.op("Mul", y, n.c(1 + 0.1 * n.rng.normal(size=DH)))


def ln(n, x):
    return n.op("LayerNormalization", x, n.c(1 + 0.1 * n.rng.normal(size=DH)),
                n.c(0.1 * n.rng.normal(size=DH)), axis=-1, epsilon=1e-5)


def bthd_rms(n, x):  # Llama-style: the norm on [B, T, H, d_h] before the transpose
    t = n.op("Transpose", x, perm=[0, 2, 1, 3])
    return n.op("Transpose", rms(n, t), perm=[0, 2, 1, 3])


NORMS = {"rms": rms, "l2": l2, "ln": ln, "bthd_rms": bthd_rms}


def model(kind, t="T"):
    n = Net(d=D, t=t)
    f = NORMS[kind]
    h = n.linear("x", D, D)
    return n.model(n.op("Add", h, n.attention(h, h=H, qk=lambda q, k: (f(n, q), f(n, k)))))


@pytest.mark.parametrize("kind, t", [("rms", "T"), ("l2", "T"), ("ln", 6), ("bthd_rms", "T")])
def test_per_head_norm_compiles_float_and_fixed(kind, t):
    m = model(kind, t)
    ref, ctx = ort_run(m, X), 16 if t == "T" else None
    prog = icl.compile(m, max_context=ctx)
    assert rel_err(prog.run(X), ref) < 1e-4
    pops = [p for p in prog.ng.populations() if p.model == "norm"]
    assert len(pops) == 2 and all(p.size == D and p.norm.group == DH for p in pops)
    fixed = icl.compile(m, precision="fixed", calibration=X, max_context=ctx)
    assert rel_err(fixed.run(X), ref) < 0.05


def test_group_norm_semantics_is_one_norm_per_group():
    rng = np.random.default_rng(0)
    gamma, beta = rng.normal(size=D), rng.normal(size=D)
    x = rng.normal(size=(3, D))
    for kind in ("layernorm", "rmsnorm", "l2norm"):
        pop = Population("n", D, "norm", norm=NormParams(kind, 1e-5, gamma, beta, group=DH))
        want = np.concatenate([norm(Population("h", DH, "norm", norm=NormParams(
            kind, 1e-5, gamma[s], beta[s])), x[:, s], False) for s in
            (slice(0, DH), slice(DH, D))], -1)
        np.testing.assert_allclose(norm(pop, x, False), want, rtol=1e-12)
        whole = norm(Population("w", D, "norm", norm=NormParams(kind, 1e-5, gamma, beta)), x,
                     False)
        assert not np.allclose(whole, want)  # the grouping changes the numbers


def test_group_survives_save_and_load(tmp_path):
    m = model("rms")
    prog = icl.compile(m, precision="fixed", calibration=X, max_context=8)
    prog.save(tmp_path / "p")
    back = icl.load(tmp_path / "p")
    assert [p.norm.group for p in back.ng.populations() if p.model == "norm"] == [DH, DH]
    np.testing.assert_array_equal(back.run(X), prog.run(X))


@pytest.mark.lava
@pytest.mark.skipif(not lava_available(), reason="Lava is not available")
def test_fixed_lava_equals_numpy_bit_for_bit():
    prog = icl.compile(model("l2"), precision="fixed", calibration=X, max_context=8)
    y = prog.run(X, backend="lava", return_payload=True)
    want = prog.run(X, backend="numpy", return_payload=True)
    assert np.count_nonzero(want) > want.size // 2
    np.testing.assert_array_equal(y, want)
