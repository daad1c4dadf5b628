"""THE wire protocol: version, features, framing, message shapes and limits.

A frame is a 4-byte big-endian unsigned length followed by one msgpack map. Requests carry
``type`` and ``id`` and get exactly one ``response``; events are unsolicited ``event`` frames that
name their session. Terminal data always travels as msgpack bin. This is the only module that
uses msgpack; docs/protocol.md describes every message defined here.
"""

from __future__ import annotations

import re
import struct
import threading
from functools import partial

import msgpack

from . import errors
from ._record import record

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final, TypeVar

    _T = TypeVar("_T")

VERSION: Final = (1, 2)  # 1.1: "key-modes" (input may carry `keys`); 1.2: "cancel"
VERSION_TEXT: Final = f"{VERSION[0]}.{VERSION[1]}"
# Optional capabilities; a client and a daemon use the intersection of what both announce.
FEATURES: Final = frozenset(
    {"replay", "flow-control", "stats", "size-policy", "read-only", "key-modes", "cancel"}
)

HEADER: Final = struct.Struct(">I")
DEFAULT_MAX_REQUEST_FRAME: Final = 4 * 1024 * 1024  # daemon side: requests, input chunks
MAX_RESPONSE_FRAME: Final = 512 * 1024 * 1024  # client side: snapshots with long scrollback
# Entries of any map or array in a request (env and argv take at most this many): a 4 MiB
# frame of 600,000 tiny keys cost 70 MiB and most of a second of the loop to decode.
MAX_REQUEST_CONTAINER: Final = 4096
# Containers and their entries in one request, all counted (a create with 4,096 argv words and
# 4,096 environment variables fits): a 4 MiB frame of 1,000 arrays of 4,095 empty arrays is
# four million objects, 287 MiB and 1.8 s of the loop to decode.
MAX_REQUEST_OBJECTS: Final = 3 * MAX_REQUEST_CONTAINER
MAX_INPUT_CHUNK: Final = 256 * 1024  # the client library splits larger input into chunks

SNAPSHOT_FORMATS: Final = ("text", "ansi", "json")
FLOW_POLICIES: Final = ("resync", "disconnect", "block")
FLOW_LEVELS: Final = ("normal", "warning", "limit")  # index = level number used by the hot path
SIGNAL_TARGETS: Final = ("foreground", "process", "group", "session")
SESSION_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.@:+-]{0,63}")
# Columns or rows: what a session's emulator holds (emulator.MAX_DIMENSION); a larger PTY would
# have snapshots that no longer match its screen.
MAX_SIZE: Final = 1000


_packers = threading.local()
PACKER_KEEP: Final = 64 * 1024  # a packer that grew past this for a big frame is not kept


def encode(message: dict[str, Any]) -> bytes:
    """One complete frame (length prefix and body) for a message map."""
    # One small packer per thread, reused: msgpack.packb allocates a fresh 256 KiB buffer per
    # call, which the daemon's fixed mmap threshold (allocator.py) turns into an mmap, a page
    # fault and an munmap for every frame. A packer never shrinks, so one that grew for a big
    # frame (a snapshot) is dropped rather than kept for the daemon's life.
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True, buf_size=4096)
    body = packer.pack(message)
    if len(body) > PACKER_KEEP:
        _packers.packer = None
    return HEADER.pack(len(body)) + body


def output_frame_prefix(session_id: int) -> bytes:
    """The constant part of every output event of one session, handed once to the hot path.

    The hot path completes a frame as: 4-byte length, this prefix, 0xcf + 8-byte big-endian
    offset, 0xc6 + 4-byte big-endian data length, data. That is the msgpack map
    ``{"type": "event", "event": "output", "session": id, "offset": N, "data": bin}``, with the
    offset and the bin header in their fixed-width forms so the layout never varies.
    """
    head = msgpack.packb(
        {"type": "event", "event": "output", "session": session_id}, use_bin_type=True
    )
    # head is a fixmap of 3 entries: make it 5 and append the "offset" key; the hot path
    # appends the value, then the "data" key and value.
    assert head[0] == 0x83
    return b"\x85" + head[1:] + msgpack.packb("offset")


OUTPUT_DATA_KEY: Final = msgpack.packb("data")  # appended by the hot path after the offset
_OUTPUT_TAIL: Final = len(OUTPUT_DATA_KEY) + 5  # the data key, 0xc6 and the 4-byte length


