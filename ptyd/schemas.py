"""The daemon's request schemas: what each request type may carry, checked and cleaned.

A schema maps each field to (validator, default). A validator returns the cleaned value or
raises ValueError with a reason; REQUIRED marks a field without a default. Only the daemon
validates requests, so the clients (the command line above all) never import this.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from . import errors
from .protocol import (
    FLOW_POLICIES,
    MAX_SIZE,
    SESSION_NAME,
    SIGNAL_TARGETS,
    SNAPSHOT_FORMATS,
    is_ascii_digits,
)

REQUIRED: Final = object()
Validator = Callable[[Any], Any]


def _int_range(lo: int, hi: int) -> Validator:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"must be an integer from {lo} to {hi}")
        return value

    return check


def _optional(check: Validator) -> Validator:
    return lambda value: None if value is None else check(value)


def _str(value: Any) -> str:
    if not isinstance(value, str) or "\0" in value or len(value) > 4096:
        raise ValueError("must be a string without NUL, at most 4096 characters")
    return value


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("must be msgpack bin")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be a boolean")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e9:
        raise ValueError("must be a non-negative number")
    return float(value)


def _choice(*choices: str) -> Validator:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(value)

    return check


def _argv(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > 4096:
        raise ValueError("must be a non-empty list of strings")
    return [_str(item) for item in value]


def _env(value: Any) -> dict[str, str | None]:
    if not isinstance(value, dict) or len(value) > 4096:
        raise ValueError("must be a map of names to strings (or nil to unset)")
    out: dict[str, str | None] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"invalid variable name {key!r}")
        out[key] = None if item is None else _str(item)
    return out


def _session_name(value: Any) -> str:
    if not isinstance(value, str) or not SESSION_NAME.fullmatch(value):
        raise ValueError(
            "must start with a letter or '_' and hold at most 64 letters, digits or _.@:+-"
        )
    return value


def _target(value: Any) -> int | str:
    """A session id (int) or name (str)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value:
        return int(value) if is_ascii_digits(value) else _session_name(value)
    raise ValueError("must be a session id or name")


def _signal(value: Any) -> int:
    """A signal number from a number, a digit string or a name such as HUP, SIGHUP or sighup:
    checked here, so an unknown name is a bad request whatever the session's state."""
    number = value
    if isinstance(value, str) and 1 <= len(value) <= 16:
        name = value.upper()
        if is_ascii_digits(name):
            number = int(name)
        else:
            with contextlib.suppress(KeyError):
                return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= 64:
        return number
    raise ValueError(
        f"must be a signal number (1-64) or a name such as HUP or SIGTERM, not {value!r}"
    )


def _features(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 256:
        raise ValueError("must be a list of feature names")
    return [item for item in value if isinstance(item, str)]


_SIZE = _int_range(1, MAX_SIZE)

SCHEMAS: Final[dict[str, dict[str, tuple[Validator, Any]]]] = {
    "hello": {
        "version": (_str, REQUIRED),
        "features": (_features, []),
        "client": (_str, ""),
    },
    "create": {
        "argv": (_optional(_argv), None),
        "env": (_env, {}),
        "cwd": (_optional(_str), None),
        "cols": (_SIZE, 80),
        "rows": (_SIZE, 24),
        "name": (_optional(_session_name), None),
        "term": (_optional(_str), None),
    },
    "list": {},
    "info": {"session": (_target, REQUIRED)},
    "attach": {
        "session": (_target, REQUIRED),
        "policy": (_optional(_choice(*FLOW_POLICIES)), None),
        "snapshot": (_optional(_choice(*SNAPSHOT_FORMATS)), "ansi"),
        "from_offset": (_optional(_int_range(0, 2**63 - 1)), None),
        "read_only": (_bool, False),
        "cols": (_optional(_SIZE), None),
        "rows": (_optional(_SIZE), None),
    },
    "detach": {"session": (_target, REQUIRED)},
    "input": {"session": (_target, REQUIRED), "data": (_bytes, REQUIRED), "keys": (_bool, False)},
    "resize": {
        "session": (_target, REQUIRED),
        "cols": (_SIZE, REQUIRED),
        "rows": (_SIZE, REQUIRED),
    },
    "signal": {
        "session": (_target, REQUIRED),
        "signal": (_signal, REQUIRED),
        "target": (_choice(*SIGNAL_TARGETS), "foreground"),
    },
    "kill": {"session": (_target, REQUIRED)},
    "snapshot": {
        "session": (_target, REQUIRED),
        "format": (_choice(*SNAPSHOT_FORMATS), "text"),
        "scrollback": (_int_range(0, 10_000_000), 0),
    },
    "wait": {"session": (_target, REQUIRED), "timeout": (_optional(_number), None)},
    "cancel": {"request": (_int_range(0, 2**64 - 1), REQUIRED)},
    "stats": {},
    "shutdown": {},
}


# The keys a request of each type may carry: its fields, "id" and "type".
_KNOWN_KEYS: Final = {kind: frozenset(schema) | {"id", "type"} for kind, schema in SCHEMAS.items()}


class Request(NamedTuple):
    """A validated request: its id, type and cleaned fields (defaults filled in)."""

    id: int
    type: str
    fields: dict[str, Any]


def parse_request(message: dict[str, Any]) -> Request:
    """Validate a request map against its schema; raise ProtocolError naming the bad field."""
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int) or request_id < 0:
        raise errors.ProtocolError(
            errors.BAD_REQUEST, "a request needs a non-negative integer 'id'"
        )
    kind = message.get("type")
    schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise errors.ProtocolError(errors.UNKNOWN_TYPE, f"unknown request type {kind!r}")
    fields: dict[str, Any] = {}
    for name, (check, default) in schema.items():
        if message.get(name) is None and name in message and default is not REQUIRED:
            # An explicit nil keeps its meaning where the field takes one (attach's "no
            # snapshot"); elsewhere it stands for the default.
            try:
                fields[name] = check(None)
            except ValueError:
                fields[name] = default
            continue
        if name not in message:
            if default is REQUIRED:
                raise errors.ProtocolError(
                    errors.BAD_REQUEST, f"{kind}: missing required field {name!r}"
                )
            fields[name] = default
            continue
        try:
            fields[name] = check(message[name])
        except ValueError as exc:
            raise errors.ProtocolError(
                errors.BAD_REQUEST, f"{kind}: field {name!r} {exc}"
            ) from None
    known = _KNOWN_KEYS[str(kind)]
    if not message.keys() <= known:  # a comparison, no set built for the common case
        unknown = message.keys() - known
        names = sorted(map(str, unknown))
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        raise errors.ProtocolError(
            errors.BAD_REQUEST, f"{kind}: unknown field(s) {', '.join(names[:10])}{more}"
        )
    return Request(request_id, str(kind), fields)
