"""Interactive attach: the user's terminal shows one session and types into it until the detach
key, the session's exit, the daemon's end or a signal; the terminal is restored on every path.

The terminal is repainted from the session's ``ansi`` snapshot, then output events are written as
they come. Output goes through the daemon's resync policy: when the terminal is slow this client
stops taking events, the daemon drops its backlog (``lagging``) and later sends a fresh snapshot,
which is painted on a cleared screen. ``--no-tty`` is a plain, lossless byte relay for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import stat
import sys
import termios
import tty
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import uvloop

from . import errors, protocol
from .client import AsyncClient, Attached, Client, Target
from .errors import ConnectionFailed, PtydError, RequestError
from .events import (
    DisconnectedEvent,
    ErrorEvent,
    Event,
    ExitEvent,
    LaggingEvent,
    OutputEvent,
    ShutdownEvent,
    SnapshotEvent,
)

DEFAULT_DETACH_KEY = 0x1C  # Ctrl-\, as dtach and abduco
DOUBLE_PRESS_SECONDS = 0.3  # a second detach key within this sends the key through instead
READ_SIZE = 65536
HIGH_WATER = 64 * 1024  # terminal bytes buffered before this client stops taking events
EVENT_QUEUE_SIZE = 8  # events (at most 256 KiB each) held before the socket is left unread
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
EXIT_ERROR = 1

# Undo whatever the session's programs left on: CAN ends a sequence cut short, then alternate
# screen, margins, origin/insert/newline modes, charsets, cursor keys and keypad, mouse (all
# tracking modes and encodings), focus, bracketed paste, synchronized output, reverse video,
# cursor shape and visibility, attributes; the cursor goes to the last row for our message.
RESTORE = (
    b"\x18\x1b[?1049l\x1b[r\x1b[?6l\x1b[4l\x1b[20l\x1b[?7h\x1b(B\x1b)B\x0f\x1b[?1l\x1b>"
    b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l\x1b[?1015l\x1b[?1004l"
    b"\x1b[?2004l\x1b[?2026l\x1b[?5l\x1b[0 q\x1b[?25h\x1b[0m\x1b[999H"
)
# Before a snapshot: end any sequence cut short by dropped output; the snapshot expects a blank
# screen.
REPAINT = b"\x18\x1b[0m\x1b[H\x1b[2J"

NOT_A_TERMINAL = (
    "not a terminal: attach needs a terminal on stdin and stdout; from scripts use "
    "'ptyd send' and 'ptyd snapshot', or 'ptyd attach --no-tty' for a plain byte relay"
)


@dataclass(frozen=True)
class AttachOptions:
    detach_key: int | None  # None: no detach key (-E)
    is_read_only: bool
    is_plain: bool  # --no-tty: no raw mode, no snapshot, lossless byte relay
    from_offset: int | None


@dataclass(frozen=True)
class Ending:
    """Why the attachment ended: the command's exit status and the one line to print."""

    status: int
    message: str


def options_from(args: argparse.Namespace) -> AttachOptions:
    """Options from ``attach`` or ``new`` arguments (``new`` has no attach flags: defaults)."""
    is_plain = getattr(args, "no_tty", False)
    key = getattr(args, "detach_key", None)
    if key is None and not is_plain:  # a byte relay has no detach key unless -e asks for one
        key = DEFAULT_DETACH_KEY
    return AttachOptions(
        detach_key=None if getattr(args, "no_detach_key", False) else key,
        is_read_only=getattr(args, "read_only", False),
        is_plain=is_plain,
        from_offset=getattr(args, "from_offset", None),
    )


def require_terminal(args: argparse.Namespace) -> None:
    """Fail before anything is created when an interactive attach cannot work."""
    if not options_from(args).is_plain and not (os.isatty(0) and os.isatty(1)):
        raise PtydError(NOT_A_TERMINAL)


