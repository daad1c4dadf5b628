"""The client library: ``AsyncClient`` (asyncio) and ``Client`` (blocking, for scripts and tests).

Both speak the wire protocol of ``ptyd.protocol`` over the daemon's Unix socket, address
sessions by id or name, raise distinct exceptions for connection, authentication and protocol
failures, and deliver events in order. With ``reconnect=True`` a dropped connection is
re-established and every attached session resumed from the last offset received: exactly the
missing bytes if the daemon still holds them, else a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import re
import socket
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from . import config as config_module
from . import errors, events, protocol, screen_wait
from ._version import __version__
from .errors import (
    CallTimedOut,
    ConnectionFailed,
    DaemonImpostor,
    NoDaemon,
    ProtocolError,
    PtydError,
    RequestError,
)
from .events import DisconnectedEvent, ErrorEvent, Event, ExitEvent, OutputEvent, SnapshotEvent
from .keys import key_bytes, key_input
from .records import Attached, ExitStatus, ScreenMatch, SessionInfo, Snapshot, Target
from .socketdir import check_daemon_peer, check_daemon_socket

EVENT_QUEUE_SIZE = 8192  # events held for the application; when full, reading the socket pauses
EVENT_QUEUE_BYTES = 16 * 1024 * 1024  # the same, in bytes of output and snapshot data
# Requests answered when something happens (a session's end), not soon: the socket is not read
# past a full event queue on their account.
LONG_REQUESTS = frozenset({"wait"})
# How far past its limits the event queue may grow while requests wait for their answers (the
# daemon's backlog before each answer is read into it): the limit again, and at least this.
ANSWER_HEADROOM_BYTES = 4 * 1024 * 1024
ANSWER_HEADROOM_EVENTS = 1024
# wait_for's own connections being opened at once by one client: the daemon closes connections
# past PTYD_MAX_UNAUTHENTICATED (64) still waiting for hello, so a burst of waits queues here.
WAIT_FOR_CONNECTS = 16
CLOSE_GRACE = 1.0  # seconds close() lets unsent requests go to a daemon that does not read
# send(): a chunk refused with input_overflow after earlier ones went in is sent again after
# this pause, doubled up to INPUT_RETRY_MAX while the program has not read enough to take it.
INPUT_RETRY_FIRST = 0.005
INPUT_RETRY_MAX = 0.1
_CLOSED_BY_DAEMON = "the daemon closed the connection"
_CLIENT_TIMEOUT: Any = object()  # Client._run's default: the client's own timeout
_T = TypeVar("_T")


def resolve_socket(socket_path: str | os.PathLike[str] | None = None) -> Path:
    if socket_path is not None:
        return Path(socket_path)
    return Path(config_module.load().socket)


def check_socket_owner(path: Path, owner: int | None = None) -> None:
    """Refuse (DaemonImpostor) a socket, or socket directory, that ``owner`` does not own; by
    default the owner must be you (``socketdir.check_daemon_socket``). Another uid is for a
    daemon of another user whose ``PTYD_ALLOWED_UIDS`` lets you in: you trust that user, and
    nobody else, to own the path."""
    if owner is None or owner == os.getuid():
        check_daemon_socket(path)
        return
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return  # nothing there yet: connecting fails with a clear error anyway
    if info.st_uid != owner or not stat.S_ISSOCK(info.st_mode):
        raise DaemonImpostor(
            f"{path}: not a socket owned by uid {owner} (owner: uid {info.st_uid}); refusing "
            "to connect"
        )
    directory_owner = path.parent.lstat().st_uid
    if directory_owner != owner:
        raise DaemonImpostor(
            f"{path.parent}: owned by uid {directory_owner}, not by uid {owner}; refusing to "
            "connect"
        )


def _retrieve(answer: asyncio.Future[Any]) -> None:
    """Take a fire-and-forget request's outcome: asyncio would log one nobody took."""
    if not answer.cancelled():
        answer.exception()


def _describe(event: Event) -> str:
    """An event in a log line: its kind and session, not its data (which may be megabytes)."""
    return f"{type(event).__name__} (session {getattr(event, 'session', None)})"


def _data_size(event: Event) -> int:
    data = getattr(event, "data", None)
    return len(data) if isinstance(data, bytes | str) else 0


