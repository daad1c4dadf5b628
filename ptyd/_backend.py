"""Chooses the compiled or the pure-Python backend, once, and exports what the rest imports.

The compiled backend is the default. If it cannot be imported (a source install without a
compiler, an unsupported platform) the pure twin is used and one warning says so.
``PTYD_PURE=1`` forces the pure backend. Everything else in ptyd imports the hot path and the
emulator from here, never from ``_fast``/``_vt``/``_fast_py`` directly.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

# A boolean as every PTYD_* setting reads them: PTYD_PURE=0, false, no or off keep the default.
IS_PURE_FORCED = os.environ.get("PTYD_PURE", "").strip().lower() not in (
    "",
    "0",
    "false",
    "no",
    "off",
)


def _load_compiled() -> tuple[ModuleType, type, ModuleType] | None:
    try:
        from . import _fast, _relay
        from ._vt import VtEmulator
    except ImportError as exc:
        warnings.warn(
            f"ptyd: compiled backend unavailable ({exc}); using the pure-Python backend",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return _fast, VtEmulator, _relay


def _load_pure() -> tuple[ModuleType, type, ModuleType]:
    from . import _fast_py, _relay_py
    from .pyte_backend import PyteEmulator

    return _fast_py, PyteEmulator, _relay_py


_compiled = None if IS_PURE_FORCED else _load_compiled()
fast, Emulator, relay = _compiled if _compiled is not None else _load_pure()
BACKEND = "pure" if _compiled is None else "compiled"

__all__ = ["BACKEND", "Emulator", "fast", "relay"]
