"""One frozen Config: defaults, then ``PTYD_*`` environment variables, then command-line flags.

Every setting is validated once, at start, with a message that names the setting. The table in
``SETTINGS`` is the single source of names, defaults, units and help text (the README lists it).
"""

from __future__ import annotations

import os
import re

from . import _record
from ._record import field, record
from .errors import ConfigError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

_SIZE_UNITS = {
    "": 1,
    "k": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gib": 1024**3,
}
_SIZE_RE = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*")


def parse_bytes(text: str) -> int:
    """Bytes from ``65536``, ``64K``, ``64KiB``, ``1M`` ... (binary units)."""
    match = _SIZE_RE.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size in bytes (e.g. 65536, 64K, 1M)")
    return int(match.group(1)) * _SIZE_UNITS[unit]


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false, 1/0, yes/no, on/off)")


def is_pure_forced(environ: Mapping[str, str]) -> bool:
    """``PTYD_PURE``: each ptyd process picks its own backend, so it is not a daemon setting."""
    text = environ.get("PTYD_PURE", "")
    try:
        return parse_bool(text)
    except ValueError as exc:
        raise ConfigError(f"invalid PTYD_PURE={text!r}: {exc}") from None


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{text!r} is not a non-negative number of seconds")
    return value


def parse_uids(text: str) -> tuple[int, ...]:
    """Uids separated by commas or spaces (one comma between two), in ASCII digits."""
    parts = (
        [part.strip() for part in re.split(r"\s*,\s*|\s+", text.strip())] if text.strip() else []
    )
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise ValueError(f"{text!r} is not a list of numeric uids")
    uids = tuple(int(part) for part in parts)
    if any(not 0 <= uid < 2**32 - 1 for uid in uids):  # -1 also means "credentials unknown"
        raise ValueError(f"{text!r}: a uid is a number from 0 to 4294967294")
    return uids


def parse_count(text: str) -> int:
    if not text.strip().isascii() or not text.strip().isdigit():
        raise ValueError(f"{text!r} is not a whole number (0, 1, 2...)")
    return int(text)


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


@record
class Setting:
    env: str
    parse: Callable[[str], Any]
    unit: str
    help: str


def default_socket_dir() -> str:
    """``$XDG_RUNTIME_DIR/ptyd``, else ``/tmp/ptyd-$UID`` (as tmux does)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "ptyd")
    return f"/tmp/ptyd-{os.getuid()}"


def socket_path_for(name: str) -> str:
    """The socket path of a named daemon (``-L NAME``) in the default directory."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name in (".", ".."):
        raise ConfigError(f"-L {name!r}: a daemon name is 1-64 letters, digits or _.-")
    return os.path.join(default_socket_dir(), f"{name}.sock")


@record
class Config:
    """Everything the daemon and the client library can be told; immutable once built. Paths
    are strings (``pathlib`` is a tenth of a command's start; every use takes a path-like)."""

    socket: str = field(default_factory=lambda: os.path.join(default_socket_dir(), "default.sock"))
    log_level: str = "info"
    log_file: str | None = None
    allowed_uids: tuple[int, ...] = ()
    flow_threshold: int = 256 * 1024
    flow_max_queue_size: int = 1024 * 1024
    flow_auto_disconnect: bool = False
    replay_bytes: int = 1024 * 1024
    scrollback: int = 2000
    exit_retention: float = 300.0
    max_exited: int = 1000
    kill_grace: float = 2.0
    input_limit: int = 4 * 1024 * 1024
    max_frame: int = 4 * 1024 * 1024
    max_clients: int = 4096
    max_unauthenticated: int = 64
    hello_timeout: float = 10.0
    frame_timeout: float = 30.0
    partial_frame_budget: int = 64 * 1024 * 1024
    size_policy: str = "latest"
    term: str = "xterm-256color"
    autostart: bool = True

    def validate(self, given: Mapping[str, str] | None = None) -> Config:
        """Raise ConfigError naming the first invalid setting; return self when all is well.

        ``given``: the settings the user set, each with how (``--flag`` or ``PTYD_NAME``): an
        error names it that way, and a conflict of two settings blames the one the user set."""
        given = given or {}

        def label(name: str) -> str:
            return given.get(name, SETTINGS[name].env)

        flow_conflict = self.flow_threshold >= self.flow_max_queue_size
        blame_threshold = "flow_threshold" in given and "flow_max_queue_size" not in given
        problems = {
            "flow_threshold": (
                (self.flow_threshold <= 0 and "must be greater than 0")
                or (
                    flow_conflict
                    and blame_threshold
                    and f"must be below {label('flow_max_queue_size')} ({self.flow_max_queue_size})"
                )
            ),
            "flow_max_queue_size": (
                (self.flow_max_queue_size <= 0 and "must be greater than 0")
                or (
                    flow_conflict
                    and f"must be above {label('flow_threshold')} ({self.flow_threshold})"
                )
            ),
            "replay_bytes": self.replay_bytes < 0 and "must not be negative",
            "max_exited": self.max_exited <= 0 and "must be greater than 0",
            "input_limit": self.input_limit <= 0 and "must be greater than 0",
            "max_frame": not 1024 <= self.max_frame <= 1 << 30 and "must be 1 KiB to 1 GiB",
            "max_clients": self.max_clients <= 0 and "must be greater than 0",
            "max_unauthenticated": self.max_unauthenticated <= 0 and "must be greater than 0",
            "hello_timeout": self.hello_timeout <= 0 and "must be greater than 0",
            "frame_timeout": self.frame_timeout <= 0 and "must be greater than 0",
            "partial_frame_budget": (
                self.partial_frame_budget < self.max_frame
                and f"must be at least {label('max_frame')} ({self.max_frame})"
            ),
            "log_level": self.log_level.upper() not in _LOG_LEVELS and "unknown level",
            "term": not re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", self.term) and "invalid name",
        }
        for name, problem in problems.items():
            if problem:
                raise ConfigError(f"invalid {label(name)}={getattr(self, name)!r}: {problem}")
        if len(os.fsencode(self.socket)) >= 108:
            raise ConfigError(
                f"invalid socket path {str(self.socket)!r}: longer than the 107 bytes a Unix "
                "socket path may have"
            )
        return self

    @property
    def flow_default_policy(self) -> str:
        return "disconnect" if self.flow_auto_disconnect else "resync"

    def replace(self, **changes: Any) -> Config:
        return _record.replace(self, **changes).validate()


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

