"""Lava runs die with their parent (backends/lava/lifecycle.py).

A subprocess (the "parent") runs a Lava network whose model processes block mid-run; the test
then kills or signals it and checks that, within a few seconds, no process of that network
(actors, runtime service, shared-memory manager, resource tracker, reaper) is alive and no
/dev/shm segment of it is left.  The first tests need no Lava: they check the mechanism on plain
multiprocessing children.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import select
import signal
import subprocess
import sys
import time
from multiprocessing import shared_memory
from pathlib import Path

import pytest

from icl_compiler.backends.lava import lava_available, lava_unavailable_reason
from icl_compiler.backends.lava import lifecycle
from icl_compiler.backends.lava.lifecycle import Guard, NetworkInterrupted, starttime

ROOT = Path(__file__).resolve().parents[2]


def lava_test(f):
    """Marked ``lava`` and skipped where Lava cannot be imported (like tests/backends/test_lava_*)."""
    f = pytest.mark.skipif(not lava_available(), reason=str(lava_unavailable_reason()))(f)
    return pytest.mark.lava(f)


# -- helpers --------------------------------------------------------------------------------------

def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every live descendant of ``pid``."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids = [int(c) for c in f.read().split()]
        except OSError:
            continue
        for k in kids:
            st = starttime(k)
            if st is not None:
                out.append((k, st))
                out += descendants(k)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


class Parent:
    """A subprocess in its own session and process group, read line by line."""

    def __init__(self, code: str, *args: str, tmp: Path):
        self.err_path = tmp / "parent.stderr"
        self.err = open(self.err_path, "wb")
        self.p = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=self.err,
                                  start_new_session=True)
        self.buf = b""

    def line(self, prefix: str, timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                ln, self.buf = self.buf.split(b"\n", 1)
                if ln.decode().startswith(prefix):
                    return ln.decode()[len(prefix):]
            left = end - time.monotonic()
            if left <= 0 or self.p.poll() is not None and not select.select(
                    [self.p.stdout], [], [], 0)[0]:
                raise AssertionError(f"no {prefix!r} line from the parent; stderr:\n"
                                     + self.stderr())
            if select.select([self.p.stdout], [], [], min(left, 0.5))[0]:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk and self.p.poll() is not None:
                    continue
                self.buf += chunk

    def stderr(self) -> str:
        self.err.flush()
        return self.err_path.read_text(errors="replace")[-3000:]

    def wait(self, timeout: float) -> int | None:
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_all(self, procs) -> None:
        for pid, st in procs:
            if starttime(pid) == st:
                os.kill(pid, signal.SIGKILL)
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def assert_nothing_left(parent: Parent, procs, shm: list[str], within: float = 5.0) -> None:
    end = time.monotonic() + within
    while True:
        alive = [(p, s) for p, s in procs if starttime(p) == s]
        left = [n for n in shm if os.path.exists(f"/dev/shm/{n}")]
        if not alive and not left or time.monotonic() > end:
            break
        time.sleep(0.05)
    if alive or left:  # leave the machine clean for the next test, then fail
        what = [f"{p}: {cmdline(p)}" for p, _ in alive]
        parent.kill_all(procs)
        for n in left:
            try:
                os.unlink(f"/dev/shm/{n}")
            except OSError:
                pass
    if alive:
        raise AssertionError(f"{len(alive)} processes of the network are alive {within:g} s "
                             f"after: {what[:5]}\nparent stderr:\n{parent.stderr()}")
    assert not left, f"{len(left)} of {len(shm)} /dev/shm segments are left: {left[:5]}"
    root = lifecycle.registry_root()
    if root is not None:
        mine = [e for e in os.listdir(root) if e.startswith(f"{parent.p.pid}-")]
        assert not mine, f"registry left: {mine}"


# -- the mechanism, without Lava ------------------------------------------------------------------

PLAIN = r"""
import json, multiprocessing as mp, os, sys, time
from multiprocessing import shared_memory
from icl_compiler.backends.lava.lifecycle import Guard
mp.set_start_method("fork", force=True)
g = Guard()
g.start()
with g.forking():
    kids = [mp.Process(target=time.sleep, args=(3600,)) for _ in range(3)]
    for k in kids:
        k.start()
    seg = shared_memory.SharedMemory(create=True, size=4096)
    g.record_shm(seg.name)
