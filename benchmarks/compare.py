"""ptyd next to the peers installed here, on the same workloads: a table of medians and ratios.

Run: python -m benchmarks.compare [--quick] [--many] [--only WORKLOADS] [--size MIB]
     [--backends compiled,pure]

Tools: ptyd (each backend), tmux, dtach, abduco and GNU screen when they are on PATH, and a raw
PTY reader (the harness reading the program's PTY itself: the physical limit). Nothing is
installed: an absent peer is skipped and the table says so. Every terminal client runs in a PTY
the harness drains, as a user's terminal does. Ratios are against ptyd (compiled) in this run;
nothing here asserts an absolute time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib.util
import os
import platform
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.terminal_text import generate
from ptyd import protocol
from ptyd.client import AsyncClient, Client
from ptyd.events import OutputEvent
from tests.conftest import Daemon, start_daemon
from tests.helpers import kill_tree

SENTINEL = b"PTYD-BENCH-END"
SCREEN_END = b"SCREEN-END"
COLS, ROWS = 80, 24
HISTORY_LIMIT = 20000  # lines of history every tool that keeps one is configured to hold
TIMEOUT = 30.0  # seconds a library call may take before the measurement fails
SILENCE = 5.0  # seconds without output after which a terminal measurement fails
# Echo keys: two letters that never end an escape sequence, so a redraw cannot fake an echo.
KEYS = [bytes((a, b)) for a in b"abeijkopqvwyz" for b in b"abeijkopqvwyz"]


@dataclass(frozen=True)
class Plan:
    """How much of each workload to run."""

    size: int  # bytes of terminal text for the throughput runs
    repeats: int  # runs per throughput figure (the median is reported)
    echoes: int  # keystrokes per latency figure
    attaches: int  # attach/snapshot runs
    scrollback: int  # lines of history behind the snapshot
    session_counts: tuple[int, ...]  # idle sessions for the memory figure
    client_counts: tuple[int, ...]  # idle ptyd connections for the memory figure
    fanout: int  # attached clients for the fan-out figure
    readers: tuple[int, ...]  # socket readers for the daemon's own fan-out figure
    flood_seconds: float  # measuring window of the concurrent-flood figure


FULL = Plan(16 << 20, 3, 1000, 20, 10_000, (1, 10, 100), (10, 100), 10, (1, 10), 3.0)
QUICK = Plan(1 << 20, 1, 20, 3, 1_000, (10,), (10,), 2, (1, 2), 0.5)
# --many: what the default run leaves out because it takes minutes (1,000 PTYs and processes).
MANY_SESSIONS = 1000
MANY_CLIENTS = 1000
MANY_READERS = 100
WORKLOADS = ("throughput", "echo", "attach", "memory", "fanout", "floods")


# -- terminals the harness drains ---------------------------------------------------------------


def _own_terminal() -> None:
    """In the child: make the PTY on stdin the controlling terminal, as a terminal window does."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _open_pty(is_raw: bool) -> tuple[int, int]:
    master, slave = os.openpty()
    if is_raw:
        tty.setraw(slave)  # no local echo could pass for the client's: it owns every byte
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    os.set_blocking(master, False)
    return master, slave


class Terminal:
    """A program on a PTY whose output the harness reads (and mostly throws away)."""

    def __init__(self, argv: list[str], env: dict[str, str], is_client: bool = True) -> None:
        self.master, slave = _open_pty(is_client)
        self.process = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_own_terminal,
        )
        os.close(slave)
        self.tail = b""
        self.is_closed = False

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def drain(self, marker: bytes) -> bool:
        """Read what is there; true once ``marker`` has appeared (across read boundaries)."""
        while True:
            try:
                chunk = os.read(self.master, 1 << 16)
            except BlockingIOError:
                return False
            except OSError:
                chunk = b""
            if not chunk:
                self.is_closed = True
                return False
            window = self.tail + chunk
            if marker in window:
                self.tail = b""
                return True
            self.tail = window[-len(marker) :]

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 9)
        self.process.wait()
        os.close(self.master)


def wait_for(terminals: list[Terminal], marker: bytes, silence: float = SILENCE) -> None:
    """Drain every terminal until each has shown ``marker``; fail after ``silence`` seconds
    without output (a peer that dropped the marker never shows it)."""
    pending = set(terminals)
    with selectors.DefaultSelector() as selector:
        for terminal in terminals:
            selector.register(terminal.master, selectors.EVENT_READ, terminal)
        while pending:
            ready = selector.select(silence)
            if not ready:
                raise TimeoutError(f"{marker!r} not shown after {silence:.0f} s of silence")
            for key, _ in ready:
                terminal = key.data
                if terminal.drain(marker):
                    pending.discard(terminal)
                if terminal.is_closed:
                    selector.unregister(terminal.master)
                    if terminal in pending:
                        raise RuntimeError(f"client {terminal.process.args} ended early")


# -- the tools -----------------------------------------------------------------------------------


