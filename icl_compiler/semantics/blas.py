"""Which BLAS kernels numpy runs on, and whether they fall short of the CPU.

The emulator's products are numpy's BLAS calls (``products``), so its speed is the BLAS's.
OpenBLAS (what numpy's wheels bundle) picks its kernels when it loads, from the CPU model it
knows; on a CPU newer than the OpenBLAS release it can fall back to the generic SSE3 ("Prescott")
kernels.  Seen here: numpy 1.26.4's OpenBLAS 0.3.23 on a Xeon of CPU family 6, model 207 (AVX-512)
took Prescott kernels and ran float64 matrix products 3x slower than with its SkylakeX kernels
(``OPENBLAS_CORETYPE=SkylakeX``), which made the whole emulator 1.3-1.5x slower.  The kernels
cannot be changed once the library is loaded, so :func:`advice` says what to set before Python
starts, and the interpreter warns once per process (:func:`warn_once`).

The results stay exact either way: fixed-point products are exact integers on any kernel, and
the float one-call layouts are checked on the kernels in use (``products.one_call_exact``).
"""
from __future__ import annotations

import os
import sys
import warnings

# OpenBLAS's x86-64 core names by the widest vector unit their kernels use
AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}
AVX2_CORES = {"haswell", "zen", "excavator", "steamroller", "skylakex", "cooperlake",
              "sapphirerapids"}
SKYLAKEX_FLAGS = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
HASWELL_FLAGS = {"avx2", "fma"}

_warned = False  # (warn_once has run)
_RERUN = "_ICL_BLAS_RERUN"  # (set in the process started again: never twice)


class SlowKernelsWarning(RuntimeWarning):
    """numpy's OpenBLAS runs kernels narrower than the CPU's (:func:`advice`)."""


def openblas() -> list[dict]:
    """The OpenBLAS libraries loaded in this process, as threadpoolctl describes them (keys
    ``architecture``, ``version``, ``num_threads``); empty when numpy uses another BLAS."""
    import numpy  # noqa: F401 - (loads numpy's BLAS, if nothing has yet)
    from threadpoolctl import threadpool_info

    return [d for d in threadpool_info() if d.get("internal_api") == "openblas"]


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The first CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def better_core(core: str | None, flags: set[str]) -> str | None:
    """The OpenBLAS core type to force when ``core`` (the kernels OpenBLAS chose) uses narrower
    vectors than the CPU (``flags``) has, at least AVX2 missed: "SkylakeX" for a CPU with
    AVX-512 (F, CD, BW, DQ, VL), "Haswell" for one with AVX2 and FMA.  None when the choice is
    already an AVX2 or AVX-512 one, or the CPU has neither."""
    if not core or core.lower() in AVX2_CORES:
        return None
    if SKYLAKEX_FLAGS <= flags:
        return "SkylakeX"
    if HASWELL_FLAGS <= flags:
        return "Haswell"
    return None


def advice(libs: list[dict] | None = None, flags: set[str] | None = None,
           env: dict | None = None) -> tuple[str, str] | None:
    """(core type to set, message) when numpy's OpenBLAS took kernels narrower than this CPU's
    and ``OPENBLAS_CORETYPE`` was not set; otherwise None.  The arguments exist for tests."""
    env = os.environ if env is None else env
    if env.get("OPENBLAS_CORETYPE"):
        return None  # (the user chose)
    libs = openblas() if libs is None else libs
    flags = cpu_flags() if flags is None else flags
    for d in libs:
        core = d.get("architecture")
        better = better_core(core, flags)
        if better:
            return better, (
                f"numpy's OpenBLAS {d.get('version')} chose its {core} kernels on a CPU with "
                f"{'AVX-512' if better == 'SkylakeX' else 'AVX2'}; the emulator's products run "
                f"up to 3x slower on them.  Set OPENBLAS_CORETYPE={better} in the "
                f"environment before Python starts (results are the same, bit for bit).")
    return None


def diagnosis() -> tuple[str, str] | None:
    """:func:`advice` for this process, or None where it cannot be made: a diagnosis must never
    stop a run."""
    try:
        return advice()
    except Exception:  # noqa: BLE001
        return None


def describe(libs: list[dict] | None = None) -> str:
    """The BLAS kernels and threads numpy runs on, in a line (for benchmark reports)."""
    libs = openblas() if libs is None else libs
    if not libs:
        return "not OpenBLAS"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return ", ".join(f"openblas {d.get('version')} {d.get('architecture')} kernels"
                     f"{' (OPENBLAS_CORETYPE)' if forced else ''}, {d.get('num_threads')} threads"
                     for d in libs)


def rerun_on_better_kernels() -> None:
    """For a program's entry point (``make run``, ``make bench``): where :func:`advice` finds
    narrower kernels and OPENBLAS_CORETYPE is unset, say so and start this process again, the
    same command line, with OPENBLAS_CORETYPE set (the kernels cannot change once loaded).
    Setting OPENBLAS_CORETYPE yourself, even to the kernels OpenBLAS chose, keeps your choice.
    Only for a script's own command line: it replaces the process (never call it from a test
    or a library function)."""
    found = diagnosis()
    if found is None or os.environ.get(_RERUN):
        return
    sys.stdout.flush()
    print(f"note: {found[1]}\n      Running again with OPENBLAS_CORETYPE={found[0]}.",
          file=sys.stderr, flush=True)
    env = dict(os.environ, OPENBLAS_CORETYPE=found[0], **{_RERUN: "1"})
    os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)


def warn_once() -> None:
    """Warn (:class:`SlowKernelsWarning`, once per process) when :func:`advice` has something to say."""
    global _warned
    if _warned:
        return
    _warned = True
    found = diagnosis()
    if found:
        warnings.warn(found[1], SlowKernelsWarning, stacklevel=3)
