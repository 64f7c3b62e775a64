"""activation_fit: the integer responses of activation neurons, their segments and measured error."""
import numpy as np
import pytest

from icl_compiler.ir.neuro import ActivationParams
from icl_compiler.ir.ops import ACTIVATIONS
from icl_compiler.passes import activation_fit as af
from icl_compiler.semantics import fixed as fx

U = fx.OPERAND_MAX


def _scales(x_max: float, y_max: float):
    """The quantiser's choice: operand 2^13 at x_max, output 2^20 at y_max."""
    return x_max / 2**13, y_max / 2**20


@pytest.mark.parametrize("fn, x_max", [("gelu", 4.0), ("gelu_tanh", 4.0), ("silu", 6.0),
                                       ("sigmoid", 8.0), ("tanh", 3.0), ("softplus", 5.0),
                                       ("mish", 4.0), ("elu", 3.0), ("quick_gelu", 4.0)])
def test_the_fitted_response_meets_its_target_at_every_operand(fn, x_max):
    f = ACTIVATIONS[fn]
    y_max = float(np.max(np.abs(f(np.linspace(-x_max, x_max, 1001)))))
    s_in, s_out = _scales(x_max, y_max)
    a, entry = af.fit(fn, s_in, s_out, x_max, 0.005)
    assert a.method == "pwl" and entry["segments"] == len(a.breaks) + 1 <= af.MAX_SEGMENTS
    # the measurement, redone here: every operand, the exact function, relative to max |f|
    u = np.arange(-U, U + 1)
    y = np.clip(fx.pwl(u, a.c0, a.c1, a.breaks, a.slopes, a.frac), fx.PAYLOAD_MIN,
                fx.PAYLOAD_MAX) * s_out
    err = np.abs(y - f(u * s_in)).max() / y_max
    assert err <= 0.005 and err == pytest.approx(entry["max_error_operand_range"], rel=1e-3,
                                                 abs=1e-7)
    # every partial sum of the response fits int32 (what neuron microcode holds)
    acc = a.c0 + a.c1 * u
    assert np.abs(acc).max() < 2**31
    for b, w in zip(a.breaks, a.slopes):
        acc = acc + w * np.maximum(u - b, 0)
        assert np.abs(acc).max() < 2**31
    # fewer segments would miss the target (the count is the smallest that meets it)
    if entry["segments"] > 1:
        fewer = af._pwl_params(fn, f, s_in, s_out, entry["segments"] - 1)
        assert af.measure(fewer, s_in, s_out, x_max)["max_error_operand_range"] > 0.005


def test_a_tighter_target_needs_more_segments():
    s_in, s_out = _scales(4.0, 4.0)
    counts = [af.fit("gelu", s_in, s_out, 4.0, t)[1]["segments"] for t in (0.02, 0.005, 0.001)]
    assert counts[0] < counts[1] < counts[2], counts


def test_square_responses_are_exact_up_to_the_final_rounding():
    s_in = 3.0 / 2**13
    a, scale = af.square_params("relu2", s_in, 2**22)
    assert (a.method, a.frac) == ("square", 8) and scale == s_in**2 * 256
    m = af.measure(a, s_in, scale, 3.0)
    assert m["max_error_calibrated"] <= 0.5 * 256 * s_in**2 / 9.0 + 1e-15  # half an output LSB
    # the whole operand range (4× the calibrated one) fits the payload: no saturation
    assert m["max_error_operand_range"] <= 0.5 * 256 * s_in**2 / 9.0 + 1e-15
    assert af.ops_per_neuron(a) == 5


def test_ops_per_neuron_counts_the_segments():
    a = ActivationParams("gelu", "pwl", breaks=[-3, 0, 3], slopes=[1, 2, 3], frac=4)
    assert af.ops_per_neuron(a) == 6 + 4 * 3
