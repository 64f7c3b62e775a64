"""The BLAS-kernel diagnosis: numpy's OpenBLAS falling back to kernels narrower than the CPU's."""
import platform
import subprocess
import sys
import warnings

import pytest

from icl_compiler.semantics import blas

AVX512 = {"sse3", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq",
          "avx512vl"}
AVX2 = {"sse3", "avx", "avx2", "fma"}


@pytest.mark.parametrize("core, flags, want", [
    ("Prescott", AVX512, "SkylakeX"),  # numpy 1.26's OpenBLAS on a Xeon of family 6, model 207
    ("Nehalem", AVX2, "Haswell"),
    ("Sandybridge", AVX512, "SkylakeX"),  # AVX without AVX2: still narrower
    ("Haswell", AVX512, None),  # an AVX2 choice is left alone (OpenBLAS picks it on Zen 5)
    ("Zen", AVX2, None),
    ("SkylakeX", AVX512, None),
    ("Cooperlake", AVX512, None),
    ("Prescott", {"sse3", "avx"}, None),  # nothing better to offer
    ("Prescott", AVX512 - {"avx512vl", "avx2"}, None),
    (None, AVX512, None),
])
def test_better_core(core, flags, want):
    assert blas.better_core(core, flags) == want


def test_advice_names_the_kernels_and_what_to_set():
    libs = [{"architecture": "Prescott", "version": "0.3.23.dev", "num_threads": 2}]
    core, msg = blas.advice(libs, AVX512, env={})
    assert core == "SkylakeX"
    assert "Prescott" in msg and "OPENBLAS_CORETYPE=SkylakeX" in msg and "0.3.23.dev" in msg


def test_advice_respects_a_choice_and_good_kernels():
    libs = [{"architecture": "Prescott", "version": "0.3.23.dev"}]
    assert blas.advice(libs, AVX512, env={"OPENBLAS_CORETYPE": "Nehalem"}) is None
    assert blas.advice([{"architecture": "SkylakeX"}], AVX512, env={}) is None
    assert blas.advice([], AVX512, env={}) is None  # not OpenBLAS


def test_cpu_flags_reads_the_flags_line(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse3 avx2 fma\n\n"
                 "processor\t: 1\nflags\t\t: other\n")
    assert blas.cpu_flags(str(f)) == {"fpu", "sse3", "avx2", "fma"}
    assert blas.cpu_flags(str(tmp_path / "missing")) == set()


def test_describe_this_process():
    line = blas.describe()
    assert "kernels" in line or line == "not OpenBLAS"
    libs = [{"architecture": "Haswell", "version": "0.3.23", "num_threads": 2}]
    assert blas.describe(libs).startswith("openblas 0.3.23 Haswell kernels")


def test_warns_once_per_process(monkeypatch):
    monkeypatch.setattr(blas, "_warned", False)
    monkeypatch.setattr(blas, "advice", lambda: ("SkylakeX", "numpy's OpenBLAS chose Prescott"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        blas.warn_once()
        blas.warn_once()
    assert [str(w.message) for w in seen] == ["numpy's OpenBLAS chose Prescott"]
    assert issubclass(seen[0].category, RuntimeWarning)


def test_a_failing_diagnosis_never_stops_a_run(monkeypatch):
    def broken():
        raise OSError("no threadpoolctl today")
    monkeypatch.setattr(blas, "_warned", False)
    monkeypatch.setattr(blas, "advice", broken)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blas.warn_once()  # (silent)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 core names")
def test_forced_kernels_are_what_openblas_reports():
    """OPENBLAS_CORETYPE, set before numpy loads, is what the diagnosis then reads (and, being
    the user's choice, it has no advice to give)."""
    code = ("from icl_compiler.semantics import blas; libs = blas.openblas(); "
            "print(libs[0]['architecture'] if libs else 'none', blas.advice())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"OPENBLAS_CORETYPE": "Nehalem", "PATH": "/usr/bin:/bin"}).stdout
    core, adv = out.split()
    assert core in ("Nehalem", "none") and adv == "None"


def test_the_emulator_warns_where_the_kernels_fall_short(monkeypatch):
    from icl_compiler.semantics.interpreter import Interpreter
    from tests.helpers import fixture, fixture_names

    import icl_compiler as icl

    path, x, _ = fixture(fixture_names(softmax=False)[0])
    prog = icl.compile(str(path), precision="float", max_context=8)
    monkeypatch.setattr(blas, "_warned", False)
    monkeypatch.setattr(blas, "advice", lambda: ("SkylakeX", "narrow kernels"))
    with pytest.warns(RuntimeWarning, match="narrow kernels"):
        Interpreter(prog.ng)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 core names")
def test_an_entry_point_runs_again_once_with_the_better_kernels(tmp_path):
    script = tmp_path / "entry.py"
    script.write_text(
        "import os, sys\n"
        "from icl_compiler.semantics import blas\n"
        "blas.advice = lambda: ('Nehalem', 'narrow kernels')  # (what a Prescott host gets)\n"
        "blas.rerun_on_better_kernels()\n"
        "print(os.environ.get('OPENBLAS_CORETYPE'), blas.openblas()[0]['architecture'],"
        " sys.argv[1:])\n")
    env = {"PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, str(script), "--flag", "x"], capture_output=True,
                       text=True, check=True, env=env)
    assert r.stdout.split() == ["Nehalem", "Nehalem", "['--flag',", "'x']"]
    assert r.stderr.count("note: narrow kernels") == 1
