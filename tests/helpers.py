"""Helpers for tests that talk to the daemon: collect a session's stream until a condition
holds, a bare-socket client that reads only when told to, bounded polling."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ptyd import protocol
from ptyd.client import Client
from ptyd.events import Event, ExitEvent, OutputEvent

_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 0x2, 0x4, 0x2  # mount(2) and umount2(2) flags


def installed_ptyd() -> str:
    """The ``ptyd`` command as ``pip install`` puts it beside this interpreter: the C starter
    (``ptyd/_starter.c``), which runs ``ptyd-py`` installed with it."""
    path = Path(sys.executable).parent / "ptyd"
    if not path.is_file() or path.read_bytes()[:4] != b"\x7fELF":
        pytest.fail(f"no compiled ptyd command at {path} (run: pip install -e .)")
    return str(path)


@dataclass
class Stream:
    """Everything one client received for one session, checked for gaps as it arrives."""

    session: int
    offset: int
    data: bytearray = field(default_factory=bytearray)
    exit: ExitEvent | None = None
    others: list[Event] = field(default_factory=list)
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    keep: bool = True

    @property
    def end(self) -> int:
        return self.offset

    def take(self, event: Event) -> None:
        if isinstance(event, OutputEvent) and event.session == self.session:
            assert event.offset == self.offset, (
                f"gap or overlap: expected {self.offset}, got {event.offset}"
            )
            self.offset = event.end
            self.digest.update(event.data)
            if self.keep:
                self.data += event.data
        elif isinstance(event, ExitEvent) and event.session == self.session:
            self.exit = event
        else:
            self.others.append(event)


def read_until(
    client: Client, stream: Stream, done: Callable[[Stream], bool], timeout: float = 30
) -> Stream:
    """Feed events into ``stream`` until ``done(stream)``; fail after ``timeout`` s of silence."""
    while not done(stream):
        stream.take(client.next_event(timeout))
    return stream


def until_exit(stream: Stream) -> bool:
    return stream.exit is not None


def contains(text: bytes) -> Callable[[Stream], bool]:
    return lambda stream: text in stream.data


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll ``check`` until true (a bounded wait for a condition); return the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


class RawClient:
    """A protocol client on a bare socket that reads only when told to: a stalled, hostile or
    very numerous client the library client cannot imitate."""

    def __init__(self, path: Path, *, rcvbuf: int | None = None, hello: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(os.fspath(path))
        self.decoder = protocol.FrameDecoder(protocol.MAX_RESPONSE_FRAME)
        self.pending: deque[Any] = deque()
        self.ids = itertools.count(1)
        if hello:
            self.hello()

    @staticmethod
    def frame(kind: str, request_id: int, **fields: Any) -> bytes:
        return protocol.encode(protocol.request(request_id, kind, **fields))

    def send(self, kind: str, **fields: Any) -> int:
        request_id = next(self.ids)
        self.sock.sendall(self.frame(kind, request_id, **fields))
        return request_id

    def read_message(self, timeout: float = 30) -> dict[str, Any] | None:
        """The next frame, or None at end of stream."""
        while not self.pending:
            self.sock.settimeout(timeout)
            try:
                data = self.sock.recv(1 << 20)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        message = self.pending.popleft()
        assert isinstance(message, dict), message
        return message

    def call(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a request and read up to its response (events before it are kept for later)."""
        request_id = self.send(kind, **fields)
        skipped = []
        while True:
            message = self.read_message()
            assert message is not None, f"connection closed before the {kind} response"
            if message.get("type") == "response" and message.get("id") == request_id:
                self.pending.extendleft(reversed(skipped))
                assert message["ok"], message
                return message["result"]
            skipped.append(message)

    def hello(self) -> dict[str, Any]:
        return self.call("hello", version=protocol.VERSION_TEXT, features=sorted(protocol.FEATURES))

    def close(self) -> None:
        self.sock.close()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """A process's resident set size, read from outside it."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def echo_seconds(client: Client, session: int, key: bytes = b"x", timeout: float = 10) -> float:
    """Type one key into an attached session whose PTY echoes; seconds until it comes back."""
    start = time.monotonic()
    client.send(session, key)
    while True:
        event = client.next_event(timeout)
        if isinstance(event, OutputEvent) and event.session == session and key in event.data:
            return time.monotonic() - start


IS_ROOT = os.geteuid() == 0
# Another uid (setresuid, chown, a child run as nobody) is what these tests are about: as any
# other user they cannot be arranged, so they are skipped (and counted) rather than failed.
needs_root = pytest.mark.skipif(not IS_ROOT, reason="acts as another uid: run the suite as root")


def connect_as(uid: int, path: Path, payload: bytes) -> bytes:
    """Fork a child that drops to ``uid``, connects, sends ``payload`` and returns all it read."""
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(os.fspath(path))
            if payload:
                sock.sendall(payload)  # a refusing daemon drops it, without a reset or EPIPE
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
            os.write(out_w, got)
        except BaseException as exc:
            os.write(out_w, f"CHILD-ERROR {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(out_w)
    with os.fdopen(out_r, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return data


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it, parents first (Linux: /proc/PID/task/TID/children)."""
    tree, index = [pid], 0
    while index < len(tree):
        parent = tree[index]
        index += 1
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError), open(f"/proc/{parent}/task/{task}/children") as f:
                tree += [int(child) for child in f.read().split()]
    return tree


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything below it, found before any dies (an orphan leaves the
    tree): programs such as script(1) outlive the hang-up of the terminal they run in."""
    for member in process_tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


@contextlib.contextmanager
def hung_directory(path: Path) -> Iterator[Callable[[], None]]:
    """Mount at ``path`` a FUSE filesystem that never answers (its server never reads
    /dev/fuse): every access below it waits, as on an NFS server that went away. Yields
    ``release``, which aborts the connection (waiters then fail with ENOTCONN); it runs on
    exit too. Skips the test where mounting is not allowed (not root, no /dev/fuse)."""
    libc = ctypes.CDLL(None, use_errno=True)
    path.mkdir()
    try:
        fuse = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        pytest.skip(f"no /dev/fuse to mount a hung filesystem: {exc}")
    options = f"fd={fuse},rootmode=40000,user_id={os.getuid()},group_id={os.getgid()}"
    if (
        libc.mount(
            b"ptyd-test-hung", os.fsencode(path), b"fuse", _MS_NOSUID | _MS_NODEV, options.encode()
        )
        != 0
    ):
        os.close(fuse)
        pytest.skip(f"cannot mount a FUSE filesystem here: {os.strerror(ctypes.get_errno())}")
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            os.close(fuse)  # the server is gone: the connection aborts

    try:
        yield release
    finally:
        release()
        libc.umount2(os.fsencode(path), _MNT_DETACH)
