"""The attach relay's quiet loop (``_relay`` and its pure twin) on real pipes and a real socket
pair: this test plays the terminal and the daemon, the loop runs on a thread (it blocks in poll
until it has something for its caller)."""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ptyd import _fast_py, protocol

SESSION = 3
DETACH = 0x1C
# /proc/loadavg lines: one task runnable (this one), and more runnable than any machine's CPUs.
LOAD_IDLE = b"0.00 0.01 0.05 1/120 4242\n"
LOAD_BUSY = b"3.90 3.50 3.20 100000/100020 4242\n"


@dataclass
class Rig:
    core: object
    relay: ModuleType
    keys_w: int  # the terminal's keyboard (the loop reads the other end)
    screen_r: int  # the terminal's screen (the loop writes the other end)
    daemon: socket.socket
    wake_w: int
    pool: ThreadPoolExecutor

    def run(self, read_keys: bool = True, send_keys: bool = True, skip: int = 0) -> Future:
        return self.pool.submit(self.core.run, read_keys, send_keys, skip)  # type: ignore[attr-defined]

    def frames(self, count: int) -> list[dict]:
        """The next ``count`` frames the loop sent, decoded."""
        decoder = protocol.FrameDecoder(1 << 24)
        out: list = []
        while len(out) < count:
            out += decoder.feed(self.daemon.recv(1 << 16))
        return out

    def screen(self, size: int) -> bytes:
        shown = b""
        while len(shown) < size:
            assert select.select([self.screen_r], [], [], 10)[0], f"only {shown!r} shown"
            shown += os.read(self.screen_r, size - len(shown))
        return shown


@pytest.fixture(params=[0, 300], ids=["sleeping", "spinning"])
def rig(request: pytest.FixtureRequest, relay: ModuleType, tmp_path: Path) -> Iterator[Rig]:
    """Every behaviour holds whether the loop sleeps in poll or spins after sending keys."""
    load = tmp_path / "loadavg"
    load.write_bytes(LOAD_IDLE)
    keys_r, keys_w = os.pipe()
    screen_r, screen_w = os.pipe()
    wake_r, wake_w = os.pipe()
    ours, daemon = socket.socketpair()
    for fd in (keys_r, screen_w, wake_r, ours.fileno()):
        os.set_blocking(fd, False)
    daemon.settimeout(10)
    core = relay.RelayCore(
        keys_r, screen_w, ours.fileno(), wake_r, SESSION, DETACH, request.param, str(load)
    )
    with ThreadPoolExecutor(1) as pool:
        yield Rig(core, relay, keys_w, screen_r, daemon, wake_w, pool)
        os.write(wake_w, b"\x0f")  # a loop still running returns
    for fd in (keys_r, keys_w, screen_r, screen_w, wake_r, wake_w):
        os.close(fd)
    ours.close()
    daemon.close()


def output(offset: int, data: bytes, session: int = SESSION) -> bytes:
    """An output frame as the daemon's hot path builds it."""
    return _fast_py.encode_output(protocol.output_frame_prefix(session), offset, data)


def ok(request_id: int) -> bytes:
    return protocol.encode(protocol.ok_response(request_id, {}))


def test_keys_become_input_requests_paced_by_their_answers(rig: Rig) -> None:
    """Keys go out as one input request each; the daemon's answer lets the next keys go; the
    session's output is written to the terminal; anything else ends the run."""
    rig.core.next_id = 41  # type: ignore[attr-defined]
    running = rig.run()
    os.write(rig.keys_w, b"ls\r")
    assert rig.frames(1) == [{"type": "input", "id": 41, "session": SESSION, "data": b"ls\r"}]
    assert rig.core.input_request == 41  # type: ignore[attr-defined]
    rig.daemon.sendall(ok(41) + output(0, b"ls\r\n") + output(4, b"file\r\n"))
    assert rig.screen(10) == b"ls\r\nfile\r\n"
    os.write(rig.keys_w, b"x")  # sent only because the answer to 41 was recognised
    assert rig.frames(1) == [{"type": "input", "id": 42, "session": SESSION, "data": b"x"}]
    exit_event = protocol.encode({"type": "event", "event": "exit", "session": SESSION})
    rig.daemon.sendall(exit_event + output(10, b"after"))
    assert running.result(10) == (rig.relay.SOCKET, b"", exit_event + output(10, b"after"))
    assert (rig.core.next_id, rig.core.input_request) == (43, 42)  # type: ignore[attr-defined]