def parse_output(body: bytes, prefix: bytes) -> tuple[int, bytes] | None:
    """(offset, data) of an output frame body of the session whose ``output_frame_prefix`` is
    ``prefix``, read from its fixed layout without msgpack; None for any other frame."""
    data_at = len(prefix) + 9 + _OUTPUT_TAIL
    if len(body) < data_at or not body.startswith(prefix):
        return None
    offset_at, key_at = len(prefix), len(prefix) + 9
    is_output = (
        body[offset_at] == 0xCF
        and body[key_at : key_at + len(OUTPUT_DATA_KEY)] == OUTPUT_DATA_KEY
        and body[data_at - 5] == 0xC6
        and int.from_bytes(body[data_at - 4 : data_at], "big") == len(body) - data_at
    )
    if not is_output:
        return None
    return int.from_bytes(body[offset_at + 1 : key_at], "big"), body[data_at:]


@record
class InputLayout:
    """The constant parts of one session's ``input`` requests and of their empty ``ok``
    answers, for a relay that builds and recognises them without msgpack (``_relay``).

    An input frame is: 4-byte length, ``head``, 0xce + 4-byte id, ``middle``, 0xc6 + 4-byte
    length, data: the map ``{"type": "input", "id": N, "session": S, "data": bin}``. Its
    answer, as the daemon encodes it, is: 4-byte length, ``ok_head``, the id in msgpack's
    shortest form, ``ok_tail``: ``{"type": "response", "id": N, "ok": true, "result": {}}``.
    """

    head: bytes
    middle: bytes
    ok_head: bytes
    ok_tail: bytes


def input_layout(session_id: int) -> InputLayout:
    def pack(value: Any) -> bytes:
        return msgpack.packb(value, use_bin_type=True)

    ok_sample = pack(ok_response(0, {}))  # id 0 is one byte (a positive fixint) at its place
    id_at = ok_sample.index(pack("id")) + len(pack("id"))
    return InputLayout(
        head=b"\x84" + pack("type") + pack("input") + pack("id"),
        middle=pack("session") + pack(session_id) + pack("data"),
        ok_head=ok_sample[:id_at],
        ok_tail=ok_sample[id_at + 1 :],
    )


def encode_input(layout: InputLayout, request_id: int, data: bytes) -> bytes:
    """An input request frame in ``layout``'s fixed form (the pure relay's; ``_relay``
    builds the same bytes in C)."""
    body = (
        layout.head
        + b"\xce"
        + request_id.to_bytes(4, "big")
        + layout.middle
        + b"\xc6"
        + len(data).to_bytes(4, "big")
        + data
    )
    return HEADER.pack(len(body)) + body


def encode_ok(layout: InputLayout, request_id: int) -> bytes:
    """The frame of the daemon's empty ``ok`` answer to ``request_id``, byte for byte."""
    body = layout.ok_head + msgpack.packb(request_id) + layout.ok_tail
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Splits a byte stream into decoded message maps, enforcing the frame-size limit on the
    length prefix (before any body byte is buffered) and msgpack limits inside the body."""

    def __init__(self, max_frame: int, max_container: int | None = None) -> None:
        self.max_frame = max_frame
        self.max_container = max_container  # None: containers bounded by the body's length
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any] | errors.ProtocolError]:
        """Decoded messages, in order; a malformed body becomes a ProtocolError in the list
        (its frame boundary is known, so the stream stays usable). An oversized length prefix
        raises ProtocolError: the stream cannot be resynchronised after it."""
        return self._split(data, partial(decode_body, max_container=self.max_container))

    def feed_bodies(self, data: bytes) -> list[bytes]:
        """The complete frames' bodies, undecoded, for a reader that recognises output frames
        by their fixed layout (``parse_output``) and decodes only the rest."""
        return self._split(data, bytes)

    def _split(self, data: bytes, take: Callable[[memoryview], _T]) -> list[_T]:
        if self._buffer:
            self._buffer += data
            stream: bytes | bytearray = self._buffer
        else:
            stream = data  # the common case: the read starts on a frame boundary, no copy
        out: list[_T] = []
        start, end = 0, len(stream)
        oversized = 0
        with memoryview(stream) as view:
            while end - start >= 4:
                (length,) = HEADER.unpack_from(view, start)
                if length > self.max_frame:
                    oversized = length
                    break
                if end - start - 4 < length:
                    break
                out.append(take(view[start + 4 : start + 4 + length]))
                start += 4 + length
        # One cut per feed, not one per frame: a read of many frames stays linear.
        if stream is self._buffer:
            del self._buffer[:start]
        else:
            self._buffer = bytearray(stream[start:]) if start < end else bytearray()
        if oversized:
            raise errors.ProtocolError(
                errors.FRAME_TOO_LARGE,
                f"frame of {oversized} bytes exceeds the limit of {self.max_frame} bytes",
            )
        return out

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held so far."""
        return len(self._buffer)

    def clear(self) -> None:
        """Drop (and free) a partial frame: its connection is being closed."""
        self._buffer = bytearray()


