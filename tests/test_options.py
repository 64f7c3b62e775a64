"""Compile options are validated once (options.py), from Python arguments and from the CLI:
NaN, inf, zero and negatives are refused where a positive number is meant (CLI: exit 2)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.errors import OptionError
from icl_compiler.options import CompileOptions
from icl_compiler.targets.loihi2 import Target
from tests.helpers import SMALL, fixture, one_line, run_cli


def test_defaults_and_normalised_values():
    o = CompileOptions.from_kwargs()
    assert (o.precision, o.lowering, o.weight_bits, o.error_target, o.max_context) == (
        "float", "auto", "auto", 0.05, None)
    o = CompileOptions.from_kwargs(max_context=16.0, weight_bits=np.int64(16), error_target=1,
                                   target={"system": "kapoho-point", "chips": 8})
    assert o.max_context == 16 and type(o.max_context) is int
    assert o.weight_bits == 16 and type(o.weight_bits) is int and o.error_target == 1.0
    assert isinstance(o.target, Target) and (o.target.system, o.target.chips) == ("kapoho-point", 8)


@pytest.mark.parametrize("kw, needle", [
    ({"precision": "double"}, "precision"),
    ({"lowering": "softmax"}, "lowering"),
    ({"weight_bits": 12}, "weight_bits"),
    ({"weight_bits": True}, "weight_bits"),
    ({"error_target": 0}, "error_target"),
    ({"error_target": -1}, "error_target"),
    ({"error_target": math.nan}, "error_target"),
    ({"error_target": math.inf}, "error_target"),
    ({"error_target": "5%"}, "error_target"),
    ({"max_context": 0}, "max_context"),
    ({"max_context": 2.5}, "max_context"),
    ({"max_context": math.nan}, "max_context"),
    ({"max_context": True}, "max_context"),
    ({"max_context": 10**9}, "max_context 1000000000 exceeds this compiler's limit of 1048576"),
    ({"max_context": 600_000, "target": {"cores_per_chip": 64}},
     r"exceeds the 524288 neurons of loihi2/oheo-gulch \(1 chip\(s\) × 64 cores × 8192"),
    ({"target": {"cores_per_chip": 10**7}}, "exceeds the 128 neuro cores of a Loihi 2 chip"),
    ({"target": {"chips": float("nan")}}, "target:"),
    ({"target": {"chips": 0}}, "chips"),
    ({"target": {"system": "mars"}}, "system"),
    ({"target": {"cores": 3}}, "unknown target option"),
    ({"dump_ir": 3}, "dump_ir"),
])
def test_bad_python_options(kw, needle):
    with pytest.raises(OptionError, match=needle):
        CompileOptions.from_kwargs(**kw)


def test_the_largest_contexts_that_are_allowed():
    assert CompileOptions.from_kwargs(max_context=2**20).max_context == 2**20
    o = CompileOptions.from_kwargs(max_context=2**19, target={"cores_per_chip": 64})
    assert o.max_context == 2**19 and o.target.cores_per_chip == 64


def test_resource_options_fail_before_anything_is_allocated(tmp_path, capsys):
    """Item 6: --max-context 1000000000 failed with "Unable to allocate 119 GiB" from the
    lowering, --cores-per-chip 10000000 spent 15 s and 2.6 GB drawing the partition picture.
    Both are refused with the options, before the model is read."""
    import tracemalloc

    tracemalloc.start()
    for args in (("--max-context", "1000000000"), ("--cores-per-chip", "10000000")):
        code, _, err = run_cli(capsys, tmp_path / "missing.onnx", "-o", tmp_path / "out", *args)
        assert code == 2 and "exceeds" in one_line(err)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * 2**20 and not (tmp_path / "out").exists()


def test_compile_validates_before_reading_the_model(tmp_path):
    # the model path does not exist: the option error comes first
    with pytest.raises(OptionError, match="max_context"):
        icl.compile(tmp_path / "missing.onnx", max_context=-3)
    with pytest.raises(OptionError, match="not both"):
        icl.compile(tmp_path / "missing.onnx", precision="fixed",
                    options=CompileOptions.from_kwargs())


def test_compile_with_an_options_object():
    path, x, _ = fixture(SMALL)
    opts = CompileOptions.from_kwargs(precision="fixed", max_context=16, weight_bits=8)
    prog = icl.compile(path, calibration=x, options=opts)
    assert prog.precision == "fixed" and prog.report["quantisation"]["weight_bits"] == 8


@pytest.mark.parametrize("args, needle", [
    (("--error-target", "nan"), "error_target"),
    (("--error-target", "inf"), "error_target"),
    (("--error-target", "0"), "error_target"),
    (("--max-context", "0"), "max_context"),
    (("--chips", "0"), "chips"),
    (("--cores-per-chip", "-4"), "cores_per_chip"),
    (("--tolerance", "nan"), "--tolerance"),
    (("--tolerance", "-1"), "--tolerance"),
    (("--timeout", "0"), "--timeout"),
    (("--timeout", "nan"), "--timeout"),  # item 2: NaN switched the Lava timeout off
    (("--timeout", "inf"), "--timeout"),
    (("--timeout", "-5"), "--timeout"),
    (("--tolerance", "inf"), "--tolerance"),
    (("--max-context", "1000000000"), "exceeds this compiler's limit of 1048576 slots per head"),
    (("--cores-per-chip", "10000000"), "cores_per_chip 10000000 exceeds the 128 neuro cores"),
    (("--dump-ir", "nonsense"), "fuse_linear"),
    (("--dump-ir", "quantise"), "precision fixed"),
])
def test_bad_cli_options_exit_2(tmp_path, capsys, args, needle):
    code, _, err = run_cli(capsys, fixture(SMALL)[0], "-o", tmp_path / "out", *args)
    line = one_line(err)
    assert code == 2 and needle in line, line
    assert not (tmp_path / "out").exists()