SETTINGS: dict[str, Setting] = {
    "socket": Setting("PTYD_SOCKET", str, "path", "socket path (-S); -L NAME picks NAME.sock"),
    "log_level": Setting("PTYD_LOG_LEVEL", str.lower, "level", "debug, info, warning, error"),
    "log_file": Setting("PTYD_LOG_FILE", str, "path", "daemon log file (default: stderr)"),
    "allowed_uids": Setting(
        "PTYD_ALLOWED_UIDS", parse_uids, "uids", "uids allowed besides the daemon's own"
    ),
    "flow_threshold": Setting(
        "PTYD_FLOW_THRESHOLD", parse_bytes, "bytes", "a subscriber's backlog that warns"
    ),
    "flow_max_queue_size": Setting(
        "PTYD_FLOW_MAX_QUEUE_SIZE", parse_bytes, "bytes", "backlog limit: the policy applies"
    ),
    "flow_auto_disconnect": Setting(
        "PTYD_FLOW_AUTO_DISCONNECT", parse_bool, "bool", "default policy disconnect, not resync"
    ),
    "replay_bytes": Setting(
        "PTYD_REPLAY_BYTES", parse_bytes, "bytes", "raw output kept per session for resume"
    ),
    "scrollback": Setting("PTYD_SCROLLBACK", parse_count, "lines", "scrollback kept per session"),
    "exit_retention": Setting(
        "PTYD_EXIT_RETENTION", parse_seconds, "seconds", "how long exited sessions stay listed"
    ),
    "max_exited": Setting(
        "PTYD_MAX_EXITED", parse_count, "count", "exited sessions kept; past it the oldest goes"
    ),
    "kill_grace": Setting(
        "PTYD_KILL_GRACE", parse_seconds, "seconds", "wait between SIGHUP, SIGTERM and SIGKILL"
    ),
    "input_limit": Setting(
        "PTYD_INPUT_LIMIT", parse_bytes, "bytes", "input queued per session before errors"
    ),
    "max_frame": Setting("PTYD_MAX_FRAME", parse_bytes, "bytes", "largest request frame"),
    "max_clients": Setting("PTYD_MAX_CLIENTS", parse_count, "count", "connections held at once"),
    "max_unauthenticated": Setting(
        "PTYD_MAX_UNAUTHENTICATED", parse_count, "count", "connections not yet past hello"
    ),
    "hello_timeout": Setting(
        "PTYD_HELLO_TIMEOUT", parse_seconds, "seconds", "time a client has to send hello"
    ),
    "frame_timeout": Setting(
        "PTYD_FRAME_TIMEOUT", parse_seconds, "seconds", "time a started frame has to complete"
    ),
    "partial_frame_budget": Setting(
        "PTYD_PARTIAL_FRAME_BUDGET",
        parse_bytes,
        "bytes",
        "bytes held in incomplete frames, all clients together",
    ),
    "size_policy": Setting(
        "PTYD_SIZE_POLICY",
        _choice("latest", "smallest", "largest", "manual"),
        "policy",
        "which attached client's size a session takes",
    ),
    "term": Setting("PTYD_TERM", str, "name", "TERM given to new sessions"),
    "autostart": Setting(
        "PTYD_NO_AUTOSTART",
        lambda text: not parse_bool(text),
        "bool",
        "if true, commands never start a daemon",
    ),
}


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Defaults, then the environment, then explicit overrides (from CLI flags; None = unset)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    given: dict[str, str] = {}
    for name, setting in SETTINGS.items():
        raw = environ.get(setting.env)
        if raw is None or (raw == "" and name != "autostart"):
            continue
        try:
            values[name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"invalid {setting.env}={raw!r}: {exc}") from None
        given[name] = setting.env
    is_pure_forced(environ)  # a typo reported by the command, not by a daemon it starts
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
            given[name] = flag_for(name)
    return Config(**values).validate(given)


def flag_for(name: str) -> str:
    """The command-line flag of a setting (``serve --flow-threshold``)."""
    return "--" + name.replace("_", "-")
