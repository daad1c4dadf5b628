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
"""

from __future__ import annotations

import contextlib
import os
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


def _write_some(fd: int, data: bytes) -> bytes:
    """Write what ``fd`` takes now and return the rest: all of it when full (EAGAIN) or on an
    error, which the caller's own write then reports."""
    try:
        return data[os.write(fd, data) :]
    except OSError:
        return data
