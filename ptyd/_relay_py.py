"""The attach relay's quiet loop, pure Python: the twin of ``_relay.pyx``.

While an attached terminal needs nothing from the control plane (no output held for the
terminal, no request unsent, no partial frame, no detach key pending), the relay only turns
keys into input requests and output frames into terminal writes. ``RelayCore.run`` does just
that until anything else happens, and returns it to ``attach.Relay``, which handles every other
case. Frames are built and recognised by their fixed layouts (``protocol.InputLayout``,
``protocol.parse_output``), never decoded.

Spinning: after sending keys the core polls without sleeping (yielding its core to anything
that wants it) for up to ``spin_us``, until output arrives, but only while no more tasks are
runnable (``/proc/loadavg``) than the CPUs it may run on (``sched_getaffinity``). On a virtual
machine a sleeping CPU costs tens of microseconds to wake, a large part of a keystroke's echo;
on a busy machine spinning would take a core from the work the echo waits for, so it does
not.

Replies to queries the daemon answers: the daemon's emulator answers DA1, DA2, DSR 5, CPR and
DECXCPR itself, and the terminal, shown the same output, answers them again. For each such
query in the output written to the terminal one reply of the matching form is awaited (at most
``MAX_AWAITED`` of each kind, each for ``reply_wait_ms``), and an awaited reply read from the
terminal is dropped, not sent: the program gets the daemon's answer only. Only sequences whole
within one read are recognised. ``filters_replies=False`` (a byte relay) sends every byte.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import select
import time

from . import protocol

# Why run() returned.
WAKE = 0  # the wake-up fd is readable (a signal); it is left unread
KEYS = 1  # data: terminal input the core did not send (b"" at end of input)
SOCKET = 2  # rest: socket bytes from the first frame the core does not handle
HELD = 3  # data: output the terminal did not take; rest: as SOCKET
UNSENT = 4  # data: the part of an input frame the socket did not take
CLOSED = 5  # the daemon closed the connection, or reading it failed

READ_SIZE = 65536  # terminal input per read
SOCKET_READ_SIZE = 256 * 1024
HEADER_SIZE = 4
LOAD_PATH = "/proc/loadavg"
LOAD_READ_SIZE = 128
REPLY_WAIT_MS = 2000  # how long a forwarded query's reply is awaited
MAX_AWAITED = 32  # replies awaited of each kind; a further query forgets the oldest
MAX_PARAMS = 32  # parameter bytes of a query or reply the relay recognises

# Kinds of query the daemon answers, and of the terminal's reply to each.
DA1, DA2, DSR, CPR, DECXCPR = range(5)
NOT_ONE = -1
# A CSI sequence of the simple form both take: ESC [, a marker, digits and ';', a final byte.
_CSI = re.compile(rb"\x1b\[([?>]?)([0-9;]{0,%d})([\x40-\x7e])" % MAX_PARAMS)


class RelayCore:
    """One attachment's quiet loop over the terminal (``fd_in``, ``fd_out``), the socket and
    the wake-up fd. ``next_id`` and ``input_request`` (0: none in flight) are shared with the
    caller, which sets them before ``run`` and reads them after."""

    def __init__(
        self,
        fd_in: int,
        fd_out: int,
        sock_fd: int,
        wake_fd: int,
        session_id: int,
        detach_key: int,
        spin_us: int = 0,
        load_path: str = LOAD_PATH,
        filters_replies: bool = True,
        reply_wait_ms: int = REPLY_WAIT_MS,
    ) -> None:
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.sock_fd = sock_fd
        self.wake_fd = wake_fd
        self.output_prefix = protocol.output_frame_prefix(session_id)
        self.layout = protocol.input_layout(session_id)
        self.detach_key = detach_key  # -1: none
        self.next_id = 1
        self.input_request = 0
        self._expected_ok = b""  # the answer to input_request, byte for byte
        self.filters_replies = filters_replies
        self.reply_wait_ns = max(reply_wait_ms, 0) * 1_000_000
        # The deadlines (time.monotonic_ns()) of the replies awaited, by kind, oldest first.
        self._awaited: list[collections.deque[int]] = [
            collections.deque(maxlen=MAX_AWAITED) for _ in range(DECXCPR + 1)
        ]
        self.spin_ns = max(spin_us, 0) * 1000
        self._cpus = len(os.sched_getaffinity(0)) or 1  # the CPUs this process may run on
        self._spin_until = 0  # time.monotonic_ns(); 0: not spinning
        self._load_fd: int | None = None  # None: never spin
        # Without a load figure spinning could steal a busy core: then it never spins.
        if self.spin_ns:
            with contextlib.suppress(OSError):
                self._load_fd = os.open(load_path, os.O_RDONLY | os.O_CLOEXEC)

    def __del__(self) -> None:
        load_fd = getattr(self, "_load_fd", None)  # None also if __init__ raised before it
        if load_fd is not None:
            os.close(load_fd)

    def run(self, read_keys: bool, send_keys: bool, skip_before: int) -> tuple[int, bytes, bytes]:
        """Relay until the caller is needed; (why, data, rest) as the constants above say.
        ``read_keys``: watch the terminal; ``send_keys``: send what it types (else return
        it); output before ``skip_before`` is left to the caller."""
        if self.input_request:
            self._expected_ok = protocol.encode_ok(self.layout, self.input_request)
        poller = select.poll()
        poller.register(self.wake_fd, select.POLLIN)
        poller.register(self.sock_fd, select.POLLIN)
        if read_keys:
            poller.register(self.fd_in, select.POLLIN)
        while True:
            ready = dict(poller.poll(0 if self._is_spinning() else None))
            if not ready:
                os.sched_yield()  # whatever else wants this core runs first
                continue
            if self.wake_fd in ready:
                return WAKE, b"", b""
            if self.sock_fd in ready:
                result = self._from_socket(skip_before)
                if result is not None:
                    return result
            if self.fd_in in ready:
                result = self._from_terminal(send_keys)
                if result is not None:
                    return result

    def _from_socket(self, skip_before: int) -> tuple[int, bytes, bytes] | None:
        try:
            data = os.read(self.sock_fd, SOCKET_READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return CLOSED, b"", b""
        if not data:
            return CLOSED, b"", b""
        at = 0
        while at < len(data):
            if len(data) - at < HEADER_SIZE:
                return SOCKET, b"", data[at:]
            (length,) = protocol.HEADER.unpack_from(data, at)
            end = at + HEADER_SIZE + length
            if end > len(data):
                return SOCKET, b"", data[at:]
            if self.input_request and data[at:end] == self._expected_ok:
                self.input_request = 0
                at = end
                continue
            output = protocol.parse_output(data[at + HEADER_SIZE : end], self.output_prefix)
            if output is None or output[0] < skip_before:
                return SOCKET, b"", data[at:]
            at = end
            self._spin_until = 0  # the output the keys were waiting for is here
            shown = output[1]
            self.expect_replies(shown)
            unwritten = _write_some(self.fd_out, shown)
            if unwritten:
                return HELD, unwritten, data[at:]
        return None

    def _from_terminal(self, send_keys: bool) -> tuple[int, bytes, bytes] | None:
        try:
            keys = os.read(self.fd_in, READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            keys = b""  # EIO: the terminal hung up
        if keys:
            keys = self.drop_replies(keys)
            if not keys:
                return None  # only replies: nothing to send
        has_detach_key = self.detach_key >= 0 and self.detach_key in keys
        if not keys or not send_keys or self.input_request or has_detach_key:
            return KEYS, keys, b""
        request_id = self.next_id
        self.next_id += 1
        self.input_request = request_id
        self._expected_ok = protocol.encode_ok(self.layout, request_id)
        unsent = _write_some(self.sock_fd, protocol.encode_input(self.layout, request_id, keys))
        if unsent:
            return UNSENT, unsent, b""
        self._start_spin()
        return None

    def expect_replies(self, output: bytes) -> None:
        """Await the terminal's reply to each query the daemon answers in ``output``, which is
        being written to the terminal."""
        if not self.filters_replies or b"\x1b[" not in output:
            return
        now = 0
        for match in _CSI.finditer(output):
            kind = query_kind(*match.groups())
            if kind != NOT_ONE:
                now = now or time.monotonic_ns()
                self._awaited[kind].append(now + self.reply_wait_ns)

    def drop_replies(self, keys: bytes) -> bytes:
        """``keys`` without the awaited replies in them (each one awaited no more)."""
        if not any(self._awaited) or b"\x1b" not in keys:
            return keys
        now = time.monotonic_ns()
        kept = []
        at = 0
        for match in _CSI.finditer(keys):
            kind = reply_kind(*match.groups())
            if kind != NOT_ONE and self._take_awaited(kind, now):
                kept.append(keys[at : match.start()])
                at = match.end()
        if not at:
            return keys
        kept.append(keys[at:])
        return b"".join(kept)

    def _take_awaited(self, kind: int, now: int) -> bool:
        """Whether a reply of ``kind`` is awaited (then no more); expired ones are forgotten."""
        deadlines = self._awaited[kind]
        while deadlines and deadlines[0] <= now:
            deadlines.popleft()
        if not deadlines:
            return False
        deadlines.popleft()
        return True

    def _start_spin(self) -> None:
        if self._load_fd is None:
            return
        try:
            runnable = runnable_tasks(os.pread(self._load_fd, LOAD_READ_SIZE, 0))
        except OSError:
            return
        if 0 <= runnable <= self._cpus:
            self._spin_until = time.monotonic_ns() + self.spin_ns

    def _is_spinning(self) -> bool:
        if self._spin_until and time.monotonic_ns() >= self._spin_until:
            self._spin_until = 0
        return self._spin_until != 0


def runnable_tasks(text: bytes) -> int:
    """The runnable tasks a /proc/loadavg line ("0.79 0.86 0.98 2/81 12919") counts: the
    number before the slash; -1 if it counts none."""
    head, slash, _ = text.partition(b"/")
    digits = len(head) - len(head.rstrip(b"0123456789"))
    if not slash or not digits or digits > 9:
        return -1
    return int(head[-digits:])


def query_kind(marker: bytes, params: bytes, final: bytes) -> int:
    """The kind of query the daemon's emulator answers that a simple CSI sequence is (its
    first parameter decides, as there), or NOT_ONE."""
    first = int(params.partition(b";")[0] or b"0")
    if final == b"c" and first == 0 and marker in (b"", b">"):
        return DA1 if not marker else DA2
    if final == b"n" and marker == b"" and first in (5, 6):
        return DSR if first == 5 else CPR
    if final == b"n" and marker == b"?" and first == 6:
        return DECXCPR
    return NOT_ONE


def reply_kind(marker: bytes, params: bytes, final: bytes) -> int:
    """The kind of reply a simple CSI sequence is shaped as (every parameter given), or
    NOT_ONE: DA1 ``CSI ? Ps;... c``, DA2 ``CSI > Ps;... c``, DSR ``CSI Ps n``, CPR
    ``CSI Pr;Pc R``, DECXCPR ``CSI ? Pr;Pc R`` (xterm adds a page: ``CSI ? Pr;Pc;Pp R``)."""
    groups = params.split(b";")
    if b"" in groups:
        return NOT_ONE
    if final == b"c" and marker:
        return DA1 if marker == b"?" else DA2
    if final == b"n" and not marker and len(groups) == 1:
        return DSR
    if final == b"R" and not marker and len(groups) == 2:
        return CPR
    if final == b"R" and marker == b"?" and len(groups) in (2, 3):
        return DECXCPR
    return NOT_ONE


def _write_some(fd: int, data: bytes) -> bytes:
    """Write what ``fd`` takes now and return the rest: all of it when full (EAGAIN) or on an
    error, which the caller's own write then reports."""
    try:
        return data[os.write(fd, data) :]
    except OSError:
        return data
