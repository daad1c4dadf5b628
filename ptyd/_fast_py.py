"""The pure-Python twin of ``_fast``: the per-session output pump and fan-out.

Same names, same behaviour, same frames as the compiled module; ``_backend`` picks one. The
pump never imports asyncio or the protocol module: it is handed a file descriptor, the constant
frame prefix of its session and plain numbers, and it returns data, end-of-file and the
subscribers whose flow level changed. One call per read batch.
"""

from __future__ import annotations

import errno
import os
import select
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Transport(Protocol):
        def write(self, data: bytes) -> None: ...
        def get_write_buffer_size(self) -> int: ...


# Flow levels (index into protocol.FLOW_LEVELS) and policies (index into FLOW_POLICIES).
NORMAL = 0
WARNING = 1
LIMIT = 2
RESYNC = 0
DISCONNECT = 1
BLOCK = 2

READ_SIZE = 65536


class Subscriber:
    """One client attached to one session, as the hot path sees it.

    While ``is_live`` is false the subscriber is waiting for a snapshot: frames are held (shared
    references, counted in ``held_bytes``) and sent after it. While ``is_lagging`` it has been
    dropped by the resync policy and receives nothing until the control plane resyncs it.
    """

    __slots__ = (
        "bytes_delivered",
        "held",
        "held_bytes",
        "is_lagging",
        "is_live",
        "level",
        "limit",
        "owner",
        "policy",
        "resyncs",
        "threshold",
        "transport",
        "warnings",
    )

    def __init__(
        self, transport: Transport, policy: int, threshold: int, limit: int, owner: Any
    ) -> None:
        self.transport = transport
        self.policy = policy
        self.threshold = threshold
        self.limit = limit
        self.owner = owner
        self.level = NORMAL
        self.is_live = False
        self.is_lagging = False
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.bytes_delivered = 0
        self.warnings = 0
        self.resyncs = 0

    def backlog(self) -> int:
        """Bytes queued for this subscriber and not yet taken by its socket."""
        return self.transport.get_write_buffer_size() + self.held_bytes

    def update_level(self) -> bool:
        """Recompute the level from the backlog; true if it changed."""
        backlog = self.backlog()
        if self.is_lagging or backlog >= self.limit:
            level = LIMIT
        elif backlog >= self.threshold:
            level = WARNING
        else:
            level = NORMAL
        if level == self.level:
            return False
        if self.level == NORMAL:
            self.warnings += 1  # a jump straight to the limit is warned too
        self.level = level
        return True

    def take_held(self) -> list[bytes]:
        """Frames held during a snapshot, in order; the subscriber goes live."""
        held = self.held
        self.held = []
        self.held_bytes = 0
        self.is_live = True
        return held

    def start_lagging(self) -> None:
        """Resync policy at the limit: drop everything not yet handed to the socket."""
        self.is_lagging = True
        self.is_live = False
        self.held = []
        self.held_bytes = 0
        self.resyncs += 1


