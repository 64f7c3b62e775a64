"""Streaming sessions on Lava (backends/lava/stream.py): T steps == the emulator bit for bit, one
network for every step, reset on chip, and a clean stop on close, on garbage collection and at
exit (~30 s in all)."""
from __future__ import annotations

import gc
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.backends.lava import lava_available, lava_unavailable_reason
from tests.helpers import fixture

pytestmark = [pytest.mark.lava,
              pytest.mark.skipif(not lava_available(), reason=str(lava_unavailable_reason()))]
ROOT = Path(__file__).resolve().parents[2]
NAME = "tok_relu_fillneg_2l2h_ln_pos"  # 2 layers, LayerNorm (embedded ops), positions, MLPs


def _prog(precision="fixed"):
    path, x, meta = fixture(NAME)
    prog = icl.compile(path, precision=precision, calibration=x if precision == "fixed" else None,
                       max_context=meta["t_max"])
    return prog, x[:1, :5]


def test_steps_equal_run_with_one_network_and_reset_on_chip():
    prog, x = _prog()
    want = prog.run(x, return_payload=True)
    state = prog.last_state
    with prog.session(batch=1, backend="lava") as s:
        stream = s._stream
        net = stream.nets[0].net
        P = stream.plan.S
        assert P == prog.report["schedule"]["pipeline_depth"] + 1
        ys = np.stack([s.step(x[:, t], return_payload=True) for t in range(x.shape[1])], 1)
        np.testing.assert_array_equal(ys, want)
        for k, w in s.state().items():
            np.testing.assert_array_equal(w, state[k], err_msg=k)
        s.reset()
        again = np.stack([s.step(x[:, t], return_payload=True) for t in range(2)], 1)
        np.testing.assert_array_equal(again, want[:, :2])
        assert stream.starts == 1 and stream.nets[0].net is net  # started once
        assert net.steps == 1 + P * (x.shape[1] + 2)  # the idle start step, then P per token
        pids = [a.pid for a in net.runtime._messaging_infrastructure.actors]
    assert mp.active_children() == []
    assert not any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2]
                   != "Z" for p in pids)


def test_garbage_collection_stops_the_network():
    prog, x = _prog("float")
    s = prog.session(batch=1, backend="lava")
    y = s.step(x[:, 0])
    np.testing.assert_allclose(y, prog.run(x[:, :1])[:, 0], rtol=1e-12, atol=1e-12)
    assert mp.active_children()
    del s
    gc.collect()
    t0 = time.monotonic()
    while mp.active_children() and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert mp.active_children() == []


EXIT_CODE = r"""
import json, numpy as np, icl_compiler as icl
from tests.helpers import fixture
path, x, meta = fixture("tok_identity_trilmul_1l1h")
prog = icl.compile(path, precision="fixed", calibration=x, max_context=meta["t_max"])
s = prog.session(batch=1, backend="lava")
s.step(x[:1, 0])
infra = s._stream.nets[0].net.runtime._messaging_infrastructure
print("STEPPED" + json.dumps({"shm": [h.name for h in infra.smm._shared_memory_handles],
                              "pids": [a.pid for a in infra.actors]}), flush=True)
"""  # exits with the session open


def test_exit_with_an_open_session_stops_it():
    import json

    r = subprocess.run([sys.executable, "-c", EXIT_CODE], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "STEPPED" in r.stdout, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "leaked" not in r.stderr, r.stderr[-2000:]
    info = json.loads(r.stdout.split("STEPPED", 1)[1].splitlines()[0])
    assert info["shm"] and info["pids"]
    time.sleep(0.5)
    assert not [n for n in info["shm"] if os.path.exists(f"/dev/shm/{n}")]
    assert not [p for p in info["pids"] if os.path.exists(f"/proc/{p}")]
