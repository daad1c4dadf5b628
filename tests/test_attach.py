"""``ptyd attach`` in real terminals: tmux panes run it, their screens are the oracle.

Every wait is on screen content (or a file the pane's shell writes), bounded by a deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pty
import random
import re
import select
import selectors
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ptyd import errors, protocol
from ptyd._vt import VtEmulator

from .conftest import Daemon, start_daemon
from .helpers import (
    Stream,
    contains,
    hung_directory,
    installed_ptyd,
    read_until,
    wait_until,
)

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="the attach tests drive tmux"),
]

ROOT = Path(__file__).resolve().parents[1]
SHELL = ["env", "PS1=% ", "sh"]  # the sessions' shell; the panes' own shells prompt with "$ "


def at_prompt(screen: str) -> bool:
    """The session's shell shows its prompt on an otherwise empty line."""
    return any(line.rstrip() == "%" for line in screen.split("\n"))


class Tmux:
    """A private tmux server whose panes run a plain ``sh``: the user's terminals."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.socket = tmp / "tmux.sock"
        self.env = dict(env, PYTHONPATH=str(ROOT))

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            env=self.env,
            capture_output=True,
            timeout=10,
            check=True,
        )
        return done.stdout.decode()

    def open(self, name: str, cols: int = 80, rows: int = 24) -> str:
        size = ["-x", str(cols), "-y", str(rows)]
        self("new-session", "-d", "-s", name, *size, "-c", str(ROOT), "env 'PS1=$ ' sh")
        self.wait_for(name, lambda screen: screen.startswith("$"))
        return name

    def type(self, pane: str, line: str) -> None:
        self("send-keys", "-t", pane, "-l", line)
        self("send-keys", "-t", pane, "Enter")

    def keys(self, pane: str, *keys: str) -> None:
        self("send-keys", "-t", pane, *keys)

    def screen(self, pane: str) -> str:
        return self("capture-pane", "-p", "-t", pane)

    def cursor(self, pane: str) -> str:
        return self("display", "-p", "-t", pane, "#{cursor_x},#{cursor_y},#{alternate_on}").strip()

    def wait_for(self, pane: str, done: str | Callable[[str], bool], timeout: float = 15) -> str:
        check = done if callable(done) else (lambda screen: done in screen)
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(pane)
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {done!r}; screen:\n{screen}")
            time.sleep(0.02)  # poll interval of a bounded wait on the screen


@pytest.fixture
def tmux(daemon: Daemon, short_tmp: Path) -> Iterator[Tmux]:
    server = Tmux(short_tmp, daemon.env)
    yield server
    kill = ["tmux", "-S", str(server.socket), "kill-server"]
    subprocess.run(kill, capture_output=True, check=False)


def ptyd(daemon: Daemon, *args: str) -> str:
    """A ``ptyd`` command line for a pane's shell: the command as installed, which shows an
    attach's first screen itself and hands over to the Python relay."""
    words = [installed_ptyd(), "-S", str(daemon.socket), "--no-autostart", *args]
    return shlex.join(words)


def run_checked(tmux: Tmux, pane: str, tmp: Path, command: str, tag: str) -> None:
    """Run ``command`` in the pane between two ``stty -a``, then print its status as
    ``status-TAG=N`` once the terminal settings are saved again."""
    before, after = tmp / f"{tag}.before", tmp / f"{tag}.after"
    tmux.type(
        pane,
        f"stty -a > {before}; {command}; s=$?; stty -a > {after}; echo status-{tag}=$s",
    )


def finish_checked(tmux: Tmux, pane: str, tmp: Path, tag: str, status: int) -> str:
    screen = tmux.wait_for(pane, f"status-{tag}=")
    assert f"status-{tag}={status}" in screen
    before = (tmp / f"{tag}.before").read_text()
    assert before and before == (tmp / f"{tag}.after").read_text(), "terminal settings changed"
    return screen


def has_status(screen: str, tag: str) -> bool:
    """``run_checked``'s command has ended: its status is shown (not only the command typed)."""
    return re.search(rf"status-{tag}=\d", screen) is not None


def screen_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.rstrip("\n").split("\n")]


def test_detach_then_reattach_elsewhere_shows_the_same_screen(daemon, tmux, short_tmp) -> None:
    first, second = tmux.open("one"), tmux.open("two")
    with daemon.client() as client:
        assert not client.list_sessions()
        command = ptyd(daemon, "attach", "-A", "work", "--", *SHELL)
        run_checked(tmux, first, short_tmp, command, "a")
        tmux.wait_for(first, at_prompt)
        assert [s.name for s in client.list_sessions()] == ["work"], "-A did not create it"
        tmux.type(first, "echo one-$((6*7))")
        tmux.wait_for(first, "one-42\n")
        tmux.keys(first, "C-\\")
        screen = finish_checked(tmux, first, short_tmp, "a", 0)
        assert "[detached from work]" in screen

        tmux.type(second, ptyd(daemon, "attach", "work"))
        shown = tmux.wait_for(second, "one-42\n")
        expected = client.snapshot("work").data
        assert screen_lines(shown)[: len(screen_lines(expected))] == screen_lines(expected)

        if shutil.which("vim") is None:
            return
        tmux.type(second, "vim -u NONE -i NONE -N -n")
        tmux.wait_for(second, "~")
        tmux.keys(second, "i", "hello vim", "Enter", "second line", "Escape")
        # Escape has been handled once vim clears its "-- INSERT --" indicator.
        tmux.wait_for(second, lambda screen: "second line" in screen and "INSERT" not in screen)
        vim_screen, vim_cursor = tmux.screen(second), tmux.cursor(second)
        assert vim_cursor.endswith(",1"), "vim is not on the alternate screen"
        tmux.keys(second, "C-\\")
        tmux.wait_for(second, "[detached from work]")

        tmux.type(first, ptyd(daemon, "attach", "work"))
        # The whole repaint, not the moment its first rows appear (tmux may show it mid-way).
        tmux.wait_for(first, lambda screen: screen == vim_screen)
        assert tmux.cursor(first) == vim_cursor
        tmux.keys(first, ":q!", "Enter")
        tmux.wait_for(first, "one-42\n")


