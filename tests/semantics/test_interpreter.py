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