class Tool:
    """One way of running a program in a session: create detached, attach a terminal, stop."""

    name = ""
    binary = ""
    has_screen = True  # keeps screen state (attach repaints the screen)

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {**os.environ, "TERM": "xterm-256color"}

    def new(self, name: str, command: str) -> None:
        raise NotImplementedError

    def attach_argv(self, name: str) -> list[str] | None:
        raise NotImplementedError

    def server_pids(self) -> list[int]:
        """Processes that hold the sessions (not the programs in them); run with no client."""
        return _pids_of(self.binary, str(self.tmp))

    def stop(self) -> None:
        # The programs too: a peer's child may ignore the hang-up (dtach's flood loops did).
        for pid in self.server_pids():
            kill_tree(pid)

    def reset(self) -> None:
        """End every session: the next workload starts from nothing."""
        self.stop()


class Tmux(Tool):
    name = binary = "tmux"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        conf = tmp / "tmux.conf"
        conf.write_text(f"set -g status off\nset -g history-limit {HISTORY_LIMIT}\n")
        self.base = ["tmux", "-S", str(tmp / "tmux.sock"), "-f", str(conf)]

    def new(self, name: str, command: str) -> None:
        argv = ["new-session", "-d", "-s", name, "-x", str(COLS), "-y", str(ROWS), command]
        subprocess.run(self.base + argv, env=self.env, check=True)

    def attach_argv(self, name: str) -> list[str]:
        return [*self.base, "attach", "-t", name]

    def snapshot_argv(self, name: str, scrollback: int) -> list[str]:
        return [*self.base, "capture-pane", "-p", "-S", f"-{scrollback}", "-t", name]

    def control_argv(self, name: str) -> list[str]:
        return [*self.base, "-C", "attach", "-t", name]

    def stop(self) -> None:
        panes = subprocess.run(
            [*self.base, "list-panes", "-a", "-F", "#{pane_pid}"],
            env=self.env,
            check=False,
            capture_output=True,
            text=True,
        )
        for pane in panes.stdout.split():
            kill_tree(int(pane))
        subprocess.run([*self.base, "kill-server"], env=self.env, check=False, capture_output=True)


class Dtach(Tool):
    name = binary = "dtach"
    has_screen = False

    def new(self, name: str, command: str) -> None:
        path = self.tmp / f"{name}.dtach"
        subprocess.run(
            ["dtach", "-n", str(path), "-Ez", "sh", "-c", command], env=self.env, check=True
        )
        _wait_path(path)

    def attach_argv(self, name: str) -> list[str]:
        return ["dtach", "-a", str(self.tmp / f"{name}.dtach"), "-Ez"]


class Abduco(Tool):
    name = binary = "abduco"
    has_screen = False

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.env["ABDUCO_SOCKET_DIR"] = str(tmp)

    def new(self, name: str, command: str) -> None:
        subprocess.run(["abduco", "-n", name, "sh", "-c", command], env=self.env, check=True)

    def attach_argv(self, name: str) -> list[str]:
        return ["abduco", "-a", name]

    def server_pids(self) -> list[int]:
        return _pids_of("abduco", "-n")


class Screen(Tool):
    name = binary = "screen"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        screendir = tmp / "screen"
        screendir.mkdir(mode=0o700)
        self.env["SCREENDIR"] = str(screendir)
        self.rc = tmp / "screenrc"
        self.rc.write_text(f"startup_message off\ndefscrollback {HISTORY_LIMIT}\n")
        self.sockets = screendir

    def new(self, name: str, command: str) -> None:
        argv = ["screen", "-c", str(self.rc), "-dmS", name, "sh", "-c", command]
        subprocess.run(argv, env=self.env, check=True)
        deadline = time.monotonic() + 10
        while not any(p.name.endswith("." + name) for p in self.sockets.iterdir()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"screen session {name} did not appear")
            time.sleep(0.005)  # polling for a peer's socket file: it has no readiness signal

    def attach_argv(self, name: str) -> list[str]:
        return ["screen", "-c", str(self.rc), "-x", name]


# The ``ptyd`` command as installed beside this interpreter (the C starter, which shows an
# attach's first screen and runs the Python command line); ``python -m ptyd`` in a checkout used
# without installing it (the starter is built by ``pip install``).
_INSTALLED = Path(sys.executable).parent / "ptyd"
PTYD_COMMAND = [str(_INSTALLED)] if _INSTALLED.is_file() else [sys.executable, "-m", "ptyd"]


