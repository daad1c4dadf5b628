"""ptyd: a PTY session daemon with exact screen snapshots and bounded fan-out.

The client classes are imported on first use: the command line (and the daemon) import this
package too, and the client library brings asyncio, which costs more than a whole CLI command.
"""

from __future__ import annotations

from ._version import __version__
from .errors import (
    AuthRefused,
    CallTimedOut,
    ConnectionFailed,
    DaemonBusy,
    DaemonImpostor,
    NoDaemon,
    ProtocolError,
    PtydError,
    PtyUnavailable,
    RequestError,
    ScreenWaitExited,
    ScreenWaitFailed,
    ScreenWaitTimedOut,
    SessionNotFound,
    SpawnFailed,
    TimeoutExpired,
    VersionMismatch,
)
from .records import Attached, ExitStatus, ScreenMatch, SessionInfo, Snapshot

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from typing import Any

    from .client import AsyncClient, Client


def __dir__() -> list[str]:
    return sorted({*globals(), "AsyncClient", "Client"})


def __getattr__(name: str) -> Any:
    if name in ("AsyncClient", "Client"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'ptyd' has no attribute {name!r}")


__all__ = [
    "AsyncClient",
    "Attached",
    "AuthRefused",
    "CallTimedOut",
    "Client",
    "ConnectionFailed",
    "DaemonBusy",
    "DaemonImpostor",
    "ExitStatus",
    "NoDaemon",
    "ProtocolError",
    "PtyUnavailable",
    "PtydError",
    "RequestError",
    "ScreenMatch",
    "ScreenWaitExited",
    "ScreenWaitFailed",
    "ScreenWaitTimedOut",
    "SessionInfo",
    "SessionNotFound",
    "Snapshot",
    "SpawnFailed",
    "TimeoutExpired",
    "VersionMismatch",
    "__version__",
]
