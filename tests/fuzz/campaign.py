"""Stand-alone fuzzing campaign: runs N random cases and tallies *every* unexpected outcome
(pytest + hypothesis stops at the first one and shrinks it; this keeps going).

    PYTHONPATH=. python -m tests.fuzz.campaign --cases 2000 --seed 1 [--family proto|bytes|all]

Exit status 1 if any case was unexpected.  Each unexpected case is printed with the arguments
that reproduce it (fixture, kinds, seed).
"""
from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz import harness
from tests.fuzz.mutate import (
    MUTATORS,
    PLAUSIBLE,
    fixture_bytes,
    fixture_model,
    fixtures,
    mutate_bytes,
    mutate_model,
)


def proto_case(name: str, kinds: list[str], seed: int) -> str:
    m = fixture_model(name)
    desc = mutate_model(m, kinds, random.Random(seed))
    what = f"proto case fixture={name!r} kinds={kinds} seed={seed} [{'; '.join(desc)}]"
    return harness.run_frontend(m, what, family="proto", vocab=fixtures()[name]["in_dim"])


def bytes_case(name: str, seed: int, tmp: Path) -> str:
    data, desc = mutate_bytes(fixture_bytes(name), random.Random(seed))
    p = tmp / "case.onnx"
    p.write_bytes(data)
    what = f"bytes case fixture={name!r} seed={seed} [{desc}]"
    return harness.run_frontend(p, what, family="bytes", vocab=fixtures()[name]["in_dim"])


def cli_case(name: str, kinds: list[str], seed: int, tmp: Path) -> str:
    """A whole compile through the CLI, in-process (``harness.run_cli``)."""
    import shutil

    m = fixture_model(name)
    desc = mutate_model(m, kinds, random.Random(seed))
    what = f"cli case fixture={name!r} kinds={kinds} seed={seed} [{'; '.join(desc)}]"
    work = tmp / "cli"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    return harness.run_cli(m, work, what)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--family", choices=("proto", "bytes", "cli", "all"), default="all")
    ap.add_argument("--skip", type=int, default=0, metavar="N",
                    help="draw but do not run the first N cases (to get to a crash quickly)")
    ap.add_argument("--log", action="store_true",
                    help="print every case before running it (finds hard crashes)")
    args = ap.parse_args(argv)
    r = random.Random(args.seed)
    names = sorted(fixtures())
    bad: collections.Counter = collections.Counter()
    examples: dict[str, str] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d, harness.memory_limit():
        for i in range(args.cases):
            name = r.choice(names)
            seed = r.randrange(2**32)
            fam = args.family
            if fam == "all":
                fam = "bytes" if r.random() < 0.25 else "proto"
            kinds: list[str] = []
            if fam == "cli":
                kinds = [r.choice(sorted(PLAUSIBLE if r.random() < 0.6 else MUTATORS))
                         for _ in range(r.choice([0, 1, 1, 2]))]
            elif fam == "proto":
                kinds = [r.choice(sorted(PLAUSIBLE if r.random() < 0.6 else MUTATORS))
                         for _ in range(r.choice([1, 1, 2, 3]))]
            if i < args.skip or (fam == "cli" and fixtures()[name]["external_data"]):
                continue
            if args.log:
                print(f"case {i}: {fam} {name!r} kinds={kinds} seed={seed}", file=sys.stderr,
                      flush=True)
            try:
                if fam == "bytes":
                    bytes_case(name, seed, Path(d))
                elif fam == "cli":
                    cli_case(name, kinds, seed, Path(d))
                else:
                    proto_case(name, kinds, seed)
            except harness.Unexpected as e:
                msg = str(e)
                key = msg.split("]", 1)[-1].strip()[:120]
                bad[key] += 1
                examples.setdefault(key, msg)
            if (i + 1) % 200 == 0:
                print(f"{i + 1} cases, {sum(bad.values())} unexpected, "
                      f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    dt = time.perf_counter() - t0
    for fam, c in harness.STATS.items():
        print(f"{fam}: {sum(c.values())} cases: {dict(c.most_common())}")
    print(f"{args.cases} cases in {dt:.1f} s ({dt / max(args.cases, 1) * 1000:.0f} ms/case); "
          f"unexpected: {sum(bad.values())}")
    for key, n in bad.most_common():
        print(f"\n[{n}x] {examples[key]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