print("READY" + json.dumps({"shm": [seg.name], "kids": [k.pid for k in kids]}), flush=True)
if sys.argv[1] == "close":
    for k in kids:
        k.terminate(); k.join()
    seg.close(); seg.unlink()
    print("STATS" + json.dumps(g.close()), flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("how", ["parent", "group"])
def test_plain_children_and_shm_die_with_a_killed_parent(tmp_path, how):
    par = Parent(PLAIN, "hang", tmp=tmp_path)
    info = json.loads(par.line("READY"))
    procs = descendants(par.p.pid)
    kids = {p for p, _ in procs}
    assert set(info["kids"]) <= kids and len(procs) >= 5  # 3 children, the tracker, the reaper
    assert os.path.exists(f"/dev/shm/{info['shm'][0]}")
    if how == "group":  # the parent, its children and the resource tracker: only the reaper lives
        os.killpg(par.p.pid, signal.SIGKILL)
    else:
        os.kill(par.p.pid, signal.SIGKILL)
    assert par.wait(5) == -signal.SIGKILL
    assert_nothing_left(par, procs, info["shm"], within=5)
    assert "leaked shared_memory" not in par.stderr()  # the tracker was told


def test_close_releases_everything_and_dismisses_the_reaper(tmp_path):
    par = Parent(PLAIN, "close", tmp=tmp_path)
    info = json.loads(par.line("READY"))
    stats = json.loads(par.line("STATS"))
    assert stats == {"killed": [], "shm": []}  # the children and segment were gone already
    procs = [(p, s) for p, s in descendants(par.p.pid)]
    assert not [p for p, _ in procs if "--reap" in cmdline(p)]  # the reaper has exited
    os.kill(par.p.pid, signal.SIGKILL)
    par.wait(5)
    assert_nothing_left(par, procs, info["shm"])


def test_stale_registry_is_cleaned_by_the_next_run(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_start = starttime(dead.pid)
    dead.wait()  # a dead owner (and no reaper)
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    reg = root / f"{dead.pid}-{dead_start}-x"
    reg.mkdir()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (reg / f"pid-{victim.pid}").write_text(starttime(victim.pid))
        (reg / f"pid-{other.pid}").write_text("1")  # a reused pid: another process, spared
        seg = shared_memory.SharedMemory(create=True, size=4096)
        seg.close()
        (reg / "shm").write_text(f"{seg.name}\n../etc/passwd\n")
        live = root / f"{os.getpid()}-{starttime(os.getpid())}-y"  # a live owner: untouched
        live.mkdir()
        (live / "shm").write_text(f"{seg.name}\n")
        out = lifecycle.reap_stale(str(root))
        assert [o["registry"] for o in out] == [str(reg)]
        assert out[0]["killed"] == [victim.pid] and out[0]["shm"] == [seg.name]
        assert victim.wait(5) == -signal.SIGKILL
        assert other.poll() is None
        assert not reg.exists() and live.exists()
        assert not os.path.exists(f"/dev/shm/{seg.name}")
    finally:
        for p in (victim, other):
            p.kill()
            p.wait()


def test_signal_unwinds_then_is_redelivered():
    old = signal.getsignal(signal.SIGINT)
    g = Guard().start()
    try:
        assert signal.getsignal(signal.SIGINT) == g._on_signal
        with pytest.raises(NetworkInterrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGINT)  # a second one while unwinding: held back
        time.sleep(0.05)
    except BaseException:
        g.close()
        raise
    with pytest.raises(KeyboardInterrupt):  # close re-delivers the first to the old handler
        g.close()
    assert signal.getsignal(signal.SIGINT) is old
    assert g.close() == g.stats  # idempotent, and nothing pending any more


def test_ignored_signals_stay_ignored():
    old = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        g = Guard().start()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert g.close() == {"killed": [], "shm": []}
    finally:
        signal.signal(signal.SIGTERM, old)


# -- Lava networks --------------------------------------------------------------------------------

LAVA_PARENT = r"""
import json, os, signal, sys, threading, time
import numpy as np
import icl_compiler as icl
from icl_compiler.backends.lava import _require_lava, units
from tests.helpers import fixture
_require_lava()
from icl_compiler.backends.lava import network as N
from lava.magma.runtime.message_infrastructure.multiprocessing import MultiProcessing
from lava.magma.runtime.runtime import Runtime

mode = sys.argv[1]
path, x, meta = fixture("tok_relu_perhead_fillneginf_1l2h")
prog = icl.compile(path, precision="fixed", calibration=x, max_context=meta["t_max"])
xs = np.random.default_rng(0).integers(0, meta["in_dim"], size=(1, 5)).astype(np.int64)

def names(infra):
    return [h.name for h in infra.smm._shared_memory_handles]

if mode in ("run", "thread"):  # a model process that never answers after step 4
    orig_compute = units.Bank.compute
    def compute(self, unit, time_step):
        if time_step > 4:
            time.sleep(3600)
        return orig_compute(self, unit, time_step)
    units.Bank.compute = compute
if mode == "compile":  # stop while Lava forks its actors
    orig_build = MultiProcessing.build_actor
    def build_actor(self, *a, **k):
        out = orig_build(self, *a, **k)
        if len(self.actors) == 6:
            print("READY" + json.dumps({"shm": names(self)}), flush=True)
            time.sleep(3600)
        return out
    MultiProcessing.build_actor = build_actor
if mode == "stop":  # stop while Lava's own stop() runs
    orig_stop = Runtime.stop
    def stop(self):
        if self._is_started:  # (not again from AbstractProcess.__del__)
            print("READY" + json.dumps({"shm": names(self._messaging_infrastructure)}),
                  flush=True)
            time.sleep(3600)
        return orig_stop(self)
    Runtime.stop = stop
else:
    orig_compile = N.compile_network
    def compile_network(net):
        orig_compile(net)
        print("READY" + json.dumps({"shm": names(net.runtime._messaging_infrastructure)}),
              flush=True)
    N.compile_network = compile_network

run = lambda: prog.run(xs, backend="lava", timeout=600)
if mode == "thread":
    t = threading.Thread(target=run)
    t.start()
    t.join()
else:
    run()
print("DONE", flush=True)
"""


def _lava_parent(tmp_path, mode):
    par = Parent(LAVA_PARENT, mode, tmp=tmp_path)
    info = json.loads(par.line("READY"))
    time.sleep(0.3)  # the run is under way (or blocked where the mode wants it)
    procs = descendants(par.p.pid)
    assert len(procs) >= 8 and info["shm"], (procs, info)
    return par, procs, info["shm"]


@lava_test
@pytest.mark.parametrize("mode, how", [("run", "parent"), ("thread", "parent"), ("run", "group")])
def test_sigkill_leaves_no_process_and_no_shared_memory(tmp_path, mode, how):
    """SIGKILL of the parent (from the main thread: the death signal; from a thread: the
    reaper), or of its whole process group (the resource tracker too: the reaper)."""
    par, procs, shm = _lava_parent(tmp_path, mode)
    if how == "group":
        os.killpg(par.p.pid, signal.SIGKILL)
    else:
        os.kill(par.p.pid, signal.SIGKILL)
    assert par.wait(5) == -signal.SIGKILL
    assert_nothing_left(par, procs, shm, within=5)


@lava_test
@pytest.mark.parametrize("sig, how, mode", [
    (signal.SIGTERM, "parent", "run"),   # kill PID
    (signal.SIGTERM, "group", "run"),    # timeout(1), CI runners
    (signal.SIGINT, "group", "run"),     # Ctrl-C
    (signal.SIGINT, "parent", "stop"),   # during Lava's own stop()
    (signal.SIGINT, "group", "compile"),  # while Lava forks its actors
])
def test_sigterm_sigint_stop_the_network_and_exit_promptly(tmp_path, sig, how, mode):
    par, procs, shm = _lava_parent(tmp_path, mode)
    t0 = time.monotonic()
    if how == "group":
        os.killpg(par.p.pid, sig)
    else:
        os.kill(par.p.pid, sig)
    rc = par.wait(5)
    if rc is None:
        par.kill_all(procs)
        raise AssertionError(f"the parent still runs 5 s after {sig.name}; stderr:\n"
                             + par.stderr())
    assert time.monotonic() - t0 < 5
    assert rc == -sig, par.stderr()  # the signal was re-delivered after the cleanup
    assert_nothing_left(par, procs, shm, within=3)
    err = par.stderr()
    assert "leaked shared_memory" not in err
    if sig == signal.SIGINT:  # the parent's KeyboardInterrupt only: no child tracebacks
        assert err.count("Traceback") <= 1 and "Process SystemProcess" not in err, err


@lava_test
def test_in_process_run_restores_handlers_and_leaves_no_registry():
    import numpy as np

    import icl_compiler as icl
    from tests.helpers import fixture

    path, x, meta = fixture("tok_relu_perhead_fillneginf_1l2h")
    prog = icl.compile(path, precision="fixed", calibration=x, max_context=meta["t_max"])
    xs = np.random.default_rng(0).integers(0, meta["in_dim"], size=(2, 5)).astype(np.int64)
    before = {s: signal.getsignal(s) for s in lifecycle.HANDLED_SIGNALS}
    y = prog.run(xs, backend="lava", return_payload=True)
    np.testing.assert_array_equal(y, prog.run(xs, return_payload=True))
    assert {s: signal.getsignal(s) for s in lifecycle.HANDLED_SIGNALS} == before
    assert mp.active_children() == []
    root = lifecycle.registry_root()
    assert not [e for e in os.listdir(root) if e.startswith(f"{os.getpid()}-")]
    assert not [p for p, _ in descendants(os.getpid()) if "--reap" in cmdline(p)]


@pytest.mark.parametrize("t", [float("nan"), float("inf"), 0, -1, True, "10"])
def test_run_program_checks_its_timeout_itself(t):
    """A direct caller of the backend (not through Program.run) cannot switch the deadline off."""
    import numpy as np

    from icl_compiler.backends.lava import run_program
    from icl_compiler.errors import OptionError

    with pytest.raises(OptionError, match="timeout must be a positive number of seconds"):
        run_program(object(), np.zeros((1, 2), np.int64), timeout=t)
