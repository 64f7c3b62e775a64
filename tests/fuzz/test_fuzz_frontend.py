"""Fuzzing the frontend with hostile ONNX models (hypothesis).

Every case must end in success or a CompileError with a one-line message: never another
exception, never a hang (per-case timeout), never a big allocation (size guards in the frontend;
an address-space limit is the safety net).  Imported graphs must pass the IR verifier, and where
onnxruntime runs the mutated model, the IR interpreter must run it too and agree.

``--fuzz-cases N`` is the total over this module (CI default: a few hundred, fixed seed):

    make fuzz          # pytest -q tests/fuzz --fuzz-cases=10000

The split: 25 % byte mutations, 8 % external data on disk, 7 % NaN/inf weights, 5 % whole
compiles through the CLI (at most 300), and the rest structural ModelProto mutations.
For a campaign that tallies every failure instead of stopping at the first, see campaign.py.
"""
from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from icl_compiler.errors import CompileError
from icl_compiler.frontend import import_model, load_onnx
from tests.fuzz import harness
from tests.fuzz.mutate import (
    MUTATORS,
    PLAUSIBLE,
    _float_tensors,
    fixture_bytes,
    fixture_model,
    fixtures,
    mutate_bytes,
    mutate_model,
)
from tests.helpers import FIXTURES

NAMES = sorted(fixtures())
KINDS = sorted(MUTATORS)
SHARE = {"bytes": 0.25, "external": 0.08, "nonfinite": 0.07, "cli": 0.05}  # proto: the rest
CLI_CAP = 300  # whole compiles are the slow part; the frontend level is what matters


def budget(total: int, family: str) -> int:
    """This family's share of the --fuzz-cases total (the shares add up to the total)."""
    def share(f):
        n = int(round(total * SHARE[f]))
        return min(n, CLI_CAP) if f == "cli" else n

    if family == "proto":
        return max(total - sum(share(f) for f in SHARE), 0)
    return max(share(family), 1) if total > 0 else 0


def hsettings(n: int, fixed_seed: bool):
    return settings(
        max_examples=n, deadline=None, database=None, derandomize=fixed_seed,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck), print_blob=True)


@pytest.fixture(scope="module", autouse=True)
def _memory_safety_net():
    with harness.memory_limit():
        yield


kinds_strategy = st.lists(st.one_of(st.sampled_from(sorted(PLAUSIBLE)), st.sampled_from(KINDS)),
                          min_size=1, max_size=3)
seed_strategy = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------------------------------------
# structural mutations of the parsed ModelProto

def test_fuzz_proto_mutations(fuzz_cases, fuzz_random):
    @hsettings(budget(fuzz_cases, "proto"), not fuzz_random)
    @given(name=st.sampled_from(NAMES), kinds=kinds_strategy, seed=seed_strategy)
    def case(name, kinds, seed):
        m = fixture_model(name)
        desc = mutate_model(m, kinds, random.Random(seed))
        what = f"fixture={name!r} kinds={kinds} seed={seed} [{'; '.join(desc)}]"
        harness.run_frontend(m, what, family="proto", vocab=fixtures()[name]["in_dim"])

    case()


# ---------------------------------------------------------------------------------------------
# byte mutations of the serialised file (read through the path, as the CLI does)

def test_fuzz_byte_mutations(fuzz_cases, fuzz_random, tmp_path):
    @hsettings(budget(fuzz_cases, "bytes"), not fuzz_random)
    @given(name=st.sampled_from(NAMES), seed=seed_strategy)
    def case(name, seed):
        data, desc = mutate_bytes(fixture_bytes(name), random.Random(seed))
        p = tmp_path / "case.onnx"
        p.write_bytes(data)
        what = f"fixture={name!r} seed={seed} [{desc}]"
        harness.run_frontend(p, what, family="bytes", vocab=fixtures()[name]["in_dim"])

    case()


# ---------------------------------------------------------------------------------------------
# external data on disk

EXT = next(n for n in NAMES if fixtures()[n]["external_data"])
HOSTILE_LOCATIONS = ["../w.data", "../../etc/passwd", "/etc/passwd", "sub/../../w.data",
                     "..\\w.data", "~/w.data", "", ".", "sub", "nope.data", "w.data\0x",
                     "link_out.data", "sub/link_up/w.data", "fifo.data"]
ESCAPING = {"../w.data", "../../etc/passwd", "/etc/passwd", "sub/../../w.data", "~/w.data",
            "link_out.data", "sub/link_up/w.data"}