class _TooManyObjects(Exception):
    pass


class _ObjectBudget:
    """Counts a request's containers and entries as msgpack completes them and stops the
    decode once past the budget: at most the budget and one container are ever built."""

    __slots__ = ("left",)

    def __init__(self, budget: int) -> None:
        self.left = budget

    def take(self, container: Any) -> Any:
        self.left -= len(container) + 1
        if self.left < 0:
            raise _TooManyObjects
        return container


def _why(exc: Exception) -> str:
    """msgpack's reason in words: some of its errors have none, some name its options."""
    text = str(exc)
    if "max_ext_len" in text:
        return "ext values are not accepted"
    if "max_array_len" in text or "max_map_len" in text:
        return f"a map or array of {text.split()[0]} entries is too large"
    if isinstance(exc, msgpack.ExtraData):
        return "data after the message"
    if isinstance(exc, msgpack.StackError):
        return "maps and arrays nested too deeply"
    return text or "invalid data (a byte that starts no msgpack value, or a value cut short)"


def decode_body(
    body: bytes | memoryview, max_container: int | None = None
) -> dict[str, Any] | errors.ProtocolError:
    """One frame body as a message map, or the reason it is not one. ``max_container``
    (requests, in the daemon) bounds each container's entries, and all of them together to
    ``MAX_REQUEST_OBJECTS``."""
    limits: dict[str, Any] = {}
    if max_container is not None:
        budget = _ObjectBudget(MAX_REQUEST_OBJECTS)
        limits = {
            "max_map_len": max_container,
            "max_array_len": max_container,
            "list_hook": budget.take,
            "object_hook": budget.take,
        }
    try:
        # Container and string sizes default to the body length, so a small frame cannot
        # declare a huge container; msgpack's fixed parse stack bounds the nesting depth.
        message = msgpack.unpackb(
            body, raw=False, use_list=True, strict_map_key=True, max_ext_len=0, **limits
        )
    except _TooManyObjects:
        return errors.ProtocolError(
            errors.BAD_FRAME,
            f"a request holds at most {MAX_REQUEST_OBJECTS} maps, arrays and entries in all",
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        return errors.ProtocolError(errors.BAD_FRAME, f"malformed msgpack: {_why(exc)}")
    if not isinstance(message, dict):
        return errors.ProtocolError(errors.BAD_FRAME, "a frame must hold a msgpack map")
    return message


# ---------------------------------------------------------------------------------------------
# Message shapes


def request(request_id: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "id": request_id, **fields}


def ok_response(request_id: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response", "id": request_id, "ok": True, "result": result}


def error_response(request_id: int | None, code: str, message: str) -> dict[str, Any]:
    return {
        "type": "response",
        "id": request_id,
        "ok": False,
        "error": {"code": code, "message": message},
    }


def event(name: str, **fields: Any) -> dict[str, Any]:
    return {"type": "event", "event": name, **fields}


def is_compatible(version: str) -> bool:
    """Same major version; minor versions only add optional things (features)."""
    major, _, minor = version.partition(".")
    is_same_major = is_ascii_digits(major) and int(major) == VERSION[0]
    return is_same_major and (minor == "" or is_ascii_digits(minor))


def is_ascii_digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` takes any script's digits, which ``int`` reads."""
    return text.isascii() and text.isdigit()


def hello_fields(client_name: str) -> dict[str, Any]:
    """What a client says in its ``hello``."""
    return {"version": VERSION_TEXT, "features": sorted(FEATURES), "client": client_name}


def check_hello(result: dict[str, Any]) -> None:
    """Raise VersionMismatch unless the daemon's ``hello`` answer speaks our major version."""
    version = str(result.get("version", ""))
    if not is_compatible(version):
        raise errors.VersionMismatch(
            errors.VERSION_MISMATCH,
            f"protocol version mismatch: daemon speaks {version}, client speaks "
            f"{VERSION_TEXT} (major versions must match)",
        )
