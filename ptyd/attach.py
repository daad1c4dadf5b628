"""Interactive attach: the user's terminal shows one session and types into it until the detach
key, the session's exit, the daemon's end or a signal; the terminal is restored on every path.

The terminal is repainted from the session's ``ansi`` snapshot, then output events are written as
they come. Output goes through the daemon's resync policy: when the terminal is slow this client
stops reading the socket, the daemon drops its backlog (``lagging``) and later sends a fresh
snapshot, which is painted on a cleared screen. ``--no-tty`` is a plain, lossless byte relay for
scripts.

The relay is one ``poll`` loop over the terminal, the command line's own connection and a
signal wake-up pipe: no event loop to import or run, so the command starts in a few tens of
milliseconds and a key crosses it with one read and one write each way.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import stat
import sys
import termios
import time
import tty

from . import _backend as backend
from . import errors, protocol
from ._record import record
from .blocking import BlockingConnection, answer_of
from .errors import (
    ConfigError,
    ConnectionFailed,
    ProtocolError,
    PtydError,
    RequestError,
    SessionNotFound,
)
from .records import SessionInfo, Target
from .repaint import REPAINT, RESTORE

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

    from .handoff import Handoff

DEFAULT_DETACH_KEY = 0x1C  # Ctrl-\, as dtach and abduco
DOUBLE_PRESS_SECONDS = 0.3  # a second detach key within this sends the key through instead
READ_SIZE = 65536  # terminal input per read
SOCKET_READ_SIZE = 256 * 1024
HIGH_WATER = 64 * 1024  # terminal bytes buffered before this client stops taking events
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
EXIT_ERROR = 1
# After sending keys, poll for their echo without sleeping this long, while a core is idle
# (``_relay_py`` says why): about a fifth off the echo's median on a 2-vCPU VM.
DEFAULT_SPIN_US = 300
MAX_SPIN_US = 100_000
# -A: a session that another ``attach -A`` is starting has its name taken before it can be
# found (the daemon registers it once its program has exec'd). The daemon announces no new
# sessions, so the attach is asked again, after pauses that grow from the first to the last,
# for at most this long.
STARTING_WAIT_SECONDS = 5.0
STARTING_PAUSES = (0.01, 0.2)

NOT_A_TERMINAL = (
    "not a terminal: attach needs a terminal on stdin and stdout; from scripts use "
    "'ptyd send' and 'ptyd snapshot', or 'ptyd attach --no-tty' for a plain byte relay"
)


@record
class AttachOptions:
    detach_key: int | None  # None: no detach key (-E)
    is_read_only: bool
    is_plain: bool  # --no-tty: no raw mode, no snapshot, lossless byte relay
    from_offset: int | None
    spin_us: int = 0  # after keys, poll for the echo without sleeping this long (idle cores)
    may_be_starting: bool = False  # -A: another client may be starting the session right now


@record
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
        spin_us=spin_us_from(args),
        may_be_starting=getattr(args, "create", False),
    )


def spin_us_from(args: argparse.Namespace) -> int:
    """``--spin-us``, else ``PTYD_SPIN_US``, else the default."""
    given = getattr(args, "spin_us", None)
    if given is not None:
        return int(given)
    text = os.environ.get("PTYD_SPIN_US", "")
    if not text:
        return DEFAULT_SPIN_US
    try:
        return parse_spin_us(text)
    except ValueError as exc:
        raise ConfigError(f"invalid PTYD_SPIN_US {text!r}: {exc}") from None


def parse_spin_us(text: str) -> int:
    value = int(text) if text.strip().isdigit() else -1
    if not 0 <= value <= MAX_SPIN_US:
        raise ValueError(f"expected microseconds from 0 to {MAX_SPIN_US}")
    return value


def require_terminal(args: argparse.Namespace) -> None:
    """Fail before anything is created when an interactive attach cannot work."""
    if not options_from(args).is_plain and not (os.isatty(0) and os.isatty(1)):
        raise PtydError(NOT_A_TERMINAL)


def attach_terminal(
    connection: BlockingConnection,
    target: Target,
    args: argparse.Namespace,
    handoff: Handoff | None = None,
) -> int:
    """Attach this process's terminal to a session over ``connection``; return the command's
    exit status: 0 on detach, the session's status when it exits, 128+N on signal N, 1 when
    the daemon goes. With a ``handoff`` the ``ptyd`` starter has attached already and shown
    the screen: the relay goes on from there."""
    require_terminal(args)
    options = options_from(args)
    terminal = Terminal(0, 1, is_raw=not options.is_plain)
    relay = Relay(connection, terminal, options)
    if handoff is not None:
        terminal.saved_modes = handoff.saved_modes
        terminal.is_painted = True  # with the session's screen
        relay.attached = handoff.attached
        handoff.is_taken = True  # the relay gives the terminal back from here
    ending = relay.run(target)
    print(ending.message, file=sys.stderr if options.is_plain else sys.stdout, flush=True)
    return ending.status


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A stop signal's handler: its number reaches the loop through the wake-up pipe."""