def _ext_dir(root: Path) -> tuple[Path, onnx.ModelProto]:
    """A folder with the external-data fixture, a symlink that escapes, a subfolder with a
    symlink to its parent's parent, a FIFO; plus an outside file the escapes would reach."""
    if root.exists():
        shutil.rmtree(root)
    d = root / "model"
    (d / "sub").mkdir(parents=True)
    src = FIXTURES / fixtures()[EXT]["file"]
    shutil.copy(src, d / "m.onnx")
    shutil.copy(src.with_name(src.name + ".data"), d / "w.data")
    (root / "w.data").write_bytes((d / "w.data").read_bytes())  # outside the model folder
    os.symlink(root / "w.data", d / "link_out.data")
    os.symlink(root, d / "sub" / "link_up")
    os.mkfifo(d / "fifo.data")
    m = onnx.load(str(d / "m.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "w.data"
    return d, m


def _ext_tensors(m):
    return [t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def test_fuzz_external_data(fuzz_cases, fuzz_random, tmp_path):
    @hsettings(budget(fuzz_cases, "external"), not fuzz_random)
    @given(seed=seed_strategy,
           kind=st.sampled_from(["location", "offset_length", "data_file", "several"]))
    def case(seed, kind):
        r = random.Random(seed)
        d, m = _ext_dir(tmp_path / "case")
        ts = _ext_tensors(m)
        escaped = None
        desc = []
        for _ in range(3 if kind == "several" else 1):
            k = kind if kind != "several" else r.choice(["location", "offset_length", "data_file"])
            t = r.choice(ts)
            info = {e.key: e for e in t.external_data}
            if k == "location":
                loc = r.choice(HOSTILE_LOCATIONS)
                info["location"].value = loc
                if loc in ESCAPING and escaped is None:
                    escaped = t.name
                desc.append(f"{t.name}: location={loc!r}")
            elif k == "offset_length":
                key = r.choice(["offset", "length"])
                val = r.choice(["-1", "0", "1", "7", "abc", "1e3", str(2**40), str(2**63),
                                " 4", ""])
                if key in info:
                    info[key].value = val
                else:
                    e = t.external_data.add()
                    e.key, e.value = key, val
                desc.append(f"{t.name}: {key}={val!r}")
            elif (d / "w.data").is_file():
                data = (d / "w.data").read_bytes()
                action = r.choice(["truncate", "flip", "delete", "dir", "empty"])
                if not data and action in ("truncate", "flip"):
                    action = "empty"
                if action == "truncate":
                    (d / "w.data").write_bytes(data[: r.randrange(len(data))])
                elif action == "flip":
                    b = bytearray(data)
                    b[r.randrange(len(b))] ^= 0xFF
                    (d / "w.data").write_bytes(bytes(b))
                elif action == "delete":
                    (d / "w.data").unlink()
                elif action == "dir":
                    (d / "w.data").unlink()
                    (d / "w.data").mkdir()
                else:
                    (d / "w.data").write_bytes(b"")
                desc.append(f"data file: {action}")
        p = d / "m.onnx"
        p.write_bytes(m.SerializeToString())
        what = f"external data seed={seed} kind={kind} [{'; '.join(desc)}]"
        outcome = harness.run_frontend(p, what, family="external", interpret_check=False)
        if escaped is not None:
            # a reference that leaves the model's folder is refused (naming a tensor)
            assert outcome.startswith("CompileError"), what

    case()


# ---------------------------------------------------------------------------------------------
# NaN / inf weights: always a CompileError that names the tensor

def test_fuzz_nonfinite_weights_are_named(fuzz_cases, fuzz_random):
    @hsettings(budget(fuzz_cases, "nonfinite"), not fuzz_random)
    @given(name=st.sampled_from(NAMES), seed=seed_strategy,
           val=st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    def case(name, seed, val):
        r = random.Random(seed)
        m = fixture_model(name)
        cands = [(o, t) for o, t in _float_tensors(m)
                 if numpy_helper.to_array(t).size > 1 and np.any(numpy_helper.to_array(t) != 0)]
        owner, t = r.choice(cands)
        arr = numpy_helper.to_array(t).copy()
        arr.reshape(-1)[r.randrange(arr.size)] = val
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
        label = t.name if owner == "initializer" else None
        t0 = time.perf_counter()
        with harness.time_limit(harness.CASE_TIMEOUT), pytest.raises(CompileError) as ei:
            import_model(load_onnx(m))
        harness.STATS["nonfinite"]["CompileError (names the tensor)"] += 1
        harness.TIMES["nonfinite"].append(time.perf_counter() - t0)
        msg = str(ei.value)
        assert ("NaN" if val != val else "inf") in msg, msg
        if label is not None:
            assert repr(label) in msg, msg
        else:  # a Constant node's tensor: named by the node and its output
            assert owner.removeprefix("node ") in msg, msg

    case()


# ---------------------------------------------------------------------------------------------
# whole compiles through the CLI (in-process): exit 0 or 3, no partial output directory

def _pipeline_available() -> bool:
    try:
        import icl_compiler.passes.attention  # noqa: F401
        import icl_compiler.passes.manager  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _pipeline_available(), reason="the pass pipeline is not there yet")
def test_fuzz_cli_compile(fuzz_cases, fuzz_random, tmp_path):
    counter = iter(range(10**9))

    @hsettings(budget(fuzz_cases, "cli"), not fuzz_random)
    @given(name=st.sampled_from([n for n in NAMES if not fixtures()[n]["external_data"]]),
           kinds=kinds_strategy, seed=seed_strategy, mutate=st.booleans())
    def case(name, kinds, seed, mutate):
        m = fixture_model(name)
        desc = mutate_model(m, kinds, random.Random(seed)) if mutate else ["unmutated"]
        work = tmp_path / f"c{next(counter)}"
        work.mkdir()
        harness.run_cli(m, work, f"cli fixture={name!r} kinds={kinds} seed={seed} "
                                 f"[{'; '.join(desc)}]")
        shutil.rmtree(work)

    case()
