"""The hot-path fixture for micro benchmarks: compiled ``_fast`` and pure ``_fast_py``."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from ptyd import _fast_py


@pytest.fixture(params=("compiled", "pure"))
def fast(request: pytest.FixtureRequest) -> ModuleType:
    """The hot-path module: the pure one is the baseline every compiled figure is read against."""
    if request.param == "pure":
        return _fast_py
    try:
        return importlib.import_module("ptyd._fast")
    except ImportError:
        pytest.fail("ptyd._fast is not built (run: setup.py build_ext --inplace)")
