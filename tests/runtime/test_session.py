"""Streaming sessions on the NumPy backend: T steps equal ``Program.run`` on the same T tokens bit
for bit, on every fixture, in float and fixed point; reset, state, errors, closing."""
import gc

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.runtime import session as session_mod
from tests.helpers import fixture, fixture_names

NAMES = fixture_names(softmax=False)


def _prog(name, precision="fixed", **kw):
    path, x, meta = fixture(name)
    if precision == "fixed":
        kw.setdefault("calibration", x)
    return icl.compile(path, precision=precision, max_context=meta["t_max"], **kw), x


@pytest.mark.parametrize("precision", ["float", "fixed"])
@pytest.mark.parametrize("name", NAMES)
def test_steps_equal_run(name, precision):
    prog, x = _prog(name, precision)
    y_run = prog.run(x, return_payload=True)
    with prog.session(batch=x.shape[0]) as s:
        ys = np.stack([s.step(x[:, t], return_payload=True) for t in range(x.shape[1])], 1)
        np.testing.assert_array_equal(ys, y_run)
        state = s.state()
        assert set(state) == set(prog.last_state)
        for k, w in state.items():
            np.testing.assert_array_equal(w, prog.last_state[k], err_msg=k)
        assert s.position == x.shape[1]


def test_reset_starts_again_and_outputs_are_dequantised():
    prog, x = _prog("feat_relu_where_1l2h_rms", weight_bits=16)
    s = prog.session(batch=x.shape[0])
    first = [s.step(x[:, t]) for t in range(3)]
    s.reset()
    assert s.position == 0
    assert all(not np.any(w) for w in s.state().values())
    again = [s.step(x[:, t]) for t in range(3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.stack(again, 1), prog.run(x[:, :3]))
    s.close()


def test_state_is_a_copy():
    prog, x = _prog("tok_identity_trilmul_1l1h")
    s = prog.session(batch=x.shape[0])
    s.step(x[:, 0])
    st = s.state()
    for w in st.values():
        w[...] = 7
    assert all(not np.all(w == 7) for w in s.state().values())


def test_errors():
    prog, x = _prog("tok_identity_trilmul_1l1h")
    s = prog.session(batch=2)
    with pytest.raises(ValueError, match="one token for each of the 2 sequences"):
        s.step(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="token ids"):
        s.step(np.array([0.5, 1.5]))
    for t in range(prog.t_max):
        s.step(x[:2, t % x.shape[1]])
    with pytest.raises(ValueError, match=r"T_max = 16.*reset\(\)"):
        s.step(x[:2, 0])
    s.reset()
    s.step(x[:2, 0])
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.step(x[:2, 0])
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        prog.session(batch=0)
    with pytest.raises(ValueError, match="unknown backend"):
        prog.session(backend="gpu")


def test_sessions_close_when_collected_and_at_exit():
    prog, _ = _prog("tok_identity_trilmul_1l1h")
    s = prog.session(batch=1)
    assert s in session_mod._LIVE
    del s
    gc.collect()
    assert not list(session_mod._LIVE)
    s2 = prog.session(batch=1)
    session_mod._close_all()  # what the atexit hook does
    with pytest.raises(RuntimeError, match="closed"):
        s2.step(np.array([1]))
