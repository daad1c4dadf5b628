"""Typed events a client receives: output, exit, flow, lagging, snapshot, error, shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class OutputEvent:
    """Bytes a session's program wrote; ``offset`` is the stream offset of the first byte."""

    session: int
    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class ExitEvent:
    """The session's program exited, after all its output was delivered."""

    session: int
    code: int | None
    signal: int | None
    offset: int

    @property
    def status(self) -> int:
        """Shell-style status: the exit code, or 128 + the signal number."""
        return 128 + self.signal if self.signal is not None else (self.code or 0)


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """This client's backlog for a session changed level (normal, warning, limit)."""

    session: int
    level: str
    backlog: int
    threshold: int
    limit: int
    policy: str


@dataclass(frozen=True, slots=True)
class LaggingEvent:
    """The resync policy dropped this client's backlog; a SnapshotEvent follows once drained."""

    session: int
    offset: int


@dataclass(frozen=True, slots=True)
class SnapshotEvent:
    """A fresh screen at ``offset`` (after lagging, or after a reconnect outside the ring);
    live output continues from ``offset``."""

    session: int
    offset: int
    format: str
    data: Any


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An unsolicited error, such as the disconnect policy's notice before closing."""

    session: int | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ShutdownEvent:
    """The daemon is shutting down."""

    reason: str


@dataclass(frozen=True, slots=True)
class DisconnectedEvent:
    """The connection to the daemon was lost (and not re-established)."""

    reason: str


Event = (
    OutputEvent
    | ExitEvent
    | FlowEvent
    | LaggingEvent
    | SnapshotEvent
    | ErrorEvent
    | ShutdownEvent
    | DisconnectedEvent
)


def from_wire(message: dict[str, Any]) -> Event | None:
    """The typed event for an event frame; None for events this client does not know."""
    name = message.get("event")

    def get(key: str) -> Any:
        return message.get(key)

    if name == "output":
        return OutputEvent(get("session"), get("offset"), get("data"))
    if name == "exit":
        return ExitEvent(get("session"), get("code"), get("signal"), get("offset"))
    if name == "flow":
        return FlowEvent(
            get("session"),
            get("level"),
            get("backlog"),
            get("threshold"),
            get("limit"),
            get("policy"),
        )
    if name == "lagging":
        return LaggingEvent(get("session"), get("offset"))
    if name == "snapshot":
        return SnapshotEvent(get("session"), get("offset"), get("format"), get("data"))
    if name == "error":
        return ErrorEvent(get("session"), get("code"), get("message"))
    if name == "shutdown":
        return ShutdownEvent(get("reason") or "")
    return None
