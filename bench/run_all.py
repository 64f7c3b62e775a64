"""`make bench`: every benchmark, each printing its figure next to what it is compared with."""
from __future__ import annotations

import importlib
import sys

BENCHES = ["bench.emulator", "bench.lava", "bench.gpt2_small", "bench.activations"]


def main() -> int:
    failed = []
    for name in BENCHES:
        print(f"\n=== {name} ===", flush=True)
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            print(f"skipped: {e}")
            continue
        try:
            mod.main([])
        except Exception as e:  # noqa: BLE001 - report and go on with the other benchmarks
            print(f"FAILED: {type(e).__name__}: {e}")
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    from icl_compiler.semantics.blas import rerun_on_better_kernels

    rerun_on_better_kernels()
    sys.exit(main())
