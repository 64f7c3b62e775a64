"""The reference interpreter of the neuromorphic IR (float) == the interpreter of the tensor IR."""
import numpy as np
import pytest

from icl_compiler.semantics.interpreter import Interpreter as Emulator
from icl_compiler.ir.interpreter import run
from icl_compiler.ir.neuro import verify_neuro
from icl_compiler.ir.verify import verify
from icl_compiler.passes.lower import lower
from tests.helpers import attention_graph


@pytest.mark.parametrize("f,norm,lowering", [("relu", "none", "kv_slot"),
                                              ("identity", "none", "kv_slot"),
                                              ("relu2", "rowsum", "kv_slot"),
                                              ("relu", "rowsum_max", "kv_slot"),
                                              ("identity", "none", "fast_weight")])
def test_emulator_matches_interpreter(f, norm, lowering):
    rng = np.random.default_rng(1)
    g = attention_graph(rng, f=f, norm=norm, lowering=lowering)
    verify(g)
    ng = lower(g)
    verify_neuro(ng)
    x = rng.uniform(-1, 1, (3, 7, 6))
    ref = run(g, {"x": x}, float_dtype="float64")["y"]
    got, stats = Emulator(ng).run(x)
    assert np.max(np.abs(got - ref)) <= 1e-9 * np.max(np.abs(ref))
    assert stats.tokens == 7 and stats.learning_updates > 0


def test_plastic_weights_hold_k_and_v_rows():
    rng = np.random.default_rng(2)
    ng = lower(attention_graph(rng, heads=1))
    emu = Emulator(ng)
    x = rng.uniform(-1, 1, (2, 4, 6))
    emu.run(x)
    h = ng.heads[0]
    K = emu.last_state[h.k_syn]
    assert K.shape == (2, 10, 4)
    assert np.all(K[:, 4:] == 0), "unwritten slots stay zero (causality)"
    assert np.all(np.abs(K[:, :4]).sum(-1) > 0)


def test_a_product_population_multiplies_its_two_ports_in_fixed_point():
    from icl_compiler.ir.neuro import (NeuroGraph, NeuronModel, Placement, ProgramIO,
                                       QuantParams)
    from icl_compiler.semantics import fixed

    ng = NeuroGraph("fixed")
    ng.new_population("input", 2, NeuronModel.INPUT, placement=Placement.HOST, scale=1.0)
    ng.new_population("p", 2, NeuronModel.PRODUCT, q=QuantParams(prod_shift=2),
                      bias=np.array([3, -1]))
    ng.new_population("output", 2, NeuronModel.OUTPUT, placement=Placement.HOST)
    ng.connect("input", "p", np.array([[2, 0], [0, 3]], np.int8), exp=1)
    ng.connect("input", "p", np.array([[1, 1], [-1, 0]], np.int8), exp=0, port=1)
    ng.connect("p", "output", np.array([[1, 0], [0, 1]], np.int8), exp=0)
    ng.io = ProgramIO("x", "features", "y", "output", input_pop="input")
    verify_neuro(ng)
    x = np.array([[[5.0, -7.0]], [[40000.0, -39999.0]]])  # [B=2, T=1, 2]
    y, stats = Emulator(ng).run(x)
    # port 0: 2·2·5 + 3 = 23, 3·2·(−7) − 1 = −43; port 1: 5 − 7 = −2, −5 → (a·b) >> 2
    assert y[0, 0].tolist() == [(23 * -2) >> 2, (-43 * -5) >> 2] == [-12, 53]
    # the second sequence: both operands a and the second b saturate to ±(2^15 − 1), and the
    # second product to the 24-bit payload maximum (4 saturations, counted)
    assert y[1, 0].tolist() == [fixed.OPERAND_MAX >> 2, fixed.PAYLOAD_MAX]
    assert stats.saturations == {"payload:p": 4}
