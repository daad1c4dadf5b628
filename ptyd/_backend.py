"""Chooses the compiled or the pure-Python backend, once, and exports what the rest imports.

The compiled backend is the default. If it cannot be imported (a source install without a
compiler, an unsupported platform) the pure twin is used and one warning says so.
``PTYD_PURE=1`` forces the pure backend. Everything else in ptyd imports the hot path and the
emulator from here, never from ``_fast``/``_vt``/``_fast_py`` directly. The emulator class is
imported on first use: the attach client, which needs only the relay, does not load it (pyte
alone takes about 45 ms to import).
"""

from __future__ import annotations

import os
import warnings

from .config import is_pure_forced

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

IS_PURE_FORCED = is_pure_forced(os.environ)


def _load_compiled() -> tuple[ModuleType, ModuleType] | None:
    try:
        from . import _fast, _relay
    except ImportError as exc:
        _warn_unavailable(str(exc))
        return None
    # The engine is built with the others; its file beside _fast's stands for it until used.
    folder, name = os.path.split(_fast.__file__ or "")
    if not os.path.exists(os.path.join(folder, "_vt" + name.removeprefix("_fast"))):
        _warn_unavailable("ptyd._vt is not built")
        return None
    return _fast, _relay


def _warn_unavailable(reason: str) -> None:
    warnings.warn(
        f"ptyd: compiled backend unavailable ({reason}); using the pure-Python backend",
        RuntimeWarning,
        stacklevel=4,
    )


def _load_pure() -> tuple[ModuleType, ModuleType]:
    from . import _fast_py, _relay_py

    return _fast_py, _relay_py


_compiled = None if IS_PURE_FORCED else _load_compiled()
fast, relay = _compiled if _compiled is not None else _load_pure()
BACKEND = "pure" if _compiled is None else "compiled"
Emulator: type  # the backend's emulator class, imported by __getattr__ on first use


def __getattr__(name: str) -> Any:
    if name != "Emulator":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    emulator: type
    if BACKEND == "compiled":
        from ._vt import VtEmulator as emulator
    else:
        from .pyte_backend import PyteEmulator as emulator
    globals()["Emulator"] = emulator
    return emulator


__all__ = ["BACKEND", "Emulator", "fast", "relay"]
