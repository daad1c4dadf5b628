"""One PTY session: its child, output pump, emulator shadow, subscribers, input and exit.

Everything here runs on the loop thread, except the reads of a flooding PTY. Output is forwarded
as soon as it is read (the pump), the emulator follows on a worker (the shadow). A PTY that
floods is read by a worker thread (GIL released) and only published on the loop, so a flood
costs the loop a little work per 256 KiB rather than a system call per 4 KiB, and the echoes of
other sessions are not queued behind it. The session ends when its program has exited and
its PTY has been read to the end, so every byte the program wrote reaches the clients before
the exit event.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import errors, protocol, spawn
from ._backend import fast
from .config import Config
from .errors import RequestError
from .keys import in_application_cursor_mode
from .shadow import BACKLOG_LIMIT, EmulatorShadow

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger(__name__)

# The loop reads at most READ_BUDGET per readiness callback; a callback that fills it (the program
# writes as fast as it is read: a flood) hands the PTY to a worker, which reads batches of up to
# WORKER_READ_BUDGET bytes or WORKER_BATCH_MS, waiting up to WORKER_QUIET_MS when the PTY runs
# dry; a batch smaller than READ_BUDGET hands the PTY back to the loop. Reading a flood on the
# loop held it for budget / (the program's rate): 5-20 ms at 256 KiB, ahead of everyone's echo.
# The worker reads on while the loop publishes (up to WORKER_AHEAD batches ahead of it; waiting
# for the loop left the PTY unread for a wake-up of each thread per batch, and the program
# blocked on a full PTY meanwhile), for at most WORKER_CHAIN batches, then queues again behind
# the other sessions' reads.
READ_BUDGET = 16 * 1024
WORKER_READ_BUDGET = 256 * 1024
WORKER_QUIET_MS = 1
WORKER_BATCH_MS = 5
WORKER_AHEAD = 2
WORKER_CHAIN = 16
REPLY_BACKLOG = 64 * 1024  # queued input past which emulator query replies are dropped
KILL_ROUNDS = 10  # scans of the session for SIGKILL, for programs that fork as they are killed
EXIT_DRAIN_SECONDS = 0.25  # after the program exits, how long others may keep the PTY open
_TITLE_MAX = 256


def _clean_title(title: str) -> str:
    return "".join(ch for ch in title if ch.isprintable())[:_TITLE_MAX]


@dataclass(eq=False)
class _HeldKeys:
    """Keys sent by name, in the input queue until the program's cursor mode is known."""

    data: bytes


@dataclass(eq=False)
class Attachment:
    """One client attached to one session: the control-plane side of a fast.Subscriber."""

    session: Session
    connection: Connection
    policy: str
    snapshot_format: str
    is_read_only: bool
    cols: int | None = None
    rows: int | None = None
    is_resyncing: bool = False  # a resync snapshot is being prepared
    is_told_lagging: bool = False  # a lagging event went out since the last snapshot
    reported_level: int = 0  # the flow level the client was last told (fast.NORMAL first)
    sub: Any = field(default=None)  # the fast.Subscriber


