"""The exception hierarchy and the stable error codes, shared by the daemon, the client and both
backends. Codes travel on the wire; messages are for humans and may change."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from typing import Any, Final

    from .records import ExitStatus, Snapshot


# Stable, machine-readable error codes (the "code" field of an error response or event).
BAD_FRAME: Final = "bad_frame"  # body is not valid msgpack, or not a map
FRAME_TOO_LARGE: Final = "frame_too_large"  # length prefix over the limit; connection closed
BAD_REQUEST: Final = "bad_request"  # a field is missing, of the wrong type or out of range
UNKNOWN_TYPE: Final = "unknown_type"  # no such request type
HELLO_REQUIRED: Final = "hello_required"  # a request before the hello exchange
VERSION_MISMATCH: Final = "version_mismatch"  # different major protocol versions
AUTH_REFUSED: Final = "auth_refused"  # peer uid not allowed; connection closed
TOO_MANY_CONNECTIONS: Final = "too_many_connections"
BUSY: Final = "busy"  # out of fds or partial-frame memory; closed, try again later
TIMEOUT: Final = "timeout"
NO_SUCH_SESSION: Final = "no_such_session"
NAME_TAKEN: Final = "name_taken"
SPAWN_FAILED: Final = "spawn_failed"
PTY_UNAVAILABLE: Final = "pty_unavailable"  # no PTY or no fd for one (EMFILE, ENOSPC, EAGAIN)
SESSION_EXITED: Final = "session_exited"
INPUT_OVERFLOW: Final = "input_overflow"  # queued input would pass the session's bound
READ_ONLY: Final = "read_only"  # input or resize from a read-only attachment
NOT_ATTACHED: Final = "not_attached"
FLOW_LIMIT: Final = "flow_limit"  # disconnect policy: the client fell too far behind
SHUTTING_DOWN: Final = "shutting_down"
INTERNAL: Final = "internal"
CANCELLED: Final = "cancelled"  # a wait the client withdrew with a cancel request

ALL_CODES: Final = frozenset(
    {
        BAD_FRAME,
        FRAME_TOO_LARGE,
        BAD_REQUEST,
        UNKNOWN_TYPE,
        HELLO_REQUIRED,
        VERSION_MISMATCH,
        AUTH_REFUSED,
        TOO_MANY_CONNECTIONS,
        BUSY,
        TIMEOUT,
        NO_SUCH_SESSION,
        NAME_TAKEN,
        SPAWN_FAILED,
        PTY_UNAVAILABLE,
        SESSION_EXITED,
        INPUT_OVERFLOW,
        READ_ONLY,
        NOT_ATTACHED,
        FLOW_LIMIT,
        SHUTTING_DOWN,
        INTERNAL,
        CANCELLED,
    }
)


class PtydError(Exception):
    """Base of every error ptyd raises on purpose.

    An error raised by ``send()`` says how much of that call's input got through: ``delivered``
    bytes (from the start) were queued for the program by the daemon, and ``unconfirmed`` bytes
    after them were written to the daemon but their answer never came (the connection was lost
    or the call timed out meanwhile): the daemon may or may not have queued those. On errors
    raised by anything else, ``delivered`` is None."""

    delivered: int | None = None
    unconfirmed: int = 0


class ConfigError(PtydError):
    """An invalid setting; the message names the setting and the reason."""


class SocketPathError(PtydError):
    """The socket directory or path is unsafe or unusable; the message names the path."""


class PrivilegedStart(PtydError):
    """Real and effective uid or gid differ (a set-uid or set-gid install): the daemon refuses
    to start."""


class AlreadyRunning(PtydError):
    """A daemon is already listening on the socket."""


class ConnectionFailed(PtydError):
    """No daemon could be reached (not running, socket missing, connection lost)."""


class CallTimedOut(PtydError, TimeoutError):
    """A call of the client library ran out of time (``Client(timeout=...)``, ``next_event``'s
    timeout, ``send``'s). Giving up does not recall a request already written: the daemon may
    still carry it out."""


class ScreenWaitFailed(PtydError):
    """``wait_for`` ended without the screen it waited for. ``snapshot`` is the last screen
    seen (a text ``Snapshot``, None if none was taken): what the program showed meanwhile."""

    def __init__(self, message: str, snapshot: Snapshot | None) -> None:
        super().__init__(message)
        self.snapshot = snapshot

    def __reduce__(self) -> tuple[Any, ...]:  # attributes restored after __init__(message, None)
        return type(self), (str(self), None), self.__dict__


class ScreenWaitTimedOut(ScreenWaitFailed, TimeoutError):
    """``wait_for``'s timeout passed first."""


class ScreenWaitExited(ScreenWaitFailed):
    """The session exited and its final screen does not show the pattern; ``status`` is its
    ``ExitStatus``."""

    def __init__(self, message: str, snapshot: Snapshot, status: ExitStatus) -> None:
        super().__init__(message, snapshot)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.snapshot, self.status), self.__dict__


class NoDaemon(ConnectionFailed):
    """Nothing listens on the socket (no socket file, or a stale one): a daemon may start there."""


class DaemonImpostor(ConnectionFailed):
    """The socket or its directory is owned by someone else; the client refuses to talk to it."""


class ProtocolError(PtydError):
    """The peer broke the wire protocol (bad frame, wrong version, unexpected message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:  # pickled with both arguments (and its attributes)
        return type(self), (self.code, str(self)), self.__dict__


class RequestError(PtydError):
    """The daemon answered a request with an error response."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:  # pickled with both arguments (and its attributes)
        return type(self), (self.code, str(self)), self.__dict__

    @staticmethod
    def from_wire(code: str, message: str) -> RequestError:
        """The most specific exception for an error code received from the daemon."""
        cls = _CODE_CLASSES.get(code, RequestError)
        return cls(code, message)


class AuthRefused(RequestError):
    """The daemon refused this peer (its uid is not on the allow-list)."""


class VersionMismatch(RequestError):
    """The daemon speaks a different major protocol version."""


class SessionNotFound(RequestError):
    """No session has that id or name."""


class SpawnFailed(RequestError):
    """The session's program could not be started (missing program, bad cwd, ...)."""


class PtyUnavailable(SpawnFailed):
    """No PTY could be allocated (the daemon is out of fds, or the system out of PTYs)."""


class DaemonBusy(RequestError):
    """The daemon is out of a resource (fds, partial-frame memory, its client cap) and refused
    this client."""


class TimeoutExpired(RequestError):
    """A wait ran out of time."""


_CODE_CLASSES: dict[str, type[RequestError]] = {
    AUTH_REFUSED: AuthRefused,
    VERSION_MISMATCH: VersionMismatch,
    NO_SUCH_SESSION: SessionNotFound,
    SPAWN_FAILED: SpawnFailed,
    PTY_UNAVAILABLE: PtyUnavailable,
    BUSY: DaemonBusy,
    TOO_MANY_CONNECTIONS: DaemonBusy,
    TIMEOUT: TimeoutExpired,
}
