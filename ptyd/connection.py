"""One client connection: authentication, hello, request dispatch, subscriptions, flow events.

A Connection is an asyncio Protocol (no stream wrappers on the hot path). Each request gets
exactly one response; long requests (attach, snapshot, wait) run as tasks, at most
MAX_IN_FLIGHT at once, after which the connection stops reading until one finishes. When the
bytes queued for the client pass the flow limit, the connection also stops reading and handling
requests (even those of a read already done), so a client that asks and never reads cannot grow
the daemon. A frame that has started must complete within PTYD_FRAME_TIMEOUT (its clock runs
while the client does not read its replies), and the bytes of incomplete frames count against
one daemon-wide budget (PTYD_PARTIAL_FRAME_BUDGET), so clients that drip half frames cannot
hold memory either.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from . import errors, protocol, schemas
from ._backend import BACKEND, fast
from .errors import ProtocolError, RequestError
from .session import Attachment, Session

if TYPE_CHECKING:
    from .server import Daemon

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32
# Input read and dropped after a refusal before the connection is reset: enough for what a
# client sends before reading the answer, little for a peer flooding a closing connection.
REFUSED_INPUT_DROPPED = 64 * 1024
_DAEMON_REASONS = frozenset({"in-flight", "spawn"})  # reading paused by the daemon's own work
_PEERCRED = struct.Struct("iII")  # struct ucred: pid_t, uid_t, gid_t (uids are unsigned)


class Connection(asyncio.Protocol):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.config = daemon.config
        self.id = daemon.next_connection_id()
        self.transport: asyncio.Transport | None = None
        self.peer_pid = self.peer_uid = -1
        self.is_authenticated = False  # past a successful hello
        self.features: frozenset[str] = frozenset()
        self.client_name = ""
        self.attachments: dict[int, Attachment] = {}
        self._decoder = protocol.FrameDecoder(self.config.max_frame, protocol.MAX_REQUEST_CONTAINER)
        self._tasks: set[asyncio.Task[None]] = set()
        self._waits: dict[int, asyncio.Task[None]] = {}  # by request id: what cancel can end
        self._hello_timer: asyncio.TimerHandle | None = None
        self._frame_timer: asyncio.TimerHandle | None = None  # a partial frame's deadline
        self._held = 0  # bytes of a partial frame counted in daemon.partial_frame_bytes
        self._abort_timer: asyncio.TimerHandle | None = None
        self._is_closing = False
        self._dropped = 0  # bytes read and dropped after a refusal
        self._reading_paused_by: set[str] = set()
        self._waiting: deque[dict[str, Any] | ProtocolError] = deque()  # decoded, not handled

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        transport.set_write_buffer_limits(
            high=self.config.flow_threshold, low=self.config.flow_threshold - 1
        )
        self.peer_pid, self.peer_uid = peer_credentials(transport.get_extra_info("socket"))
        refusal = self.daemon.admit(self)
        if refusal is not None:
            code, message = refusal
            log.warning(
                "refused connection %d (pid %d, uid %d): %s",
                self.id,
                self.peer_pid,
                self.peer_uid,
                message,
            )
            self._refuse(code, message)
            return
        self._hello_timer = self.daemon.loop.call_later(
            self.config.hello_timeout, self._on_hello_timeout
        )
        log.info("client %d connected (pid %d, uid %d)", self.id, self.peer_pid, self.peer_uid)

    def data_received(self, data: bytes) -> None:
        if self._is_closing:  # refused: dropped, up to a bound (see _refuse)
            self._dropped += len(data)
            if self._dropped > REFUSED_INPUT_DROPPED and self.transport is not None:
                self.transport.abort()
            return
        try:
            self._receive(data)
        except Exception:  # the per-connection guard: a bug costs this client, not the daemon
            log.exception("client %d: internal error; closing the connection", self.id)
            self._refuse(errors.INTERNAL, "internal error; closing the connection")

    def _receive(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:
            self._refuse(exc.code, str(exc))
            return
        if not self._hold_partial(self._decoder.buffered):
            return
        if not self._held:
            self._cancel_frame_timer()
        elif messages or self._frame_timer is None:
            self._arm_frame_timer()  # a new frame started in this chunk
        self._waiting.extend(messages)
        self._handle_waiting()

    def _handle_waiting(self) -> None:
        """Handle decoded requests in order while the connection takes more: one read can
        hold thousands of small requests, and their replies must stop at the flow limit as
        output does (the rest wait here, and the socket is not read, until it drains)."""
        while self._waiting and not self._reading_paused_by and not self._is_closing:
            self._handle(self._waiting.popleft())

    def _hold_partial(self, held: int) -> bool:
        """Count this client's partial frame in the daemon-wide budget; past the budget,
        refuse the client with ``busy`` and return False."""
        growth = held - self._held
        budget = self.config.partial_frame_budget
        if growth > 0 and self.daemon.partial_frame_bytes + growth > budget:
            log.warning("client %d: partial-frame budget (%d bytes) reached", self.id, budget)
            self._refuse(
                errors.BUSY,
                f"the daemon holds {self.daemon.partial_frame_bytes} bytes of incomplete frames; "
                f"{growth} more would pass PTYD_PARTIAL_FRAME_BUDGET ({budget}); closing",
            )
            return False
        self.daemon.partial_frame_bytes += growth
        self._held = held
        return True

    def _release_partial(self) -> None:
        self._cancel_frame_timer()
        self._decoder.clear()
        self.daemon.partial_frame_bytes -= self._held
        self._held = 0

    def _arm_frame_timer(self) -> None:
        self._cancel_frame_timer()
        self._frame_timer = self.daemon.loop.call_later(
            self.config.frame_timeout, self._on_frame_timeout
        )

    def _cancel_frame_timer(self) -> None:
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None

    def _on_frame_timeout(self) -> None:
        self._frame_timer = None
        log.warning("client %d: frame not completed in %s s", self.id, self.config.frame_timeout)
        unread = " while the client did not read its replies" if self._reading_paused_by else ""
        self._refuse(
            errors.TIMEOUT,
            f"a frame was started and not completed within {self.config.frame_timeout} seconds "
            f"(PTYD_FRAME_TIMEOUT){unread}; closing",
        )

    def _refuse(self, code: str, message: str) -> None:
        """One connection-level error frame, then EOF; what the peer sent meanwhile is read and
        dropped until it closes (for at most a second): closing a socket with unread input
        would reset the connection, and the peer could lose the frame that says why."""
        if self._is_closing or self.transport is None:
            return
        self.write(protocol.error_response(None, code, message))
        self._is_closing = True
        self._release_partial()
        self._waiting.clear()
        self.transport.write_eof()
        self.transport.resume_reading()
        self._abort_timer = self.daemon.loop.call_later(1.0, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        self._is_closing = True
        self._release_partial()
        self._waiting.clear()
        for timer in (self._hello_timer, self._abort_timer):
            if timer is not None:
                timer.cancel()
        for attachment in list(self.attachments.values()):
            attachment.session.unsubscribe(attachment)
        self.attachments.clear()
        for task in self._tasks:
            task.cancel()
        self.daemon.forget(self)
        if self.is_authenticated:
            log.info("client %d disconnected", self.id)

    def pause_writing(self) -> None:
        """The client's backlog passed the threshold: levels are updated by the fan-out."""

    def resume_writing(self) -> None:
        """The backlog fell below the threshold: re-level subscribers, resync the lagging,
        release block-policy sessions, read requests again."""
        self._resume_reading("backlog")
        for attachment in list(self.attachments.values()):
            sub = attachment.sub
            if sub.update_level():
                self.on_flow_change(attachment)
            if sub.is_lagging:
                self._start_resync(attachment)

    # -- writing -----------------------------------------------------------------------------

    def write(self, message: dict[str, Any]) -> None:
        self.write_frame(protocol.encode(message))

    def write_frame(self, frame: bytes) -> None:
        if self.transport is None or self._is_closing or self.transport.is_closing():
            return
        self.transport.write(frame)
        if self.transport.get_write_buffer_size() >= self.config.flow_max_queue_size:
            self._pause_reading("backlog")

    def _pause_reading(self, reason: str) -> None:
        """Stop reading for ``reason``: "backlog" (the client does not read its replies), or
        the daemon's own: "in-flight" (busy with the connection's long requests), "spawn" (a
        create under way). A partial frame's clock stops only for the daemon's reasons: a
        client that neither reads nor finishes its frame must not hold the partial-frame
        budget for ever."""
        if not self._reading_paused_by and self.transport is not None:
            self.transport.pause_reading()
        self._reading_paused_by.add(reason)
        if reason in _DAEMON_REASONS:
            self._cancel_frame_timer()

    def _resume_reading(self, reason: str) -> None:
        if reason not in self._reading_paused_by or self._is_closing:
            return
        self._reading_paused_by.discard(reason)
        is_clock_stopped = bool(self._reading_paused_by & _DAEMON_REASONS)
        if self._held and not is_clock_stopped and self._frame_timer is None:
            self._arm_frame_timer()
        if self._reading_paused_by or self.transport is None:
            return
        self._handle_waiting()
        if not self._reading_paused_by and not self._is_closing:  # the waiting may pause again
            self.transport.resume_reading()

    def close(self, *, grace: float | None = None) -> None:
        """Close after what is queued is written; abort if the client does not read it."""
        if self._is_closing or self.transport is None:
            return
        self._is_closing = True
        self._release_partial()
        self._waiting.clear()
        self.transport.close()
        self._abort_timer = self.daemon.loop.call_later(
            self.config.hello_timeout if grace is None else grace, self.transport.abort
        )

    def make_room(self) -> None:
        """Closed before hello for a newer connection (PTYD_MAX_UNAUTHENTICATED reached)."""
        message = (
            "closed to make room: too many connections waiting for hello "
            f"(PTYD_MAX_UNAUTHENTICATED={self.config.max_unauthenticated})"
        )
        self.write(protocol.error_response(None, errors.TOO_MANY_CONNECTIONS, message))
        self.close(grace=1.0)

    def _on_hello_timeout(self) -> None:
        if not self.is_authenticated:
            self.write(
                protocol.error_response(
                    None, errors.TIMEOUT, f"no hello within {self.config.hello_timeout} seconds"
                )
            )
            self.close(grace=1.0)

    # -- dispatch ----------------------------------------------------------------------------

    def _handle(self, message: dict[str, Any] | ProtocolError) -> None:
        if isinstance(message, ProtocolError):
            self.write(protocol.error_response(None, message.code, str(message)))
            return
        request_id = message.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, int):
            request_id = None  # no integer id to answer (a bool is no id)
        try:
            request = schemas.parse_request(message)
            if not self.is_authenticated and request.type != "hello":
                raise RequestError(errors.HELLO_REQUIRED, "the first request must be hello")
            handler = getattr(self, f"_op_{request.type}")
            if request.type == self.daemon.faulty_request:
                raise RuntimeError(f"PTYD_TEST_FAULT: fault in the {request.type} handler")
            result = handler(request.id, **request.fields)
        except (ProtocolError, RequestError) as exc:
            self.write(protocol.error_response(request_id, exc.code, str(exc)))
            return
        except Exception as exc:  # a bug must cost one request, never the daemon
            log.exception("request %r failed", message.get("type"))
            self.write(
                protocol.error_response(request_id, errors.INTERNAL, f"internal error: {exc}")
            )
            return
        if asyncio.iscoroutine(result):
            task = self._spawn(request.id, result)
            if request.type == "wait":
                self._waits[request.id] = task
                task.add_done_callback(lambda _: self._waits.pop(request.id, None))
        elif result is not None:
            self.write(protocol.ok_response(request.id, result))

    def _spawn(self, request_id: int, coroutine: Any) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                result = await coroutine
            except (ProtocolError, RequestError) as exc:
                self.write(protocol.error_response(request_id, exc.code, str(exc)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("request %d failed", request_id)
                self.write(
                    protocol.error_response(request_id, errors.INTERNAL, f"internal error: {exc}")
                )
            else:
                if result is not None:
                    self.write(protocol.ok_response(request_id, result))

        task = self.daemon.loop.create_task(run())
        self._tasks.add(task)
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self._pause_reading("in-flight")
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if len(self._tasks) < MAX_IN_FLIGHT:
            self._resume_reading("in-flight")

    # -- operations --------------------------------------------------------------------------

    def _op_hello(
        self, request_id: int, version: str, features: list[str], client: str
    ) -> dict[str, Any]:
        if not protocol.is_compatible(version):
            message = (
                f"protocol version mismatch: client speaks {version}, daemon speaks "
                f"{protocol.VERSION_TEXT} (major versions must match)"
            )
            self.write(protocol.error_response(request_id, errors.VERSION_MISMATCH, message))
            self.close(grace=1.0)
            return None  # type: ignore[return-value]
        if not self.is_authenticated:
            self.is_authenticated = True
            self.daemon.authenticated(self)
            if self._hello_timer is not None:
                self._hello_timer.cancel()
        self.features = protocol.FEATURES & frozenset(features)
        # Shown in stats and the log: printable characters only, so a name cannot drive the
        # terminal of whoever reads them.
        self.client_name = "".join(ch for ch in client[:128] if ch.isprintable())
        log.debug("client %d is %r", self.id, self.client_name)
        return {
            "version": protocol.VERSION_TEXT,
            "features": sorted(self.features),
            "daemon": self.daemon.version,
            "backend": BACKEND,
            "pid": self.daemon.pid,
        }

    def _op_create(self, request_id: int, **fields: Any) -> Any:
        # This connection's next requests wait for the session (they may name it); the
        # daemon and its other clients do not.
        self._pause_reading("spawn")
        return self._create(fields)

    async def _create(self, fields: dict[str, Any]) -> dict[str, Any]:
        try:
            return (await self.daemon.create_session(**fields)).info()
        finally:
            self._resume_reading("spawn")

    def _op_list(self, request_id: int) -> dict[str, Any]:
        return {"sessions": [session.info() for session in self.daemon.sessions_in_order()]}

    def _op_info(self, request_id: int, session: int | str) -> dict[str, Any]:
        return self.daemon.find(session).info()

    async def _op_attach(
        self,
        request_id: int,
        session: int | str,
        policy: str | None,
        snapshot: str | None,
        from_offset: int | None,
        read_only: bool,
        cols: int | None,
        rows: int | None,
    ) -> None:
        target = self.daemon.find(session)
        if target.id in self.attachments:
            raise RequestError(errors.BAD_REQUEST, f"already attached to session {target.label}")
        attachment = Attachment(
            session=target,
            connection=self,
            policy=policy or self.config.flow_default_policy,
            snapshot_format=snapshot or "ansi",
            is_read_only=read_only,
            cols=cols,
            rows=rows,
        )
        target.subscribe(attachment, self.config.flow_threshold, self.config.flow_max_queue_size)
        self.attachments[target.id] = attachment
        if cols and rows and not read_only and target.is_running:
            target.apply_size_policy(attachment)
        result = {"session": target.info(), "offset": target.pump.offset, "snapshot": None}
        replay = None if from_offset is None else target.pump.ring.since(from_offset)
        if replay is not None or snapshot is None:
            # Resume inside the ring, or live only: no snapshot, nothing to wait for.
            result["offset"] = from_offset if replay is not None else target.pump.offset
            result["resumed"] = replay is not None
            self.write(protocol.ok_response(request_id, result))
            if replay:
                self.write_frame(fast.encode_output(target.pump.frame_prefix, from_offset, replay))
            self._go_live(attachment)
            return None
        offset = target.pump.offset
        try:
            data = await target.shadow.snapshot(snapshot)
        except asyncio.CancelledError:
            if self._is_closing:
                raise
            data = None  # the emulator was released (the daemon is stopping): no screen to send
        result.update(offset=offset, snapshot=data, format=snapshot, resumed=False)
        self.write(protocol.ok_response(request_id, result))
        self._go_live(attachment)
        return None

    def _go_live(self, attachment: Attachment, *, is_attach: bool = True) -> None:
        sub = attachment.sub
        if is_attach and attachment.is_resyncing:
            return  # the limit came during the attach's snapshot: the resync's snapshot goes live
        if sub.is_lagging:
            self._start_resync(attachment)
            return
        held = sub.take_held()
        for frame in held:
            self.write_frame(frame)
            sub.bytes_delivered += len(frame)
        session = attachment.session
        if is_attach and not session.is_running and not held:
            self.write_frame(session.exit_frame())  # attached after the end: nothing else comes
        # Held bytes now sit in the socket buffer or are gone: if the socket took them all,
        # no resume_writing will come to lower the level (and release a blocked session).
        sub.update_level()
        if sub.level != attachment.reported_level:
            self.on_flow_change(attachment)

    def _start_resync(self, attachment: Attachment) -> None:
        """Resync policy: once the socket has drained, send a fresh snapshot and go live."""
        sub = attachment.sub
        if attachment.is_resyncing or self.transport is None:
            return
        if self.transport.get_write_buffer_size() >= self.config.flow_threshold:
            return  # resume_writing calls back when it has drained
        attachment.is_resyncing = True
        session = attachment.session
        # Fallen behind again (while a snapshot was on its way, or once live at the limit):
        # every snapshot follows a lagging event.
        self._tell_lagging(attachment)
        sub.is_lagging = False  # frames from here on are held until the snapshot is sent
        sub.is_live = False
        offset = session.pump.offset
        future = session.shadow.snapshot(attachment.snapshot_format)

        def send(done: asyncio.Future[Any]) -> None:
            attachment.is_resyncing = False
            attachment.is_told_lagging = False
            if done.cancelled() or attachment.session.attachments.count(attachment) == 0:
                return
            self.write(
                protocol.event(
                    "snapshot",
                    session=session.id,
                    offset=offset,
                    format=attachment.snapshot_format,
                    data=done.result(),
                )
            )
            self._go_live(attachment, is_attach=False)

        future.add_done_callback(send)

    def on_flow_change(self, attachment: Attachment) -> None:
        """Called by the session when a subscriber's flow level changes."""
        sub = attachment.sub
        session = attachment.session
        if attachment.is_resyncing and sub.level != fast.LIMIT:
            return  # still "limit" for the client until its snapshot is sent; _go_live reports
        if sub.level == attachment.reported_level:
            return
        if sub.level == fast.LIMIT and attachment.reported_level == fast.NORMAL:
            self._report_level(attachment, fast.WARNING)  # never act without a warning first
        self._report_level(attachment, sub.level)
        if sub.level != fast.LIMIT:
            if attachment.policy == "block":
                session.unblock(sub)
            return
        if attachment.policy == "disconnect":
            log.warning(
                "client %d fell behind on session %s: disconnecting", self.id, session.label
            )
            self.write(
                protocol.event(
                    "error",
                    session=session.id,
                    code=errors.FLOW_LIMIT,
                    message=f"output backlog reached {sub.limit} bytes "
                    "(PTYD_FLOW_MAX_QUEUE_SIZE); disconnecting",
                )
            )
            session.unsubscribe(attachment)
            self.attachments.pop(session.id, None)
            self.close()
        elif attachment.policy == "block":
            session.block(sub)
        else:
            if not sub.is_lagging:
                # The limit came with a frame that was taken (an empty backlog takes any): what
                # is held predates the coming snapshot, drop it as a refused frame would.
                sub.start_lagging()
            self._tell_lagging(attachment)
            self._start_resync(attachment)

    def _tell_lagging(self, attachment: Attachment) -> None:
        if not attachment.is_told_lagging:
            attachment.is_told_lagging = True
            session = attachment.session
            self.write(protocol.event("lagging", session=session.id, offset=session.pump.offset))

    def _report_level(self, attachment: Attachment, level: int) -> None:
        sub = attachment.sub
        attachment.reported_level = level
        self.write(
            protocol.event(
                "flow",
                session=attachment.session.id,
                level=protocol.FLOW_LEVELS[level],
                backlog=sub.backlog(),
                threshold=sub.threshold,
                limit=sub.limit,
                policy=attachment.policy,
            )
        )
        log.debug(
            "client %d session %s flow %s",
            self.id,
            attachment.session.label,
            protocol.FLOW_LEVELS[level],
        )

    def _attachment(self, session: Session) -> Attachment | None:
        return self.attachments.get(session.id)

    def _op_detach(self, request_id: int, session: int | str) -> dict[str, Any]:
        target = self.daemon.find(session)
        attachment = self.attachments.pop(target.id, None)
        if attachment is None:
            raise RequestError(errors.NOT_ATTACHED, f"not attached to session {target.label}")
        target.unsubscribe(attachment)
        return {"session": target.id}

    def _op_input(
        self, request_id: int, session: int | str, data: bytes, keys: bool = False
    ) -> dict[str, Any]:
        target = self.daemon.find(session)
        attachment = self._attachment(target)
        if attachment is not None:
            if attachment.is_read_only:
                raise RequestError(errors.READ_ONLY, "this attachment is read-only")
            if self.config.size_policy == "latest" and data:  # typing, not a check for nothing
                target.apply_size_policy(attachment)
        target.send_input(data, keys)
        self.daemon.bytes_in += len(data)
        return {}

    def _op_resize(
        self, request_id: int, session: int | str, cols: int, rows: int
    ) -> dict[str, Any]:
        target = self.daemon.find(session)
        attachment = self._attachment(target)
        if attachment is not None and attachment.is_read_only:
            raise RequestError(errors.READ_ONLY, "this attachment is read-only")
        if attachment is None or self.config.size_policy == "manual":
            target.resize(cols, rows)
            return {"cols": target.cols, "rows": target.rows}
        attachment.cols, attachment.rows = cols, rows
        target.apply_size_policy(attachment)
        return {"cols": target.cols, "rows": target.rows}

    def _op_signal(
        self, request_id: int, session: int | str, signal: int, target: str
    ) -> dict[str, Any]:
        found = self.daemon.find(session)  # the schema has checked the signal first
        found.send_signal(signal, target)
        return {}

    def _op_kill(self, request_id: int, session: int | str) -> dict[str, Any]:
        target = self.daemon.find(session)
        if not target.is_running:
            raise RequestError(errors.SESSION_EXITED, f"session {target.label} has already exited")
        target.hang_up(self.config.kill_grace)
        return {}

    async def _op_snapshot(
        self, request_id: int, session: int | str, format: str, scrollback: int
    ) -> dict[str, Any]:
        target = self.daemon.find(session)
        offset = target.pump.offset
        try:
            data = await target.shadow.snapshot(format, scrollback)
        except asyncio.CancelledError:
            if self._is_closing:
                raise
            raise RequestError(errors.SESSION_EXITED, f"session {target.label} is gone") from None
        return {"session": target.id, "offset": offset, "format": format, "data": data}

    async def _op_wait(
        self, request_id: int, session: int | str, timeout: float | None
    ) -> dict[str, Any]:
        target = self.daemon.find(session)
        try:
            if target.is_running:  # an exited session answers at once, whatever the timeout
                await asyncio.wait_for(target.wait(), timeout)
        except asyncio.TimeoutError:
            raise RequestError(
                errors.TIMEOUT, f"session {target.label} still running after {timeout} seconds"
            ) from None
        return {"session": target.id, "code": target.exit_code, "signal": target.exit_signal}

    def _op_cancel(self, request_id: int, request: int) -> dict[str, Any]:
        """End this connection's ``wait`` with id ``request``: it is answered ``cancelled``
        (before this answer), and stops counting against the requests in progress."""
        task = self._waits.pop(request, None)
        if task is None or task.done():
            return {"cancelled": False}
        task.cancel()
        self.write(protocol.error_response(request, errors.CANCELLED, "cancelled by the client"))
        return {"cancelled": True}

    def _op_stats(self, request_id: int) -> dict[str, Any]:
        return self.daemon.stats()

    def _op_shutdown(self, request_id: int) -> dict[str, Any]:
        self.daemon.loop.call_soon(self.daemon.request_shutdown, "shutdown request")
        return {}

    def subscriber_stats(self) -> list[dict[str, Any]]:
        return [
            {
                "client": self.id,
                "client_name": self.client_name,
                "session": attachment.session.id,
                "policy": attachment.policy,
                "read_only": attachment.is_read_only,
                "backlog": attachment.sub.backlog(),
                "level": protocol.FLOW_LEVELS[attachment.sub.level],
                "warnings": attachment.sub.warnings,
                "resyncs": attachment.sub.resyncs,
                "bytes_delivered": attachment.sub.bytes_delivered,
            }
            for attachment in self.attachments.values()
        ]


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """The connecting process's (pid, uid) as the kernel saw them at connect; (-1, -1) if
    unknown, which no allowed-uid list contains."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return -1, -1
    pid, uid, _ = _PEERCRED.unpack(creds)
    return pid, uid