def attach_terminal(client: Client, target: Target, args: argparse.Namespace) -> int:
    """Attach this process's terminal to a session; return the command's exit status: 0 on
    detach, the session's status when it exits, 128+N on signal N, 1 when the daemon goes."""
    require_terminal(args)
    options = options_from(args)
    ending = uvloop.run(_attach(client.socket_path, target, options))
    print(ending.message, file=sys.stderr if options.is_plain else sys.stdout, flush=True)
    return ending.status


async def _attach(socket_path: Path, target: Target, options: AttachOptions) -> Ending:
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[Ending] = loop.create_future()
    # The handlers are in place before the terminal is touched and until it is restored: a
    # stop signal ends the attachment like any other ending.
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, _end_by_signal, ended, signum)
    client = await AsyncClient.connect(
        socket_path, client_name="ptyd-attach", event_queue_size=EVENT_QUEUE_SIZE
    )
    try:
        with Terminal(loop, 0, 1, is_raw=not options.is_plain) as terminal:
            return await Relay(client, terminal, options, ended).run(target)
    finally:
        await client.close()


def _end_by_signal(ended: asyncio.Future[Ending], signum: int) -> None:
    if not ended.done():
        name = signal.Signals(signum).name
        ended.set_result(Ending(128 + signum, f"[{name}: detached]"))


def describe_exit(code: int | None, signum: int | None) -> str:
    if signum is not None:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(signum).name}"
        return f"signal {signum}"
    return f"code {code}"


def terminal_size(fd: int) -> tuple[int, int]:
    """The terminal's columns and rows; 80x24 where it reports none or zero (a pty that
    ``script`` or a CI runner opened without a size), as tmux does."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24


class Terminal:
    """The user's terminal while attached: raw input, non-blocking buffered output; on exit
    RESTORE, then the saved termios and file flags."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd_in: int, fd_out: int, *, is_raw: bool
    ) -> None:
        self.loop = loop
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.is_raw = is_raw
        self._pending = bytearray()
        self._drained: asyncio.Future[None] | None = None
        self._saved_modes: list[Any] | None = None
        self._saved_blocking = {fd: os.get_blocking(fd) for fd in (fd_in, fd_out)}

    def __enter__(self) -> Terminal:
        self.take()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def take(self) -> None:
        """Raw input, non-blocking output (again, after a stop)."""
        if self.is_raw:
            self._saved_modes = termios.tcgetattr(self.fd_in)
            tty.setraw(self.fd_in, termios.TCSADRAIN)
        # A regular file never blocks and cannot be polled: writes to it stay blocking.
        if not stat.S_ISREG(os.fstat(self.fd_out).st_mode):
            os.set_blocking(self.fd_out, False)

    def release(self) -> None:
        """Give the terminal back as it was: on every ending, and while this process is stopped."""
        # Output still held goes only as far as the terminal takes it now: a reader that has
        # stopped must not keep us from restoring (an exit drains it before it gets here).
        with contextlib.suppress(OSError):
            while self._pending:
                del self._pending[: os.write(self.fd_out, self._pending)]
        self._pending.clear()
        self._wake(None)
        with contextlib.suppress(OSError):
            os.set_blocking(self.fd_out, True)
            final = RESTORE if self.is_raw else b""
            while final:
                final = final[os.write(self.fd_out, final) :]
        if self._saved_modes is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fd_in, termios.TCSADRAIN, self._saved_modes)
        for fd, is_blocking in self._saved_blocking.items():
            with contextlib.suppress(OSError):
                os.set_blocking(fd, is_blocking)

    def size(self) -> tuple[int, int]:
        return terminal_size(self.fd_out)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def write(self, data: bytes) -> None:
        """Write what the terminal takes now; keep the rest until it is writable."""
        if not self._pending:
            with contextlib.suppress(BlockingIOError):
                data = data[os.write(self.fd_out, data) :]
            if not data:
                return
            self.loop.add_writer(self.fd_out, self._on_writable)
        self._pending += data

    def discard(self) -> None:
        """Drop output not yet written: it is stale, a fresh snapshot follows."""
        self._pending.clear()

    async def drained(self) -> None:
        if not self._pending:
            return
        if self._drained is None:
            self._drained = self.loop.create_future()
        await asyncio.shield(self._drained)

    def _on_writable(self) -> None:
        try:
            del self._pending[: os.write(self.fd_out, self._pending)]
        except BlockingIOError:
            return
        except OSError as exc:
            self._pending.clear()
            self._wake(exc)
            return
        if not self._pending:
            self._wake(None)

    def _wake(self, exc: OSError | None) -> None:
        self.loop.remove_writer(self.fd_out)
        if self._drained is not None and not self._drained.done():
            if exc is None:
                self._drained.set_result(None)
            else:
                self._drained.set_exception(exc)
        self._drained = None