class Ptyd(Tool):
    binary = "ptyd"

    def __init__(self, tmp: Path, backend: str) -> None:
        super().__init__(tmp)
        # The command line runs from bytecode, as installed (pip compiles it; a checkout writes
        # __pycache__ on the first run), not recompiled at every start.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        if backend == "pure":  # the attach client too runs its pure relay loop
            self.env["PTYD_PURE"] = "1"
        self.backend = backend
        self.name = "ptyd" if backend == "compiled" else f"ptyd-{backend}"
        self.socket = tmp / f"{backend}.sock"
        self.has_terminal = importlib.util.find_spec("ptyd.attach") is not None
        self._start()

    def _start(self) -> None:
        self.daemon: Daemon = start_daemon(
            self.socket,
            self.backend,
            "--scrollback",
            str(HISTORY_LIMIT),
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.client = Client(self.socket, timeout=TIMEOUT)

    def new(self, name: str, command: str) -> None:
        self.client.create(["sh", "-c", command], name=name, cols=COLS, rows=ROWS)

    def attach_argv(self, name: str) -> list[str] | None:
        if not self.has_terminal:
            return None
        cli = [*PTYD_COMMAND, "-S", str(self.socket), "--no-autostart"]
        return [*cli, "attach", name]

    def server_pids(self) -> list[int]:
        return [self.daemon.process.pid]

    def stop(self) -> None:
        self.client.close()
        self.daemon.stop()

    def reset(self) -> None:
        self.stop()
        self._start()


PEERS: tuple[type[Tool], ...] = (Tmux, Dtach, Abduco, Screen)


def _pids_of(binary: str, tag: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip().lower()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm.startswith(binary) and tag in cmdline:
            pids.append(int(entry.name))
    return pids


def _wait_path(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.005)  # polling for a peer's socket file: it has no readiness signal


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# -- workloads ------------------------------------------------------------------------------------


def attach_terminals(tool: Tool, name: str, count: int) -> list[Terminal]:
    """``count`` terminal clients on one session, each confirmed by a keystroke echoed to it."""
    argv = tool.attach_argv(name)
    assert argv is not None
    terminals: list[Terminal] = []
    for i in range(count):
        terminals.append(Terminal(argv, tool.env))
        marker = f"k{i}q".encode()
        terminals[-1].type(marker)
        wait_for(terminals[-1:], marker)
    return terminals


def close_all(terminals: list[Terminal]) -> None:
    for terminal in terminals:
        terminal.close()


def throughput_terminal(tool: Tool, path: Path, size: int, clients: int, run: int) -> float:
    """MB/s from the keystroke that starts ``cat`` until every client has shown the sentinel."""
    name = f"tp{clients}x{run}"
    tool.new(name, f"read x; cat {path}; exec cat")
    terminals = attach_terminals(tool, name, clients)
    try:
        start = time.perf_counter()
        terminals[0].type(b"\r")
        wait_for(terminals, SENTINEL)
        return size / (time.perf_counter() - start) / 1e6
    finally:
        close_all(terminals)


def throughput_raw(path: Path, size: int, run: int) -> float:
    """The harness reads the program's PTY itself: no daemon, no client, no screen."""
    terminal = Terminal(["sh", "-c", f"read x; cat {path}; exec cat"], dict(os.environ), False)
    try:
        terminal.type(b"kq")
        wait_for([terminal], b"kq")
        start = time.perf_counter()
        terminal.type(b"\r")
        wait_for([terminal], SENTINEL)
        return size / (time.perf_counter() - start) / 1e6
    finally:
        terminal.close()


async def _throughput_library(tool: Ptyd, path: Path, size: int, clients: int, run: int) -> float:
    name = f"lib{clients}x{run}"
    tool.new(name, f"read x; cat {path}; exec cat")
    conns = [await AsyncClient.connect(tool.socket) for _ in range(clients)]
    try:
        for conn in conns:  # lossless: a client that falls behind pauses the program
            await conn.attach(name, snapshot=None, policy="block")

        async def until_sentinel(conn: AsyncClient) -> None:
            tail = b""
            while True:
                event = await conn.next_event(TIMEOUT)
                if isinstance(event, OutputEvent):
                    window = tail + event.data
                    if SENTINEL in window:
                        return
                    tail = window[-len(SENTINEL) :]

        start = time.perf_counter()
        await conns[0].send(name, b"\r")
        await asyncio.gather(*(until_sentinel(conn) for conn in conns))
        return size / (time.perf_counter() - start) / 1e6
    finally:
        for conn in conns:
            await conn.close()


def throughput_library(tool: Ptyd, path: Path, size: int, clients: int, run: int) -> float:
    """MB/s through the Python client library (asyncio), every client seeing every byte."""
    return asyncio.run(_throughput_library(tool, path, size, clients, run))


def _echo_samples(
    type_key: Callable[[bytes], None], wait_key: Callable[[bytes], None], n: int
) -> list[float]:
    samples = []
    for i in range(n):
        key = KEYS[i % len(KEYS)]
        start = time.perf_counter()
        type_key(key)
        wait_key(key)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


ECHO = "stty raw -echo; exec cat"


def echo_terminal(tool: Tool, n: int, flood: Path | None) -> list[float]:
    """Milliseconds from a key typed into the client's terminal until it shows there."""
    name = "echo-flood" if flood else "echo"
    tool.new(name, ECHO)
    if flood:
        tool.new(name + "-src", f"while :; do cat {flood}; done")
    [terminal] = attach_terminals(tool, name, 1)
    try:
        return _echo_samples(terminal.type, lambda key: wait_for([terminal], key), n)
    finally:
        terminal.close()


def echo_raw(n: int, flood: Path | None) -> list[float]:
    terminal = Terminal(["sh", "-c", ECHO], dict(os.environ), False)
    flooder = None
    if flood:
        flooder = Terminal(["sh", "-c", f"while :; do cat {flood}; done"], dict(os.environ), False)
    try:
        terminal.type(b"kq")
        wait_for([terminal], b"kq")
        if flooder is None:
            return _echo_samples(terminal.type, lambda key: wait_for([terminal], key), n)
        with _draining(flooder):
            return _echo_samples(terminal.type, lambda key: wait_for([terminal], key), n)
    finally:
        terminal.close()
        if flooder is not None:
            flooder.close()


@contextlib.contextmanager
def _draining(terminal: Terminal) -> Iterator[None]:
    """Read a flooding PTY on a thread, as its own reader would (raw baseline only)."""
    import threading

    stop = threading.Event()

    def drain() -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(terminal.master, selectors.EVENT_READ)
            while not stop.is_set():
                if selector.select(0.1):
                    terminal.drain(SENTINEL)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


async def _echo_library(tool: Ptyd, n: int, flood: Path | None) -> list[float]:
    name = "lecho-flood" if flood else "lecho"
    tool.new(name, ECHO)
    if flood:
        tool.new(name + "-src", f"while :; do cat {flood}; done")
    conn = await AsyncClient.connect(tool.socket)
    try:
        await conn.attach(name, snapshot=None)
        samples = []
        for i in range(n):
            key = KEYS[i % len(KEYS)]
            start = time.perf_counter()
            sent = asyncio.ensure_future(conn.send(name, key))
            while True:
                event = await conn.next_event(TIMEOUT)
                if isinstance(event, OutputEvent) and key in event.data:  # sent in one write
                    break
            samples.append((time.perf_counter() - start) * 1e3)
            await sent
        return samples
    finally:
        await conn.close()


def echo_library(tool: Ptyd, n: int, flood: Path | None) -> list[float]:
    """Milliseconds from ``send`` until the echo arrives as an output event."""
    return asyncio.run(_echo_library(tool, n, flood))


def _history_command(lines: int) -> str:
    return f"seq -f 'history line %g' 1 {lines}; printf '{SCREEN_END.decode()}'; exec cat"


def attach_time_terminal(tool: Tool, runs: int, lines: int) -> list[float]:
    """Milliseconds from starting the attach command until its screen's last row is shown."""
    name = "scr"
    tool.new(name, _history_command(lines))
    argv = tool.attach_argv(name)
    assert argv is not None
    first = Terminal(argv, tool.env)
    try:
        wait_for([first], SCREEN_END)  # the session has printed everything
    finally:
        first.close()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        terminal = Terminal(argv, tool.env)
        try:
            wait_for([terminal], SCREEN_END)
            samples.append((time.perf_counter() - start) * 1e3)
        finally:
            terminal.close()
    return samples


def snapshot_time_tmux(tool: Tmux, runs: int, lines: int) -> list[float]:
    """Milliseconds for ``tmux capture-pane`` of the screen and its history (a process)."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            tool.snapshot_argv("scr", lines), env=tool.env, check=True, capture_output=True
        )
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def attach_time_control_mode(tool: Tmux, runs: int) -> list[float]:
    """Milliseconds for what a program hosting terminals does with tmux: start ``tmux -C
    attach`` and get the 80x24 screen with its attributes (``capture-pane -p -e``) through it.
    The session is the one ``attach_time_terminal`` made, its screen already printed."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        control = subprocess.Popen(
            tool.control_argv("scr"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=tool.env
        )
        assert control.stdin is not None and control.stdout is not None
        try:
            control.stdin.write(b"capture-pane -p -e -t scr\n")
            control.stdin.flush()
            shown = b""
            # The capture's output block ends with a %end line after the screen's last row.
            while not ((at := shown.find(SCREEN_END)) >= 0 and b"\n%end " in shown[at:]):
                chunk = os.read(control.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"tmux -C ended before the screen: {shown[-200:]!r}")
                shown += chunk
            samples.append((time.perf_counter() - start) * 1e3)
        finally:
            control.stdin.close()  # end of commands: the control client detaches and exits
            control.wait(TIMEOUT)
            control.stdout.close()
    return samples


async def _attach_library(tool: Ptyd, runs: int, lines: int) -> tuple[list[float], list[float]]:
    name = "lscr"
    tool.new(name, _history_command(lines))
    conn = await AsyncClient.connect(tool.socket)
    try:
        # From offset 0 (the replay ring): the history may be printed before the attach.
        await conn.attach(name, snapshot=None, from_offset=0)
        tail = b""
        while SCREEN_END not in tail:
            event = await conn.next_event(TIMEOUT)
            if isinstance(event, OutputEvent):
                tail = (tail + event.data)[-64:]
        attach_ms, snapshot_ms = [], []
        for _ in range(runs):
            start = time.perf_counter()
            fresh = await AsyncClient.connect(tool.socket)
            await fresh.attach(name, snapshot="ansi")
            attach_ms.append((time.perf_counter() - start) * 1e3)
            await fresh.close()
            start = time.perf_counter()
            snap = await conn.snapshot(name, "text", scrollback=lines)
            snapshot_ms.append((time.perf_counter() - start) * 1e3)
            assert snap.data.count("history line") >= lines - ROWS, "the history is held"
        return attach_ms, snapshot_ms
    finally:
        await conn.close()


def attach_library(tool: Ptyd, runs: int, lines: int) -> tuple[list[float], list[float]]:
    """Milliseconds to connect and attach with an 80x24 ANSI snapshot; and for a text
    snapshot with ``lines`` of history on an open connection."""
    return asyncio.run(_attach_library(tool, runs, lines))


def memory_sessions(tool: Tool, count: int) -> float:
    """MiB resident in the processes holding ``count`` idle sessions (each running cat)."""
    for i in range(count):
        tool.new(f"m{count}x{i}", "exec cat")
    return sum(rss_bytes(pid) for pid in tool.server_pids()) / 2**20


async def _memory_clients(tool: Ptyd, count: int) -> float:
    conns = [await AsyncClient.connect(tool.socket) for _ in range(count)]
    try:
        await conns[-1].stats()  # every hello answered: the daemon holds them all
        return rss_bytes(tool.daemon.process.pid) / 2**20
    finally:
        for conn in conns:
            await conn.close()


def memory_clients(tool: Ptyd, count: int) -> float:
    """Daemon MiB with ``count`` idle connected clients (and whatever sessions exist)."""
    return asyncio.run(_memory_clients(tool, count))


class SocketClient:
    """A minimal blocking client on a raw socket: prebuilt frames, no asyncio, no event objects;
    what is measured through it is the daemon's own cost."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.decoder = protocol.FrameDecoder(1 << 26)
        self.next_id = 1

    def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        request_id = self.next_id
        self.next_id += 1
        self.sock.sendall(protocol.encode(protocol.request(request_id, kind, **fields)))
        return self.wait(lambda m: m.get("id") == request_id)

    def wait(self, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            for message in self.decoder.feed(chunk):
                if isinstance(message, dict) and accept(message):
                    return message

    def hello(self) -> None:
        self.request("hello", version=protocol.VERSION_TEXT, features=[], client="benchmarks")

    def close(self) -> None:
        self.sock.close()


def echo_socket(tool: Ptyd, n: int, flood: Path | None) -> list[float]:
    """Milliseconds from sending an input request until its echo arrives, through a minimal
    blocking socket client: the daemon's share of the terminal client's echo."""
    name = "secho-flood" if flood else "secho"
    tool.new(name, ECHO)
    if flood:
        tool.new(name + "-src", f"while :; do cat {flood}; done")
    client = SocketClient(tool.socket)
    try:
        client.hello()
        client.request("attach", session=name, snapshot=None)
        samples = []
        for i in range(n):
            key = KEYS[i % len(KEYS)]
            frame = protocol.encode(protocol.request(1000 + i, "input", session=name, data=key))
            start = time.perf_counter()
            client.sock.sendall(frame)
            client.wait(lambda m, key=key: m.get("event") == "output" and key in m["data"])
            samples.append((time.perf_counter() - start) * 1e3)
        return samples
    finally:
        client.close()


class OutputSkimmer:
    """Follows the frames of one connection by their length prefixes and keeps the last bytes
    of one session's output stream, without decoding anything (output frames have a fixed
    layout). Other frames (responses, flow events) are skipped: a flow event after the last
    output must not push the stream's tail out."""

    def __init__(self, session_id: int) -> None:
        self.prefix = protocol.output_frame_prefix(session_id)
        self.skip = len(self.prefix) + 19  # offset and bin header
        self.header = bytearray()
        self.lead = bytearray()  # the current frame's first bytes, to compare with the prefix
        self.remaining = 0  # body bytes of the current frame still to come
        self.position = 0  # body bytes of the current frame seen so far
        self.tail = bytearray()

    def feed(self, chunk: bytes) -> None:
        pos, end = 0, len(chunk)
        while pos < end:
            if self.remaining == 0:
                take = min(4 - len(self.header), end - pos)
                self.header += chunk[pos : pos + take]
                pos += take
                if len(self.header) == 4:
                    self.remaining = int.from_bytes(self.header, "big")
                    self.position = 0
                    self.header.clear()
                    self.lead.clear()
                continue
            take = min(self.remaining, end - pos)
            if self.position < len(self.prefix):
                self.lead += chunk[pos : pos + min(take, len(self.prefix) - self.position)]
            start = max(pos, pos + self.skip - self.position)  # the data part of this piece
            if start < pos + take and self.lead == self.prefix:
                self.tail += chunk[max(start, pos + take - 64) : pos + take]
                del self.tail[:-64]
            self.position += take
            self.remaining -= take
            pos += take


def fanout_sockets(tool: Ptyd, path: Path, size: int, readers: int) -> float:
    """MB/s of each of ``readers`` raw-socket subscribers of one session printing ``path``
    (block policy: every byte to every reader). The readers parse only the length prefixes,
    so this is the daemon's fan-out rather than the clients' decoding."""
    name = f"fan{readers}"
    tool.new(name, f"read x; cat {path}; exec cat")
    clients: list[SocketClient] = []
    try:
        skimmers = {}
        for _ in range(readers):  # one at a time: at most 64 may wait for their hello
            clients.append(client := SocketClient(tool.socket))
            client.hello()
            reply = client.request("attach", session=name, snapshot=None, policy="block")
            assert client.decoder.buffered == 0  # nothing is printed before the Enter key
            skimmers[client.sock.fileno()] = OutputSkimmer(reply["result"]["session"]["id"])
        with selectors.DefaultSelector() as selector:
            for client in clients:
                client.sock.setblocking(False)
                selector.register(client.sock, selectors.EVENT_READ, client)
            start = time.perf_counter()
            clients[0].sock.sendall(
                protocol.encode(protocol.request(99, "input", session=name, data=b"\r"))
            )
            pending = len(clients)
            while pending:
                ready = selector.select(SILENCE)
                if not ready:
                    raise TimeoutError(f"{SENTINEL!r} not delivered after {SILENCE:.0f} s")
                for key, _ in ready:
                    sock = key.data.sock
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        raise ConnectionError("the daemon closed a reader")
                    skimmer = skimmers[sock.fileno()]
                    skimmer.feed(chunk)
                    if SENTINEL in skimmer.tail:
                        selector.unregister(sock)
                        pending -= 1
            return size / (time.perf_counter() - start) / 1e6
    finally:
        for client in clients:
            client.close()


def memory_subscribers(tool: Ptyd, count: int) -> tuple[float, float]:
    """Daemon KiB per idle connection, and per idle attached subscriber on top of that."""
    tool.new("msub", "exec cat")
    clients: list[SocketClient] = []
    try:
        before = rss_bytes(tool.daemon.process.pid)
        for _ in range(count):
            clients.append(SocketClient(tool.socket))
            clients[-1].hello()
        connected = rss_bytes(tool.daemon.process.pid)
        for client in clients:
            client.request("attach", session="msub", snapshot="ansi")
        attached = rss_bytes(tool.daemon.process.pid)
        return (connected - before) / count / 1024, (attached - connected) / count / 1024
    finally:
        for client in clients:
            client.close()


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def floods(tool: Ptyd, flood: Path, sessions: int, seconds: float) -> tuple[float, float]:
    """Total MB/s read from ``sessions`` detached sessions each printing ``flood`` in a loop,
    and the daemon's CPU over the same window (100% = one core)."""
    for i in range(sessions):
        tool.new(f"flood{sessions}x{i}", f"while :; do cat {flood}; done")
    time.sleep(min(1.0, seconds))  # warm-up: every flood running; a window, not a sync point

    def total() -> int:
        return sum(info.bytes_out for info in tool.client.list_sessions())

    pid = tool.daemon.process.pid
    out, ticks, start = total(), _cpu_ticks(pid), time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - start
    mbps = (total() - out) / elapsed / 1e6
    cpu = (_cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK") / elapsed * 100
    return mbps, cpu


def floods_raw(flood: Path, sessions: int, seconds: float) -> float:
    """The same floods read by the harness from PTYs of its own (a thread per PTY)."""
    import threading

    terminals = [
        Terminal(["sh", "-c", f"while :; do cat {flood}; done"], dict(os.environ), False)
        for _ in range(sessions)
    ]
    counts = [0] * sessions
    stop = threading.Event()

    def drain(index: int) -> None:
        master = terminals[index].master
        os.set_blocking(master, True)
        while not stop.is_set():
            try:
                counts[index] += len(os.read(master, 1 << 16))
            except OSError:
                return

    threads = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(sessions)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(min(1.0, seconds))
        before, start = sum(counts), time.perf_counter()
        time.sleep(seconds)
        return (sum(counts) - before) / (time.perf_counter() - start) / 1e6
    finally:
        stop.set()
        for terminal in terminals:
            terminal.close()  # ends the reads: EIO
        for thread in threads:
            thread.join()


# -- the run and the table ----------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    unit: str
    better: str  # "higher" or "lower"
    values: dict[str, float | str]


class Table:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, workload: str, unit: str, better: str) -> Row:
        row = Row(workload, unit, better, {})
        self.rows.append(row)
        return row

    def render(self, tools: list[str]) -> str:
        header = ["workload", "unit", *tools]
        lines = [header]
        for row in self.rows:
            reference = row.values.get("ptyd")
            cells = [row.workload, row.unit]
            for tool in tools:
                value = row.values.get(tool, "")
                if isinstance(value, float):
                    text = f"{value:.3g}" if value < 1000 else f"{value:.0f}"
                    if isinstance(reference, float) and tool != "ptyd" and value > 0:
                        text += f" ({reference / value:.2g}x)"
                    cells.append(text)
                else:
                    cells.append(value)
            lines.append(cells)
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = [
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines
        ]
        out.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(out)


def measure(row: Row, tool: str, action: Callable[[], float | list[float]]) -> None:
    """Record the median of ``action`` for ``tool``, or why it could not be measured."""
    try:
        result = action()
    except Exception as exc:  # one failed measurement must not lose the rest of the table
        row.values[tool] = f"failed: {type(exc).__name__}"
        print(f"  {tool}: {row.workload}: {exc!r}", file=sys.stderr)
        return
    if isinstance(result, list):
        result = statistics.median(result)
    row.values[tool] = float(result)


def _p99(samples: list[float]) -> float:
    return sorted(samples)[max(0, round(0.99 * len(samples)) - 1)]


def run(
    plan: Plan,
    backends: list[str],
    log: Callable[[str], None],
    workloads: tuple[str, ...] = WORKLOADS,
) -> tuple[Table, list[str], list[str]]:
    """Measure every available tool on ``workloads``; returns the table, the tool columns and
    notes."""
    notes: list[str] = []
    table = Table()
    with tempfile.TemporaryDirectory(prefix="ptyd-b-", dir="/tmp") as tmp_name:
        tmp = Path(tmp_name)
        text = tmp / "text.txt"
        body = generate(plan.size)
        text.write_bytes(body + SENTINEL + b"\n")
        size = text.stat().st_size
        flood = tmp / "flood.txt"
        flood.write_bytes(generate(1 << 20, seed=5))

        tools: list[Tool] = []
        for backend in backends:
            tools.append(Ptyd(tmp, backend))
        for peer in PEERS:
            if shutil.which(peer.binary):
                tools.append(peer(tmp))
            else:
                notes.append(f"{peer.binary}: not installed, skipped")
        if not tools[0].attach_argv("x"):
            notes.append(
                "ptyd: no terminal attach in this build (ptyd.attach): terminal rows skipped"
            )
        elif PTYD_COMMAND[0] != str(_INSTALLED):
            notes.append(
                f"ptyd: no ptyd command at {_INSTALLED} (pip install builds it): terminal "
                "clients run as python -m ptyd"
            )
        columns = ["raw", *(tool.name for tool in tools)]
        mib = f"{size / 2**20:.0f} MiB"

        try:
            if "throughput" in workloads:
                _throughput(table, tools, plan, text, size, mib, log)
            if "echo" in workloads:
                _echo(table, tools, plan, flood, log)
            if "attach" in workloads:
                _attach(table, tools, plan, log)
            if "memory" in workloads:
                _memory(table, tools, plan, log)
            if "fanout" in workloads:
                _fanout(table, tools, plan, text, size, mib, log)
            if "floods" in workloads:
                _floods(table, tools, plan, flood, log)
        finally:
            for tool in tools:
                tool.stop()
    return table, columns, notes


def _throughput(
    table: Table,
    tools: list[Tool],
    plan: Plan,
    text: Path,
    size: int,
    mib: str,
    log: Callable[[str], None],
) -> None:
    log("throughput")
    term = table.add(f"cat {mib}, one terminal client", "MB/s", "higher")
    lib = table.add(f"cat {mib}, library client", "MB/s", "higher")
    measure(term, "raw", partial(_repeat, plan.repeats, throughput_raw, text, size))
    lib.values["raw"] = term.values["raw"]
    for tool in tools:
        if tool.attach_argv("x"):
            measure(
                term,
                tool.name,
                partial(_repeat, plan.repeats, throughput_terminal, tool, text, size, 1),
            )
        if isinstance(tool, Ptyd):
            measure(
                lib,
                tool.name,
                partial(_repeat, plan.repeats, throughput_library, tool, text, size, 1),
            )
    _reset(tools)


def _echo(
    table: Table, tools: list[Tool], plan: Plan, flood: Path, log: Callable[[str], None]
) -> None:
    log("echo latency")
    for flood_path, label in ((None, "idle"), (flood, "another session flooding")):
        median_row = table.add(f"echo median, {label}", "ms", "lower")
        p99_row = table.add(f"echo p99, {label}", "ms", "lower")
        _echo_rows(median_row, p99_row, "raw", partial(echo_raw, plan.echoes, flood_path))
        for tool in tools:
            echo = echo_library if _is_library_only(tool) else echo_terminal
            _echo_rows(median_row, p99_row, tool.name, partial(echo, tool, plan.echoes, flood_path))
            tool.reset()
        # The daemon's share: the same echo through a minimal socket client (no asyncio).
        median_row = table.add(f"echo median, socket client, {label}", "ms", "lower")
        p99_row = table.add(f"echo p99, socket client, {label}", "ms", "lower")
        for tool in tools:
            if isinstance(tool, Ptyd):
                action = partial(echo_socket, tool, plan.echoes, flood_path)
                _echo_rows(median_row, p99_row, tool.name, action)
                tool.reset()


def _attach(table: Table, tools: list[Tool], plan: Plan, log: Callable[[str], None]) -> None:
    log("attach and snapshot")
    attach_row = table.add("attach, 80x24 screen shown by the client", "ms", "lower")
    lib_row = table.add("attach with an ANSI snapshot, library / tmux -C", "ms", "lower")
    snap_row = table.add(f"snapshot, {plan.scrollback} lines of history", "ms", "lower")
    for tool in tools:
        if tool.has_screen and tool.attach_argv("x"):
            runs = plan.attaches
            measure(
                attach_row,
                tool.name,
                partial(attach_time_terminal, tool, runs, plan.scrollback),
            )
        elif not tool.has_screen:
            attach_row.values[tool.name] = "n/a: no screen"
        if isinstance(tool, Ptyd):
            snapshots: list[float] = []
            library = partial(attach_library, tool, plan.attaches, plan.scrollback)
            measure(lib_row, tool.name, partial(_first_of_two, library, snapshots))
            if snapshots:
                snap_row.values[tool.name] = statistics.median(snapshots)
        elif isinstance(tool, Tmux):
            measure(lib_row, tool.name, partial(attach_time_control_mode, tool, plan.attaches))
            measure(
                snap_row,
                tool.name,
                partial(snapshot_time_tmux, tool, plan.attaches, plan.scrollback),
            )
        tool.reset()


def _memory(table: Table, tools: list[Tool], plan: Plan, log: Callable[[str], None]) -> None:
    log("memory")
    for count in plan.session_counts:
        row = table.add(f"RSS, {count} idle sessions", "MiB", "lower")
        for tool in tools:
            measure(row, tool.name, partial(memory_sessions, tool, count))
            tool.reset()
    for count in plan.client_counts:
        row = table.add(f"RSS, {count} idle clients", "MiB", "lower")
        for tool in tools:
            if isinstance(tool, Ptyd):
                measure(row, tool.name, partial(memory_clients, tool, count))
    count = max(plan.client_counts)
    conn_row = table.add(f"daemon KiB per idle connection, {count}", "KiB", "lower")
    sub_row = table.add(f"daemon KiB per idle subscriber, {count}", "KiB", "lower")
    for tool in tools:
        if isinstance(tool, Ptyd):
            tool.reset()  # a fresh daemon: memory freed by the clients above would be reused
            per: list[float] = []
            action = partial(_first_of_pair, partial(memory_subscribers, tool, count), per)
            measure(conn_row, tool.name, action)
            if per:
                sub_row.values[tool.name] = per[0]
            tool.reset()


def _fanout(
    table: Table,
    tools: list[Tool],
    plan: Plan,
    text: Path,
    size: int,
    mib: str,
    log: Callable[[str], None],
) -> None:
    log("fan-out")
    fan = table.add(f"cat {mib} to {plan.fanout} clients (each)", "MB/s", "higher")
    for tool in tools:
        if _is_library_only(tool):
            action = partial(throughput_library, tool, text, size, plan.fanout, 0)
        else:
            action = partial(throughput_terminal, tool, text, size, plan.fanout, 0)
        measure(fan, tool.name, action)
    _reset(tools)
    # The daemon's own fan-out: socket readers that only follow the frame lengths.
    rows = {
        n: table.add(f"cat {mib} to {n} socket readers (each)", "MB/s", "higher")
        for n in plan.readers
    }
    for tool in tools:
        if isinstance(tool, Ptyd):
            for readers, row in rows.items():
                measure(row, tool.name, partial(fanout_sockets, tool, text, size, readers))
            tool.reset()


def _floods(
    table: Table, tools: list[Tool], plan: Plan, flood: Path, log: Callable[[str], None]
) -> None:
    log("concurrent floods")
    seconds = plan.flood_seconds
    for sessions in (1, 2):
        rate = table.add(f"flood, {sessions} detached session(s), total", "MB/s", "higher")
        cpu = table.add(f"daemon CPU, {sessions} flooding session(s)", "%", "lower")
        measure(rate, "raw", partial(floods_raw, flood, sessions, seconds))
        for tool in tools:
            if isinstance(tool, Ptyd):
                used: list[float] = []
                action = partial(
                    _first_of_pair, partial(floods, tool, flood, sessions, seconds), used
                )
                measure(rate, tool.name, action)
                if used:
                    cpu.values[tool.name] = used[0]
                tool.reset()


def _echo_rows(median_row: Row, p99_row: Row, tool: str, action: Callable[[], list[float]]) -> None:
    samples: list[float] = []

    def collect() -> list[float]:
        samples.extend(action())
        return samples

    measure(median_row, tool, collect)
    if samples:
        p99_row.values[tool] = _p99(samples)


def _repeat(times: int, action: Callable[..., float], *args: Any) -> list[float]:
    return [action(*args, run) for run in range(times)]


def _first_of_pair(action: Callable[[], tuple[float, float]], second: list[float]) -> float:
    first, other = action()
    second.append(other)
    return first


def _first_of_two(
    action: Callable[[], tuple[list[float], list[float]]], second: list[float]
) -> list[float]:
    first, rest = action()
    second.extend(rest)
    return first


def _reset(tools: list[Tool]) -> None:
    for tool in tools:
        tool.reset()


def _is_library_only(tool: Tool) -> bool:
    """ptyd without a terminal attach is measured through the client library instead."""
    return isinstance(tool, Ptyd) and tool.attach_argv("x") is None


def describe_machine() -> str:
    cpu = "unknown cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    system = f"{platform.system()} {platform.release()}"
    return f"{system}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke mode: small sizes, one run each"
    )
    parser.add_argument(
        "--size", type=int, metavar="MIB", help="throughput file size (default 16, quick 1)"
    )
    parser.add_argument(
        "--backends", default="compiled,pure", help="ptyd backends to run (default compiled,pure)"
    )
    parser.add_argument(
        "--many",
        action="store_true",
        help=f"also {MANY_SESSIONS} idle sessions, {MANY_CLIENTS} idle clients and "
        f"{MANY_READERS} socket readers (minutes)",
    )
    parser.add_argument(
        "--only",
        metavar="WORKLOADS",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.size:
        plan = replace(plan, size=args.size << 20)
    if args.many:
        plan = replace(
            plan,
            session_counts=(*plan.session_counts, MANY_SESSIONS),
            client_counts=(*plan.client_counts, MANY_CLIENTS),
            readers=(*plan.readers, MANY_READERS),
        )
    workloads = tuple(w for w in args.only.split(",") if w)
    if not workloads or not set(workloads) <= set(WORKLOADS):
        parser.error(f"--only: a comma-separated list of {', '.join(WORKLOADS)}")
    backends = [b for b in args.backends.split(",") if b]
    if not backends or not set(backends) <= {"compiled", "pure"}:
        parser.error("--backends: a comma-separated list of compiled and pure")

    def log(stage: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {stage}", file=sys.stderr, flush=True)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    table, columns, notes = run(plan, backends, log, workloads)
    print(f"ptyd side by side, {started}; {describe_machine()}")
    given = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"command: python -m benchmarks.compare {given}".rstrip())
    print("medians; (Nx) = ptyd's figure / this tool's: >1 means ptyd is higher")
    print()
    print(table.render(columns))
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
