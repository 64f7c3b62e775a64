"""Shared pytest configuration.

``--fuzz-cases N`` sets the total number of fuzz cases that ``tests/fuzz`` runs, split across
its tests (see ``tests/fuzz/test_fuzz_frontend.py``).  Plain ``pytest`` (CI) runs a few hundred
with a fixed seed; ``make fuzz`` runs 10,000 with fresh randomness.
"""
from __future__ import annotations

import sys

import pytest

CI_FUZZ_CASES = 500


def pytest_addoption(parser):
    group = parser.getgroup("icl-compiler")
    group.addoption("--fuzz-cases", type=int, default=None, metavar="N",
                    help=f"total fuzz cases for tests/fuzz (default {CI_FUZZ_CASES}, with a fixed "
                         "seed; giving N also makes the campaign random; make fuzz uses 10000)")


@pytest.fixture(scope="session")
def fuzz_cases(request) -> int:
    n = request.config.getoption("--fuzz-cases")
    return CI_FUZZ_CASES if n is None else n


@pytest.fixture(scope="session")
def fuzz_random(request) -> bool:
    """True when the user asked for a campaign (--fuzz-cases given): no fixed seed."""
    return request.config.getoption("--fuzz-cases") is not None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    harness = sys.modules.get("tests.fuzz.harness")  # only when the fuzz tests ran
    if harness is None or not harness.STATS:
        return
    STATS, TIMES = harness.STATS, harness.TIMES
    tr = terminalreporter
    tr.section("fuzz summary")
    total = 0
    for family in sorted(STATS):
        c = STATS[family]
        n = sum(c.values())
        total += n
        t = TIMES.get(family, [])
        mean = 1000 * sum(t) / len(t) if t else 0.0
        worst = max(t) if t else 0.0
        outcomes = ", ".join(f"{k} {v}" for k, v in c.most_common())
        tr.write_line(f"{family:>9}: {n:6d} cases, {mean:6.0f} ms/case mean, {worst:5.1f} s max "
                      f"| {outcomes}")
    tr.write_line(f"{'total':>9}: {total:6d} cases with an expected outcome (success or "
                  "CompileError); any other outcome fails its test above")
