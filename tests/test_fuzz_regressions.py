"""H4: the inputs the fuzzers kept and every crash reproducer, replayed through the fuzz
targets on each run (tests/fuzz_regressions/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import fuzz

INPUTS = Path(__file__).parent / "fuzz_regressions"


def inputs(target: str) -> list[Path]:
    found = sorted((INPUTS / target).iterdir())
    assert found, f"no {target} inputs in {INPUTS / target}"
    return found


@pytest.mark.parametrize("backend", fuzz.BACKENDS)
def test_emulator_regression_inputs(backend: str) -> None:
    run = fuzz.emulator_target(backend)
    for path in inputs("emulator"):
        try:
            run(path.read_bytes())  # asserts the invariants after every chunk
        except Exception as exc:
            raise AssertionError(f"{path.name}: {exc!r}") from exc


def test_frame_regression_inputs() -> None:
    run = fuzz.frames_target("shared")
    for path in inputs("frames"):
        try:
            run(path.read_bytes())  # anything but a ProtocolError is a failure
        except Exception as exc:
            raise AssertionError(f"{path.name}: {exc!r}") from exc