def test_the_frames_are_the_protocols(rig: Rig) -> None:
    """Byte for byte what protocol.encode_input builds, and what msgpack reads as the request."""
    running = rig.run()
    keys = bytes(b for b in range(256) if b != DETACH) * 15  # one write, one read (PIPE_BUF)
    os.write(rig.keys_w, keys)
    frame = protocol.encode_input(protocol.input_layout(SESSION), 1, keys)
    got = b""
    while len(got) < len(frame):
        got += rig.daemon.recv(1 << 17)
    assert got == frame
    os.write(rig.wake_w, b"\x01")
    assert running.result(10) == (rig.relay.WAKE, b"", b"")


def test_a_request_the_socket_does_not_take_is_handed_back(rig: Rig) -> None:
    """The daemon is not reading: the loop returns the unsent part of the input frame."""
    ours = socket.socket(fileno=os.dup(rig.core.sock_fd))  # type: ignore[attr-defined]
    ours.setblocking(False)
    with pytest.raises(BlockingIOError):
        while True:
            ours.send(b"\0" * 65536)
    ours.close()
    running = rig.run()
    os.write(rig.keys_w, b"keys")
    frame = protocol.encode_input(protocol.input_layout(SESSION), 1, b"keys")
    why, unsent, rest = running.result(10)
    assert (why, rest) == (rig.relay.UNSENT, b"")
    assert 0 < len(unsent) <= len(frame) and frame.endswith(unsent)


@pytest.mark.parametrize("case", ["detach key", "input in flight", "read only", "end of input"])
def test_keys_the_caller_must_see_are_handed_back(rig: Rig, case: str) -> None:
    keys = {"detach key": b"ab\x1ccd"}.get(case, b"abc")
    if case == "input in flight":
        rig.core.input_request = 9  # type: ignore[attr-defined]
    running = rig.run(send_keys=case != "read only")
    if case == "end of input":
        keys = b""
        os.close(rig.keys_w)  # the keyboard's end of the pipe: no writer left
        rig.keys_w = os.open(os.devnull, os.O_WRONLY)  # for the fixture to close
    else:
        os.write(rig.keys_w, keys)
    assert running.result(10) == (rig.relay.KEYS, keys, b"")


@pytest.mark.parametrize("case", ["error answer", "other session", "before skip", "half frame"])
def test_frames_the_caller_must_see_are_handed_back(rig: Rig, case: str) -> None:
    rig.core.input_request = 7  # type: ignore[attr-defined]
    error = protocol.encode(protocol.error_response(7, "input_overflow", "full"))
    frame = {
        "error answer": error,
        "other session": output(0, b"theirs", session=SESSION + 1),
        "before skip": output(90, b"old"),
        "half frame": output(100, b"partial")[:-3],
    }[case]
    running = rig.run(skip=100)
    rig.daemon.sendall(output(100, b"shown") + frame)
    assert running.result(10) == (rig.relay.SOCKET, b"", frame)
    assert rig.screen(5) == b"shown"


def test_output_the_terminal_does_not_take_is_handed_back(rig: Rig) -> None:
    """A full terminal: the loop returns what it could not write, then the frames after it."""
    filled = 0
    os.set_blocking(rig.core.fd_out, False)  # type: ignore[attr-defined]
    while True:
        try:
            filled += os.write(rig.core.fd_out, b"." * 4096)  # type: ignore[attr-defined]
        except BlockingIOError:
            break
    big = bytes(range(256)) * 256
    after = output(len(big), b"next")
    running = rig.run()
    rig.daemon.sendall(output(0, big) + after)
    why, held, rest = running.result(10)
    assert (why, rest) == (rig.relay.HELD, after)
    written = rig.screen(filled + len(big) - len(held))[filled:]
    assert written + held == big