class _Wire(asyncio.Protocol):
    """One socket connection of an AsyncClient: frames are dispatched as they arrive (no reader
    task between the socket and the application), and writes wait while the socket is full."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.decoder = protocol.FrameDecoder(protocol.MAX_RESPONSE_FRAME)
        self.transport: asyncio.Transport | None = None
        self._writable: asyncio.Future[None] | None = None  # set while the socket is full
        self._reason = _CLOSED_BY_DAEMON
        self.refusal: RequestError | None = None  # the daemon's connection-level error, if any
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._spare: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        # Until the hello is answered, a duplicate of the socket is kept: a daemon refusing the
        # connection writes why and closes at once, and a hello written after that close fails
        # (EPIPE), which makes the transport drop what it had not read yet, the refusal too.
        fileno = transport.get_extra_info("socket").fileno()
        self._spare = socket.socket(fileno=os.dup(fileno))

    def release_spare(self) -> None:
        if self._spare is not None:
            self._spare.close()
            self._spare = None

    def _read_leftover(self) -> None:
        """What the daemon wrote and the transport did not read before it closed."""
        assert self._spare is not None
        with contextlib.suppress(OSError):
            while data := self._spare.recv(1 << 16, socket.MSG_DONTWAIT):
                self.data_received(data)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except ProtocolError as exc:
            messages = [exc]
        for message in messages:
            if isinstance(message, ProtocolError):
                self._reason = f"protocol error from the daemon: {message}"
                assert self.transport is not None
                self.transport.abort()
                return
            self.client._dispatch(self, message)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._reason = f"connection lost: {exc}"
        if self._spare is not None:
            self._read_leftover()
            self.release_spare()
        self._wake_writers()
        self.closed.set_result(None)
        self.client._on_wire_lost(self)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writers()

    def _wake_writers(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    @property
    def loss(self) -> str:
        """Why the connection ended, for ConnectionFailed: a refusal that closes the connection
        (all but bad_frame and bad_request) says it better than the write it made fail."""
        refusal = self.refusal
        if refusal is not None and refusal.code not in (errors.BAD_FRAME, errors.BAD_REQUEST):
            return f"{_CLOSED_BY_DAEMON} ({refusal.code}: {refusal})"
        return self._reason

    async def drain(self) -> None:
        if self._writable is not None:
            await asyncio.shield(self._writable)
        if not self.is_open:
            await asyncio.shield(self.closed)  # connection_lost tells why (a refusal, say)
            raise self.client._lost_error(self)


class AsyncClient:
    """An asyncio connection to a ptyd daemon. Use ``await AsyncClient.connect()``."""

    def __init__(
        self,
        socket_path: Path,
        *,
        reconnect: bool = False,
        client_name: str = "",
        event_queue_size: int = EVENT_QUEUE_SIZE,
        event_queue_bytes: int = EVENT_QUEUE_BYTES,
        owner: int | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.owner = owner
        self.reconnect = reconnect
        self.client_name = client_name or f"ptyd-py/{__version__}"
        self.features: frozenset[str] = frozenset()
        self.daemon_info: dict[str, Any] = {}
        self._wire: _Wire | None = None
        self._is_wire_ready = False  # its hello done: a loss from here on is a lost connection
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # Requests whose answer should come soon: while one waits, the socket is read even if
        # the event queue is full (each answer comes after at most the daemon's backlog), up
        # to the ceiling, past which they wait until events are taken.
        self._awaited: set[int] = set()
        # Events wait here for the application; at event_queue_size events or event_queue_bytes
        # of data the socket stops being read (the daemon's flow control then applies) until
        # the application has taken half of them. Held at most: the limit plus one read.
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._event_limit = max(1, event_queue_size)
        self._byte_limit = max(1, event_queue_bytes)
        self._event_ceiling = self._event_limit + max(self._event_limit, ANSWER_HEADROOM_EVENTS)
        self._byte_ceiling = self._byte_limit + max(self._byte_limit, ANSWER_HEADROOM_BYTES)
        self._queued_bytes = 0
        self._is_queue_full = False
        self._is_held = False  # pause_events() by an on-arrival consumer
        self._is_reading_paused = False  # the socket's state: full or held
        self._on_event: Callable[[Event], None] | None = None
        self._is_closed = False
        self._is_closed_by_caller = False  # close() was called: requests say so, not "lost"
        self._resume_from: dict[int, int] = {}  # attached session -> next offset expected
        # Where each session's output seen so far ends: output can arrive in the same read as
        # the attach response, before attach() knows the session's id.
        self._seen_end: dict[int, int] = {}
        self._response_hooks: dict[int, Callable[[dict[str, Any]], None]] = {}
        self._attach_options: dict[int, dict[str, Any]] = {}
        self._abandoned: set[int] = set()  # sessions of cancelled attaches, being detached
        self._final_event: DisconnectedEvent | None = None  # told again to later readers
        self._connect_slots: asyncio.Semaphore | None = None  # wait_for's connects at once
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    async def connect(
        cls,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        reconnect: bool = False,
        client_name: str = "",
        event_queue_size: int = EVENT_QUEUE_SIZE,
        event_queue_bytes: int = EVENT_QUEUE_BYTES,
        owner: int | None = None,
    ) -> AsyncClient:
        """Connect and exchange hello. Raises ConnectionFailed (DaemonImpostor: the socket or
        its directory belongs to someone else), AuthRefused, VersionMismatch. Smaller
        ``event_queue_size`` (events) or ``event_queue_bytes`` (their data) hand a slow
        consumer to the daemon's flow control sooner. ``owner``: the uid the socket and its
        directory must belong to (default: yours); give another user's uid to use their daemon
        when its ``PTYD_ALLOWED_UIDS`` lets you in."""
        client = cls(
            resolve_socket(socket_path),
            reconnect=reconnect,
            client_name=client_name,
            event_queue_size=event_queue_size,
            event_queue_bytes=event_queue_bytes,
            owner=owner,
        )
        await client._open()
        return client

    async def _open(self) -> None:
        check_socket_owner(self.socket_path, self.owner)
        loop = asyncio.get_running_loop()
        try:
            _, wire = await loop.create_unix_connection(
                lambda: _Wire(self), os.fspath(self.socket_path)
            )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoDaemon(
                f"no ptyd daemon is listening on {self.socket_path} ({exc.strerror})"
            ) from None
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect to {self.socket_path}: {exc}") from None
        assert wire.transport is not None  # set by connection_made, before the await returns
        try:
            check_daemon_peer(wire.transport.get_extra_info("socket"), self.socket_path, self.owner)
        except BaseException:
            await self._abandon(wire)
            raise
        self._wire = wire
        self._is_wire_ready = False
        self._is_reading_paused = False
        self._apply_reading()  # a consumer that is full or held stays so across a reconnect
        try:
            result = await self.request("hello", **protocol.hello_fields(self.client_name))
            protocol.check_hello(result)
        except BaseException:
            await self._abandon(wire)
            raise
        wire.release_spare()
        self.features = frozenset(result.get("features", ()))
        self.daemon_info = result
        self._is_wire_ready = True

    async def _abandon(self, wire: _Wire) -> None:
        """Drop a connection whose hello failed (refused, wrong version) without treating it
        as a lost connection: nothing is left pending; the client itself may still reconnect."""
        self._wire = None
        if wire.transport is not None:
            wire.transport.close()
        await wire.closed

    async def close(self) -> None:
        was_closed, self._is_closed = self._is_closed, True
        self._is_closed_by_caller = True
        wire = self._wire
        if wire is not None and wire.transport is not None:
            wire.transport.close()
            try:
                await asyncio.wait_for(asyncio.shield(wire.closed), CLOSE_GRACE)
            except asyncio.TimeoutError:  # a daemon that does not read: drop what is unsent
                wire.transport.abort()
                await asyncio.shield(wire.closed)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if not was_closed:  # whoever waits in events()/next_event() is told, not left waiting
            self._end_events(DisconnectedEvent("closed"))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the wire ----------------------------------------------------------------------------

    async def request(
        self,
        kind: str,
        _on_response: Callable[[dict[str, Any]], None] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send one request and wait for its response; raise RequestError on an error.
        ``_on_response`` runs with a successful result as soon as it is read, before any
        event that came after it."""
        return await self._answer(self.submit(kind, _on_response, **fields))

    async def _answer(self, future: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        """A submitted request's result, once the socket has taken it."""
        assert self._wire is not None
        try:
            await self._wire.drain()
        except PtydError:  # lost; the future may hold why (a refusal while connecting)
            if not future.done():
                future.cancel()
                raise
        return await future

    def submit(
        self,
        kind: str,
        _on_response: Callable[[dict[str, Any]], None] | None = None,
        **fields: Any,
    ) -> asyncio.Future[dict[str, Any]]:
        """Send one request now, without waiting: its response (or RequestError) as a future.
        Requests are written in the order of the calls; the socket's buffer is not waited for."""
        wire = self._wire
        if wire is None or not wire.is_open or self._is_closed:
            raise self._lost_error(wire)
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        if _on_response is not None:
            self._response_hooks[request_id] = _on_response
        assert wire.transport is not None
        wire.transport.write(protocol.encode(protocol.request(request_id, kind, **fields)))
        if kind not in LONG_REQUESTS:
            self._awaited.add(request_id)
            self._apply_reading()
        return future

    def _dispatch(self, wire: _Wire, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "response":
            request_id = message.get("id")
            future = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
            hook = (
                self._response_hooks.pop(request_id, None) if isinstance(request_id, int) else None
            )
            if request_id in self._awaited:
                self._awaited.discard(request_id)
                self._apply_reading()
            if message.get("ok"):
                if hook is not None:  # before the events that follow it in this read
                    hook(message.get("result") or {})
                if future is not None and not future.done():
                    future.set_result(message.get("result") or {})
                return
            error = message.get("error") or {}
            exc = RequestError.from_wire(str(error.get("code")), str(error.get("message")))
            if future is not None and not future.done():
                future.set_exception(exc)
            elif request_id is None:  # a connection-level refusal (auth, limits, bad frame)
                wire.refusal = exc  # while connecting, told to requests made after the close too
                self._fail_all(partial(RequestError.from_wire, exc.code, str(exc)))
            return
        if kind == "event":
            event = events.from_wire(message)
            if event is None or getattr(event, "session", None) in self._abandoned:
                return
            if isinstance(event, OutputEvent | SnapshotEvent):
                end = event.end if isinstance(event, OutputEvent) else event.offset
                self._seen_end[event.session] = end
                if event.session in self._resume_from:
                    self._resume_from[event.session] = end
            elif isinstance(event, ExitEvent):  # nothing more to resume: no second exit
                self._resume_from.pop(event.session, None)
                self._attach_options.pop(event.session, None)
            self._deliver(event)

    def _end_events(self, event: DisconnectedEvent) -> None:
        self._final_event = event
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if self._on_event is not None and not self._is_held and self._events.empty():
            self._call_consumer(self._on_event, event)
            return
        self._events.put_nowait(event)
        self._queued_bytes += _data_size(event)
        if self._events.qsize() >= self._event_limit or self._queued_bytes >= self._byte_limit:
            self._is_queue_full = True
            self._apply_reading()  # past the limit; then, for waiting requests, the ceiling

    def _taken(self, event: Event) -> Event:
        """Bookkeeping after the application took an event: resume reading the socket."""
        self._queued_bytes -= _data_size(event)
        if (
            self._is_queue_full
            and self._events.qsize() <= self._event_limit // 2
            and self._queued_bytes <= self._byte_limit // 2
        ):
            self._is_queue_full = False
            self._apply_reading()
        return event

    def _call_consumer(self, on_event: Callable[[Event], None], event: Event) -> None:
        """A deliver_to() callback that raises is reported as asyncio reports a failed
        callback; the connection and the events after it go on."""
        try:
            on_event(event)
        except Exception as exc:
            asyncio.get_running_loop().call_exception_handler(
                {
                    "message": f"ptyd deliver_to() callback failed on {_describe(event)}",
                    "exception": exc,
                }
            )

    def _apply_reading(self) -> None:
        """Read the socket unless the consumer holds the events or the queue is full; while a
        request waits for its answer, a full queue is read into up to its ceiling."""
        is_at_ceiling = (
            self._events.qsize() >= self._event_ceiling or self._queued_bytes >= self._byte_ceiling
        )
        should_pause = self._is_held or (
            self._is_queue_full and (not self._awaited or is_at_ceiling)
        )
        wire = self._wire
        if should_pause == self._is_reading_paused or wire is None or not wire.is_open:
            return
        assert wire.transport is not None
        self._is_reading_paused = should_pause
        if should_pause:
            wire.transport.pause_reading()
        else:
            wire.transport.resume_reading()

    def deliver_to(self, on_event: Callable[[Event], None]) -> None:
        """Pass every event to ``on_event`` as it arrives, from the socket's read callback,
        instead of queueing it for next_event()/events(); events already queued go first.
        This saves a queue and a task switch per event (``ptyd attach`` uses it for its echo).
        ``on_event`` must not block: a consumer that cannot take more calls pause_events().
        An exception it raises goes to the loop's exception handler; later events still come."""
        self._on_event = on_event
        self._drain_queue()

    def _drain_queue(self) -> None:
        """Pass queued events to the deliver_to() callback until none is left or it holds."""
        while self._on_event is not None and not self._is_held and not self._events.empty():
            self._call_consumer(self._on_event, self._taken(self._events.get_nowait()))

    def pause_events(self) -> None:
        """Stop reading the socket until resume_events(); the daemon's flow control (the
        attachment's policy) applies to what it cannot send meanwhile, and requests wait for
        their answers. Events of the read under way queue until resume_events()."""
        self._is_held = True
        self._apply_reading()

    def resume_events(self) -> None:
        self._is_held = False
        self._drain_queue()
        self._apply_reading()

    @property
    def queued_events(self) -> tuple[int, int]:
        """Events received and not yet taken by the application: (count, bytes of data)."""
        return self._events.qsize(), self._queued_bytes

    def _fail_all(self, make_error: Callable[[], PtydError]) -> None:
        """Fail every pending request, each with its own exception (send() annotates its own)."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(make_error())
        self._pending.clear()
        self._response_hooks.clear()
        self._awaited.clear()

    def _on_wire_lost(self, wire: _Wire) -> None:
        if wire is not self._wire:
            return
        self._fail_all(partial(self._lost_error, wire))
        if self._is_closed or not self._is_wire_ready:
            return  # lost during its hello: _open's caller (connect or the reconnect loop) decides
        task = asyncio.get_running_loop().create_task(self._connection_lost(wire.loss))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lost_error(self, wire: _Wire | None) -> PtydError:
        """What a request on a closed connection fails with: while connecting, the daemon's
        refusal (connect() reports why it was refused); once connected, ConnectionFailed
        naming the cause (a refusal that ended the connection answered the requests pending
        then, not the later ones)."""
        if self._is_closed_by_caller:
            return ConnectionFailed("this client was closed")
        if wire is None:
            return ConnectionFailed("not connected")
        if wire.refusal is not None and not self._is_wire_ready:
            return RequestError.from_wire(wire.refusal.code, str(wire.refusal))
        return ConnectionFailed(f"connection to the daemon lost: {wire.loss}")

    async def _connection_lost(self, reason: str) -> None:
        try:
            if self.reconnect and not self._is_closed and await self._reconnect():
                return
        except Exception as exc:  # never end silently: the application hears of it below
            reason = f"{reason}; reconnecting failed: {exc}"
        if self._is_closed:
            return
        self._is_closed = True
        self._end_events(DisconnectedEvent(reason))

    async def _reconnect(self, attempts: int = 50) -> bool:
        """Re-establish the connection and resume every attached session."""
        delay = 0.05
        previous = self.daemon_info.get("pid")
        for _ in range(attempts):
            try:
                await self._open()
            except PtydError:  # refused (busy, full, shutting down) or gone: try again later
                await asyncio.sleep(delay)  # retry back-off in the client, not the daemon
                delay = min(delay * 2, 1.0)
                continue
            if self.daemon_info.get("pid") != previous:
                self._forget_sessions(previous)
            for session, offset in list(self._resume_from.items()):
                options = self._attach_options.get(session, {})
                try:
                    await self.request(
                        "attach",
                        session=session,
                        from_offset=offset,
                        **options,
                        _on_response=partial(self._resumed, session),
                    )
                except RequestError:
                    self._resume_from.pop(session, None)
                    continue
            return True
        return False

    def _forget_sessions(self, previous: object) -> None:
        """Another daemon answers (the old one was restarted): its sessions died with it, and
        the ids may now name other sessions. Each attached session ends with an error event."""
        pid = self.daemon_info.get("pid")
        for session in list(self._resume_from):
            message = f"the daemon restarted (pid {previous} -> {pid}): session {session} is gone"
            self._deliver(ErrorEvent(session, errors.NO_SUCH_SESSION, message))
        self._resume_from.clear()
        self._attach_options.clear()
        self._seen_end.clear()  # the new daemon's sessions start their offsets at 0

    def _resumed(self, session: int, result: dict[str, Any]) -> None:
        """A re-attach's response, handled before the output that follows it: its snapshot
        (when the ring no longer held the missing bytes) is delivered first."""
        if not result.get("resumed") and result.get("snapshot") is not None:
            snapshot = SnapshotEvent(
                session, result["offset"], result["format"], result["snapshot"]
            )
            self._deliver(snapshot)
        self._resume_from[session] = max(result["offset"], self._resume_from.get(session, 0))

    # -- events ------------------------------------------------------------------------------

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next event; raises CallTimedOut (a TimeoutError) after ``timeout`` seconds."""
        self._require_queue()
        if self._final_event is not None and self._events.empty():
            return self._final_event  # the stream has ended: said again, never waited for
        try:
            event = await asyncio.wait_for(self._events.get(), timeout)
        except asyncio.TimeoutError:
            raise CallTimedOut(f"no event within {timeout} s") from None
        return self._taken(event)

    async def events(self) -> AsyncIterator[Event]:
        """All events in order, ending after a DisconnectedEvent."""
        self._require_queue()
        while True:
            event = await self.next_event()
            yield event
            if isinstance(event, DisconnectedEvent):
                return

    def _require_queue(self) -> None:
        if self._on_event is not None:
            raise RuntimeError("events go to the deliver_to() callback, not to a queue")

    # -- operations --------------------------------------------------------------------------

    async def create(
        self,
        argv: list[str] | None = None,
        *,
        name: str | None = None,
        cwd: str | None = None,
        env: dict[str, str | None] | None = None,
        cols: int = 80,
        rows: int = 24,
        term: str | None = None,
    ) -> SessionInfo:
        """Start a program (default: the daemon user's shell) in a new session."""
        result = await self.request(
            "create", argv=argv, name=name, cwd=cwd, env=env or {}, cols=cols, rows=rows, term=term
        )
        return SessionInfo.from_wire(result)

    async def list_sessions(self) -> list[SessionInfo]:
        result = await self.request("list")
        return [SessionInfo.from_wire(item) for item in result["sessions"]]

    async def info(self, session: Target) -> SessionInfo:
        return SessionInfo.from_wire(await self.request("info", session=session))

    async def attach(
        self,
        session: Target,
        *,
        snapshot: str | None = "ansi",
        policy: str | None = None,
        from_offset: int | None = None,
        read_only: bool = False,
        cols: int | None = None,
        rows: int | None = None,
    ) -> Attached:
        """Subscribe to a session's output: a snapshot at an offset, then every output event
        from that offset on (or, with ``from_offset`` still in the daemon's replay ring, exactly
        the bytes from there). ``policy`` is resync, disconnect or block."""
        options: dict[str, Any] = {
            "policy": policy,
            "read_only": read_only,
            "cols": cols,
            "rows": rows,
        }
        asked: list[asyncio.Future[dict[str, Any]]] = []

        def on_answer(result: dict[str, Any]) -> None:
            if asked[0].cancelled():  # given up on: attached all the same, so undo it
                self._drop_attachment(result["session"]["id"])

        asked.append(
            self.submit(
                "attach",
                on_answer,
                session=session,
                snapshot=snapshot,
                from_offset=from_offset,
                **options,
            )
        )
        try:
            result = await self._answer(asked[0])
        except asyncio.CancelledError:
            asked[0].cancel()  # so that an answer still to come is undone (on_answer)
            raise
        info = SessionInfo.from_wire(result["session"])
        # Output of this attachment may have been read with the response: never go back.
        self._resume_from[info.id] = max(result["offset"], self._seen_end.get(info.id, 0))
        self._attach_options[info.id] = {"snapshot": snapshot or "ansi", **options}
        return Attached(
            info,
            result["offset"],
            result.get("snapshot"),
            result.get("format"),
            bool(result.get("resumed")),
        )

    def _drop_attachment(self, session: int) -> None:
        """Detach a session whose attach was cancelled, and drop its events until then: the
        application never saw the attach, so it must see none of what it brings."""
        try:
            detached = self.submit("detach", session=session)
        except PtydError:  # the connection is gone, and the attachment with it
            return
        self._abandoned.add(session)
        detached.add_done_callback(partial(self._abandoned_detached, session))

    def _abandoned_detached(self, session: int, detached: asyncio.Future[Any]) -> None:
        self._abandoned.discard(session)
        _retrieve(detached)  # a session that exited meanwhile is no error here

    async def detach(self, session: Target) -> None:
        result = await self.request("detach", session=session)
        self._resume_from.pop(result["session"], None)
        self._attach_options.pop(result["session"], None)

    async def send_keys(self, session: Target, *names: str, timeout: float | None = None) -> None:
        """Type keys by name, as ``ptyd send --keys`` and tmux's send-keys do: ``"Enter"``,
        ``"C-c"``, ``"Up"``, ``"M-x"``, ``"S-F5"``...; a word that is no key name is typed as
        text. The cursor keys follow the program's application cursor mode (daemons with the
        ``key-modes`` feature). Errors as for ``send``."""
        for name in names:
            if not isinstance(name, str):
                kind = type(name).__name__
                raise TypeError(f"key names are str arguments (send_keys(s, 'Up')), not {kind}")
        if "key-modes" not in self.features:  # an older daemon sends the keys as they are
            data = b"".join(key_bytes(name) for name in names)
            await self._send_input(session, data, timeout, {})
            return
        for data, keys in key_input(names):
            await self._send_input(session, data, timeout, {"keys": keys})

    async def send(
        self, session: Target, data: bytes | str, *, timeout: float | None = None
    ) -> None:
        """Write input to the session's program, in order: all of it, or an error that says
        how much got through.

        Input goes in requests of at most ``protocol.MAX_INPUT_CHUNK`` (256 KiB). When the
        daemon refuses a chunk with ``input_overflow`` (the session's queued input is at
        ``PTYD_INPUT_LIMIT``) after earlier chunks of this call were queued, the chunk is sent
        again, with a short back-off, as the program reads (back-pressure), for at most
        ``timeout`` seconds in all (None: as long as it takes). A refused first chunk is raised
        at once (the queue was full already, or the chunk is larger than the limit): nothing
        of this call was queued.

        Every PtydError raised carries ``delivered``: the bytes from the start of ``data`` the
        daemon queued (resend the rest: ``data[exc.delivered:]``), and ``unconfirmed``: the
        bytes after them written to the daemon whose answer never came (the connection was
        lost, or the time ran out, meanwhile), which the daemon may have queued too. Out of
        time: CallTimedOut. Cancelling the call (``asyncio.wait_for``) loses the count: pass
        ``timeout`` instead."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        await self._send_input(session, payload, timeout, {})

    async def _send_input(
        self, session: Target, payload: bytes, timeout: float | None, extra: dict[str, Any]
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delivered = 0
        while True:  # one request even for no data: it still checks the session
            chunk = payload[delivered : delivered + protocol.MAX_INPUT_CHUNK]
            try:
                await self._send_chunk(session, chunk, deadline, delivered, len(payload), extra)
            except PtydError as exc:
                exc.delivered = delivered
                raise
            delivered += len(chunk)
            if delivered >= len(payload):
                return

    async def _send_chunk(
        self,
        session: Target,
        chunk: bytes,
        deadline: float | None,
        sent: int,
        total: int,
        extra: dict[str, Any],
    ) -> None:
        """One input request, sent again while the session's input queue is full, unless it
        is the first of its send(). Raises with ``unconfirmed`` set if its fate is unknown."""
        loop = asyncio.get_running_loop()
        pause = INPUT_RETRY_FIRST
        progress = f"input to session {session!r}: {sent} of {total} bytes queued"
        too_slow = f"{progress}; the program did not read the rest in time"
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise CallTimedOut(too_slow)
            future = self.submit("input", session=session, data=chunk, **extra)
            try:
                await asyncio.wait_for(self._answer(future), remaining)
                return
            except asyncio.TimeoutError:
                timed_out = CallTimedOut(
                    f"{progress}; no answer in time for the next {len(chunk)} (the daemon may "
                    "still queue them)"
                )
                timed_out.unconfirmed = len(chunk)
                raise timed_out from None
            except RequestError as exc:  # an answer: this chunk was not queued
                if exc.code != errors.INPUT_OVERFLOW or sent == 0:
                    raise
            except PtydError as exc:  # lost with the chunk written
                exc.unconfirmed = len(chunk)
                raise
            if deadline is not None and loop.time() + pause > deadline:
                raise CallTimedOut(too_slow)
            await asyncio.sleep(pause)  # retry back-off: the daemon has no "input read" event
            pause = min(pause * 2, INPUT_RETRY_MAX)

    async def resize(self, session: Target, cols: int, rows: int) -> tuple[int, int]:
        result = await self.request("resize", session=session, cols=cols, rows=rows)
        return result["cols"], result["rows"]

    async def signal(self, session: Target, signal: int | str, target: str = "foreground") -> None:
        """Send a signal (number or name) to the foreground process group, the program
        (``process``), its process group (``group``) or every process of the session."""
        await self.request("signal", session=session, signal=signal, target=target)

    async def kill(self, session: Target) -> None:
        """Hang the session up: SIGHUP, then SIGTERM, then SIGKILL after grace periods."""
        await self.request("kill", session=session)

    async def snapshot(
        self, session: Target, format: str = "text", scrollback: int = 0
    ) -> Snapshot:
        result = await self.request(
            "snapshot", session=session, format=format, scrollback=scrollback
        )
        return Snapshot(result["session"], result["offset"], result["format"], result["data"])

    async def wait(self, session: Target, timeout: float | None = None) -> ExitStatus:
        """Wait until the session's program exits; raises TimeoutExpired after ``timeout``.
        Cancelled, the wait is withdrawn from the daemon too (``cancel``)."""
        asked = self.submit("wait", session=session, timeout=timeout)
        try:
            result = await self._answer(asked)
        except asyncio.CancelledError:
            self._withdraw(asked)
            raise
        return ExitStatus(result["code"], result["signal"])

    def _withdraw(self, asked: asyncio.Future[dict[str, Any]]) -> None:
        """Ask the daemon to end a request given up on, so that it does not hold one of the
        connection's 32 requests in progress until it ends by itself."""
        request_id = next((key for key, value in self._pending.items() if value is asked), None)
        if request_id is None or "cancel" not in self.features:
            return
        asked.cancel()
        with contextlib.suppress(PtydError):  # the connection is gone, and the request with it
            answer = self.submit("cancel", request=request_id)
            answer.add_done_callback(_retrieve)

    async def wait_for(
        self,
        session: Target,
        pattern: str | re.Pattern[str] | None = None,
        *,
        quiet: float | None = None,
        scrollback: int = 0,
        timeout: float | None = None,
    ) -> ScreenMatch:
        """Wait until the session's screen shows ``pattern`` (a regular expression searched in
        the text snapshot, ``^``/``$`` at each row; with ``scrollback``, that many lines of
        history too) and, with ``quiet``, its program has written nothing for ``quiet``
        seconds; either may be left out, not both. Raises ScreenWaitTimedOut (a TimeoutError)
        after ``timeout`` seconds, ScreenWaitExited when the session exits without showing it;
        both carry the last screen seen. Runs on a connection of its own: this client's
        events and attachments are untouched."""
        if self._is_closed:
            raise self._lost_error(self._wire)
        screen_wait.check_arguments(pattern, quiet, scrollback, timeout)
        compiled = screen_wait.compile_pattern(pattern)
        if self._connect_slots is None:
            self._connect_slots = asyncio.Semaphore(WAIT_FOR_CONNECTS)
        async with self._connect_slots:  # past PTYD_MAX_UNAUTHENTICATED the daemon refuses
            watcher = await AsyncClient.connect(
                self.socket_path, client_name=f"{self.client_name} wait_for", owner=self.owner
            )
        try:
            return await screen_wait.watch_screen(
                watcher, session, compiled, quiet=quiet, scrollback=scrollback, timeout=timeout
            )
        finally:
            await watcher.close()

    async def stats(self) -> dict[str, Any]:
        return await self.request("stats")

    async def shutdown(self) -> None:
        await self.request("shutdown")


class Client:
    """A blocking client: the same operations as AsyncClient, run on a private event loop in a
    background thread. Events come from ``next_event()`` or by iterating ``events()``."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        reconnect: bool = False,
        client_name: str = "",
        timeout: float | None = None,
        event_queue_size: int = EVENT_QUEUE_SIZE,
        event_queue_bytes: int = EVENT_QUEUE_BYTES,
        owner: int | None = None,
    ) -> None:
        """Connect as ``AsyncClient.connect`` does. ``timeout`` bounds each call, the connect
        too: past it the call raises CallTimedOut (see ``_run``)."""
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ptyd-client", daemon=True
        )
        self._thread.start()
        try:
            self._async = self._run(
                AsyncClient.connect(
                    socket_path,
                    reconnect=reconnect,
                    client_name=client_name,
                    event_queue_size=event_queue_size,
                    event_queue_bytes=event_queue_bytes,
                    owner=owner,
                )
            )
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coroutine: Any, timeout: Any = _CLIENT_TIMEOUT) -> Any:
        """Run on the client's loop; wait at most ``timeout`` (default: the client's), and
        cancel the operation when giving up (CallTimedOut), so it cannot go on (or take an
        event) unseen. A request it had already written is not recalled: the daemon may
        still carry it out."""
        if self._loop.is_closed():
            coroutine.close()  # never to run: not "never awaited" either
            raise ConnectionFailed("this client was closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        seconds = self.timeout if timeout is _CLIENT_TIMEOUT else timeout
        try:
            concurrent.futures.wait((future,), seconds)
        except BaseException:  # interrupted (KeyboardInterrupt): the operation goes too
            future.cancel()
            raise
        if future.cancel():  # still running: given up on
            raise CallTimedOut(
                f"no answer within {seconds} s (a request already sent may still be carried out)"
            )
        return future.result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._async.close(), None)  # bounded by its own grace, not the timeout
        finally:
            self._stop_loop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def socket_path(self) -> Path:
        """The daemon's socket, for opening another connection to the same daemon."""
        return self._async.socket_path

    @property
    def features(self) -> frozenset[str]:
        return self._async.features

    @property
    def daemon_info(self) -> dict[str, Any]:
        return self._async.daemon_info

    def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        return self._run(self._async.request(kind, **fields))

    @property
    def queued_events(self) -> tuple[int, int]:
        """Events received and not yet taken: (count, bytes of data)."""
        return self._async.queued_events

    def next_event(self, timeout: float | None = None) -> Event:
        """The next event; raises CallTimedOut (a TimeoutError) after ``timeout`` seconds (this
        call's own timeout, not the client's)."""
        return self._run(self._async.next_event(timeout), None)

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        while True:
            event = self.next_event(timeout)
            yield event
            if isinstance(event, DisconnectedEvent):
                return

    def create(self, argv: list[str] | None = None, **options: Any) -> SessionInfo:
        return self._run(self._async.create(argv, **options))

    def list_sessions(self) -> list[SessionInfo]:
        return self._run(self._async.list_sessions())

    def info(self, session: Target) -> SessionInfo:
        return self._run(self._async.info(session))

    def attach(self, session: Target, **options: Any) -> Attached:
        return self._run(self._async.attach(session, **options))

    def detach(self, session: Target) -> None:
        self._run(self._async.detach(session))

    def send(self, session: Target, data: bytes | str) -> None:
        """Write input to the session's program, all of it or an error carrying ``delivered``
        (see ``AsyncClient.send``); the client's timeout bounds the whole call, waiting for
        the program to read included."""
        self._run(self._async.send(session, data, timeout=self.timeout), None)

    def send_keys(self, session: Target, *names: str) -> None:
        """Type keys by name (``"Enter"``, ``"C-c"``, ``"Up"``; see ``AsyncClient.send_keys``)."""
        self._run(self._async.send_keys(session, *names, timeout=self.timeout), None)

    def resize(self, session: Target, cols: int, rows: int) -> tuple[int, int]:
        return self._run(self._async.resize(session, cols, rows))

    def signal(self, session: Target, signal: int | str, target: str = "foreground") -> None:
        self._run(self._async.signal(session, signal, target))

    def kill(self, session: Target) -> None:
        self._run(self._async.kill(session))

    def snapshot(self, session: Target, format: str = "text", scrollback: int = 0) -> Snapshot:
        return self._run(self._async.snapshot(session, format, scrollback))

    def wait(self, session: Target, timeout: float | None = None) -> ExitStatus:
        # The daemon enforces the timeout (a lost connection fails the request).
        return self._run(self._async.wait(session, timeout), None)

    def wait_for(
        self,
        session: Target,
        pattern: str | re.Pattern[str] | None = None,
        *,
        quiet: float | None = None,
        scrollback: int = 0,
        timeout: float | None = None,
    ) -> ScreenMatch:
        """See ``AsyncClient.wait_for``; ``timeout`` is this call's own, not the client's."""
        return self._run(
            self._async.wait_for(
                session, pattern, quiet=quiet, scrollback=scrollback, timeout=timeout
            ),
            None,
        )

    def stats(self) -> dict[str, Any]:
        return self._run(self._async.stats())

    def shutdown(self) -> None:
        self._run(self._async.shutdown())


__all__ = [
    "AsyncClient",
    "Attached",
    "Client",
    "ExitStatus",
    "SessionInfo",
    "Snapshot",
    "errors",
]
