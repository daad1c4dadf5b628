"""The daemon: listening socket, admission and authentication, the session registry, signals
and graceful shutdown. Runs on uvloop; every wait is an event (readiness, pidfd, signal,
future), never a poll or a sleep."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import pwd
import resource
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvloop

from . import allocator, errors, protocol, schemas, spawn
from ._backend import BACKEND
from ._version import __version__
from .config import Config
from .connection import Connection, peer_credentials
from .errors import PtydError, RequestError
from .identity import check_identity
from .session import Session
from .socketdir import Listener

log = logging.getLogger(__name__)

_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_FLUSH_SECONDS = 2.0  # at shutdown, how long clients get to read their last events
# fds never given to clients: PTYs and pidfds of new sessions, the log, the listener, the loop.
# Clients are capped at RLIMIT_NOFILE - FD_RESERVE, so a flood of clients cannot stop a spawn.
FD_RESERVE = 64
ACCEPT_RETRY_SECONDS = 1.0  # accept failed for want of fds: stop accepting this long (tmux)
_ACCEPT_BATCH = 64  # connections accepted per readiness callback
_TEST_FAULT_ENV = "PTYD_TEST_FAULT"  # test-only: "handler:TYPE" raises inside TYPE's handler
WORKER_NICE = 10  # worker threads are this much nicer than the loop thread (see _lower_priority)


def _lower_priority() -> None:
    """Worker threads (flood reads, emulation) run WORKER_NICE steps nicer than the loop thread:
    a keystroke's echo on the loop then preempts bulk work at once (echo under another
    session's flood: median 0.18 -> 0.09 ms, daemon side), while on an otherwise idle machine a
    flood still gets whole cores (throughput unchanged within noise; docs/performance.md)."""
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, 0)  # 0: this thread, on Linux
        os.setpriority(os.PRIO_PROCESS, 0, min(19, current + WORKER_NICE))


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.version = __version__
        self.pid = os.getpid()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set in serve
        self.listener = Listener(config.socket)
        self.sessions: dict[int, Session] = {}
        self.names: dict[str, int] = {}
        self.connections: set[Connection] = set()
        # Connections not yet past hello, oldest first: a new one past the cap closes the oldest.
        self._awaiting_hello: dict[Connection, None] = {}
        self.started_at = time.time()
        self.bytes_in = 0
        self._next_session = 1
        self._next_connection = 1
        workers = max(2, os.cpu_count() or 2)
        # Emulator feeds, and reads of flooding PTYs: separate pools, so that a read never waits
        # behind emulator work (which would serialise reading and emulating, and two floods
        # would get no more than one). A read lasts at most a few milliseconds (session.py).
        self._emulators = ThreadPoolExecutor(
            workers, thread_name_prefix="ptyd-emulator", initializer=_lower_priority
        )
        self._readers = ThreadPoolExecutor(
            workers, thread_name_prefix="ptyd-reader", initializer=_lower_priority
        )
        self.client_cap: int | None = None  # clients the fd limit leaves room for (serve)
        self.partial_frame_bytes = 0  # held in incomplete frames by all connections
        self.faulty_request = _test_fault()
        self._accepting: socket.socket | None = None  # the listening socket being watched
        self._accept_retry: asyncio.TimerHandle | None = None
        self._connecting: set[asyncio.Task[Any]] = set()  # accepted, transport being made
        self._is_at_client_cap = False
        self._busy_frame = b""
        self._stopping: asyncio.Future[str] | None = None
        self._is_shutting_down = False
        self._retention: dict[int, asyncio.TimerHandle] = {}
        self._starting: set[spawn.Starting] = set()  # forked, not yet known to have exec'd
        self._names_starting: set[str] = set()
        self._starts_ended: asyncio.Future[None] | None = None  # set during shutdown
        self._dying: dict[int, int] = {}  # killed children not yet reaped: pid -> pidfd
        self._all_closed: asyncio.Future[None] | None = None  # set during shutdown

    # -- running -----------------------------------------------------------------------------

    def open(self) -> None:
        """Bind the socket (raises AlreadyRunning / SocketPathError before anything starts)."""
        self.listener.open()

    async def serve(self, on_ready: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopping = self.loop.create_future()
        self._set_client_cap(_raise_fd_limit())
        for signum in _SHUTDOWN_SIGNALS:
            self.loop.add_signal_handler(signum, self._on_signal, signum)
        self.loop.add_signal_handler(signal.SIGUSR1, self._on_recreate_signal)
        assert self.listener.sock is not None
        self._start_accepting(self.listener.sock)
        if self.faulty_request is not None:
            log.warning(
                "%s: the %r request handler raises (tests only)",
                _TEST_FAULT_ENV,
                self.faulty_request,
            )
        log.info(
            "ptyd %s (%s backend) listening on %s, pid %d",
            self.version,
            BACKEND,
            self.config.socket,
            self.pid,
        )
        if on_ready is not None:
            on_ready()
        reason = await self._stopping
        await self._shutdown(reason)

    def request_shutdown(self, reason: str) -> None:
        if self._stopping is not None and not self._stopping.done():
            self._stopping.set_result(reason)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._is_shutting_down:
            log.warning("second signal (%s): exiting at once", name)
            self._exit_now()
        self.request_shutdown(name)

    def _on_recreate_signal(self) -> None:
        """SIGUSR1, as in tmux: recreate the socket if it was deleted from under us."""
        if self._is_shutting_down:
            return
        old_sock = self.listener.sock
        try:
            new_sock = self.listener.rebind()
        except (PtydError, OSError) as exc:
            log.error("SIGUSR1: cannot recreate the socket: %s", exc)
            return
        if new_sock is None:
            log.info("SIGUSR1: the socket is in place")
            return
        self._stop_accepting()
        if old_sock is not None:
            old_sock.close()  # the old listening socket; connections stay
        self._start_accepting(new_sock)
        log.warning("SIGUSR1: the socket was gone; listening again on %s", self.config.socket)

    def _exit_now(self) -> None:
        self._stop_accepting()
        self._kill_starting()
        for session in self.sessions.values():
            session.signal_members(signal.SIGKILL)
        self.listener.close()
        logging.shutdown()
        os._exit(1)

    def _kill_starting(self) -> None:
        """Children still between fork and exec (on a hung filesystem, say) are killed; their
        creates then answer ``shutting_down``."""
        for starting in self._starting:
            with contextlib.suppress(ProcessLookupError):
                os.kill(starting.child.pid, signal.SIGKILL)

    async def _shutdown(self, reason: str) -> None:
        """Stop accepting, tell every client, hang up every session, reap every child, flush
        the clients, remove the socket."""
        self._is_shutting_down = True
        log.info("shutting down (%s)", reason)
        self._stop_accepting()
        if self.listener.sock is not None:
            self.listener.sock.close()  # new connects are refused at once; the path goes last
        notice = protocol.encode(protocol.event("shutdown", reason=reason))
        for connection in list(self.connections):
            connection.write_frame(notice)
        self._kill_starting()
        if self._starting:  # their creates answer shutting_down before the clients are closed
            self._starts_ended = self.loop.create_future()
            await asyncio.wait([self._starts_ended], timeout=_FLUSH_SECONDS)
        running = [session for session in self.sessions.values() if session.is_running]
        for session in running:
            session.hang_up(self.config.kill_grace)
        if running:
            await asyncio.gather(*(session.wait() for session in running))
            await asyncio.gather(*(session.wait_for_members() for session in running))
        for connection in list(self.connections):
            connection.close(grace=_FLUSH_SECONDS)
        if self.connections:
            self._all_closed = self.loop.create_future()
            await asyncio.wait([self._all_closed], timeout=_FLUSH_SECONDS + 0.5)
        for timer in self._retention.values():
            timer.cancel()
        for session in self.sessions.values():
            session.close()
        for pid in list(self._dying):  # killed, so this waits at most for them to die
            self._reap_abandoned(pid)
        self._emulators.shutdown(wait=False, cancel_futures=True)
        self._readers.shutdown(wait=False, cancel_futures=True)
        self.listener.close()
        log.info("stopped")

    # -- accepting ---------------------------------------------------------------------------

    def _set_client_cap(self, fd_limit: int) -> None:
        """Clients past RLIMIT_NOFILE - FD_RESERVE are refused with ``busy`` at accept (those
        past PTYD_MAX_CLIENTS get ``too_many_connections`` from admit)."""
        if fd_limit == resource.RLIM_INFINITY:
            return
        self.client_cap = max(1, fd_limit - FD_RESERVE)
        if self.client_cap < self.config.max_clients:
            log.info(
                "at most %d clients: RLIMIT_NOFILE %d minus %d fds kept for sessions",
                self.client_cap,
                fd_limit,
                FD_RESERVE,
            )
        self._busy_frame = protocol.encode(
            protocol.error_response(
                None,
                errors.BUSY,
                f"the daemon holds {self.client_cap} clients, its limit (RLIMIT_NOFILE "
                f"{fd_limit} minus {FD_RESERVE} fds kept for sessions); try again later",
            )
        )

    def _start_accepting(self, sock: socket.socket) -> None:
        self._accepting = sock
        self.loop.add_reader(sock.fileno(), self._on_acceptable)

    def _stop_accepting(self) -> None:
        if self._accept_retry is not None:
            self._accept_retry.cancel()
            self._accept_retry = None
        if self._accepting is not None:
            self.loop.remove_reader(self._accepting.fileno())
            self._accepting = None

    def _on_acceptable(self) -> None:
        """Accept a bounded batch of pending connections. Past the client cap a client gets
        one ``busy`` frame and is closed at once (no transport, no Connection); if accept
        itself fails for want of fds or memory, stop accepting for ACCEPT_RETRY_SECONDS
        rather than spin on a socket that stays readable."""
        sock = self._accepting
        for _ in range(_ACCEPT_BATCH):
            if sock is None or sock is not self._accepting:
                return
            try:
                client, _ = sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue  # that client is gone; the next may be fine
                self._pause_accepting(exc)
                return
            held = len(self.connections) + len(self._connecting)
            if self.client_cap is not None and held >= self.client_cap:
                self._refuse_busy(client)
                continue
            self._is_at_client_cap = False
            client.setblocking(False)
            task = self.loop.create_task(
                self.loop.connect_accepted_socket(lambda: Connection(self), client)
            )
            self._connecting.add(task)
            task.add_done_callback(self._on_connected)

    def _on_connected(self, task: asyncio.Task[Any]) -> None:
        self._connecting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("an accepted connection failed: %s", task.exception())

    def _refuse_busy(self, client: socket.socket) -> None:
        if not self._is_at_client_cap:
            self._is_at_client_cap = True
            log.warning("%d clients connected: refusing new ones with busy", self.client_cap)
        with contextlib.suppress(OSError):
            client.setblocking(False)
            _, uid = peer_credentials(client)
            if self.is_allowed(uid):  # a stranger learns nothing, not even that we are full
                client.send(self._busy_frame)
        client.close()

    def _pause_accepting(self, exc: OSError) -> None:
        log.warning(
            "accept failed (%s): not accepting for %.0f s", exc.strerror, ACCEPT_RETRY_SECONDS
        )
        sock = self._accepting
        self._stop_accepting()
        if sock is not None:
            self._accept_retry = self.loop.call_later(
                ACCEPT_RETRY_SECONDS, self._start_accepting, sock
            )

    # -- connections -------------------------------------------------------------------------

    def next_connection_id(self) -> int:
        self._next_connection += 1
        return self._next_connection - 1

    def is_allowed(self, uid: int) -> bool:
        return uid == os.getuid() or uid in self.config.allowed_uids

    def admit(self, connection: Connection) -> tuple[str, str] | None:
        """None to accept, or (code, message) to refuse a new connection."""
        if not self.is_allowed(connection.peer_uid):
            return errors.AUTH_REFUSED, f"uid {connection.peer_uid} may not use this daemon"
        if self._is_shutting_down:
            return errors.SHUTTING_DOWN, "the daemon is shutting down"
        if len(self.connections) >= self.config.max_clients:
            return (
                errors.TOO_MANY_CONNECTIONS,
                f"too many connections: the daemon's limit of {self.config.max_clients} "
                "clients is reached (PTYD_MAX_CLIENTS)",
            )
        if len(self._awaiting_hello) >= self.config.max_unauthenticated:
            # The oldest makes room: a client says hello within a millisecond of connecting, so
            # idle connections cannot keep the owner out (refusing the newest would let them).
            oldest = next(iter(self._awaiting_hello))
            del self._awaiting_hello[oldest]
            oldest.make_room()
        self.connections.add(connection)
        self._awaiting_hello[connection] = None
        return None

    def authenticated(self, connection: Connection) -> None:
        self._awaiting_hello.pop(connection, None)

    def forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self._awaiting_hello.pop(connection, None)
        if not self.connections and self._all_closed is not None and not self._all_closed.done():
            self._all_closed.set_result(None)

    # -- sessions ----------------------------------------------------------------------------

    def find(self, target: int | str) -> Session:
        session_id = target if isinstance(target, int) else self.names.get(target)
        session = self.sessions.get(session_id) if session_id is not None else None
        if session is None:
            raise RequestError(errors.NO_SUCH_SESSION, f"no session {target!r}")
        if isinstance(target, str) and target in self._names_starting and not session.is_running:
            # The name is passing from an exited session to one being started: the exited one
            # is no longer what the name means (reach it by id).
            raise RequestError(errors.NO_SUCH_SESSION, f"no session {target!r} yet: it is starting")
        return session

    def sessions_in_order(self) -> list[Session]:
        return [self.sessions[key] for key in sorted(self.sessions)]

    def _holds_name(self, name: str) -> bool:
        """A running session has the name. An exited one keeps it, for ``wait`` and ``info``
        by name, only until a new session is created with it (as ``tmux new -A`` would)."""
        session_id = self.names.get(name)
        return session_id is not None and self.sessions[session_id].is_running

    async def create_session(
        self,
        argv: list[str] | None,
        env: dict[str, str | None],
        cwd: str | None,
        cols: int,
        rows: int,
        name: str | None,
        term: str | None,
    ) -> Session:
        if self._is_shutting_down:
            raise RequestError(errors.SHUTTING_DOWN, "the daemon is shutting down")
        if name is not None and (self._holds_name(name) or name in self._names_starting):
            raise RequestError(errors.NAME_TAKEN, f"a session named {name!r} already exists")
        full_env = spawn.build_env(dict(os.environ), env, term or self.config.term)
        argv = argv or [default_shell()]
        cwd = cwd or full_env.get("HOME") or "/"
        try:
            starting = spawn.start(argv, full_env, cwd, cols, rows)
        except spawn.PtyUnavailable as exc:
            log.warning("cannot start a session: %s", exc)
            raise RequestError(errors.PTY_UNAVAILABLE, str(exc)) from None
        if name is not None:
            self._names_starting.add(name)
        self._starting.add(starting)
        try:
            child = await self._exec_done(starting)
        except spawn.SpawnError as exc:
            raise RequestError(errors.SPAWN_FAILED, str(exc)) from None
        finally:
            self._starting.discard(starting)
            self._names_starting.discard(name)
            if not self._starting and self._starts_ended is not None:
                self._starts_ended.set_result(None)
        if self._is_shutting_down:  # its child was killed by the shutdown
            self._abandon(starting, finished=True)
            raise RequestError(errors.SHUTTING_DOWN, "the daemon is shutting down")
        session_id = self._next_session
        self._next_session += 1
        session = Session(
            session_id,
            name,
            argv,
            cwd,
            child,
            cols,
            rows,
            self.config,
            self.loop,
            self._emulators,
            self._readers,
            self._on_session_finished,
        )
        self.sessions[session_id] = session
        if name is not None:
            self.names[name] = session_id
        session.start()
        log.info("session %s started: pid %d, %s", session.label, child.pid, " ".join(argv))
        return session

    async def _exec_done(self, starting: spawn.Starting) -> spawn.Child:
        """Wait, without blocking the loop, until the child has exec'd or said why not; a
        cancelled wait (the client went away) kills the child."""
        readable: asyncio.Future[None] = self.loop.create_future()

        def on_readable() -> None:
            if not readable.done():
                readable.set_result(None)

        self.loop.add_reader(starting.error_fd, on_readable)
        try:
            await readable
        except BaseException:
            self.loop.remove_reader(starting.error_fd)
            self._abandon(starting)
            raise
        self.loop.remove_reader(starting.error_fd)
        return spawn.finish(starting)

    def _abandon(self, starting: spawn.Starting, *, finished: bool = False) -> None:
        """Kill a child the daemon will not keep, and reap it once it has died (at shutdown,
        before the daemon exits: it leaves no child behind)."""
        child = starting.child
        if finished:  # exec'd: its pipe is closed already
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            os.close(child.master_fd)
        else:
            spawn.abandon(starting)
        self._dying[child.pid] = child.pidfd
        self.loop.add_reader(child.pidfd, self._reap_abandoned, child.pid)

    def _reap_abandoned(self, pid: int) -> None:
        pidfd = self._dying.pop(pid)
        self.loop.remove_reader(pidfd)
        os.close(pidfd)
        os.waitpid(pid, 0)  # the pidfd is readable: it has exited

    def _on_session_finished(self, session: Session) -> None:
        if self._is_shutting_down:
            return
        self._retention[session.id] = self.loop.call_later(
            self.config.exit_retention, self._forget_session, session.id
        )
        if len(self._retention) > self.config.max_exited:
            # Each exited session holds its screen and replay ring: a client that starts short
            # sessions in a loop must not grow the daemon for the whole retention.
            oldest = next(iter(self._retention))  # timers are added in the order of the exits
            self._retention[oldest].cancel()
            log.info(
                "forgetting exited session %s early: %s exited sessions are kept at most",
                self.sessions[oldest].label,
                self.config.max_exited,
            )
            self._forget_session(oldest)

    def _forget_session(self, session_id: int) -> None:
        self._retention.pop(session_id, None)
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        if session.name is not None and self.names.get(session.name) == session_id:
            del self.names[session.name]  # unless a newer session has taken the name
        for attachment in list(session.attachments):
            attachment.connection.attachments.pop(session.id, None)
            session.unsubscribe(attachment)
        session.close()

    # -- observability -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        now = time.time()
        subscribers = [row for conn in self.connections for row in conn.subscriber_stats()]
        sessions = []
        for session in self.sessions_in_order():
            ended = session.exited_at if session.exited_at is not None else now
            age = max(ended - session.created_at, 1e-9)  # its lifetime ends at its exit
            sessions.append(
                {
                    "id": session.id,
                    "name": session.name,
                    "state": "running" if session.is_running else "exited",
                    "bytes_out": session.pump.offset,
                    "frames_out": session.frames_out,
                    "read_rate": session.pump.offset / age,
                    "subscribers": len(session.attachments),
                    "input_backlog": session.input_backlog,
                    "emulator_backlog": session.shadow.backlog,
                    "paused": session.is_paused,
                }
            )
        return {
            "daemon": {
                "pid": self.pid,
                "version": self.version,
                "backend": BACKEND,
                "uptime": now - self.started_at,
                "sessions": len(self.sessions),
                "clients": len(self.connections),
                "bytes_in": self.bytes_in,
                "bytes_out": sum(session.pump.offset for session in self.sessions.values()),
                "rss": _rss_bytes(),
                "open_fds": len(os.listdir("/proc/self/fd")),
            },
            "sessions": sessions,
            "subscribers": subscribers,
        }


def default_shell() -> str:
    shell = os.environ.get("SHELL")
    if shell and os.path.isabs(shell) and os.access(shell, os.X_OK):
        return shell
    try:
        shell = pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        shell = ""
    return shell if shell and os.access(shell, os.X_OK) else "/bin/sh"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _raise_fd_limit() -> int:
    """Hold as many clients and PTYs as the hard limit allows; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def _test_fault() -> str | None:
    """The request type whose handler must raise, from PTYD_TEST_FAULT=handler:TYPE: a hook
    for the tests of the per-connection guard, set only in the daemon's environment (never
    reachable from the protocol)."""
    value = os.environ.pop(_TEST_FAULT_ENV, "")
    if not value:
        return None
    where, _, kind = value.partition(":")
    if where != "handler" or kind not in schemas.SCHEMAS:
        raise PtydError(f"invalid {_TEST_FAULT_ENV}={value!r}: expected handler:REQUEST_TYPE")
    return kind


def _drop_socket_activation() -> None:
    """ptyd binds its own socket. Sockets passed by socket activation (sd_listen_fds(3)) are
    not used: unset LISTEN_* so no session sees them, and make our fds close-on-exec."""
    pid = os.environ.pop("LISTEN_PID", "")
    count = os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if pid == str(os.getpid()) and count.isdigit():
        for fd in range(3, 3 + int(count)):
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
        log.info("ignoring %s socket-activation fd(s): ptyd binds its own socket", count)


def run(config: Config, on_ready: Any = None, *, use_uvloop: bool = True) -> int:
    """Run a daemon in the foreground until it is shut down; return the exit status."""
    check_identity()  # also done first by the command line, before its fork and log file
    _drop_socket_activation()
    allocator.tune()
    daemon = Daemon(config)
    daemon.open()
    try:
        if use_uvloop:
            uvloop.run(daemon.serve(on_ready))
        else:
            asyncio.run(daemon.serve(on_ready))
    finally:
        daemon.listener.close()
    return 0