def describe_exit(code: int | None, signum: int | None) -> str:
    if signum is not None:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(signum).name}"
        return f"signal {signum}"
    return f"code {code}"


def terminal_size(fd: int) -> tuple[int, int]:
    """The size to give a session shown on this terminal: its columns and rows, 80x24 where it
    reports none or zero (a pty that ``script`` or a CI runner opened without a size), as tmux
    does, and at most ``protocol.MAX_SIZE`` each (a larger terminal shows the session in its
    top left corner)."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 80, 24
    limit = protocol.MAX_SIZE
    return min(size.columns or 80, limit), min(size.lines or 24, limit)


class Terminal:
    """The user's terminal while attached: raw input, non-blocking buffered output; on release
    RESTORE (once a session was shown on it), then the saved termios and file flags."""

    def __init__(self, fd_in: int, fd_out: int, *, is_raw: bool) -> None:
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.is_raw = is_raw
        self._pending = bytearray()
        # Whether a session was shown: an attach refused before that (no such session) leaves
        # the screen and the cursor where they were, for the error to follow the command.
        self.is_painted = False
        # The modes to give back; set before ``take`` when someone else made the terminal raw.
        self.saved_modes: list[Any] | None = None
        self._saved_blocking = {fd: os.get_blocking(fd) for fd in (fd_in, fd_out)}

    def take(self) -> None:
        """Raw input, non-blocking output (again, after a stop)."""
        if self.is_raw:
            if self.saved_modes is None:
                self.saved_modes = termios.tcgetattr(self.fd_in)
            tty.setraw(self.fd_in, termios.TCSADRAIN)
        # A regular file never blocks: writes to it stay blocking.
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
        with contextlib.suppress(OSError):
            os.set_blocking(self.fd_out, True)
            final = RESTORE if self.is_raw and self.is_painted else b""
            while final:
                final = final[os.write(self.fd_out, final) :]
        if self.saved_modes is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fd_in, termios.TCSADRAIN, self.saved_modes)
            self.saved_modes = None
        for fd, is_blocking in self._saved_blocking.items():
            with contextlib.suppress(OSError):
                os.set_blocking(fd, is_blocking)

    def size(self) -> tuple[int, int]:
        return terminal_size(self.fd_out)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def write(self, data: bytes) -> None:
        """Write what the terminal takes now; keep the rest for ``flush``. OSError if the
        terminal is gone."""
        if not self._pending:
            with contextlib.suppress(BlockingIOError):
                data = data[os.write(self.fd_out, data) :]
            if not data:
                return
        self._pending += data

    def flush(self) -> None:
        """Write more of what is held (the terminal became writable)."""
        with contextlib.suppress(BlockingIOError):
            del self._pending[: os.write(self.fd_out, self._pending)]

    def discard(self) -> None:
        """Drop output not yet written: it is stale, a fresh snapshot follows."""
        self._pending.clear()


class Relay:
    """Keys to the session, output to the terminal, in one poll loop until an ending."""

    def __init__(
        self, connection: BlockingConnection, terminal: Terminal, options: AttachOptions
    ) -> None:
        self.connection = connection
        self.sock = connection.sock
        self.terminal = terminal
        self.options = options
        self.session = 0
        self.label = ""
        self.ending: Ending | None = None
        self._exit: Ending | None = None  # the session exited: end once its output is shown
        self._outgoing = bytearray()  # request frames the socket has not taken yet
        self._in_flight: dict[int, str] = {}  # request id -> kind
        self._input = bytearray()  # keys not yet sent
        self._input_request: int | None = None  # the one input request in flight
        self._detach_deadline: float | None = None  # a detach key waits for a second press
        self._is_at_eof = False
        self._is_reading = False
        self._is_resize_due = False
        self._resize_request: int | None = None
        self._repaint_request: int | None = None
        self._skip_before = 0  # output before this offset is already on the repainted screen
        self._core: Any = None  # the quiet loop (_relay or its pure twin), once attached
        self._poller = select.poll()
        self._masks: dict[int, int] = {}  # what the poller watches now, by fd
        self._output_prefix = b""  # the layout of this session's output frames
        # The attach's answer when the ``ptyd`` starter attached and showed its snapshot.
        self.attached: dict[str, Any] | None = None

    def run(self, target: Target) -> Ending:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        handled = list(STOP_SIGNALS)
        if not (self.options.is_plain or self.options.is_read_only):
            handled.append(signal.SIGWINCH)
        if not self.options.is_plain:
            handled.append(signal.SIGTSTP)
        # The handlers are in place before the terminal is touched and until it is restored: a
        # stop signal ends the attachment like any other ending. They do nothing themselves:
        # each signal's number arrives as a byte on the wake-up pipe, which the loop polls.
        previous = {signum: signal.signal(signum, _ignore) for signum in handled}
        previous_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        if self.attached is not None:  # the starter held them until now: handled from here
            from .handoff import unblock_signals

            unblock_signals()
        try:
            self.terminal.take()
            try:
                return self._relay(target, wake_r)
            except ConnectionFailed as exc:
                return Ending(EXIT_ERROR, f"[lost the ptyd daemon: {exc}]")
            finally:
                self.terminal.release()
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)

    def _relay(self, target: Target, wake_r: int) -> Ending:
        options = self.options
        self._poller.register(wake_r, select.POLLIN)
        result = self.attached or self._attach(target, wake_r)
        if result is None:
            assert self.ending is not None
            return self.ending
        self.terminal.is_painted = True  # the session's screen and modes from here on
        info = SessionInfo.from_wire(result["session"])
        self.session = info.id
        self._output_prefix = protocol.output_frame_prefix(info.id)
        self.label = info.name or str(info.id)
        if options.from_offset is not None and not result.get("resumed"):
            past = options.from_offset > result["offset"]
            print(
                f"ptyd: offset {options.from_offset} is "
                f"{'past the end of the output' if past else 'no longer held'}; "
                f"output from offset {result['offset']}",
                file=sys.stderr,
            )
        if result.get("snapshot") and self.attached is None:
            self._show(REPAINT + result["snapshot"])
        # An exited session's answer is followed by any replayed output, then its exit event:
        # the loop below shows both and ends there.
        self.sock.setblocking(False)
        self._is_reading = self.reads_input
        # The core exists before any output is shown: it awaits the terminal's replies to the
        # queries there that the daemon answers, and drops them from the keys (a byte relay's
        # input is data: every byte is sent).
        self._core = backend.relay.RelayCore(
            self.terminal.fd_in,
            self.terminal.fd_out,
            self.sock.fileno(),
            wake_r,
            self.session,
            -1 if options.detach_key is None else options.detach_key,
            options.spin_us,
            filters_replies=not options.is_plain,
        )
        while self.connection.events:  # output read together with the attach answer
            self._on_event(self.connection.events.popleft())
        while not self._is_done():
            if self._is_quiet():
                self._run_core(wake_r)
            else:
                self._wait_once(wake_r)
        assert self.ending is not None
        return self.ending

    def _attach(self, target: Target, wake_r: int) -> dict[str, Any] | None:
        """The ``attach`` answer; None if a stop signal ended the wait for it. With -A the
        session may be one that another ``attach -A`` is starting: its name is taken but it
        cannot be found yet, so the attach is asked again until it can, for a bounded time."""
        options = self.options
        deadline = time.monotonic() + STARTING_WAIT_SECONDS
        pause, longest = STARTING_PAUSES
        while True:
            cols, rows = (None, None) if options.is_plain else self.terminal.size()
            try:
                return self.connection.request(
                    "attach",
                    session=target,
                    snapshot=None if options.is_plain else "ansi",
                    policy="block" if options.is_plain else "resync",
                    from_offset=options.from_offset,
                    read_only=options.is_read_only,
                    cols=cols,
                    rows=rows,
                )
            except SessionNotFound:
                if not options.may_be_starting:
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SessionNotFound(
                        errors.NO_SUCH_SESSION,
                        f"no session {target!r}: it did not appear within "
                        f"{STARTING_WAIT_SECONDS:g} s",
                    ) from None
            # On the wake-up pipe, not a sleep: a stop signal ends the wait at once.
            self._poller.poll(int(min(pause, remaining) * 1000) + 1)
            self._on_wake(wake_r)
            if self.ending is not None:
                return None
            pause = min(pause * 2, longest)

    @property
    def reads_input(self) -> bool:
        """A read-only terminal is still read, for the detach key; a read-only relay is not."""
        return not (self.options.is_plain and self.options.is_read_only)

    def _is_done(self) -> bool:
        if self.ending is None:
            return False
        # Keys typed before the detach key reach the session first.
        return self.ending.status != 0 or (not self._input and self._input_request is None)

    def _end(self, ending: Ending) -> None:
        if self.ending is None:
            self.ending = ending
            self._is_reading = False

    def _exited(self, code: int | None, signum: int | None) -> Ending:
        status = 128 + signum if signum is not None else (code or 0)
        return Ending(status, f"[exited: {self.label}, {describe_exit(code, signum)}]")

    # -- the loop ----------------------------------------------------------------------------

    def _wait_once(self, wake_r: int) -> None:
        """One poll over what is wanted now, then everything that became ready."""
        terminal = self.terminal
        self._watch()
        timeout = None
        if self._detach_deadline is not None:
            timeout = max(0, int((self._detach_deadline - time.monotonic()) * 1000) + 1)
        for fd, events in self._poller.poll(timeout):
            if fd == wake_r:
                self._on_wake(wake_r)
            elif fd == self.sock.fileno():
                if events & select.POLLOUT:
                    self._flush_socket()
                if events & ~select.POLLOUT:
                    self._read_socket()
            elif fd == terminal.fd_out and events & ~select.POLLIN:
                self._flush_terminal()
            if fd == terminal.fd_in and events & ~select.POLLOUT and self._is_reading:
                self._read_terminal()
        if self._detach_deadline is not None and time.monotonic() >= self._detach_deadline:
            self._detach()

    def _watch(self) -> None:
        """Watch the terminal and the socket for what the relay can take now."""
        terminal = self.terminal
        wants = {terminal.fd_in: 0, terminal.fd_out: 0, self.sock.fileno(): 0}
        if self._is_reading:
            wants[terminal.fd_in] |= select.POLLIN
        if terminal.pending:
            wants[terminal.fd_out] |= select.POLLOUT
        # Output waits in the daemon (its flow control applies) while the terminal is behind or
        # the session's last output is being shown.
        if terminal.pending <= HIGH_WATER and self._exit is None and self.ending is None:
            wants[self.sock.fileno()] |= select.POLLIN
        elif self.ending is not None and self._input_request is not None:
            wants[self.sock.fileno()] |= select.POLLIN  # the last keys' answer
        if self._outgoing:
            wants[self.sock.fileno()] |= select.POLLOUT
        for fd, mask in wants.items():
            if self._masks.get(fd, 0) == mask:
                continue
            self._masks[fd] = mask
            if mask:
                self._poller.register(fd, mask)
            else:
                self._poller.unregister(fd)

    # -- the quiet loop ----------------------------------------------------------------------

    def _is_quiet(self) -> bool:
        """Nothing but keys and output to move: the compiled loop can relay on its own."""
        return (
            self.ending is None
            and self._exit is None
            and not self.terminal.pending
            and not self._outgoing
            and not self._input
            and self._detach_deadline is None
            and not self.connection.decoder.buffered
        )

    def _run_core(self, wake_r: int) -> None:
        """Relay in the quiet loop until it needs this one, then take over what it hands back."""
        core = self._core
        before = self._input_request or 0
        core.input_request = before
        core.next_id = self.connection.next_id
        why, data, rest = core.run(
            self._is_reading, not self.options.is_read_only, self._skip_before
        )
        self.connection.next_id = core.next_id
        if core.input_request != before:  # the core had this answer, or sent keys itself
            self._in_flight.pop(before, None)
            self._input_request = core.input_request or None
            if core.input_request:
                self._in_flight[core.input_request] = "input"
        if why == backend.relay.WAKE:
            self._on_wake(wake_r)
        elif why == backend.relay.KEYS:
            self._on_keys(data)
        elif why == backend.relay.UNSENT:
            self._outgoing += data
        elif why == backend.relay.CLOSED:
            raise ConnectionFailed("the daemon closed the connection")
        else:  # SOCKET, HELD: output the terminal did not take, then the frames after it
            if data:
                self._show(data)
            if rest:
                self._on_socket_data(rest)

    # -- the socket --------------------------------------------------------------------------

    def _send(self, kind: str, **fields: Any) -> int:
        request_id, frame = self.connection.frame(kind, **fields)
        self._in_flight[request_id] = kind
        self._outgoing += frame
        self._flush_socket()  # at once, from where the key was read: no wait in between
        return request_id

    def _flush_socket(self) -> None:
        try:
            del self._outgoing[: self.sock.send(self._outgoing)]
        except BlockingIOError:
            pass  # the socket is full: the rest goes once poll says it is writable
        except OSError as exc:
            raise ConnectionFailed(f"connection lost: {exc}") from None

    def _read_socket(self) -> None:
        try:
            data = self.sock.recv(SOCKET_READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            raise ConnectionFailed(f"connection lost: {exc}") from None
        if not data:
            raise ConnectionFailed("the daemon closed the connection")
        self._on_socket_data(data)

    def _on_socket_data(self, data: bytes) -> None:
        try:
            bodies = self.connection.decoder.feed_bodies(data)
        except ProtocolError as exc:
            raise ConnectionFailed(f"protocol error from the daemon: {exc}") from None
        for body in bodies:
            # Output, nearly every frame, is read from its fixed layout; the rest is decoded.
            output = protocol.parse_output(body, self._output_prefix)
            if output is not None:
                self._on_output(*output)
                continue
            message = protocol.decode_body(body)
            if isinstance(message, ProtocolError):
                raise ConnectionFailed(f"protocol error from the daemon: {message}")
            if message.get("type") == "event":
                self._on_event(message)
            elif message.get("type") == "response":
                self._on_response(message)

    def _on_response(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        kind = self._in_flight.pop(request_id, None) if isinstance(request_id, int) else None
        try:
            result = answer_of(message)  # an answer with no id is a refusal: raised here
        except RequestError as exc:
            if kind == "input" and exc.code == errors.INPUT_OVERFLOW:
                self._show(b"\x07")  # the program is not reading: tell the user
            elif not (
                (kind in ("input", "resize") and exc.code == errors.SESSION_EXITED)
                or (kind == "snapshot" and exc.code == errors.NO_SUCH_SESSION)
            ):  # an exited or vanished session: its exit event is on its way
                raise
            result = None
        if request_id == self._input_request:
            self._input_request = None
            self._send_input()
        elif request_id == self._resize_request:
            self._resize_request = None
            self._send_size()
        elif request_id == self._repaint_request:
            self._repaint_request = None
            if result is not None:
                self._skip_before = result["offset"]
                self.terminal.discard()
                self._show(REPAINT + result["data"])

    # -- output ------------------------------------------------------------------------------

    def _on_event(self, message: dict[str, Any]) -> None:
        name, session = message.get("event"), message.get("session")
        if name == "output" and session == self.session:
            self._on_output(message["offset"], message["data"])
        elif name == "lagging" and session == self.session:
            self.terminal.discard()
        elif name == "snapshot" and session == self.session and not self.options.is_plain:
            self._show(REPAINT + message["data"])
        elif name == "exit" and session == self.session:
            # The program's last output is part of the relay: end once it is shown.
            self._exit = self._exited(message.get("code"), message.get("signal"))
            self._flush_terminal()
        elif name == "shutdown":
            self._end(Ending(EXIT_ERROR, f"[ptyd daemon shutting down: {message.get('reason')}]"))
        elif name == "error":
            self._end(Ending(EXIT_ERROR, f"[ptyd: {message.get('message')}]"))

    def _on_output(self, offset: int, data: bytes) -> None:
        if offset + len(data) > self._skip_before:
            shown = data[max(self._skip_before - offset, 0) :]
            self._core.expect_replies(shown)
            self._show(shown)

    def _show(self, data: bytes) -> None:
        try:
            self.terminal.write(data)
        except OSError:
            self._lost_terminal()

    def _flush_terminal(self) -> None:
        try:
            self.terminal.flush()
        except OSError:
            self._lost_terminal()
        if self._exit is not None and not self.terminal.pending:
            self._end(self._exit)

    def _lost_terminal(self) -> None:
        self.terminal.discard()
        self._end(Ending(EXIT_ERROR, "[the terminal closed]"))

    # -- input -------------------------------------------------------------------------------

    def _read_terminal(self) -> None:
        try:
            data = os.read(self.terminal.fd_in, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: the terminal hung up
        if data:
            data = self._core.drop_replies(data)  # the terminal's replies the daemon gave
            if not data:
                return
        self._on_keys(data)

    def _on_keys(self, data: bytes) -> None:
        if not data:
            self._is_reading = False
            self._is_at_eof = True
            if not self.options.is_plain:
                self._end(Ending(EXIT_ERROR, "[the terminal closed]"))
            return  # --no-tty: end of input; output continues until the session exits
        if self._queue_keys(data) and len(self._input) >= HIGH_WATER:
            self._is_reading = False  # until the queued keys are sent

    def _queue_keys(self, data: bytes) -> bool:
        """Queue keys for the session, handling the detach key; False once detached."""
        key = self.options.detach_key
        keys = bytearray()
        if key is not None and self._detach_deadline is not None:
            self._detach_deadline = None
            if data[0] != key:
                self._detach()
                return False
            keys.append(key)
            data = data[1:]
        while key is not None and (at := data.find(key)) >= 0:
            keys += data[:at]
            if at + 1 == len(data):
                self._detach_deadline = time.monotonic() + DOUBLE_PRESS_SECONDS
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
        self._detach_deadline = None
        self._end(Ending(0, f"[detached from {self.label}]"))

    def _queue_input(self, keys: bytearray) -> None:
        if self.options.is_read_only or not keys:
            return
        self._input += keys
        if self._input_request is None:
            self._send_input()

    def _send_input(self) -> None:
        """Send what is queued as one request; its answer paces the next one."""
        if not self._input:
            return
        data = bytes(self._input[: protocol.MAX_INPUT_CHUNK])
        del self._input[: len(data)]
        if self.ending is None and self.reads_input and not self._is_at_eof:
            self._is_reading = True
        self._input_request = self._send("input", session=self.session, data=data)

    # -- signals: stop, continue, size ----------------------------------------------------

    def _on_wake(self, wake_r: int) -> None:
        with contextlib.suppress(BlockingIOError):
            for signum in os.read(wake_r, 512):
                self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGWINCH:
            if self.session:  # before the attach, each attempt sends the size it reads
                self._on_resize()
        elif signum == signal.SIGTSTP:
            self._on_suspend()
        else:
            self._end(Ending(128 + signum, f"[{signal.Signals(signum).name}: detached]"))

    def _on_suspend(self) -> None:
        """SIGTSTP from outside (``kill -TSTP``, a job-control shell; Ctrl-Z itself goes to the
        session): give the terminal back while stopped, take it again on SIGCONT and repaint
        from a fresh snapshot, since output went on meanwhile."""
        self.terminal.release()
        os.kill(os.getpid(), signal.SIGSTOP)
        # Continued (fg, SIGCONT).
        self.terminal.take()
        if self.ending is not None or not self.session:  # ended, or nothing attached to repaint
            return
        if self._repaint_request is None:
            self._repaint_request = self._send("snapshot", session=self.session, format="ansi")
        if not self.options.is_read_only:
            self._on_resize()  # the terminal may have changed size while we were stopped

    def _on_resize(self) -> None:
        self._is_resize_due = True
        if self._resize_request is None:
            self._send_size()

    def _send_size(self) -> None:
        if self._is_resize_due:
            self._is_resize_due = False
            cols, rows = self.terminal.size()
            self._resize_request = self._send("resize", session=self.session, cols=cols, rows=rows)