def test_a_closed_connection_ends_the_run(rig: Rig) -> None:
    running = rig.run()
    rig.daemon.shutdown(socket.SHUT_RDWR)
    assert running.result(10) == (rig.relay.CLOSED, b"", b"")


@pytest.mark.parametrize("request_id", [1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1])
def test_answers_are_recognised_whatever_the_ids_width(rig: Rig, request_id: int) -> None:
    """msgpack writes the id of an answer in 1 to 5 bytes; each width is recognised."""
    rig.core.input_request = request_id  # type: ignore[attr-defined]
    running = rig.run()
    marker = protocol.encode({"type": "event", "event": "shutdown", "reason": "test"})
    rig.daemon.sendall(ok(request_id) + marker)
    assert running.result(10) == (rig.relay.SOCKET, b"", marker)
    assert rig.core.input_request == 0  # type: ignore[attr-defined]


# -- spinning ---------------------------------------------------------------------------------


def core_with(rig: Rig, spin_us: int, load_path: Path) -> object:
    """A loop on the rig's descriptors that spins up to ``spin_us`` after sending keys."""
    old: Any = rig.core
    fds = (old.fd_in, old.fd_out, old.sock_fd, old.wake_fd)
    return rig.relay.RelayCore(*fds, SESSION, DETACH, spin_us, str(load_path))


def cpu_after_one_key(rig: Rig, core: object, *, echo: bool, window: float = 0.2) -> float:
    """Seconds of CPU the loop's thread spends from one key (echoed by the daemon, or not)
    until it is woken ``window`` seconds later."""

    def run() -> tuple[tuple[int, bytes, bytes], float]:
        start = time.thread_time()
        result = core.run(True, True, 0)  # type: ignore[attr-defined]
        return result, time.thread_time() - start

    running = rig.pool.submit(run)
    os.write(rig.keys_w, b"k")
    assert rig.frames(1)[0]["data"] == b"k"
    if echo:
        rig.daemon.sendall(ok(1) + output(0, b"k"))
        assert rig.screen(1) == b"k"
    time.sleep(window)
    os.write(rig.wake_w, b"\x01")
    result, cpu = running.result(10)
    assert result == (rig.relay.WAKE, b"", b"")
    os.read(core.wake_fd, 1)  # type: ignore[attr-defined]
    return cpu


def test_keys_start_a_bounded_spin_while_a_cpu_is_idle(rig: Rig, tmp_path: Path) -> None:
    """With a CPU to spare the loop polls without sleeping after sending keys, for at most the
    spin time (0.2 s here): it burns CPU for that long (a share of it on a busy machine, as it
    yields), then sleeps until woken (0.4 s after the key)."""
    idle = tmp_path / "idle"
    idle.write_bytes(LOAD_IDLE)
    cpu = cpu_after_one_key(rig, core_with(rig, 200_000, idle), echo=False, window=0.4)
    assert 0.03 < cpu < 0.3


def test_the_echo_ends_the_spin(rig: Rig, tmp_path: Path) -> None:
    idle = tmp_path / "idle"
    idle.write_bytes(LOAD_IDLE)
    assert cpu_after_one_key(rig, core_with(rig, 1_000_000, idle), echo=True) < 0.05


@pytest.mark.parametrize("load", [LOAD_BUSY, None], ids=["busy", "no-load-figure"])
def test_no_spin_on_a_busy_machine_or_without_a_load_figure(
    rig: Rig, tmp_path: Path, load: bytes | None
) -> None:
    """More tasks runnable than CPUs (the spin would take a core from the work the echo waits
    for), or no /proc/loadavg to tell: the loop sleeps in poll at once."""
    path = tmp_path / "load"
    if load is not None:
        path.write_bytes(load)
    assert cpu_after_one_key(rig, core_with(rig, 1_000_000, path), echo=False) < 0.05


