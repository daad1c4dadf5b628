"""The project's checks run with the suite (docs/architecture.md, "Checks"): ruff's lint and
format, mypy over ``ptyd/`` with the compiled modules' stubs, cython-lint over the Cython
sources, and gcc's warnings over the C starter. A change that breaks one fails here, in CI, not
in a later review."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(sys.executable).parent
PYTHON_TREES = ["ptyd", "tests", "benchmarks", "setup.py"]
CYTHON_SOURCES = sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("ptyd/*.p[yx][xd]"))

CHECKS = {
    "ruff": [sys.executable, "-m", "ruff", "check", "--no-cache", *PYTHON_TREES],
    "ruff-format": [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", *PYTHON_TREES],
    "mypy": [sys.executable, "-m", "mypy", "ptyd"],
    # cython-lint runs pycodestyle by name, so the environment's scripts go first on PATH.
    "cython-lint": [str(TOOLS / "cython-lint"), *CYTHON_SOURCES],
}


def test_the_cython_sources_are_found() -> None:
    assert {"ptyd/_fast.pyx", "ptyd/_vt.pyx", "ptyd/_relay.pyx", "ptyd/_vt.pxd"} <= set(
        CYTHON_SOURCES
    )


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_the_sources_pass(check: str, tmp_path: Path) -> None:
    command = CHECKS[check]
    if check == "mypy":
        command = [*command, "--cache-dir", str(tmp_path / "mypy")]
    environment = {**os.environ, "PATH": f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("level", ["-O0", "-O1", "-O2", "-Os"])
def test_the_starter_compiles_without_a_warning(level: str, tmp_path: Path) -> None:
    """``ptyd/_starter.c`` at every usual optimisation level (gcc finds some warnings only when
    optimising), against the header ``setup.py`` generated for this checkout."""
    header = ROOT / "build" / "generated" / "ptyd_starter.h"
    assert header.exists(), "no generated header: run pip install -e ."
    command = ["gcc", level, "-Wall", "-Wextra", "-Werror", f"-I{header.parent}"]
    command += ["-o", str(tmp_path / "ptyd"), str(ROOT / "ptyd" / "_starter.c")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