class Session:
    """A program on a PTY, shared by any number of attached clients."""

    def __init__(
        self,
        session_id: int,
        name: str | None,
        argv: list[str],
        cwd: str,
        child: spawn.Child,
        cols: int,
        rows: int,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        emulators: Executor,
        readers: Executor,
        on_finished: Callable[[Session], None],
    ) -> None:
        self.id = session_id
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.child = child
        self.cols = cols
        self.rows = rows
        self.config = config
        self.loop = loop
        self.on_finished = on_finished
        self.created_at = time.time()
        self.last_attached: float | None = None
        self.title = ""
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.exited_at: float | None = None
        self.attachments: list[Attachment] = []
        self.frames_out = 0  # output frames sent: few and large under a flood, one per echo
        self.pump = fast.OutputPump(
            child.master_fd,
            protocol.output_frame_prefix(session_id),
            config.replay_bytes,
            READ_BUDGET,
        )
        self.shadow = EmulatorShadow(
            cols, rows, config.scrollback, loop, emulators, self._on_emulated
        )
        self._readers = readers
        self._input: deque[bytes | _HeldKeys] = deque()
        self._input_bytes = 0
        self._blockers: set[Any] = set()  # block-policy subscribers at their limit
        self._is_reading = False  # the PTY is being read (by the loop or, in a flood, a worker)
        self._is_worker_reading = False  # a worker thread owns the PTY's reads until it reports
        self._worker_batches = 0  # batches of the worker's current run published by the loop
        self._is_pty_open = True  # false once the PTY reached EOF/EIO
        self._is_reaped = False
        self._is_finished = False
        self._exit_waiters: list[asyncio.Future[None]] = []
        # The kill ladder's last step: it outlives the program (what the program left behind,
        # ignoring HUP and TERM, still gets SIGKILL), so it is not cancelled by the exit.
        self._ladder_end: asyncio.Future[None] | None = None
        self._drain_timer: asyncio.TimerHandle | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.loop.add_reader(self.child.pidfd, self._on_child_exit)
        self._resume_reading()

    @property
    def is_running(self) -> bool:
        return not self._is_finished

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "argv": self.argv,
            "pid": self.child.pid,
            "cwd": self.cwd,
            "cols": self.cols,
            "rows": self.rows,
            "created_at": self.created_at,
            "last_attached": self.last_attached,
            "clients": len(self.attachments),
            "bytes_out": self.pump.offset,
            "title": self.title,
            "state": "running" if self.is_running else "exited",
            "exit_code": self.exit_code,
            "exit_signal": self.exit_signal,
            "exited_at": self.exited_at,
        }

    def _resume_reading(self) -> None:
        # Once the program has exited, block-policy readers get the rest past their limit: it
        # is at most the PTY's buffer plus EXIT_DRAIN_SECONDS of leftovers, and the session
        # must reach its end (a kill or a shutdown waits for it).
        if self._is_reading or not self._is_pty_open or (self._blockers and not self._is_reaped):
            return
        if self.shadow.backlog >= BACKLOG_LIMIT:
            return  # _on_emulated resumes once the emulator has caught up
        self._is_reading = True
        if not self._is_worker_reading:  # else the worker's report resumes the reads
            self.loop.add_reader(self.child.master_fd, self._on_readable)
        if self._is_reaped and self._drain_timer is None:
            self._arm_drain_timer()

    def _pause_reading(self) -> None:
        if self._is_reading:
            self._is_reading = False
            if not self._is_worker_reading:  # else the worker's report does not read on
                self.loop.remove_reader(self.child.master_fd)

    def _on_readable(self) -> None:
        data, is_eof, changed = self.pump.pump()
        self._after_output(data, changed)
        if is_eof:
            self._on_pty_eof()
        elif len(data) >= READ_BUDGET and self._is_reading:
            self.loop.remove_reader(self.child.master_fd)
            self._read_on_worker()

    def _read_on_worker(self) -> None:
        """Hand the PTY's reads to a worker thread until a batch comes back small."""
        self._is_worker_reading = True
        self._worker_batches = 0
        self._readers.submit(self._worker_read)

    def _worker_read(self) -> None:
        """Worker thread: batches read with the GIL released, each handed to the loop to
        publish, while they come back full and the session still reads (the last one says
        whether the worker stopped)."""
        for posted in range(1, WORKER_CHAIN + 1):
            try:
                data, is_eof = self.pump.read_batch(
                    WORKER_READ_BUDGET, WORKER_QUIET_MS, WORKER_BATCH_MS
                )
            except Exception:
                log.exception("session %s: worker read failed", self.label)
                data, is_eof = b"", False  # the loop watches the PTY again
            reads_on = (
                len(data) >= READ_BUDGET
                and not is_eof
                and posted < WORKER_CHAIN
                and self._is_reading
                and not self._is_finished
                and posted - self._worker_batches <= WORKER_AHEAD
            )
            try:
                self.loop.call_soon_threadsafe(self._on_worker_batch, data, is_eof, reads_on)
            except RuntimeError:  # the loop is closed: the daemon is gone
                return
            if not reads_on:
                return

    def _on_worker_batch(self, data: bytes, is_eof: bool, reads_on: bool) -> None:
        self._worker_batches += 1
        if data and not self._is_finished:
            # Published while the worker still owns the reads: a flow change in here that
            # resumes reading must not watch the PTY too (two readers would reorder output).
            self._after_output(data, self.pump.publish(data))
        if reads_on:
            return  # the worker is reading the next batch; it reports again
        self._is_worker_reading = False
        if self._is_finished:
            os.close(self.child.master_fd)  # _finish left it open for this read
            return
        if is_eof:
            self._on_pty_eof()
        elif not self._is_reading:
            return  # paused meanwhile: _resume_reading watches the PTY again
        elif len(data) >= READ_BUDGET:
            self._read_on_worker()
        else:
            self.loop.add_reader(self.child.master_fd, self._on_readable)

    def _after_output(self, data: bytes | memoryview, changed: list[Any]) -> None:
        if data:
            self.frames_out += 1
            self.shadow.feed(data)
            if self.shadow.backlog >= BACKLOG_LIMIT:
                self._pause_reading()
        for sub in changed:
            sub.owner.connection.on_flow_change(sub.owner)

    def _on_emulated(self, replies: bytes, title: str) -> None:
        # A program that floods queries and never reads its input gets its replies dropped
        # past REPLY_BACKLOG rather than growing the input queue (tmux drops them too).
        if replies and self._is_pty_open and self._input_bytes < REPLY_BACKLOG:
            self._write_input(replies)
        if title != self.title:
            self.title = _clean_title(title)
        if not self._is_reading and self.shadow.backlog < BACKLOG_LIMIT // 2:
            self._resume_reading()

    def _on_pty_eof(self) -> None:
        self._pause_reading()
        self._is_pty_open = False
        if self._is_reaped:
            self._finish()

    def _on_child_exit(self) -> None:
        status = spawn.reap(self.child.pid)
        if status is None:
            return
        self.loop.remove_reader(self.child.pidfd)
        self.exit_code, self.exit_signal = status
        self._is_reaped = True
        if not self._is_pty_open:
            self._finish()
        elif self._is_reading:
            self._arm_drain_timer()
        else:
            self._resume_reading()  # block-policy readers no longer hold an exited program

    def _arm_drain_timer(self) -> None:
        """The program exited but the PTY is still open: something it left behind holds it.
        Read what is there; if the PTY is still open after a short while, end the session."""
        self._drain_timer = self.loop.call_later(EXIT_DRAIN_SECONDS, self._on_drain_timeout)

    def _on_drain_timeout(self) -> None:
        self._drain_timer = None
        if not self._is_reading:
            return  # paused for flow control: re-armed when reading resumes
        while self._is_pty_open and not self._is_worker_reading:
            data, is_eof, changed = self.pump.pump()
            self._after_output(data, changed)
            if is_eof or not data or not self._is_reading:
                break
        if self._is_reading or not self._is_pty_open:
            self._pause_reading()
            self._is_pty_open = False
            self._finish()

    def _finish(self) -> None:
        """The program is reaped and its output read: tell everyone, release the PTY."""
        if self._is_finished:
            return
        self._is_finished = True
        self.exited_at = time.time()
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        # libuv aborts on a watched fd that was closed: unwatch before closing.
        self._pause_reading()
        self.loop.remove_writer(self.child.master_fd)
        if not self._is_worker_reading:  # else closed when the worker's read returns
            os.close(self.child.master_fd)  # hangs up anything the program left on the PTY
        os.close(self.child.pidfd)
        self._input.clear()
        self._input_bytes = 0
        frame = self.exit_frame()
        for attachment in list(self.attachments):
            sub = attachment.sub
            if sub.is_live:
                attachment.connection.write_frame(frame)
            else:
                # Delivered after the snapshot the client waits for: an attach's, or the resync
                # a lagging client gets once its socket drains (the final screen, then the end).
                sub.held.append(frame)
        for waiter in self._exit_waiters:
            if not waiter.done():
                waiter.set_result(None)
        log.info(
            "session %s exited (%s) after %d bytes",
            self.label,
            describe_exit(self.exit_code, self.exit_signal),
            self.pump.offset,
        )
        self.on_finished(self)

    def exit_frame(self) -> bytes:
        """The exit event, sent after all output (also to clients attaching after the exit)."""
        return protocol.encode(
            protocol.event(
                "exit",
                session=self.id,
                code=self.exit_code,
                signal=self.exit_signal,
                offset=self.pump.offset,
            )
        )

    @property
    def label(self) -> str:
        return f"{self.id}" + (f" ({self.name})" if self.name else "")

    async def wait(self) -> None:
        if self._is_finished:
            return
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._exit_waiters.append(waiter)
        try:
            await waiter
        finally:  # a wait that timed out or whose client left holds nothing of the session
            with contextlib.suppress(ValueError):
                self._exit_waiters.remove(waiter)

    def close(self) -> None:
        """Release the emulator once the session is gone from the registry."""
        self.shadow.close()

    # -- signals -----------------------------------------------------------------------------

    def send_signal(self, signum: int, target: str = "foreground") -> None:
        if not self.is_running:
            raise RequestError(errors.SESSION_EXITED, f"session {self.label} has exited")
        pid = self.child.pid
        try:
            if target == "process":
                os.kill(pid, signum)
            elif target == "group":
                os.killpg(pid, signum)
            elif target == "session":
                self.signal_members(signum)
            else:
                try:
                    pgrp = os.tcgetpgrp(self.child.master_fd)
                except OSError:
                    pgrp = pid
                os.killpg(pgrp if pgrp > 0 else pid, signum)
        except ProcessLookupError:
            pass  # already gone: the exit is on its way

    def hang_up(self, grace: float) -> None:
        """Kill ladder: SIGHUP now, SIGTERM after ``grace``, SIGKILL to the whole session after
        twice that (for programs that ignore the polite signals). The last two steps also reach
        processes the program left in its session when it exited."""
        if not self.is_running or self._ladder_end is not None:
            return
        self._signal_session_groups(signal.SIGHUP)
        self._signal_session_groups(signal.SIGCONT)
        self._ladder_end = self.loop.create_future()
        self.loop.call_later(grace, self._terminate)
        self.loop.call_later(2 * grace, self._kill_everything)

    def _terminate(self) -> None:
        if self.is_running:
            self._signal_session_groups(signal.SIGTERM)
        else:
            self.signal_members(signal.SIGTERM)

    async def wait_for_members(self) -> None:
        """Once the program has exited: until the kill ladder has ended what it left behind
        (at once if nothing is left, or no ladder runs)."""
        if self._ladder_end is not None and spawn.session_processes(self.child.pid):
            await asyncio.shield(self._ladder_end)

    def _signal_session_groups(self, signum: int) -> None:
        if not self.is_running:
            return
        groups = {self.child.pid}
        try:
            pgrp = os.tcgetpgrp(self.child.master_fd)
        except OSError:
            pgrp = 0
        if pgrp > 0:  # 0: no foreground group, and killpg(0) would signal the daemon's own group
            groups.add(pgrp)
        for group in groups:
            with contextlib.suppress(OSError):
                os.killpg(group, signum)

    def _kill_everything(self) -> None:
        self.signal_members(signal.SIGKILL)
        if self._ladder_end is not None and not self._ladder_end.done():
            self._ladder_end.set_result(None)

    def signal_members(self, signum: int) -> None:
        """Every process of the session; the program itself only while it is not reaped (its
        pid may be reused after), though what it left keeps the session id (its pid).

        Each process group found is signalled too, which reaches children forked since the
        scan (a fork stays in its parent's group); SIGKILL scans again until nothing is left,
        for programs that fork into new groups as fast as they are killed."""
        for _ in range(KILL_ROUNDS if signum == signal.SIGKILL else 1):
            members = spawn.session_members(self.child.pid)
            if not members and not self._is_reaped:
                members = [(self.child.pid, self.child.pid)]
            if not members:
                return
            for group in {group for _, group in members}:
                with contextlib.suppress(OSError):
                    os.killpg(group, signum)
            for member, _ in members:
                _kill_quietly(member, signum)

    # -- input and size ----------------------------------------------------------------------

    def send_input(self, data: bytes, keys: bool = False) -> None:
        """Queue input in order; refuse (without queueing any of it) past the bound. ``keys``:
        the data was made from key names, so its cursor keys follow the program's DECCKM."""
        if not self.is_running or not self._is_pty_open:
            raise RequestError(errors.SESSION_EXITED, f"session {self.label} has exited")
        if self._input_bytes + len(data) > self.config.input_limit:
            raise RequestError(
                errors.INPUT_OVERFLOW,
                f"session {self.label} has {self._input_bytes} bytes of input not yet read by "
                f"the program; {len(data)} more would pass the limit of "
                f"{self.config.input_limit} (PTYD_INPUT_LIMIT)",
            )
        if keys and in_application_cursor_mode(data) != data:
            if self.shadow.backlog:  # clients were sent output the emulator has not seen yet
                self._hold_keys(data)
                return
            if self.shadow.cursor_keys:
                data = in_application_cursor_mode(data)
        self._write_input(data)

    def _hold_keys(self, data: bytes) -> None:
        """Queue cursor keys sent by name until the emulator has caught up with the output
        sent before them, then in the mode it found; input after them waits behind them."""
        held = _HeldKeys(data)
        self._input.append(held)
        self._input_bytes += len(data)

        def mode_known(future: asyncio.Future[bool]) -> None:
            if future.cancelled() or held not in self._input:  # exited meanwhile
                return
            at = self._input.index(held)
            is_application = future.exception() is None and future.result()
            self._input[at] = in_application_cursor_mode(data) if is_application else data
            if at == 0:
                self.loop.add_writer(self.child.master_fd, self._on_writable)

        self.shadow.cursor_keys_after_queued().add_done_callback(mode_known)

    def _write_input(self, data: bytes) -> None:
        if not self._input:
            try:
                written = os.write(self.child.master_fd, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):
                    return  # the PTY is closing; the exit event follows
                raise
            data = data[written:]
            if not data:
                return
            self.loop.add_writer(self.child.master_fd, self._on_writable)
        self._input.append(data)
        self._input_bytes += len(data)

    def _on_writable(self) -> None:
        while self._input:
            chunk = self._input[0]
            if isinstance(chunk, _HeldKeys):
                break  # written once the emulator has told their mode
            try:
                written = os.write(self.child.master_fd, chunk)
            except BlockingIOError:
                return
            except OSError:
                self._input.clear()
                self._input_bytes = 0
                break
            self._input_bytes -= written
            if written < len(chunk):
                self._input[0] = chunk[written:]
                return
            self._input.popleft()
        self.loop.remove_writer(self.child.master_fd)

    @property
    def input_backlog(self) -> int:
        return self._input_bytes

    def resize(self, cols: int, rows: int) -> None:
        if not self.is_running:
            raise RequestError(errors.SESSION_EXITED, f"session {self.label} has exited")
        if (cols, rows) == (self.cols, self.rows):
            return
        self.cols, self.rows = cols, rows
        spawn.set_winsize(self.child.master_fd, cols, rows)
        self.shadow.resize(cols, rows)

    def apply_size_policy(self, active: Attachment | None = None) -> None:
        """Size the session from its attached clients, following PTYD_SIZE_POLICY: the most
        recently active client (latest), the smallest or the largest; manual never resizes."""
        policy = self.config.size_policy
        sized = [a for a in self.attachments if a.cols and a.rows and not a.is_read_only]
        if policy == "manual" or not sized or not self.is_running:
            return
        if policy == "latest":
            chosen = active if active in sized else None
            if chosen is not None and chosen.cols and chosen.rows:
                self.resize(chosen.cols, chosen.rows)
            return
        pick = min if policy == "smallest" else max
        self.resize(pick(a.cols or 0 for a in sized), pick(a.rows or 0 for a in sized))

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(self, attachment: Attachment, threshold: int, limit: int) -> Any:
        policy = protocol.FLOW_POLICIES.index(attachment.policy)
        sub = fast.Subscriber(attachment.connection.transport, policy, threshold, limit, attachment)
        attachment.sub = sub
        self.attachments.append(attachment)
        self.pump.subscribers.append(sub)
        self.last_attached = time.time()
        return sub

    def unsubscribe(self, attachment: Attachment) -> None:
        if attachment in self.attachments:
            self.attachments.remove(attachment)
        if attachment.sub in self.pump.subscribers:
            self.pump.subscribers.remove(attachment.sub)
        self.unblock(attachment.sub)
        self.apply_size_policy()

    def block(self, sub: Any) -> None:
        """A block-policy subscriber reached its limit: stop reading until it drains."""
        self._blockers.add(sub)
        if not self._is_reaped:
            self._pause_reading()

    def unblock(self, sub: Any) -> None:
        self._blockers.discard(sub)
        self._resume_reading()

    @property
    def is_paused(self) -> bool:
        return self._is_pty_open and not self._is_reading


def describe_exit(code: int | None, signum: int | None) -> str:
    if signum is not None:
        try:
            return f"signal {signal.Signals(signum).name}"
        except ValueError:
            return f"signal {signum}"
    return f"code {code}"


def _kill_quietly(pid: int, signum: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signum)