@pytest.mark.parametrize(
    ("line", "runnable"),
    [
        (b"0.79 0.86 0.98 2/81 12919\n", 2),
        (b"12.00 11.50 9.75 123/4567 89\n", 123),
        (b"", -1),
        (b"/81", -1),
        (b"0.79 0.86 0.98 x/81 1", -1),
        (b"no slash at all", -1),
        (b"1 2 3 1234567890/4 5", -1),  # more digits than an int holds: not trusted
    ],
)
def test_runnable_tasks_read_from_a_loadavg_line(
    relay: ModuleType, line: bytes, runnable: int
) -> None:
    assert relay.runnable_tasks(line) == runnable


# -- replies to the queries the daemon answers ----------------------------------------------

# Queries the daemon's emulator answers itself (DA1, DA2, DSR 5, CPR, DECXCPR), one that it does
# not (OSC 11: the background colour), and what a terminal answers to each.
ANSWERED_QUERIES = b"\x1b[c\x1b[>0c\x1b[5n\x1b[6n\x1b[?6n"
TERMINAL_REPLIES = b"\x1b[?1;2c\x1b[>0;276;0c\x1b[0n\x1b[5;7R\x1b[?5;7;1R"
OSC_QUERY = b"\x1b]11;?\x07"
OSC_REPLY = b"\x1b]11;rgb:0000/0000/0000\x07"
SHIFT_F3 = b"\x1b[1;2R"  # a key some terminals send, shaped as a cursor position report


def sent(rig: Rig, request_id: int) -> bytes:
    """The data of the next input request, which must have id ``request_id``."""
    (frame,) = rig.frames(1)
    assert (frame["type"], frame["id"]) == ("input", request_id), frame
    return bytes(frame["data"])


def show(rig: Rig, request_id: int, data: bytes) -> None:
    """The answer to input ``request_id``, then output, shown: the answer has been taken."""
    rig.daemon.sendall(ok(request_id) + output(0, data))
    assert rig.screen(len(data)) == data


def test_replies_to_the_queries_the_daemon_answers_are_dropped(rig: Rig) -> None:
    """The terminal answers the queries in the output it is shown; the program has the daemon's
    answers already: those replies are not sent, the answer to a query the daemon leaves
    (OSC 11) and the keys around them are. One reply per query: a second one is a key."""
    running = rig.run()
    shown = b"prompt" + ANSWERED_QUERIES + OSC_QUERY
    rig.daemon.sendall(output(0, shown))
    assert rig.screen(len(shown)) == shown
    os.write(rig.keys_w, b"a" + TERMINAL_REPLIES + OSC_REPLY + b"b")
    assert sent(rig, 1) == b"a" + OSC_REPLY + b"b"
    show(rig, 1, ANSWERED_QUERIES)
    os.write(rig.keys_w, TERMINAL_REPLIES)  # a read of replies alone sends nothing
    os.write(rig.keys_w, b"c")
    assert sent(rig, 2) == b"c"
    show(rig, 2, b"c")
    os.write(rig.keys_w, TERMINAL_REPLIES)  # none is awaited now
    assert sent(rig, 3) == TERMINAL_REPLIES
    os.write(rig.wake_w, b"\x01")
    assert running.result(10) == (rig.relay.WAKE, b"", b"")


def test_a_key_shaped_as_a_reply_goes_through_while_none_is_awaited(rig: Rig) -> None:
    """Shift-F3 is ``CSI 1;2R`` on some terminals, a cursor position report's shape: it is sent
    unless a report is awaited, and only one report per query is dropped."""
    running = rig.run()
    os.write(rig.keys_w, SHIFT_F3)
    assert sent(rig, 1) == SHIFT_F3
    show(rig, 1, b"\x1b[6n")
    os.write(rig.keys_w, b"\x1b[3;1R" + SHIFT_F3)
    assert sent(rig, 2) == SHIFT_F3
    show(rig, 2, b"x")
    os.write(rig.keys_w, SHIFT_F3)
    assert sent(rig, 3) == SHIFT_F3
    os.write(rig.wake_w, b"\x01")
    assert running.result(10) == (rig.relay.WAKE, b"", b"")