def test_two_terminals_see_the_same_screen_and_both_type(daemon, tmux) -> None:
    first, second = tmux.open("one"), tmux.open("two")
    with daemon.client() as client:
        client.create(SHELL, name="shared", cols=80, rows=24)
        for pane in (first, second):
            tmux.type(pane, ptyd(daemon, "attach", "shared"))
            tmux.wait_for(pane, at_prompt)
        for typist, line, shown in (
            (first, "typed-$((2+3))", "typed-5\n"),
            (second, "other-$((4+5))", "other-9\n"),
        ):
            tmux.type(typist, f"echo {line}")
            for pane in (first, second):
                tmux.wait_for(pane, shown)
        assert tmux.screen(first) == tmux.screen(second)


def test_resize_reaches_the_program(daemon, tmux) -> None:
    pane = tmux.open("one", cols=80, rows=24)
    tmux.type(pane, ptyd(daemon, "attach", "-A", "sized", "--", *SHELL))
    tmux.wait_for(pane, at_prompt)
    tmux.type(pane, "stty size")
    tmux.wait_for(pane, "24 80\n")
    tmux("resize-window", "-t", pane, "-x", "100", "-y", "30")
    tmux.type(pane, "clear; stty size")
    tmux.wait_for(pane, "30 100\n")


def test_exit_status_signals_and_shutdown_restore_the_terminal(daemon, tmux, short_tmp) -> None:
    pane = tmux.open("one")
    with daemon.client() as client:
        client.create(SHELL, name="ends")
        run_checked(tmux, pane, short_tmp, ptyd(daemon, "attach", "ends"), "exit")
        tmux.wait_for(pane, at_prompt)
        tmux.type(pane, "printf '\\033[?1049h\\033[?1000h\\033[?2004h\\033[?25l'; exit 7")
        screen = finish_checked(tmux, pane, short_tmp, "exit", 7)
        assert "[exited: ends, code 7]" in screen

        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            tag = signum.name
            client.create(SHELL, name=tag)
            pid_file = short_tmp / f"{tag}.pid"
            command = ptyd(daemon, "attach", tag)
            wrapped = f"sh -c {shlex.quote(f'echo $$ > {pid_file}; exec {command}')}"
            run_checked(tmux, pane, short_tmp, wrapped, tag)
            tmux.wait_for(pane, at_prompt)
            tmux.type(pane, "printf '\\033[?1049h'; echo in-$((1+1))")
            tmux.wait_for(pane, "in-2")
            os.kill(int(pid_file.read_text()), signum)
            screen = finish_checked(tmux, pane, short_tmp, tag, 128 + signum)
            assert f"[{tag}: detached]" in screen

        client.create(SHELL, name="last")
        run_checked(tmux, pane, short_tmp, ptyd(daemon, "attach", "last"), "down")
        tmux.wait_for(pane, at_prompt)
        client.shutdown()
    screen = finish_checked(tmux, pane, short_tmp, "down", 1)
    assert "[ptyd daemon shutting down" in screen
    assert daemon.process.wait(timeout=30) == 0


def test_new_attaches_and_returns_the_status(daemon, tmux, short_tmp) -> None:
    pane = tmux.open("one")
    run_checked(tmux, pane, short_tmp, ptyd(daemon, "new", "-n", "fresh", "--", *SHELL), "new")
    tmux.wait_for(pane, at_prompt)
    tmux.type(pane, "exit 3")
    assert "[exited: fresh, code 3]" in finish_checked(tmux, pane, short_tmp, "new", 3)


def test_read_only_ignores_keys_but_detaches(daemon, tmux, short_tmp) -> None:
    pane = tmux.open("one")
    with daemon.client() as client:
        client.create(["cat"], name="watched")
        stream = Stream(client.attach("watched", snapshot=None).session.id, 0)
        run_checked(tmux, pane, short_tmp, ptyd(daemon, "attach", "-r", "watched"), "ro")
        tmux.wait_for(pane, lambda screen: "status-ro" not in screen and "$" not in screen)
        tmux.type(pane, "ignored-keys")
        client.send("watched", "from-elsewhere\r")
        tmux.wait_for(pane, "from-elsewhere\n")
        tmux.keys(pane, "C-\\")
        finish_checked(tmux, pane, short_tmp, "ro", 0)
        client.send("watched", "marker\r")  # queued after any input the attach could have sent
        read_until(client, stream, contains(b"marker\r\nmarker\r\n"))
        assert b"ignored-keys" not in stream.data


