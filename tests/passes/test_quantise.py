"""The quantisation pass (passes/quantise.py): invariants of its output, 16-bit K/V scales, the
auto choice of weight bits."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import icl_compiler as icl

from icl_compiler.semantics.interpreter import Interpreter as Emulator
from icl_compiler.semantics.fixed import RES_SCALE
from icl_compiler.errors import CompileError
from icl_compiler.ir.neuro import NeuroVerifyError, verify_neuro
from icl_compiler.passes.lower import lower
from icl_compiler.passes.quantise import KV_TARGET, quantise, relative_error
from tests.helpers import FEAT, attention_graph, fixture, leftovers, one_line, run_cli


def _graph(seed=0, **kw):
    return lower(attention_graph(np.random.default_rng(seed), t_max=8, **kw))


def _calib(seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (4, 8, 6))


@pytest.mark.parametrize("bits", [8, 16])
def test_output_verifies_and_keeps_the_structure(bits):
    ng = _graph()
    q, rep = quantise(ng, _calib(), weight_bits=bits)
    verify_neuro(q)
    assert q.precision == "fixed" and ng.precision == "float"  # the input graph is untouched
    assert {p.name for p in q.populations()} == {p.name for p in ng.populations()}
    lo = {s.name for s in q.synapses()} - {s.name for s in ng.synapses()}
    assert all(n.endswith(":lo") for n in lo) and (bool(lo) == (bits == 16))
    assert all(h.kv_bits == bits for h in q.heads) and rep["kv_bits"] == bits
    for s in q.synapses():
        if not s.plastic:
            assert s.weights.dtype == np.int8


def test_16bit_kv_scales_use_15_bits():
    ng = _graph()
    x = _calib()
    q8, _ = quantise(ng, x, weight_bits=8)
    q16, _ = quantise(ng, x, weight_bits=16)
    for h8, h16 in zip(q8.heads, q16.heads):
        for role in ("k", "v"):
            s8, s16 = q8.pop(getattr(h8, role)).scale, q16.pop(getattr(h16, role)).scale
            assert s8 / s16 == pytest.approx(RES_SCALE)  # calibrated max → 126·2^7 instead of 126
    emu = Emulator(q16)
    emu.run(x)
    h = q16.heads[0]
    K = emu.last_state[h.k_syn]
    d = q16.pop(h.k).size
    assert K.shape[-1] == 3 * d and np.max(K[..., 2 * d:]) > 0  # the low half is used
    assert np.max(np.abs(K[..., :2 * d])) == KV_TARGET  # the high half spans the 8-bit range


def test_16bit_is_much_closer_to_float():
    ng = _graph()
    x = _calib()
    ref, _ = Emulator(ng).run(x)
    err = {}
    for bits in (8, 16):
        q, rep = quantise(ng, x, weight_bits=bits)
        emu = Emulator(q)
        y, _ = emu.run(x)
        err[bits] = relative_error(emu.dequantise(y), ref)
        assert rep["calibration_error"][str(bits)] == pytest.approx(err[bits], abs=1e-6)
    assert err[16] < err[8] / 20


def test_auto_escalates_only_above_the_target():
    ng = _graph()
    x = _calib()
    _, r8 = quantise(ng, x, weight_bits=8)
    e8 = r8["calibration_error"]["8"]
    q, rep = quantise(ng, x, error_target=e8 * 1.01)
    assert rep["weight_bits"] == 8 and set(rep["calibration_error"]) == {"8"}
    assert "<= target" in rep["weight_bits_choice"]
    q, rep = quantise(ng, x, error_target=e8 * 0.99)
    assert rep["weight_bits"] == 16 and set(rep["calibration_error"]) == {"8", "16"}
    assert "so 16-bit" in rep["weight_bits_choice"] and all(h.kv_bits == 16 for h in q.heads)


def test_verifier_refuses_16bit_kv_in_float_and_odd_bits():
    ng = copy.deepcopy(_graph())
    ng.heads[0].kv_bits = 16
    with pytest.raises(NeuroVerifyError, match="kv_bits"):
        verify_neuro(ng)
    q, _ = quantise(_graph(), _calib(), weight_bits=8)
    q.heads[0].kv_bits = 12
    with pytest.raises(NeuroVerifyError, match="kv_bits"):
        verify_neuro(q)


def test_bad_options():
    with pytest.raises(ValueError, match="weight_bits"):
        quantise(_graph(), _calib(), weight_bits=4)
    with pytest.raises(ValueError, match="error_target"):
        quantise(_graph(), _calib(), error_target=0)


# -- NaN / inf in calibration data (through compile() and the CLI) ------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_calibration_data_is_a_compile_error(value):
    path, x, _ = fixture(FEAT)
    x = x.astype(np.float32).copy()
    x[0, 1, 2] = value
    with pytest.raises(CompileError, match="calibration data contains NaN or inf"):
        icl.compile(str(path), precision="fixed", calibration=x, max_context=16)


def test_cli_nonfinite_calibration_exits_3(tmp_path, capsys):
    path, x, _ = fixture(FEAT)
    x = x.astype(np.float32).copy()
    x[1, 0, 0] = np.nan
    np.save(tmp_path / "cal.npy", x)
    code, _, err = run_cli(capsys, path, "-o", tmp_path / "out", "--precision", "fixed",
                           "--calibrate", tmp_path / "cal.npy")
    line = one_line(err)
    assert code == 3 and "calibration data contains NaN or inf" in line
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


# -- non-finite float results are never quantised into finite output (issue 16, item 8) ---------

RMS = "feat_relu_where_1l2h_rms"
RMS_EPS = "/blocks.0/n1/Constant_1_output_0"  # the eps that RMSNorm adds to mean(x²)


def rmsnorm_with_eps(eps: float):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(fixture(RMS)[0]))
    node = next(n for n in m.graph.node if n.output[0] == RMS_EPS)
    node.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(eps, np.float32)))
    return m


def test_nan_of_the_models_own_arithmetic_fails_fixed_mode_naming_the_population(tmp_path,
                                                                                  capsys):
    """Item 8: an RMSNorm with a negative eps gives NaN in float; fixed mode printed finite
    numbers ("error inf%", 1840 saturations) and wrote the program."""
    m = rmsnorm_with_eps(-1.0)
    x = fixture(RMS)[1]
    with np.errstate(invalid="ignore"):
        assert np.isnan(icl.compile(m, max_context=16).run(x)).all()  # float: NaN, like ORT
    with pytest.raises(CompileError, match=r"the float program computes NaN on the calibration "
                                           r"data, first in population /blocks\.0/n1/\S+ "
                                           r"\(rmsnorm, its value\) at token 0") as ei:
        icl.compile(m, precision="fixed", calibration=x, max_context=16)
    assert "eps must be positive" in str(ei.value)
    import onnx

    onnx.save(m, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli(capsys, tmp_path / "m.onnx", "-o", tmp_path / "out", "--precision",
                           "fixed", "--calibrate", tmp_path / "x.npy")
    line = one_line(err)
    assert code == 3 and "computes NaN" in line and "rmsnorm" in line
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)
    # the default calibration (random features) finds it too
    with pytest.raises(CompileError, match="computes NaN"):
        icl.compile(m, precision="fixed", max_context=16)


def test_a_positive_eps_still_compiles():
    x = fixture(RMS)[1]
    prog = icl.compile(rmsnorm_with_eps(1e-5), precision="fixed", calibration=x, max_context=16)
    assert np.isfinite(prog.report["quantisation"]["calibration_error"]["8"])


def test_infinite_values_name_the_first_population_in_evaluation_order():
    ng = _graph()
    h = ng.heads[0]
    ng.pop(h.v).bias = np.full(ng.pop(h.v).size, np.inf)  # the IR allows it; the model's math
    with pytest.raises(CompileError, match=rf"computes infinite values .* population {h.v} "
                                           r"\(graded, its input current\) at token 0"):
        quantise(ng, _calib())


def test_nan_inside_the_fixed_point_program_is_refused(monkeypatch):
    """Fixed mode computes norms in float on the embedded core: a NaN there would be cast to an
    integer payload.  The fixed run on the calibration data refuses it like the float run."""
    from icl_compiler.passes import quantise as qmod

    path, x, _ = fixture(RMS)
    ng = icl.compile(path, max_context=16).ng
    assign = qmod._assign

    def broken(*args):
        q, *rest = assign(*args)
        for p in q.populations():
            if p.norm is not None:
                p.norm.eps = -1e30  # only in the fixed graph: the float run is finite
        return (q, *rest)

    monkeypatch.setattr(qmod, "_assign", broken)
    with pytest.raises(CompileError, match=r"the 8-bit fixed-point program computes a value that "
                                           r"is not a number .* population /blocks\.0/n1/\S+ "
                                           r"\(rmsnorm"):
        quantise(ng, x, weight_bits=8)


def test_a_non_finite_fixed_error_is_refused(monkeypatch):
    from icl_compiler.passes import quantise as qmod

    monkeypatch.setattr(qmod, "relative_error", lambda y, ref: float("inf"))
    with pytest.raises(CompileError, match=r"8-bit fixed-point program's error on the "
                                           r"calibration data is not finite"):
        quantise(_graph(), _calib(), weight_bits=8)


@pytest.mark.parametrize("dtype", [np.complex128, object, bool])
def test_calibration_data_must_be_real_numbers(dtype):
    x = _calib().astype(dtype)
    with pytest.raises(CompileError, match="calibration data must be real numbers"):
        quantise(_graph(), x)