def test_a_reply_is_awaited_for_a_bounded_time(rig: Rig, tmp_path: Path) -> None:
    """A terminal that never answers a query must not make a later key vanish: the reply is
    awaited ``reply_wait_ms`` (here 0: the key comes after the wait), then the key is sent."""
    old: Any = rig.core
    fds = (old.fd_in, old.fd_out, old.sock_fd, old.wake_fd)
    rig.core = rig.relay.RelayCore(*fds, SESSION, DETACH, 0, str(tmp_path), True, 0)
    running = rig.run()
    rig.daemon.sendall(output(0, b"\x1b[6n\x1b[c"))
    assert rig.screen(7) == b"\x1b[6n\x1b[c"
    os.write(rig.keys_w, SHIFT_F3 + b"\x1b[?1;2c")
    assert sent(rig, 1) == SHIFT_F3 + b"\x1b[?1;2c"
    os.write(rig.wake_w, b"\x01")
    assert running.result(10) == (rig.relay.WAKE, b"", b"")


@pytest.mark.parametrize(
    ("query", "reply", "is_dropped"),
    [
        (b"\x1b[c", b"\x1b[?62;22c", True),
        (b"\x1b[0c", b"\x1b[?1;2c", True),
        (b"\x1b[>c", b"\x1b[>41;390;0c", True),
        (b"\x1b[>0c", b"\x1b[>0;276;0c", True),
        (b"\x1b[5n", b"\x1b[0n", True),
        (b"\x1b[6n", b"\x1b[24;80R", True),
        (b"\x1b[?6n", b"\x1b[?24;80R", True),
        (b"\x1b[?6n", b"\x1b[?24;80;1R", True),  # xterm adds the page
        (b"\x1b[1c", b"\x1b[?1;2c", False),  # the daemon answers DA1 with parameter 0 only
        (b"\x1b[=c", b"\x1bP!|00000000\x1b\\", False),  # DA3: not answered by the daemon
        (b"\x1b[>q", b"\x1bP>|xterm(390)\x1b\\", False),  # XTVERSION: likewise
        (b"\x1b[6n", b"\x1b[?24;80R", False),  # not the form asked for
        (b"\x1b[c", b"\x1b[>0;1c", False),
        (b"\x1b[6n", b"\x1b[;80R", False),
        (b"\x1b[6", b"\x1b[24;80R", False),  # a query cut off by the end of a read
        (b"\x1b[6$n", b"\x1b[24;80R", False),
    ],
)
def test_which_replies_are_awaited(
    relay: ModuleType, query: bytes, reply: bytes, is_dropped: bool
) -> None:
    """The queries the daemon's emulator answers, each awaiting its reply's form; the calls the
    control plane makes for output and keys it handles itself."""
    core = relay.RelayCore(0, 1, 2, 3, SESSION, DETACH)
    core.expect_replies(b"text" + query + b"more")
    keys = b"k" + reply + b"\x1b[A"
    assert core.drop_replies(keys) == (b"k\x1b[A" if is_dropped else keys)


def test_awaited_replies_are_bounded(relay: ModuleType) -> None:
    """At most 32 replies of a kind are awaited: a 33rd query forgets the oldest."""
    core = relay.RelayCore(0, 1, 2, 3, SESSION, DETACH)
    core.expect_replies(b"\x1b[6n" * 40)
    assert core.drop_replies(b"\x1b[1;1R" * 40) == b"\x1b[1;1R" * 8


def test_a_byte_relay_drops_nothing(relay: ModuleType) -> None:
    """``--no-tty``: the input is data, not a terminal's answers."""
    core = relay.RelayCore(0, 1, 2, 3, SESSION, DETACH, 0, relay.LOAD_PATH, False)
    core.expect_replies(b"\x1b[6n")
    assert core.drop_replies(b"\x1b[1;1R") == b"\x1b[1;1R"