def test_detach_key_twice_is_sent_and_other_keys_pass(daemon, tmux, short_tmp) -> None:
    pane = tmux.open("one")
    program = "stty -isig -echo; cat -v"
    command = ptyd(daemon, "attach", "-A", "keys", "--", "sh", "-c", program)
    run_checked(tmux, pane, short_tmp, command, "k")
    tmux.wait_for(pane, lambda screen: "status-k" not in screen and "$ " not in screen)
    tmux.keys(pane, "C-\\", "C-\\", "x", "Enter")
    tmux.wait_for(pane, "^\\x\n")
    tmux.keys(pane, "C-\\")
    assert "[detached from keys]" in finish_checked(tmux, pane, short_tmp, "k", 0)

    run_checked(tmux, pane, short_tmp, ptyd(daemon, "attach", "-e", "^A", "keys"), "a")
    tmux.wait_for(pane, "^\\x")
    tmux.keys(pane, "C-\\", "y", "Enter")
    tmux.wait_for(pane, "^\\y\n")
    tmux.keys(pane, "C-a")
    finish_checked(tmux, pane, short_tmp, "a", 0)


def test_not_a_terminal_is_a_clear_error(daemon) -> None:
    daemon.client().create(["sh"], name="job")
    out = daemon.cli("attach", "job")
    assert out.returncode == 1
    assert b"ptyd send" in out.stderr and b"--no-tty" in out.stderr
    out = daemon.cli("new", "-n", "never")
    assert out.returncode == 1 and b"not a terminal" in out.stderr
    assert [s.name for s in daemon.client().list_sessions()] == ["job"]