class Relay:
    """Keys to the session, output to the terminal, until ``ended`` has a result."""

    def __init__(
        self,
        client: AsyncClient,
        terminal: Terminal,
        options: AttachOptions,
        ended: asyncio.Future[Ending],
    ) -> None:
        self.client = client
        self.terminal = terminal
        self.options = options
        self.ended = ended
        self.loop = terminal.loop
        self.session = 0
        self.label = ""
        self._input = bytearray()
        self._sending: asyncio.Future[dict[str, Any]] | None = None  # the input request in flight
        self._is_input_idle = asyncio.Event()
        self._is_input_idle.set()
        self._armed_key: asyncio.TimerHandle | None = None
        self._is_reading = False
        self._is_pollable = True
        self._is_at_eof = False
        self._next_read: asyncio.Handle | None = None
        self._is_resize_due = False
        self._resizer: asyncio.Task[None] | None = None
        self._repainter: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None  # events held until the terminal drains
        self._skip_before = 0  # output before this offset is already on the repainted screen

    async def run(self, target: Target) -> Ending:
        options = self.options
        cols, rows = (None, None) if options.is_plain else self.terminal.size()
        attached = await self.client.attach(
            target,
            snapshot=None if options.is_plain else "ansi",
            policy="block" if options.is_plain else "resync",
            from_offset=options.from_offset,
            read_only=options.is_read_only,
            cols=cols,
            rows=rows,
        )
        self.session = attached.session.id
        self.label = attached.session.name or str(attached.session.id)
        self._note_offset(attached)
        if attached.snapshot:
            self.terminal.write(REPAINT + attached.snapshot)
        if not attached.session.is_running:
            info = attached.session
            return self._exited(info.exit_code, info.exit_signal)
        self.client.deliver_to(self._on_event)  # from here on, output goes straight out
        if self.reads_input:
            self._start_reading()
        if not (options.is_plain or options.is_read_only):
            self.loop.add_signal_handler(signal.SIGWINCH, self._on_resize)
        if not options.is_plain:
            self.loop.add_signal_handler(signal.SIGTSTP, self._on_suspend)
        try:
            ending = await self.ended
            self._stop_reading()
            if ending.status == 0:  # keys typed before the detach key reach the session
                await self._is_input_idle.wait()
            return ending
        except ConnectionFailed as exc:
            return Ending(EXIT_ERROR, f"[lost the ptyd daemon: {exc}]")
        finally:
            self._stop_reading()
            self.loop.remove_signal_handler(signal.SIGWINCH)
            self.loop.remove_signal_handler(signal.SIGTSTP)
            if self._armed_key is not None:
                self._armed_key.cancel()
            tasks = [t for t in (self._resizer, self._repainter, self._drainer) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def reads_input(self) -> bool:
        """A read-only terminal is still read, for the detach key; a read-only relay is not."""
        return not (self.options.is_plain and self.options.is_read_only)

    def _note_offset(self, attached: Attached) -> None:
        if self.options.from_offset is not None and not attached.resumed:
            print(
                f"ptyd: offset {self.options.from_offset} is no longer held; "
                f"output from offset {attached.offset}",
                file=sys.stderr,
            )

    def _end(self, ending: Ending) -> None:
        if not self.ended.done():
            self.ended.set_result(ending)

    def _exited(self, code: int | None, signum: int | None) -> Ending:
        status = 128 + signum if signum is not None else (code or 0)
        return Ending(status, f"[exited: {self.label}, {describe_exit(code, signum)}]")

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not self.ended.done():
            self.ended.set_exception(task.exception())  # type: ignore[arg-type]

    # -- output ------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """Each event as it arrives from the socket (no queue, no task in between)."""
        terminal = self.terminal
        if isinstance(event, OutputEvent) and event.session == self.session:
            if event.end <= self._skip_before:
                return
            terminal.write(event.data[max(self._skip_before - event.offset, 0) :])
            if terminal.pending > HIGH_WATER:
                self._hold_until_drained(None)  # meanwhile the daemon's flow control applies
        elif isinstance(event, LaggingEvent):
            terminal.discard()
        elif isinstance(event, SnapshotEvent) and not self.options.is_plain:
            terminal.write(REPAINT + event.data)
        elif isinstance(event, ExitEvent) and event.session == self.session:
            # The program's last output is part of the relay: end once it is shown.
            self._hold_until_drained(self._exited(event.code, event.signal))
        elif isinstance(event, ShutdownEvent):
            self._end(Ending(EXIT_ERROR, f"[ptyd daemon shutting down: {event.reason}]"))
        elif isinstance(event, ErrorEvent):
            self._end(Ending(EXIT_ERROR, f"[ptyd: {event.message}]"))
        elif isinstance(event, DisconnectedEvent):
            self._end(Ending(EXIT_ERROR, f"[lost the ptyd daemon: {event.reason}]"))

    def _hold_until_drained(self, ending: Ending | None) -> None:
        """Take no events until the terminal has taken what it holds; then end with
        ``ending`` if there is one, else go on."""
        self.client.pause_events()
        previous = self._drainer

        async def drain() -> None:
            if previous is not None:
                await previous  # an exit that arrives while output drains ends after it
            await self.terminal.drained()
            if ending is not None:
                self._end(ending)
            else:
                self.client.resume_events()

        self._drainer = self.loop.create_task(drain())
        self._drainer.add_done_callback(self._on_task_done)

    # -- input -------------------------------------------------------------------------------

    def _start_reading(self) -> None:
        if self._is_reading or self._is_at_eof:
            return
        self._is_reading = True
        if self._is_pollable:
            try:
                self.loop.add_reader(self.terminal.fd_in, self._on_readable)
                return
            except PermissionError:
                self._is_pollable = False  # a regular file or /dev/null: reading never blocks
        self._next_read = self.loop.call_soon(self._on_readable)

    def _stop_reading(self) -> None:
        self._is_reading = False
        if self._is_pollable:
            self.loop.remove_reader(self.terminal.fd_in)
        elif self._next_read is not None:
            self._next_read.cancel()

    def _on_readable(self) -> None:
        try:
            data = os.read(self.terminal.fd_in, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: the terminal hung up
        if not data:
            self._stop_reading()
            self._is_at_eof = True
            if not self.options.is_plain:
                self._end(Ending(EXIT_ERROR, "[the terminal closed]"))
            return  # --no-tty: end of input; output continues until the session exits
        if not self._queue_keys(data) or len(self._input) >= HIGH_WATER:
            self._stop_reading()  # detached, or the sender restarts reading once it has sent
        elif not self._is_pollable:
            self._next_read = self.loop.call_soon(self._on_readable)

    def _queue_keys(self, data: bytes) -> bool:
        """Queue keys for the session, handling the detach key; False if reading should stop."""
        key = self.options.detach_key
        keys = bytearray()
        if key is not None and self._armed_key is not None:
            self._armed_key.cancel()
            self._armed_key = None
            if data[0] != key:
                self._detach()
                return False
            keys.append(key)
            data = data[1:]
        while key is not None and (at := data.find(key)) >= 0:
            keys += data[:at]
            if at + 1 == len(data):
                self._armed_key = self.loop.call_later(DOUBLE_PRESS_SECONDS, self._detach)
                data = b""
            elif data[at + 1] == key:
                keys.append(key)
                data = data[at + 2 :]
            else:
                self._queue_input(keys)
                self._detach()
                return False
        keys += data
        self._queue_input(keys)
        return True

    def _detach(self) -> None:
        self._armed_key = None
        self._end(Ending(0, f"[detached from {self.label}]"))

    def _queue_input(self, keys: bytearray) -> None:
        if self.options.is_read_only or not keys:
            return
        self._input += keys
        self._is_input_idle.clear()
        if self._sending is None:
            self._send_next()  # at once, from the read callback: no task between key and socket

    def _send_next(self) -> None:
        """Send what is queued as one request; its response paces the next one."""
        if not self._input:
            self._sending = None
            self._is_input_idle.set()
            return
        data = bytes(self._input[: protocol.MAX_INPUT_CHUNK])
        del self._input[: len(data)]
        if not self.ended.done() and self.reads_input:
            self._start_reading()
        try:
            self._sending = self.client.submit("input", session=self.session, data=data)
        except ConnectionFailed as exc:
            self._fail(exc)
            return
        self._sending.add_done_callback(self._on_sent)

    def _on_sent(self, sent: asyncio.Future[dict[str, Any]]) -> None:
        exc = None if sent.cancelled() else sent.exception()
        if isinstance(exc, RequestError) and exc.code == errors.INPUT_OVERFLOW:
            self.terminal.write(b"\x07")  # the program is not reading: tell the user
        elif isinstance(exc, RequestError) and exc.code == errors.SESSION_EXITED:
            pass  # the exit event is on its way
        elif exc is not None:
            self._fail(exc)
            return
        self._send_next()

    def _fail(self, exc: BaseException) -> None:
        self._input.clear()
        self._sending = None
        self._is_input_idle.set()  # nothing more will be sent: never keep a detach waiting
        if not self.ended.done():
            self.ended.set_exception(exc)

    # -- stop and continue -------------------------------------------------------------------

    def _on_suspend(self) -> None:
        """SIGTSTP from outside (``kill -TSTP``, a job-control shell; Ctrl-Z itself goes to the
        session): give the terminal back while stopped, take it again on SIGCONT and repaint
        from a fresh snapshot, since output went on meanwhile."""
        self._stop_reading()
        self.terminal.release()
        os.kill(os.getpid(), signal.SIGSTOP)
        # Continued (fg, SIGCONT).
        if self.ended.done():
            return
        self.terminal.take()
        self._start_reading()
        if self._repainter is None or self._repainter.done():
            self._repainter = self.loop.create_task(self._repaint())
            self._repainter.add_done_callback(self._on_task_done)
        if not self.options.is_read_only:
            self._on_resize()  # the terminal may have changed size while we were stopped

    async def _repaint(self) -> None:
        try:
            snapshot = await self.client.snapshot(self.session, "ansi")
        except RequestError as exc:
            if exc.code != errors.NO_SUCH_SESSION:  # gone: the exit event is on its way
                raise
            return
        self._skip_before = snapshot.offset
        self.terminal.discard()
        self.terminal.write(REPAINT + snapshot.data)

    # -- size --------------------------------------------------------------------------------

    def _on_resize(self) -> None:
        self._is_resize_due = True
        if self._resizer is None or self._resizer.done():
            self._resizer = self.loop.create_task(self._send_size())
            self._resizer.add_done_callback(self._on_task_done)

    async def _send_size(self) -> None:
        while self._is_resize_due:
            self._is_resize_due = False
            cols, rows = self.terminal.size()
            try:
                await self.client.resize(self.session, cols, rows)
            except RequestError as exc:
                if exc.code != errors.SESSION_EXITED:
                    raise
