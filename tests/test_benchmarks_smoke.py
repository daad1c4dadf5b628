"""The benchmarks run once, in smoke mode, so they cannot rot. No figure is checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.timeout(120)
def test_compare_quick_measures_ptyd_on_every_workload() -> None:
    """Absent peers are skipped, so this passes with or without them; a peer may fail a
    workload (dtach drops output for slow clients), ptyd may not."""
    result = _run("-m", "benchmarks.compare", "--quick", timeout=115)
    rows = (
        "terminal client",
        "library client",
        "echo p99",
        "echo median, socket client",
        "snapshot",
        "idle sessions",
        "per idle subscriber",
        "socket readers",
        "flood, 2 detached",
    )
    for row in rows:
        assert row in result.stdout
    failures = [line for line in result.stderr.splitlines() if line.startswith("  ptyd")]
    assert failures == []


@pytest.mark.timeout(60)
def test_micro_benchmarks_run_on_both_backends() -> None:
    files = ("benchmarks/bench_protocol.py", "benchmarks/bench_fanout.py")
    result = _run("-m", "pytest", *files, "-q", "--benchmark-disable", timeout=55)
    assert " passed" in result.stdout