def test_no_tty_relays_bytes_and_returns_the_status(daemon) -> None:
    out = daemon.cli(
        "attach", "--no-tty", "-A", "job", "--", "sh", input=b"echo relay-$((3*4))\nexit 6\n"
    )
    assert out.returncode == 6, out.stderr
    assert b"relay-12\r\n" in out.stdout and b"\x1b[2J" not in out.stdout
    assert b"[exited: job, code 6]" in out.stderr

    client = daemon.client()
    client.create(["sh", "-c", "echo first-line; read x; echo got-$x"], name="late")
    out = daemon.cli("attach", "--no-tty", "--from-offset", "0", "late", input=b"yes\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(b"first-line\r\n") and b"got-yes" in out.stdout

    client.create(["sh", "-c", "read x; echo got-$x"], name="early")
    out = daemon.cli("attach", "--no-tty", "--from-offset", "999999", "early", input=b"yes\n")
    assert out.returncode == 0 and b"got-yes" in out.stdout, out.stderr
    assert b"offset 999999 is past the end of the output; output from offset 0" in out.stderr


def test_no_tty_from_an_offset_replays_an_exited_sessions_output(daemon) -> None:
    """The output an exited session left is still held: --from-offset replays it, then
    the exit ends the command with the program's status."""
    client = daemon.client()
    info = client.create(["sh", "-c", "echo hello; echo world; exit 4"], name="done")
    assert client.wait(info.id, timeout=10).status == 4
    out = daemon.cli("attach", "--no-tty", "--from-offset", "0", "done")
    assert out.returncode == 4 and out.stdout == b"hello\r\nworld\r\n", out
    assert b"[exited: done, code 4]" in out.stderr
    out = daemon.cli("attach", "--no-tty", "--from-offset", "7", "done")
    assert out.returncode == 4 and out.stdout == b"world\r\n", out


def test_no_tty_relays_every_byte_including_the_detach_key(daemon) -> None:
    """A byte relay has no detach key (unless -e names one): Ctrl-\\ in piped data is data.
    It used to detach there and drop the rest of the input."""
    data = bytes(range(256)) * 4
    client = daemon.client()
    program = "stty raw -echo; printf R; head -c 1024 | od -An -v -tx1"
    info = client.create(["sh", "-c", program], name="bin")
    ready = Stream(info.id, 0)
    client.attach(info.id, snapshot=None, from_offset=0)
    read_until(client, ready, contains(b"R"))  # raw mode: Ctrl-\\ is no longer SIGQUIT
    out = daemon.cli("attach", "--no-tty", "bin", input=data)
    assert out.returncode == 0, out.stderr
    assert bytes.fromhex(out.stdout.decode()) == data
    # With -e the named key still detaches (and what follows it is not sent).
    daemon.client().create(["sh", "-c", "stty raw -echo; exec cat >/dev/null"], name="keyed")
    out = daemon.cli("attach", "--no-tty", "-e", "^A", "keyed", input=b"abc\x01def")
    assert out.returncode == 0 and b"[detached from keyed]" in out.stderr, out.stderr


@pytest.mark.parametrize("spin", ["--spin-us=0", "--spin-us=300"], ids=["sleeping", "spinning"])
def test_no_tty_relays_a_large_input_intact(daemon, spin: str) -> None:
    """Two megabytes of every byte value through the relay: keys typed while an input request is
    unanswered go through the control plane's queue, the rest through the quiet loop (which
    spins after each send, or not); the program reads exactly what was piped in."""
    data = bytes(random.Random(7).randbytes(2_000_000))
    client = daemon.client()
    program = f"stty raw -echo; printf R; head -c {len(data)} | md5sum"
    info = client.create(["sh", "-c", program], name="big")
    ready = Stream(info.id, 0)
    client.attach(info.id, snapshot=None, from_offset=0)
    read_until(client, ready, contains(b"R"))
    out = daemon.cli("attach", "--no-tty", spin, "big", input=data, timeout=120)
    assert out.returncode == 0, out.stderr
    assert hashlib.md5(data).hexdigest().encode() in out.stdout


def read_pty(master: int, emulator: VtEmulator, done: Callable[[], bool], timeout: float) -> None:
    """Feed what the attach client writes into ``emulator`` until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; screen:\n{emulator.snapshot_text()}"
        if select.select([master], [], [], remaining)[0]:
            emulator.feed(os.read(master, 65536))


@contextlib.contextmanager
def on_a_pty(argv: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``argv`` on a new 80x24 PTY: the process and the PTY's master side, which the test reads
    and writes as a terminal would; killed if still running at the end."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    try:
        yield process, master
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def attach_on_a_pty(
    daemon: Daemon, target: str
) -> contextlib.AbstractContextManager[tuple[subprocess.Popen[bytes], int]]:
    """``ptyd attach TARGET`` on a new 80x24 PTY (``on_a_pty``)."""
    command = [installed_ptyd(), "-S", str(daemon.socket), "--no-autostart"]
    return on_a_pty([*command, "attach", target], daemon.env)


def test_slow_terminal_never_blocks_the_daemon_and_is_repainted(daemon) -> None:
    client = daemon.client()
    flood = "read go; seq 1 300000; echo flood-done; read end"
    client.create(["sh", "-c", flood], name="flood", cols=80, rows=24)
    with attach_on_a_pty(daemon, "flood") as (process, master):
        terminal = VtEmulator(80, 24, scrollback=0)
        read_pty(master, terminal, lambda: client.info("flood").clients == 1, timeout=30)
        watcher = daemon.client()
        stream = Stream(watcher.attach("flood", snapshot=None, policy="block").session.id, 0)
        client.send("flood", "go\r")  # the terminal is not read from here on
        read_until(watcher, stream, lambda s: b"flood-done\r\n" in s.data[-64:])
        expected = client.snapshot("flood").data
        read_pty(master, terminal, lambda: terminal.snapshot_text() == expected, timeout=30)
        os.write(master, b"\x1c")
        assert process.wait(timeout=30) == 0


def test_new_in_a_terminal_without_a_size_shows_a_short_command(daemon) -> None:
    """A pty opened without a size (script(1), CI runners) reports 0x0: the session gets 80x24,
    and a command that exits at once still shows its output and returns its status."""
    master, slave = pty.openpty()  # no TIOCSWINSZ: 0 columns, 0 rows
    command = [sys.executable, "-m", "ptyd", "-S", str(daemon.socket), "--no-autostart"]
    process = subprocess.Popen(
        [*command, "new", "-n", "short", "--", "sh", "-c", "echo short-output; exit 3"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=daemon.env,
    )
    os.close(slave)
    try:
        terminal = VtEmulator(80, 24, scrollback=100)
        with contextlib.suppress(OSError):  # EIO: the command line exited, its pty is closed
            read_pty(master, terminal, lambda: False, timeout=30)
        assert process.wait(timeout=30) == 3
        # The exit line at the bottom scrolls the repainted screen up by one: look in history.
        assert "short-output" in terminal.snapshot_text(100)
        info = daemon.client().info("short")
        assert (info.cols, info.rows) == (80, 24)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def test_stopped_attach_gives_the_terminal_back_and_repaints_on_fg(daemon, tmux) -> None:
    """SIGTSTP to the attach client (job control, ``kill -TSTP``): the shell gets a cooked
    terminal back; ``fg`` takes it again and repaints what the session printed meanwhile."""
    pane = tmux.open("one")
    with daemon.client() as client:
        client.create(SHELL, name="stops")
        tmux.type(pane, ptyd(daemon, "attach", "stops"))
        tmux.wait_for(pane, at_prompt)
        attach_pid = int(tmux("display", "-p", "-t", pane, "#{pane_pid}").strip())
        children = Path(f"/proc/{attach_pid}/task/{attach_pid}/children").read_text().split()
        assert len(children) == 1, children
        os.kill(int(children[0]), signal.SIGTSTP)
        tmux.wait_for(pane, lambda screen: screen_lines(screen)[-1] == "$")
        tmux.type(pane, "echo cooked-$((3*3))")
        tmux.wait_for(pane, "cooked-9\n")  # the pane's own shell echoed and ran it
        client.send("stops", "echo while-stopped-$((2*4))\r")
        tmux.type(pane, "fg")
        # Output queued while stopped may show first; then the repaint replaces the pane's
        # own shell lines with the session's screen.
        tmux.wait_for(pane, lambda s: "while-stopped-8\n" in s and "cooked-9" not in s)
        tmux.type(pane, "echo after-$((5+5))")
        tmux.wait_for(pane, "after-10\n")
        tmux.keys(pane, "C-\\")
        tmux.wait_for(pane, "[detached from stops]")


def test_detach_message_erases_the_last_row(daemon, tmux, short_tmp) -> None:
    """The message is written on the last row: what the session left there is erased first, not
    shown to the right of the message."""
    pane = tmux.open("one")
    left = "text-the-session-left-on-its-last-row-longer-than-the-message"
    with daemon.client() as client:
        program = f"printf '\\033[999H%s' {shlex.quote(left)}; exec cat"
        client.create(["sh", "-c", program], name="lastrow")
        run_checked(tmux, pane, short_tmp, ptyd(daemon, "attach", "lastrow"), "l")
        tmux.wait_for(pane, left)
        tmux.keys(pane, "C-\\")
        lines = screen_lines(finish_checked(tmux, pane, short_tmp, "l", 0))
    assert "[detached from lastrow]" in lines, lines


def test_attach_from_a_terminal_past_the_size_limit(daemon, tmux, short_tmp) -> None:
    """A terminal wider than a session can be attaches at the largest size (it used to be
    refused: ``field 'cols' must be an integer from 1 to 1000``)."""
    limit = protocol.MAX_SIZE
    pane = tmux.open("one", cols=limit + 1, rows=30)
    with daemon.client() as client:
        client.create(SHELL, name="wide", cols=80, rows=24)
        run_checked(tmux, pane, short_tmp, ptyd(daemon, "attach", "wide"), "w")
        tmux.wait_for(pane, lambda screen: at_prompt(screen) or has_status(screen, "w"))
        tmux.type(pane, "stty size")
        screen = tmux.wait_for(pane, lambda s: f"30 {limit}\n" in s or has_status(s, "w"))
        assert not has_status(screen, "w"), screen_lines(screen)
        assert (client.info("wide").cols, client.info("wide").rows) == (limit, 30)
        tmux.keys(pane, "C-\\")
        finish_checked(tmux, pane, short_tmp, "w", 0)


def test_resize_past_the_size_limit(daemon, tmux) -> None:
    """Growing the terminal past what a session can be, while attached, gives the session the
    largest size (the resize used to be refused and ended the client)."""
    limit = protocol.MAX_SIZE
    pane = tmux.open("one")
    tmux.type(pane, ptyd(daemon, "attach", "-A", "tall", "--", *SHELL) + "; echo status-t=$?")
    tmux.wait_for(pane, at_prompt)
    tmux("resize-window", "-t", pane, "-x", "120", "-y", str(limit + 1))
    tmux.type(pane, "stty size")
    screen = tmux.wait_for(pane, lambda s: f"{limit} 120\n" in s or has_status(s, "t"))
    assert not has_status(screen, "t"), [line for line in screen_lines(screen) if line]
    tmux.keys(pane, "C-\\")
    screen = tmux.wait_for(pane, lambda s: has_status(s, "t"))
    assert "[detached from tall]" in screen and "status-t=0" in screen


class Tap:
    """A socket in front of the daemon's that passes every byte through both ways and notes,
    per connection, the requests sent and which ones the daemon refused with what code."""

    def __init__(self, daemon_socket: Path, path: Path) -> None:
        self.daemon_socket = daemon_socket
        self.path = path
        self.refusals: dict[int, set[tuple[str, str]]] = {}  # connection -> (request, code)
        self.requests: dict[int, list[dict[str, Any]]] = {}  # connection -> requests, in order
        self.changed = threading.Condition()
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()
        self._stop_r, self._stop_w = socket.socketpair()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._stop_r, selectors.EVENT_READ)
        self._kinds: dict[int, dict[int, str]] = {}  # connection -> request id -> type
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop_w.send(b"x")
        self._thread.join(30)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        self._stop_w.close()

    def wait_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        with self.changed:
            assert self.changed.wait_for(done, timeout), f"timed out waiting for {what}"

    def refused(self, kind: str, code: str) -> int:
        """How many connections had a ``kind`` request refused with ``code``."""
        return sum((kind, code) in seen for seen in self.refusals.values())

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.fileobj is self._stop_r:
                    return
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj.fileno() >= 0:  # type: ignore[union-attr]
                    self._pass(*key.data)  # (not closed with its peer earlier in this batch)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(str(self.daemon_socket))
        number = len(self._kinds)
        self._kinds[number] = {}
        with self.changed:
            self.refusals[number] = set()
            self.requests[number] = []
        big = protocol.MAX_RESPONSE_FRAME
        to_daemon = (client, upstream, number, protocol.FrameDecoder(big), True)
        to_client = (upstream, client, number, protocol.FrameDecoder(big), False)
        self._selector.register(client, selectors.EVENT_READ, to_daemon)
        self._selector.register(upstream, selectors.EVENT_READ, to_client)

    def _pass(
        self,
        source: socket.socket,
        sink: socket.socket,
        number: int,
        decoder: protocol.FrameDecoder,
        is_request: bool,
    ) -> None:
        try:
            data = source.recv(65536)
            sink.sendall(data)
        except OSError:
            data = b""  # one side went: so does the other
        if not data:
            for end in (source, sink):
                self._selector.unregister(end)
                end.close()
            return
        kinds = self._kinds[number]
        for message in decoder.feed(data):
            assert isinstance(message, dict), message
            if is_request:
                kinds[message["id"]] = message["type"]
                with self.changed:
                    self.requests[number].append(message)
                    self.changed.notify_all()
            elif message.get("type") == "response" and not message["ok"]:
                kind = kinds.get(message["id"], "")
                with self.changed:
                    self.refusals[number].add((kind, message["error"]["code"]))
                    self.changed.notify_all()


def test_attach_A_from_several_terminals_at_once_attaches_all(backend, short_tmp) -> None:
    """``attach -A NAME`` from several terminals at the same moment: the first create takes the
    name, the others' creates are refused (``name_taken``) and their attach finds no session
    until the first one's program has started. They wait for it; all attach to one session.

    The session's program is found through a PATH whose first directory hangs (FUSE), so its
    start waits until every other client has had its attach refused (seen through a tap on the
    socket); then the directory fails and the program is found further along PATH."""
    count = 4
    with hung_directory(short_tmp / "hung") as release:
        env = dict(os.environ, PS1="% ", PATH=f"{short_tmp / 'hung'}:{os.environ['PATH']}")
        daemon = start_daemon(short_tmp / "d.sock", backend, env=env)
        tap = Tap(daemon.socket, short_tmp / "tap.sock")
        clients: list[tuple[subprocess.Popen[bytes], int, VtEmulator]] = []
        try:
            command = [sys.executable, "-m", "ptyd", "-S", str(tap.path), "--no-autostart"]
            for _ in range(count):
                master, slave = pty.openpty()
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
                process = subprocess.Popen(
                    [*command, "attach", "-A", "race", "--", "sh"],
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    env={k: v for k, v in os.environ.items() if not k.startswith("PTYD_")},
                )
                os.close(slave)
                clients.append((process, master, VtEmulator(80, 24, scrollback=0)))
            tap.wait_until(
                lambda: tap.refused("attach", errors.NO_SUCH_SESSION) == count - 1,
                30,
                "every client but the first to have its attach refused",
            )
            assert tap.refused("create", errors.NAME_TAKEN) == count - 1
            release()  # the first client's program starts; its session can be found
            for process, master, terminal in clients:
                show_until(master, terminal, at_prompt)
                assert process.poll() is None, terminal.snapshot_text().strip()
            with daemon.client() as client:
                assert [info.name for info in client.list_sessions()] == ["race"]
                assert client.info("race").clients == count
            for process, master, _ in clients:
                os.write(master, b"\x1c")
                assert process.wait(timeout=30) == 0
        finally:
            for process, master, _ in clients:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                os.close(master)
            tap.close()
            assert daemon.stop() == 0


def show_until(master: int, terminal: VtEmulator, done: Callable[[str], bool]) -> None:
    """Feed what an attach client writes to its pty into ``terminal`` until ``done(screen)`` or
    the client has gone (its pty hangs up)."""
    deadline = time.monotonic() + 30
    while not done(terminal.snapshot_text()):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; screen:\n{terminal.snapshot_text()}"
        if select.select([master], [], [], remaining)[0]:
            try:
                terminal.feed(os.read(master, 65536))
            except OSError:  # EIO: the client exited
                return


# A program that asks its terminal the queries the daemon's emulator answers (DA1, DA2, DSR 5,
# CPR, DECXCPR) and one it leaves to the terminal (OSC 11, the background colour), and appends
# all it reads to a file until a "Q".
ASKING_PROGRAM = r"""
import os, sys, tty
tty.setraw(0)
os.write(1, b"READY\r\n")
while os.read(0, 1) != b"g":
    pass
os.write(1, b"\x1b[c\x1b[>0c\x1b[5n\x1b[6n\x1b[?6n\x1b]11;?\x07")
with open(sys.argv[1], "ab", buffering=0) as record:
    while True:
        data = os.read(0, 4096)
        record.write(data)
        if b"Q" in data:
            break
"""
# What the terminal answers to each query, as xterm would.
TERMINAL_ANSWERS = [
    (b"\x1b[c", b"\x1b[?1;2c"),
    (b"\x1b[>0c", b"\x1b[>0;276;0c"),
    (b"\x1b[5n", b"\x1b[0n"),
    (b"\x1b[6n", b"\x1b[17;33R"),
    (b"\x1b[?6n", b"\x1b[?17;33;1R"),
    (b"\x1b]11;?\x07", b"\x1b]11;rgb:0000/0000/0000\x07"),
]
# The daemon's own answers (docs/emulator.md, "Replies"): the cursor is on row 2, column 1.
DAEMON_ANSWERS = [b"\x1b[?62;22c", b"\x1b[>1;10;0c", b"\x1b[0n", b"\x1b[2;1R", b"\x1b[?2;1R"]
REPLY_TOKEN = re.compile(rb"\x1b\[[?>]?[0-9;]*[cnR]|\x1b\][^\x07]*\x07|.", re.DOTALL)


def test_queries_the_daemon_answers_get_one_answer_through_an_attached_terminal(
    daemon, short_tmp
) -> None:
    """Checklist E7: the program gets exactly one answer per query, the daemon's emulator's,
    while a terminal that answers the queries it is shown is attached; the terminal's answer to
    a query the daemon leaves (OSC 11) is the one the program gets for it."""
    record = short_tmp / "read"
    client = daemon.client()
    client.create([sys.executable, "-c", ASKING_PROGRAM, str(record)], name="asks")
    shown = b""
    unanswered = list(TERMINAL_ANSWERS)
    at = 0  # where the next query is looked for in what the terminal was shown

    def read_record() -> bytes:
        return record.read_bytes() if record.exists() else b""

    def pump(done: Callable[[], bool]) -> None:
        """Show what the client writes, answering each query as a terminal does, until
        ``done()``."""
        nonlocal shown, at
        deadline = time.monotonic() + 30
        while not done():
            assert time.monotonic() < deadline, f"timed out: shown {shown!r}, {read_record()!r}"
            if select.select([master], [], [], 0.05)[0]:
                try:
                    shown += os.read(master, 65536)
                except OSError:  # EIO: the client exited
                    return
            if b"READY" in shown and at == 0:
                at = shown.index(b"READY")
                os.write(master, b"g")
            while at and unanswered and unanswered[0][0] in shown[at:]:
                query, answer = unanswered.pop(0)
                at = shown.index(query, at) + len(query)
                os.write(master, answer)
                if not unanswered:
                    os.write(master, b"Z")  # after the answers, through the same client

    with attach_on_a_pty(daemon, "asks") as (process, master):
        pump(lambda: b"Z" in read_record() and all(a in read_record() for a in DAEMON_ANSWERS))
        os.write(master, b"Q")
        pump(lambda: process.poll() is not None)
        assert process.wait(timeout=30) == 0
    got = REPLY_TOKEN.findall(read_record())
    expected = [*DAEMON_ANSWERS, TERMINAL_ANSWERS[-1][1], b"Z", b"Q"]
    assert sorted(got) == sorted(expected)


# -- the ptyd command's start (ptyd/_starter.c, ptyd/handoff.py) ------------------------------


def test_the_ptyd_command_attaches_as_python_does_and_hands_its_connection_over(
    daemon, short_tmp
) -> None:
    """The starter's hello and attach are the Python command line's, field for field, and the
    relay goes on over the starter's connection: one connection per attach."""
    with daemon.client() as client:
        client.create(SHELL, name="work")
    tap = Tap(daemon.socket, short_tmp / "tap.sock")
    try:
        python = [sys.executable, "-m", "ptyd", "-S", str(tap.path), "--no-autostart"]
        started = [installed_ptyd(), "-S", str(tap.path), "--no-autostart"]
        for number, argv in enumerate([[*started, "attach", "work"], [*python, "attach", "work"]]):
            with on_a_pty(argv, daemon.env) as (process, master):
                terminal = VtEmulator(80, 24, scrollback=0)
                show_until(master, terminal, at_prompt)
                os.write(master, f"echo run-{number}-$((6*7))\r".encode())
                show_until(master, terminal, lambda s, n=number: f"run-{n}-42\n" in s)
                os.write(master, b"\x1c")
                assert process.wait(timeout=30) == 0
        tap.wait_until(lambda: len(tap.requests) == 2, 30, "both clients' requests")
        by_starter, by_python = tap.requests[0], tap.requests[1]
        assert by_starter[:2] == by_python[:2]  # hello and attach (ids 1 and 2)
        assert [m["type"] for m in by_starter[:2]] == ["hello", "attach"]
        assert by_starter[1]["read_only"] is False and by_starter[1]["snapshot"] == "ansi"
        assert "input" in [m["type"] for m in by_starter[2:]], "the relay typed elsewhere"
        assert [m["id"] for m in by_starter] == list(range(1, len(by_starter) + 1))

        with on_a_pty([*started, "attach", "-r", "work"], daemon.env) as (process, master):
            show_until(master, VtEmulator(80, 24, scrollback=0), at_prompt)
            tap.wait_until(lambda: len(tap.requests) == 3, 30, "the read-only attach")
            assert tap.requests[2][1] == {**by_python[1], "read_only": True}
            os.write(master, b"\x1c")
            assert process.wait(timeout=30) == 0
    finally:
        tap.close()


@pytest.fixture
def slow_python(short_tmp: Path) -> str:
    """A PYTHONPATH entry whose ``sitecustomize`` holds every Python start for a second: the
    time between the starter's screen and the relay taking over, made long enough to act in."""
    directory = short_tmp / "slow"
    directory.mkdir()
    (directory / "sitecustomize.py").write_text("import time\ntime.sleep(1.0)\n")
    return str(directory)


def test_keys_and_a_resize_during_the_handover_reach_the_session(
    daemon, tmux, short_tmp, slow_python
) -> None:
    pane = tmux.open("one")
    with daemon.client() as client:
        client.create(SHELL, name="early")
        command = f"PYTHONPATH={slow_python}:$PYTHONPATH " + ptyd(daemon, "attach", "early")
        run_checked(tmux, pane, short_tmp, command, "h")
        tmux.wait_for(pane, at_prompt)  # the starter's screen; the relay starts a second later
        tmux.type(pane, "echo early-$((6*7))")
        tmux("resize-window", "-t", pane, "-x", "100", "-y", "30")
        tmux.wait_for(pane, "early-42\n")
        wait_until(lambda: client.info("early").cols == 100, 30, "the session to take the size")
        assert client.info("early").rows == 30
        tmux("resize-window", "-t", pane, "-x", "80", "-y", "24")  # as ``stty -a`` saw it
        tmux.keys(pane, "C-\\")
        assert "[detached from early]" in finish_checked(tmux, pane, short_tmp, "h", 0)


def test_a_stop_signal_during_the_handover_detaches_and_restores_the_terminal(
    daemon, tmux, short_tmp, slow_python
) -> None:
    pane = tmux.open("one")
    with daemon.client() as client:
        client.create(SHELL, name="stopped")
        pid_file = short_tmp / "attach.pid"
        attach = ptyd(daemon, "attach", "stopped")
        command = (
            f"PYTHONPATH={slow_python}:$PYTHONPATH sh -c 'echo $$ > {pid_file}; exec {attach}'"
        )
        run_checked(tmux, pane, short_tmp, command, "s")
        tmux.wait_for(pane, at_prompt)  # shown by the starter, the relay not started yet
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        screen = finish_checked(tmux, pane, short_tmp, "s", 128 + signal.SIGTERM)
        assert "[SIGTERM: detached]" in screen
        wait_until(lambda: client.info("stopped").clients == 0, 30, "the attachment to go")


def test_arguments_the_starter_took_otherwise_start_over_with_the_terminal_restored(
    daemon, tmux, short_tmp
) -> None:
    """The starter accepts any ``-e`` value and attaches; the command line finds it is not a
    key: a usage error, with the terminal as it was."""
    pane = tmux.open("one")
    with daemon.client() as client:
        client.create(SHELL, name="usage")
        run_checked(tmux, pane, short_tmp, ptyd(daemon, "attach", "-e", "xyz", "usage"), "u")
        tmux.wait_for(pane, lambda s: has_status(s, "u"))
        screen = finish_checked(tmux, pane, short_tmp, "u", 2)
        assert "argument -e: 'xyz' is not" in screen
        wait_until(lambda: client.info("usage").clients == 0, 30, "the attachment to go")


def test_the_ptyd_command_runs_the_command_line_installed_beside_it(tmp_path) -> None:
    done = subprocess.run([installed_ptyd(), "--version"], capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith(b"ptyd "), done
    alone = tmp_path / "ptyd"
    shutil.copy2(installed_ptyd(), alone)
    done = subprocess.run([str(alone), "--version"], capture_output=True, timeout=60)
    assert done.returncode == 127
    assert f"ptyd: cannot run {tmp_path}/ptyd-py".encode() in done.stderr


def test_settings_the_command_line_would_refuse_attach_nothing(daemon, tmux, short_tmp) -> None:
    """A ``PTYD_SPIN_US`` or ``PTYD_PURE`` the command line refuses: the starter does not attach
    (the session keeps its size), and the error shows on the terminal as it was."""
    pane = tmux.open("one")
    with daemon.client() as client:
        client.create(SHELL, name="kept", cols=50, rows=10)
        for number, setting in enumerate(["PTYD_SPIN_US=bogus", "PTYD_PURE=maybe"]):
            tag = f"v{number}"
            run_checked(tmux, pane, short_tmp, f"{setting} {ptyd(daemon, 'attach', 'kept')}", tag)
            tmux.wait_for(pane, lambda s, tag=tag: has_status(s, tag))
            screen = finish_checked(tmux, pane, short_tmp, tag, 1)
            assert f"\nptyd: invalid {setting.split('=')[0]}" in screen
            info = client.info("kept")
            assert (info.cols, info.rows, info.last_attached) == (50, 10, None)


def test_a_handoff_the_command_line_refuses_is_given_back_before_its_error(
    daemon, tmux, short_tmp
) -> None:
    """The starter attached and showed the screen; the command line finds a setting it does not
    read (the starter does not check daemon settings): the terminal is given back first, then
    the error is printed on it, then the attachment is gone."""
    pane = tmux.open("one")
    with daemon.client() as client:
        client.create(SHELL, name="over")
        command = "PTYD_LOG_LEVEL=chatty " + ptyd(daemon, "attach", "over")
        run_checked(tmux, pane, short_tmp, command, "o")
        tmux.wait_for(pane, lambda s: has_status(s, "o"))
        screen = finish_checked(tmux, pane, short_tmp, "o", 1)
        assert "\nptyd: invalid PTYD_LOG_LEVEL='chatty'" in screen
        wait_until(lambda: client.info("over").clients == 0, 30, "the attachment to go")


def test_a_resize_while_the_starter_waits_for_the_daemon_reaches_the_session(
    daemon, tmux, short_tmp
) -> None:
    pane = tmux.open("one")
    with daemon.client() as client:
        client.create(SHELL, name="sized")
        os.kill(daemon.process.pid, signal.SIGSTOP)
        try:
            pid_file = short_tmp / "attach.pid"
            attach = ptyd(daemon, "attach", "sized")
            tmux.type(pane, f"sh -c 'echo $$ > {pid_file}; exec {attach}'")
            wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "the pid")
            starter = int(pid_file.read_text())
            # The starter is waiting for the stopped daemon's answers.
            wait_until(
                lambda: (
                    Path(f"/proc/{starter}/wchan").read_text() != "0"
                    and Path(f"/proc/{starter}/exe").resolve() == Path(installed_ptyd()).resolve()
                ),
                30,
                "the starter to wait on its socket",
            )
            tmux("resize-window", "-t", pane, "-x", "100", "-y", "30")
        finally:
            os.kill(daemon.process.pid, signal.SIGCONT)
        tmux.wait_for(pane, at_prompt)
        wait_until(lambda: client.info("sized").cols == 100, 30, "the session to take the size")
        assert client.info("sized").rows == 30
        tmux.keys(pane, "C-\\")
        tmux.wait_for(pane, "[detached from sized]")


def test_a_starter_without_the_command_line_beside_it_attaches_nothing(daemon, tmp_path) -> None:
    with daemon.client() as client:
        client.create(SHELL, name="alone")
    alone = tmp_path / "ptyd"
    shutil.copy2(installed_ptyd(), alone)
    argv = [str(alone), "-S", str(daemon.socket), "attach", "alone"]
    with on_a_pty(argv, daemon.env) as (process, master):
        output = b""
        with contextlib.suppress(OSError):  # EIO once it has exited
            while chunk := os.read(master, 65536):
                output += chunk
        assert process.wait(timeout=30) == 127
    missing = f"ptyd: cannot run {tmp_path}/ptyd-py: No such file or directory\r\n"
    assert output == missing.encode()
    with daemon.client() as client:
        assert client.info("alone").last_attached is None


def test_an_attach_to_no_session_leaves_the_screen_as_it_was(daemon) -> None:
    """A typo in the target costs one error line below the command, as in tmux: the screen is
    neither reset nor moved to its last row (that is for leaving a session's screen)."""
    with attach_on_a_pty(daemon, "nosuch") as (process, master):
        assert process.wait(timeout=30) == 1
        shown = b""
        with contextlib.suppress(OSError):  # EIO: the terminal's only process has gone
            while chunk := os.read(master, 65536):
                shown += chunk
    assert shown.strip() == b"ptyd: no session 'nosuch'"