class ReplayRing:
    """The last ``capacity`` bytes of a session's output, addressed by stream offset."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.capacity = capacity
        self._data = bytearray()  # grows with the output, up to capacity
        self.end = 0  # stream offset one past the last byte appended

    def append(self, data: bytes) -> None:
        self.end += len(data)
        if self.capacity == 0:
            return
        self._data += data[-self.capacity :]
        excess = len(self._data) - self.capacity
        if excess > 0:
            del self._data[:excess]  # bytearray drops a prefix in O(1)

    @property
    def start(self) -> int:
        """The oldest offset still held."""
        return self.end - len(self._data)

    @property
    def allocated(self) -> int:
        """Bytes held now (grows with the output, up to capacity)."""
        return len(self._data)

    def since(self, offset: int) -> bytes | None:
        """Exactly the bytes from ``offset`` to the end, or None if they are no longer held."""
        if not self.start <= offset <= self.end:
            return None
        return bytes(self._data[offset - self.start :])


class OutputPump:
    """Reads one session's PTY and fans each batch out to its subscribers as one shared frame."""

    def __init__(self, fd: int, frame_prefix: bytes, ring_capacity: int, read_budget: int) -> None:
        if read_budget <= 0:
            raise ValueError("read_budget must be positive")
        self.fd = fd
        self.frame_prefix = frame_prefix
        self.ring = ReplayRing(ring_capacity)
        self.read_budget = read_budget
        self.subscribers: list[Subscriber] = []

    @property
    def offset(self) -> int:
        """Bytes of output read so far: the offset the next output frame starts at."""
        return self.ring.end

    def pump(self) -> tuple[bytes | memoryview, bool, list[Subscriber]]:
        """Read until EAGAIN, end of file or the byte budget; frame the batch once, offer it to
        every subscriber. Returns (data read, whether the PTY reached its end, subscribers
        whose level changed); the data is a view of the frame's payload when a frame was built
        (bytes when there was no subscriber to build one for)."""
        data, is_eof = self.read_batch(self.read_budget)
        if not data:
            return b"", is_eof, []
        shared, changed = self._publish(data)
        return shared, is_eof, changed

    def read_batch(self, budget: int, quiet_ms: int = 0, max_ms: int = 0) -> tuple[bytes, bool]:
        """Read up to ``budget`` bytes into a new bytes object, with the GIL released: for a
        worker thread, never while pump() may run for the same PTY. When the PTY runs dry the
        batch ends, unless it has lasted less than ``max_ms`` and more output comes within
        ``quiet_ms``. Returns (data, is_eof); publish(data) on the loop thread then appends it
        to the stream."""
        if budget <= 0:
            raise ValueError("budget must be positive")
        chunks = []
        total = 0
        is_eof = False
        start = time.monotonic()
        ready = select.poll()
        ready.register(self.fd, select.POLLIN)
        while total < budget:
            try:
                chunk = os.read(self.fd, min(READ_SIZE, budget - total))
            except BlockingIOError:
                waited_ms = int((time.monotonic() - start) * 1000)
                if waited_ms < max_ms and ready.poll(min(quiet_ms, max_ms - waited_ms)):
                    continue
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                is_eof = True  # EIO: every slave descriptor is closed
                break
            if not chunk:
                is_eof = True
                break
            chunks.append(chunk)
            total += len(chunk)
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), is_eof

    def publish(self, data: bytes) -> list[Subscriber]:
        """Append data to the stream: ring, one frame, try-put to each subscriber."""
        return self._publish(data)[1]

    def _publish(self, data: bytes) -> tuple[bytes | memoryview, list[Subscriber]]:
        """Ring, then one frame (only if someone subscribes) offered to every subscriber;
        returns the data (a view of the frame's payload if one was built) and the
        subscribers whose level changed."""
        offset = self.ring.end
        self.ring.append(data)
        if not self.subscribers:
            return data, []
        frame = encode_output(self.frame_prefix, offset, data)
        changed = fan_out(self.subscribers, frame)
        return memoryview(frame)[len(frame) - len(data) :], changed


def encode_output(prefix: bytes, offset: int, data: bytes) -> bytes:
    """The complete output frame; layout defined by protocol.output_frame_prefix."""
    body_len = len(prefix) + 9 + 5 + 5 + len(data)
    return b"".join(
        (
            body_len.to_bytes(4, "big"),
            prefix,
            b"\xcf",
            offset.to_bytes(8, "big"),
            b"\xa4data\xc6",
            len(data).to_bytes(4, "big"),
            data,
        )
    )


def fan_out(subscribers: list[Subscriber], frame: bytes) -> list[Subscriber]:
    """Offer one shared frame to every subscriber (try-put against its limit); return those
    whose level changed. A block-policy subscriber always takes the frame: the control plane
    pauses the PTY instead. An empty queue takes any frame, so a batch larger than the limit
    still reaches a client that keeps up."""
    size = len(frame)
    changed = []
    for sub in subscribers:
        if sub.is_lagging:
            continue
        backlog = sub.backlog()
        if sub.policy != BLOCK and backlog > 0 and backlog + size > sub.limit:
            if sub.policy == RESYNC:
                sub.start_lagging()
            if sub.level != LIMIT:
                if sub.level == NORMAL:
                    sub.warnings += 1
                sub.level = LIMIT
                changed.append(sub)
            continue
        if sub.is_live:
            sub.transport.write(frame)
            sub.bytes_delivered += size
        else:
            sub.held.append(frame)
            sub.held_bytes += size
        if sub.update_level():
            changed.append(sub)
    return changed
