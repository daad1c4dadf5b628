"""What the daemon answers, as typed values every client shares (the asyncio library and the
command line's blocking connection), without importing either."""

from __future__ import annotations

from ._record import fields, record

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from typing import Any

Target = int | str  # a session's id or name


@record
class SessionInfo:
    """What the daemon reports about one session."""

    id: int
    name: str | None
    argv: list[str]
    pid: int
    cwd: str
    cols: int
    rows: int
    created_at: float
    last_attached: float | None
    clients: int
    bytes_out: int
    title: str
    state: str
    exit_code: int | None
    exit_signal: int | None
    exited_at: float | None

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> SessionInfo:
        values: dict[str, Any] = {name: data.get(name) for name in fields(cls)}
        return cls(**values)

    @property
    def is_running(self) -> bool:
        return self.state == "running"


@record
class Snapshot:
    session: int
    offset: int  # the stream offset the snapshot was taken at
    format: str
    data: Any  # str (text), bytes (ansi) or dict (json)


@record
class Attached:
    """The answer to attach: a snapshot at ``offset`` (or a resume), then live output."""

    session: SessionInfo
    offset: int
    snapshot: Any  # None when resumed or when no snapshot was asked for
    format: str | None
    resumed: bool


@record
class ScreenMatch:
    """What ``wait_for`` waited for: the screen that showed it (a text ``Snapshot``, at the
    offset it was taken), and the pattern's match in its text (None without a pattern)."""

    snapshot: Snapshot
    matched: str | None
    groups: tuple[str | None, ...]


@record
class ExitStatus:
    code: int | None
    signal: int | None

    @property
    def status(self) -> int:
        """Shell-style: the exit code, or 128 + signal number."""
        return 128 + self.signal if self.signal is not None else (self.code or 0)
