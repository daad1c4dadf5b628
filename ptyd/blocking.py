"""A connection to the daemon over a blocking socket: no event loop, no thread.

The command line runs on it, so a command such as ``ptyd send`` costs a process start and a
round trip, not an asyncio import (which alone takes longer than the rest of the command). The
interactive attach takes the same socket over once the session is attached (``attach.py``).
Programs use ``Client`` or ``AsyncClient`` (``client.py``), which add events, reconnection and
flow handling.
"""

from __future__ import annotations

import _socket  # the C module under ``socket``, whose enums and selectors cost a command 4 ms
import contextlib
import os
import time
from collections import deque

from . import protocol
from ._version import __version__
from .errors import INPUT_OVERFLOW, ConnectionFailed, NoDaemon, ProtocolError, RequestError
from .records import ExitStatus, SessionInfo, Snapshot, Target
from .socketdir import check_daemon_peer, check_daemon_socket

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from os import PathLike
    from typing import Any

READ_SIZE = 256 * 1024
STALL_SECONDS = 10.0  # a send gives up when its program has read none of its input this long


class BlockingConnection:
    """Requests answered in order over one socket; events that arrive meanwhile are kept in
    ``events`` (raw message maps) for whoever takes the socket over."""

    def __init__(self, socket_path: str | PathLike[str], *, client_name: str = "") -> None:
        self._start(socket_path, client_name)
        self.sock = self._connect()
        try:
            self._hello()
        except BaseException:
            self.sock.close()
            raise

    @classmethod
    def taken_over(
        cls,
        sock: _socket.socket,
        socket_path: str | PathLike[str],
        hello: dict[str, Any],
        *,
        next_id: int,
    ) -> BlockingConnection:
        """A connection someone else opened and said hello on (the ``ptyd`` starter:
        ``handoff.py``); ``hello`` is its answer."""
        self = cls.__new__(cls)
        self._start(socket_path, "")
        self.sock = sock
        self._take_hello(hello)
        self.next_id = next_id
        return self

    def _start(self, socket_path: str | PathLike[str], client_name: str) -> None:
        self.socket_path = socket_path
        self.client_name = client_name or f"ptyd-cli/{__version__}"
        self.decoder = protocol.FrameDecoder(protocol.MAX_RESPONSE_FRAME)
        self.events: deque[dict[str, Any]] = deque()
        self.daemon_info: dict[str, Any] = {}
        self.features: frozenset[str] = frozenset()
        self._answers: dict[int, dict[str, Any]] = {}
        self.next_id = 1  # of the next request (a relay that frames its own advances it)

    def __enter__(self) -> BlockingConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _connect(self) -> _socket.socket:
        check_daemon_socket(self.socket_path)
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            sock.connect(os.fspath(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise NoDaemon(
                f"no ptyd daemon is listening on {self.socket_path} ({exc.strerror})"
            ) from None
        except OSError as exc:
            sock.close()
            raise ConnectionFailed(f"cannot connect to {self.socket_path}: {exc}") from None
        try:
            check_daemon_peer(sock, self.socket_path)
        except BaseException:
            sock.close()
            raise
        return sock

    def _hello(self) -> None:
        self._take_hello(self.request("hello", **protocol.hello_fields(self.client_name)))

    def _take_hello(self, result: dict[str, Any]) -> None:
        protocol.check_hello(result)
        self.daemon_info = result
        self.features = frozenset(result.get("features", ()))

    # -- the wire ----------------------------------------------------------------------------

    def frame(self, kind: str, **fields: Any) -> tuple[int, bytes]:
        """A request's id and its encoded frame, for a caller that writes it itself."""
        request_id = self.next_id
        self.next_id += 1
        return request_id, protocol.encode(protocol.request(request_id, kind, **fields))

    def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its answer; raise the error it carries."""
        request_id, frame = self.frame(kind, **fields)
        # A refusing daemon closes at once: a failed write still leaves its reason to read.
        with contextlib.suppress(OSError):
            self.sock.sendall(frame)
        while request_id not in self._answers:
            self.take(self._read())
        return answer_of(self._answers.pop(request_id))

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = self.sock.recv(READ_SIZE)
        except OSError as exc:
            raise ConnectionFailed(f"connection to the daemon lost: {exc}") from None
        if not data:
            raise ConnectionFailed("connection to the daemon lost: the daemon closed it")
        return self.decode(data)

    def decode(self, data: bytes) -> list[dict[str, Any]]:
        """Messages in ``data`` (with what earlier reads left), or ConnectionFailed if the
        daemon sent something that is not the protocol."""
        try:
            messages = self.decoder.feed(data)
        except ProtocolError as exc:
            raise ConnectionFailed(f"protocol error from the daemon: {exc}") from None
        for message in messages:
            if isinstance(message, ProtocolError):
                raise ConnectionFailed(f"protocol error from the daemon: {message}")
        return messages  # type: ignore[return-value]

    def take(self, messages: list[dict[str, Any]]) -> None:
        """File answers by id and keep events; a connection-level refusal is raised."""
        for message in messages:
            if message.get("type") == "event":
                self.events.append(message)
            elif message.get("type") == "response":
                request_id = message.get("id")
                if request_id is None:
                    answer_of(message)  # the daemon refused the connection: raises why
                elif isinstance(request_id, int):
                    self._answers[request_id] = message

    # -- operations (as Client's) ------------------------------------------------------------

    def create(
        self,
        argv: list[str] | None = None,
        *,
        name: str | None = None,
        cwd: str | None = None,
        env: dict[str, str | None] | None = None,
        cols: int = 80,
        rows: int = 24,
    ) -> SessionInfo:
        result = self.request(
            "create", argv=argv, name=name, cwd=cwd, env=env or {}, cols=cols, rows=rows
        )
        return SessionInfo.from_wire(result)

    def list_sessions(self) -> list[SessionInfo]:
        return [SessionInfo.from_wire(item) for item in self.request("list")["sessions"]]

    def info(self, session: Target) -> SessionInfo:
        return SessionInfo.from_wire(self.request("info", session=session))

    def send(self, session: Target, data: bytes, keys: bool = False) -> None:
        """Send input in chunks, all of it or a clear error. A chunk after the first that the
        session cannot queue yet (``input_overflow``: the program has not read what came
        before) is sent again as the program reads; after ``STALL_SECONDS`` without progress
        the error says how much went. A refused first chunk is raised at once, as the library
        does: the queue was full already, or a chunk is more than the limit allows.
        ``keys``: the data was made from key names (a daemon with "key-modes" then sends its
        cursor keys as the program's DECCKM asks)."""
        extra = {"keys": True} if keys and "key-modes" in self.features else {}
        start = 0
        while True:
            chunk = data[start : start + protocol.MAX_INPUT_CHUNK]
            self._send_chunk(session, chunk, extra, start, len(data))
            start += len(chunk)
            if start >= len(data):
                return

    def _send_chunk(
        self, session: Target, chunk: bytes, extra: dict[str, Any], sent: int, total: int
    ) -> None:
        deadline, pause = None, 0.005
        while True:
            try:
                self.request("input", session=session, data=chunk, **extra)
                return
            except RequestError as refused:
                if refused.code != INPUT_OVERFLOW or sent == 0:
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + STALL_SECONDS
                elif now >= deadline:
                    raise RequestError(
                        INPUT_OVERFLOW,
                        f"sent {sent} of {total} bytes: the program read none of its input for "
                        f"{STALL_SECONDS:g} s ({refused})",
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    def resize(self, session: Target, cols: int, rows: int) -> None:
        self.request("resize", session=session, cols=cols, rows=rows)

    def signal(self, session: Target, signal: int | str, target: str = "foreground") -> None:
        self.request("signal", session=session, signal=signal, target=target)

    def kill(self, session: Target) -> None:
        self.request("kill", session=session)

    def snapshot(self, session: Target, format: str = "text", scrollback: int = 0) -> Snapshot:
        result = self.request("snapshot", session=session, format=format, scrollback=scrollback)
        return Snapshot(result["session"], result["offset"], result["format"], result["data"])

    def wait(self, session: Target, timeout: float | None = None) -> ExitStatus:
        result = self.request("wait", session=session, timeout=timeout)
        return ExitStatus(result["code"], result["signal"])

    def stats(self) -> dict[str, Any]:
        return self.request("stats")

    def shutdown(self) -> None:
        self.request("shutdown")


def answer_of(message: dict[str, Any]) -> dict[str, Any]:
    """A response's result, or the most specific RequestError for its error."""
    if message.get("ok"):
        return message.get("result") or {}
    error = message.get("error") or {}
    raise RequestError.from_wire(str(error.get("code")), str(error.get("message")))
