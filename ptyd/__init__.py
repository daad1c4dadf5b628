"""ptyd: a PTY session daemon with exact screen snapshots and bounded fan-out."""

from ._version import __version__
from .client import AsyncClient, Attached, Client, ExitStatus, SessionInfo, Snapshot
from .errors import (
    AuthRefused,
    ConnectionFailed,
    DaemonBusy,
    ProtocolError,
    PtydError,
    PtyUnavailable,
    RequestError,
    SessionNotFound,
    SpawnFailed,
    TimeoutExpired,
    VersionMismatch,
)

__all__ = [
    "AsyncClient",
    "Attached",
    "AuthRefused",
    "Client",
    "ConnectionFailed",
    "DaemonBusy",
    "ExitStatus",
    "ProtocolError",
    "PtyUnavailable",
    "PtydError",
    "RequestError",
    "SessionInfo",
    "SessionNotFound",
    "Snapshot",
    "SpawnFailed",
    "TimeoutExpired",
    "VersionMismatch",
    "__version__",
]
