"""The ``ptyd`` command line against a real daemon."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import pytest

from ptyd.socketdir import is_listening, lock_holder

from .helpers import Stream, contains, installed_ptyd, read_until, until_exit, wait_until


def run(
    *args: str, env: dict | None = None, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ptyd", *args],
        capture_output=True,
        timeout=60,
        env=env,
        input=input,
        check=False,
    )


def test_version_names_the_backend(backend) -> None:
    import os

    env = dict(os.environ, PTYD_PURE="1" if backend == "pure" else "0")
    out = run("--version", env=env)
    assert out.returncode == 0
    assert out.stdout.decode().strip().endswith(f"({backend} backend)")


@pytest.mark.parametrize("value", ["false", "no", "off", "0", ""])
def test_pure_reads_as_a_boolean(value: str) -> None:
    """PTYD_PURE is read as every other boolean setting: false/no/off/0 keep the default."""
    import importlib.util
    import os

    built = importlib.util.find_spec("ptyd._vt") is not None
    out = run("--version", env=dict(os.environ, PTYD_PURE=value))
    assert out.returncode == 0
    assert out.stdout.decode().strip().endswith(f"({'compiled' if built else 'pure'} backend)")


def test_every_command_has_help() -> None:
    for command in (
        "serve",
        "new",
        "ls",
        "info",
        "send",
        "snapshot",
        "resize",
        "signal",
        "kill",
        "wait",
        "stats",
        "shutdown",
    ):
        out = run(command, "--help")
        assert out.returncode == 0 and b"usage: ptyd " + command.encode() in out.stdout


def test_new_ls_info_snapshot_wait(daemon) -> None:
    created = daemon.cli(
        "new",
        "-d",
        "-n",
        "job",
        "--size",
        "60x10",
        "-e",
        "GREETING=hi",
        "--",
        "sh",
        "-c",
        "echo $GREETING-$((6*7)); read x; exit 4",
    )
    assert created.returncode == 0, created.stderr
    session_id = int(created.stdout)
    listed = daemon.cli("ls")
    assert b"job" in listed.stdout and b"60x10" in listed.stdout and b"running" in listed.stdout
    rows = json.loads(daemon.cli("ls", "--json").stdout)
    assert rows[0]["id"] == session_id and rows[0]["name"] == "job"
    assert json.loads(daemon.cli("info", "job", "--json").stdout)["cols"] == 60
    client = daemon.client()
    stream = Stream(session_id, 0)
    client.attach(session_id, snapshot=None, from_offset=0)
    read_until(client, stream, contains(b"hi-42"))
    assert daemon.cli("snapshot", "job").stdout.decode().splitlines()[0] == "hi-42"
    assert json.loads(daemon.cli("snapshot", "job", "--format", "json").stdout)
    assert daemon.cli("wait", "job", "--timeout", "0.2").returncode == 124
    assert daemon.cli("send", "job", "--keys", "Enter").returncode == 0
    assert daemon.cli("wait", "job").returncode == 4


def test_info_shows_times_as_local_times_and_json_as_unix_times(daemon) -> None:
    """People read a date and an age; programs get the protocol's Unix times."""
    daemon.cli("new", "-d", "-n", "clock", "--", "sh", "-c", "exit 3")
    assert daemon.cli("wait", "clock").returncode == 3
    data = json.loads(daemon.cli("info", "clock", "--json").stdout)
    assert isinstance(data["created_at"], float) and isinstance(data["exited_at"], float)
    lines = dict(
        line.split(":", 1) for line in daemon.cli("info", "clock").stdout.decode().splitlines()
    )

    def local(unix_time: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix_time))

    assert lines["created_at"].strip().startswith(local(data["created_at"]))
    assert lines["created_at"].strip().endswith("s ago)")
    assert lines["exited_at"].strip().startswith(local(data["exited_at"]))
    assert lines["last_attached"].strip() == "-"


def test_send_text_keys_and_stdin(daemon) -> None:
    """Exactly the 10 bytes: a "--" before the keys ends the options (it was sent as text)."""
    session_id = int(
        daemon.cli("new", "-d", "--", "sh", "-c", "stty raw -echo; head -c 10 | od -An -c").stdout
    )
    client = daemon.client()
    stream = Stream(session_id, 0)
    client.attach(session_id, snapshot=None, from_offset=0)
    assert daemon.cli("send", str(session_id), "--", "a b").returncode == 0
    assert daemon.cli("send", str(session_id), "--keys", "--", "Tab", "C-a", "Up").returncode == 0
    assert daemon.cli("send", str(session_id), "--stdin", input=b"\x00\xff").returncode == 0
    read_until(client, stream, lambda s: s.exit is not None)
    dump = stream.data.decode()
    for token in ("a", "b", "\\t", "001", "033", "[", "A", "\\0", "377"):
        assert token in dump


def test_send_stdin_larger_than_the_input_limit_arrives_whole(daemon, tmp_path) -> None:
    """More than PTYD_INPUT_LIMIT (4 MiB) waits for the program to read instead of failing
    half-sent."""
    out = tmp_path / "out"
    session_id = int(
        daemon.cli("new", "-d", "--", "sh", "-c", f"stty raw -echo; exec cat > {out}").stdout
    )
    data = bytes(range(256)) * (6 * 1024 * 1024 // 256)
    sent = daemon.cli("send", str(session_id), "--stdin", input=data)
    assert sent.returncode == 0, sent.stderr
    wait_until(
        lambda: out.exists() and out.stat().st_size == len(data), 30, "all of the input written"
    )
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_send_to_a_program_that_never_reads_says_how_much_went(daemon) -> None:
    # Raw mode: the terminal's own buffer fills and stays full (a canonical-mode line
    # discipline would drop what does not fit and keep accepting).
    session_id = int(
        daemon.cli("new", "-d", "--", "sh", "-c", "stty raw -echo; echo ready; sleep 600").stdout
    )
    wait_until(lambda: b"ready" in daemon.cli("snapshot", str(session_id)).stdout, 10, "raw")
    sent = daemon.cli("send", str(session_id), "--stdin", input=b"x" * (5 * 1024 * 1024))
    assert sent.returncode == 1
    assert b"of 5242880 bytes: the program read none of its input for 10 s" in sent.stderr


def test_send_keys_follows_application_cursor_mode(daemon) -> None:
    """Up is ESC [ A until the program asks for application cursor keys (as curses with
    keypad() does), then ESC O A, as xterm sends it and tmux's send-keys does; text and
    modified keys are left alone, text after Escape that reads as a cursor key too."""
    program = (
        "import os, sys, tty; tty.setraw(0); os.write(1, b'READY\\r\\n')\n"
        "def upto_z():\n"
        "    got = b''\n"
        "    while not got.endswith(b'Z'): got += os.read(0, 64)\n"
        "    print(repr(got), end='\\r\\n', flush=True)\n"
        "upto_z(); os.write(1, b'\\x1b[?1hAPP\\r\\n'); upto_z()\n"
    )
    session_id = int(daemon.cli("new", "-d", "--", sys.executable, "-c", program).stdout)
    client = daemon.client()
    stream = Stream(session_id, 0)
    client.attach(session_id, snapshot=None, from_offset=0)
    read_until(client, stream, contains(b"READY"))
    assert daemon.cli("send", str(session_id), "--keys", "Up", "Home", "Z").returncode == 0
    read_until(client, stream, contains(b"APP"))
    keys = ["--keys", "Up", "End", "C-Left", "[A", "Escape", "[B", "Z"]
    assert daemon.cli("send", str(session_id), *keys).returncode == 0
    read_until(client, stream, until_exit)
    normal, application = stream.data.split(b"APP")
    assert b"'\\x1b[A\\x1b[HZ'" in normal
    assert b"'\\x1bOA\\x1bOF\\x1b[1;5D[A\\x1b[BZ'" in application


def test_resize_signal_kill(daemon) -> None:
    session_id = (
        daemon.cli(
            "new",
            "-d",
            "-n",
            "sz",
            "--",
            "sh",
            "-c",
            "trap 'stty size; exit 9' USR1; while :; do sleep 1; done",
        )
        .stdout.strip()
        .decode()
    )
    assert daemon.cli("resize", "sz", "100x33").returncode == 0
    assert json.loads(daemon.cli("info", "sz", "--json").stdout)["rows"] == 33
    assert daemon.cli("signal", "sz", "USR1", "--to", "group").returncode == 0
    assert daemon.cli("wait", session_id).returncode == 9
    second = daemon.cli("new", "-d", "--", "sleep", "600").stdout.strip().decode()
    assert daemon.cli("kill", second).returncode == 0
    assert json.loads(daemon.cli("info", second, "--json").stdout)["state"] == "exited"


def test_global_options_before_or_after_the_command(daemon) -> None:
    base = [sys.executable, "-m", "ptyd"]
    for argv in (["-S", str(daemon.socket), "ls"], ["ls", "-S", str(daemon.socket)]):
        out = subprocess.run(
            [*base, *argv, "--no-autostart"],
            capture_output=True,
            timeout=60,
            env=daemon.env,
            check=False,
        )
        assert out.returncode == 0 and out.stdout.startswith(b"ID")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("info", "missing"), b"no session 'missing'"),
        (("info", "18446744073709551616"), b"no session 18446744073709551616"),  # > 64 bits
        (("new", "-d", "--", "no-such-program-xyz"), b"command not found"),
        (("resize", "1", "80by24"), b"is not a size"),
        (("signal", "1", "NOPE"), b""),
    ],
)
def test_errors_are_one_line_and_nonzero(daemon, args, message) -> None:
    daemon.cli("new", "-d", "--", "sleep", "600")
    out = daemon.cli(*args)
    assert out.returncode != 0
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 or b"usage" in out.stderr


@pytest.mark.parametrize("sessions", [1, 300])
def test_output_into_a_closed_pipe_is_a_quiet_failure(daemon, sessions: int) -> None:
    """``ptyd ls | head -0``: exit status 1 and nothing on stderr, whether the listing fails
    while printing (300 sessions: more than the pipe's buffer) or in the final flush (one)."""
    import os

    for index in range(sessions):
        daemon.client().create(["sleep", "60"], name=f"s{index}")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "ptyd", "-S", str(daemon.socket), "--no-autostart", "ls"],
            env=daemon.env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (out.returncode, out.stderr) == (1, b"")


@pytest.mark.parametrize(
    "argv",
    [
        ["attach", "main"],
        ["-S", "/run/x.sock", "attach", "-e", "^A", "main"],
        ["-S", "attach", "ls", "--json"],
        ["-Sattach", "ls"],
        ["--socket=/run/x.sock", "--no-autostart", "send", "main", "--keys", "C-c"],
        ["--socket", "/run/x.sock", "-L", "work", "snapshot", "main", "--format", "json"],
        ["--sock", "/run/x.sock", "kill", "main"],
        ["-L", "ls", "new", "-d", "--", "sh", "-c", "exit 3"],
        ["serve", "--scrollback", "10", "--allowed-uids", "5"],
        ["stats", "--watch"],
        ["shutdown", "-S", "/run/y.sock"],
        ["--no-autostart", "resize", "main", "100x30"],
        ["signal", "main", "TERM", "--to", "group"],
        ["wait", "main", "--timeout", "2"],
        ["info", "3", "--json"],
        ["--version"],
        [],
    ],
)
def test_the_parser_of_one_command_reads_argv_as_the_whole_parser(argv: list[str]) -> None:
    """A command builds only its own parser (command_in); what it reads must be what the parser
    of every command reads."""
    from ptyd import cli

    whole = cli.build_parser().parse_known_args(argv)
    only = cli.command_in(argv)
    assert vars(cli.build_parser(only).parse_known_args(argv)[0]) == vars(whole[0])
    assert only == whole[0].command


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ls"], "ls"),
        (["-S", "ls", "attach", "x"], "attach"),
        (["-h", "ls"], None),
        (["--so", "x", "ls"], "ls"),
        (["--s", "x", "ls"], None),  # argparse's business: the whole parser
        (["--version"], None),
        (["bogus"], None),
        (["-L"], None),
    ],
)
def test_command_in_reads_only_plain_global_options(argv: list[str], expected: str | None) -> None:
    from ptyd import cli

    assert cli.command_in(argv) == expected


@pytest.mark.parametrize("columns", ["50", "200"])
def test_help_is_as_wide_as_the_terminal_says(columns: str, monkeypatch) -> None:
    """The width comes from COLUMNS (else the terminal, else 80), as argparse finds it: the
    help is what argparse's own formatter prints."""
    import argparse
    import contextlib
    import io

    from ptyd import cli

    monkeypatch.setenv("COLUMNS", columns)
    shown = run("new", "--help").stdout.decode()
    new = cli.build_parser()._subparsers._group_actions[0].choices["new"]  # type: ignore[union-attr]
    new.formatter_class = argparse.HelpFormatter
    stock = io.StringIO()
    with contextlib.redirect_stdout(stock), pytest.raises(SystemExit):
        new.parse_args(["--help"])
    assert shown == stock.getvalue()
    assert max(map(len, shown.splitlines())) <= int(columns)


@pytest.mark.parametrize("closed", [1, 2])
def test_a_command_runs_with_stdout_or_stderr_closed(closed: int) -> None:
    """``ptyd --version >&-``: Python starts with no sys.stdout; the command still succeeds."""
    import os

    out = subprocess.run(
        [sys.executable, "-m", "ptyd", "--version"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.close(closed),  # after the redirections: the fd is gone
        timeout=60,
        check=False,
    )
    assert out.returncode == 0


def test_no_autostart_is_a_clear_error(short_tmp) -> None:
    out = run("-S", str(short_tmp / "none.sock"), "--no-autostart", "ls")
    assert out.returncode == 1
    assert out.stderr.decode().startswith("ptyd: no ptyd daemon is listening on")


def test_a_command_connects_once_to_a_listening_daemon(short_tmp) -> None:
    """No probe before the connection (a connect, an accept and a close for the daemon): the
    command's one connection tells whether a daemon listens. Here a listener that counts its
    connections and hangs up stands in for the daemon."""
    import socket
    import threading

    sock_path = short_tmp / "counting.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(8)
    accepted: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                accepted.append(conn.recv(4096))  # the hello

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        out = run("-S", str(sock_path), "ls")
    finally:
        listener.close()
    assert out.returncode == 1
    assert out.stderr == b"ptyd: connection to the daemon lost: the daemon closed it\n"
    assert len(accepted) == 1 and b"hello" in accepted[0]


def test_shutdown_with_no_daemon_starts_none(short_tmp) -> None:
    """Shutdown is the one command that does not autostart (tmux's kill-server alike): it says
    nothing is listening, exits 1, and leaves no daemon behind."""
    sock = short_tmp / "none.sock"
    out = run("-S", str(sock), "shutdown")
    assert out.returncode == 1
    assert out.stderr.decode().strip() == (
        f"ptyd: no ptyd daemon is listening on {sock}: nothing to shut down"
    )
    assert not sock.exists()


def test_shutdown_returns_once_the_daemon_has_exited(daemon) -> None:
    """As tmux kill-server: a program that ignores SIGHUP and SIGTERM holds the daemon for two
    kill graces, and shutdown waits for it; a command meanwhile waits too, then finds no
    daemon (here: autostart is off), not a daemon that "lost its socket"."""
    client = daemon.client()
    client.create(["sh", "-c", "trap '' HUP TERM; sleep 600"])
    command = [sys.executable, "-m", "ptyd", "-S", str(daemon.socket), "--no-autostart"]
    stopping = subprocess.Popen([*command, "shutdown"], env=daemon.env)
    wait_until(lambda: not is_listening(daemon.socket), 30, "the daemon to stop listening")
    meanwhile = daemon.cli("ls")
    assert stopping.wait(timeout=60) == 0
    assert daemon.process.wait(timeout=10) == 0 and not daemon.socket.exists()
    assert lock_holder(daemon.socket) is None
    assert meanwhile.returncode == 1 and b"autostart is off" in meanwhile.stderr
    assert b"lost its socket" not in meanwhile.stderr


@pytest.mark.parametrize("uids", ["-1", "1000,-5", "4294967295", "x"])
def test_allowed_uids_must_be_real_uids(short_tmp, uids: str) -> None:
    """-1 is what the daemon reads when a peer's credentials are unknown: never allowable."""
    import os

    out = run(
        "-S", str(short_tmp / "x.sock"), "serve", env=dict(os.environ, PTYD_ALLOWED_UIDS=uids)
    )
    assert out.returncode == 1
    assert b"PTYD_ALLOWED_UIDS" in out.stderr or b"allowed" in out.stderr, out.stderr
    assert not (short_tmp / "x.sock").exists()


def test_invalid_setting_names_it(short_tmp) -> None:
    import os

    env = dict(os.environ, PTYD_FLOW_THRESHOLD="2M", PTYD_FLOW_MAX_QUEUE_SIZE="1M")
    out = run("-S", str(short_tmp / "x.sock"), "serve", env=env)
    assert out.returncode == 1
    assert b"PTYD_FLOW_MAX_QUEUE_SIZE" in out.stderr and b"above PTYD_FLOW_THRESHOLD" in out.stderr


@pytest.mark.parametrize("cause", ["lock-symlink", "log-file"])
def test_a_daemon_that_cannot_start_says_why_to_the_command_that_started_it(
    short_tmp, cause
) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PTYD_")}
    if cause == "lock-symlink":
        (short_tmp / "d.sock.lock").symlink_to(short_tmp / "elsewhere")
        reason = b"Too many levels of symbolic links"
    else:
        env["PTYD_LOG_FILE"] = str(short_tmp / "no-such-dir" / "d.log")
        reason = b"No such file or directory"
    out = run("-S", str(short_tmp / "d.sock"), "ls", env=env)
    assert out.returncode == 1 and out.stderr.count(b"\n") == 1, out.stderr
    assert b"could not start a daemon on" in out.stderr
    assert reason in out.stderr and b"it exited" not in out.stderr


def test_autostart_starts_one_background_daemon_then_shutdown(backend, short_tmp) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PTYD_")}
    if backend == "pure":
        env["PTYD_PURE"] = "1"
    sock = str(short_tmp / "auto" / "d.sock")
    out = run("-S", sock, "new", "-d", "--", "sleep", "600", env=env)
    assert out.returncode == 0, out.stderr
    info = json.loads(run("-S", sock, "info", "1", "--json", env=env).stdout)
    assert info["state"] == "running"
    stats = json.loads(run("-S", sock, "stats", "--json", env=env).stdout)
    assert stats["daemon"]["backend"] == backend
    daemon_pid = stats["daemon"]["pid"]
    # Detached: in a session of its own (and, after the second fork, unable to gain a terminal).
    assert os.getsid(daemon_pid) not in (os.getsid(0), daemon_pid)
    assert run("-S", sock, "shutdown", env=env).returncode == 0
    pidfd = os.pidfd_open(daemon_pid)  # not our child (double fork): watch it with a pidfd
    try:
        import select

        assert select.select([pidfd], [], [], 30)[0], "daemon still running after shutdown"
    finally:
        os.close(pidfd)
    assert not os.path.exists(sock)


def test_autostart_from_a_directory_with_another_ptyd_starts_this_one(short_tmp) -> None:
    """From a source checkout (a ``ptyd`` directory in the current one, without its compiled
    modules) the daemon the command starts is the command's own ptyd, not the one there."""
    import os

    decoy = short_tmp / "checkout"
    (decoy / "ptyd").mkdir(parents=True)
    for name in ("__init__.py", "__main__.py"):
        (decoy / "ptyd" / name).write_text("raise SystemExit('the decoy ptyd was imported')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTYD_") and k != "PYTHONPATH"}
    sock = str(short_tmp / "auto" / "d.sock")
    command = [installed_ptyd(), "-S", sock]
    out = subprocess.run(
        [*command, "stats", "--json"], cwd=decoy, env=env, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["daemon"]["backend"] == "compiled"
    stopped = subprocess.run([*command, "shutdown"], cwd=decoy, env=env, timeout=60)
    assert stopped.returncode == 0


def test_commands_run_without_asyncio(daemon) -> None:
    """Every command but ``serve`` runs on a blocking socket: importing asyncio (and uvloop)
    would cost more than the command itself. A guard on what is imported, not on time."""
    script = f"""
import sys
from ptyd import cli

sock = {str(daemon.socket)!r}
common = ["-S", sock, "--no-autostart"]
assert cli.main([*common, "new", "-d", "-n", "lean", "--", "sh", "-c", "read x; echo got-$x"]) == 0
assert cli.main([*common, "ls"]) == 0
assert cli.main([*common, "send", "lean", "yes"]) == 0
assert cli.main([*common, "send", "--keys", "lean", "Enter"]) == 0
assert cli.main([*common, "snapshot", "lean"]) == 0
assert cli.main([*common, "attach", "--no-tty", "--from-offset", "0", "lean"]) == 0
print("loaded:", sorted({{"asyncio", "uvloop"}} & set(sys.modules)))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert b"got-yes" in done.stdout
    assert b"loaded: []" in done.stdout


def test_a_daemon_at_its_client_cap_is_named_as_such(short_tmp) -> None:
    """The command line reads the daemon's refusal even when it closes before the hello is
    written, and says why instead of a bare lost connection."""
    from .conftest import start_daemon

    running = start_daemon(short_tmp / "d.sock", "compiled", "--max-clients", "1")
    try:
        holder = running.client()
        for _ in range(5):
            out = running.cli("ls")
            assert out.returncode == 1
            assert b"too many" in out.stderr.lower() and out.stderr.count(b"\n") == 1, out.stderr
        holder.list_sessions()
    finally:
        assert running.stop() == 0


@pytest.mark.parametrize("value", ["abc", "-5", "100001", ""])
def test_attach_refuses_a_bad_spin_time(daemon, value: str) -> None:
    import os

    sock = str(daemon.socket)
    flag = run("-S", sock, "attach", "--no-tty", f"--spin-us={value}", "1")
    assert flag.returncode == 2
    assert b"--spin-us" in flag.stderr and b"microseconds from 0 to 100000" in flag.stderr
    if value:  # an empty PTYD_SPIN_US means the default, as for every setting
        env = dict(os.environ, PTYD_SPIN_US=value)
        out = run("-S", sock, "attach", "--no-tty", "1", env=env)
        assert out.returncode == 1
        assert f"invalid PTYD_SPIN_US '{value}'".encode() in out.stderr, out.stderr


def test_the_attach_client_does_not_load_the_emulator(backend) -> None:
    """The relay is all the attach client needs from the backend; the emulator (pyte alone:
    about 45 ms of imports) is loaded by whoever first asks for it."""
    import os

    env = dict(os.environ, PTYD_PURE="1" if backend == "pure" else "0")
    script = (
        "import sys, ptyd.attach, ptyd.cli\n"
        "from ptyd._backend import BACKEND, relay\n"
        "heavy = ('ptyd._vt', 'ptyd.emulator', 'ptyd.pyte_backend', 'pyte')\n"
        "print(BACKEND, [name for name in heavy if name in sys.modules])\n"
        "from ptyd._backend import Emulator\n"
        "print(Emulator.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    emulator = "VtEmulator" if backend == "compiled" else "PyteEmulator"
    assert out.stdout.split("\n")[:2] == [f"{backend} []", emulator]


def test_the_command_line_imports_only_what_a_command_needs(backend) -> None:
    """A command's start is mostly imports: typing, dataclasses (with inspect), json, asyncio,
    shutil (argparse's way to the terminal's width: it loads bz2 and lzma), pathlib (with
    urllib and ipaddress), socket (enums, selectors; _socket is enough) and the request
    schemas cost a 65 ms command 33 ms and more, and no command needs them until it prints
    JSON. Run without site, whose editable-install finder imports its own."""
    import os

    import msgpack

    import ptyd

    env = dict(os.environ, PTYD_PURE="1" if backend == "pure" else "0")
    roots = [os.path.dirname(os.path.dirname(module.__file__)) for module in (ptyd, msgpack)]
    script = (
        f"import sys; sys.path[:0] = {roots!r}\n"
        "import ptyd.cli, ptyd.attach\n"
        "from ptyd._backend import relay\n"
        "ptyd.cli.build_parser().parse_known_args(['attach', 'main'])\n"
        "avoided = ('typing', 'dataclasses', 'inspect', 'json', 'shlex', 'asyncio', 'logging',\n"
        "           'subprocess', 'shutil', 'pathlib', 'socket', 'selectors', 'ptyd.schemas',\n"
        "           'ptyd.client', 'msgpack.fallback')\n"
        "print([name for name in avoided if name in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_build_without_the_engine_falls_back_to_the_pure_backend(tmp_path) -> None:
    """_fast and _relay built but not _vt (a partial build): the pure backend, with a warning,
    rather than a daemon that fails at its first session."""
    import importlib.util
    import os
    import shutil
    import sysconfig
    from pathlib import Path

    spec = importlib.util.find_spec("ptyd._vt")
    if spec is None or spec.origin is None:
        pytest.skip("the compiled backend is not built here")
    package = Path(spec.origin).parent
    copy = tmp_path / "ptyd"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("_vt.*.so", "__pycache__"))
    # -S: no site, so no editable-install finder that would find the real package first; and
    # run from the copy's parent, not from a checkout.
    path = f"{tmp_path}:{sysconfig.get_paths()['purelib']}"
    env = dict(os.environ, PYTHONPATH=path, PTYD_PURE="0")
    script = "import ptyd._backend as b; print(b.BACKEND, b.Emulator.__name__, b.__file__)"
    out = subprocess.run(
        [sys.executable, "-S", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"pure PyteEmulator {copy / '_backend.py'}"
    assert "compiled backend unavailable (ptyd._vt is not built)" in out.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["attach", "T", "-r"], b"options go before TARGET"),
        (["attach", "T", "--", "cat"], b"a command is only used with -A"),
        (["attach", "--from-offset", "5", "T"], b"--from-offset needs --no-tty"),
        (["wait", "T", "--timeout", "-1"], b"--timeout must be 0 (poll) or more seconds"),
        (["stats", "--watch", "-1"], b"--watch must be from 0.1 to 3600 seconds"),
        (["stats", "--watch", "0"], b"--watch must be from 0.1 to 3600 seconds"),
        (["stats", "--watch", "inf"], b"--watch must be from 0.1 to 3600 seconds, not inf"),
        (["stats", "--watch", "1e-9"], b"--watch must be from 0.1 to 3600 seconds"),
        (["resize", "T", "2000x20"], b"'2000x20': sizes go from 1x1 to 1000x1000"),
        (["ls", "extra"], b"unrecognized arguments: extra"),
        (["send", "T"], b"nothing to send: give TEXT"),
        (["send", "T", "--"], b"nothing to send: give TEXT"),
        (["send", "T", "--keys"], b"nothing to send: give TEXT"),
        (["send", "T", "--stdin", "x"], b"--stdin sends standard input: no TEXT with it"),
    ],
)
def test_usage_errors_show_the_commands_usage_and_exit_2(short_tmp, argv, message) -> None:
    """Checked before connecting (no daemon is started for them), with the command's own
    usage line, as argparse's errors are."""
    sock = str(short_tmp / "none.sock")
    out = run("-S", sock, *argv)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(b"usage: ptyd " + argv[0].encode() + b" "), out.stderr
    assert message in out.stderr and b"Traceback" not in out.stderr
    assert not (short_tmp / "none.sock").exists()


def test_listings_show_control_characters_of_a_command_as_escapes(daemon) -> None:
    session_id = daemon.cli("new", "-d", "--", "sh", "-c", "echo a\nsleep 600 # \x1b[2J").stdout
    listing = daemon.cli("ls").stdout
    assert len(listing.splitlines()) == 2 and b"\x1b" not in listing
    assert b"echo a\\nsleep 600 # \\x1b[2J" in listing
    info = daemon.cli("info", session_id.decode().strip()).stdout
    assert b"\x1b" not in info and b"'echo a\\nsleep 600 # \\x1b[2J'" in info


def test_listings_align_wide_characters_and_escape_bidi_controls(daemon) -> None:
    """A CJK command is cut by terminal cells, so the columns after it still line up; a
    right-to-left override would reorder the listing's line, so it is shown as an escape."""
    import unicodedata

    daemon.cli("new", "-d", "--", "sh", "-c", "echo " + "漢字" * 30 + "; sleep 600")
    daemon.cli("new", "-d", "--", "sh", "-c", "sleep 601 # a\u202eb")
    listing = daemon.cli("ls").stdout.decode()
    assert "\u202e" not in listing and "a\\u202eb" in listing

    def cells_before(line: str, column: str) -> int:
        head = line[: line.index(column)]
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in head)

    header, *rows = listing.splitlines()
    assert len(rows) == 2 and "字漢…" in rows[0]
    assert {cells_before(row, "80x24") for row in rows} == {cells_before(header, "SIZE")}
    assert cells_before(rows[0], "80x24") - cells_before(header, "COMMAND") in (39 + 2, 40 + 2)
    info = daemon.cli("info", "2").stdout.decode()
    assert "\u202e" not in info and "a\\u202eb" in info


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--flow-threshold", "2M"], {}, "invalid --flow-threshold=2097152: must be below "),
        (["--log-level", "loud"], {}, "invalid --log-level='loud': unknown level"),
        (["--max-clients", "0"], {}, "invalid --max-clients=0: must be greater than 0"),
        ([], {"PTYD_MAX_CLIENTS": "0"}, "invalid PTYD_MAX_CLIENTS=0: must be greater than 0"),
        (
            ["--kill-grace", "abc"],
            {},
            "invalid --kill-grace='abc': 'abc' is not a non-negative number of seconds",
        ),
        ([], {"PTYD_SCROLLBACK": "1e3"}, "invalid PTYD_SCROLLBACK='1e3': '1e3' is not a whole"),
        (
            ["--flow-max-queue-size", "1K"],
            {"PTYD_FLOW_THRESHOLD": "2K"},
            "invalid --flow-max-queue-size=1024: must be above PTYD_FLOW_THRESHOLD (2048)",
        ),
    ],
)
def test_a_bad_setting_is_named_as_the_user_gave_it(short_tmp, argv, env, message) -> None:
    """A flag's error names the flag, an environment variable's the variable; a conflict
    between two settings blames the one the user set."""
    import os

    sock = str(short_tmp / "d.sock")
    out = run("-S", sock, "serve", *argv, env={**os.environ, **env})
    assert out.returncode == 1
    assert message in out.stderr.decode() and out.stderr.count(b"\n") == 1, out.stderr
    assert not (short_tmp / "d.sock").exists()


@pytest.mark.parametrize("argv", [["--version"], ["ls"], ["serve"], ["attach", "x"]])
def test_ptyd_pure_that_is_not_a_boolean_is_one_line_of_error(short_tmp, argv) -> None:
    """Every process reads PTYD_PURE; a typo must not silently pick the slow backend."""
    import os

    sock = str(short_tmp / "d.sock")
    out = run("-S", sock, *argv, env={**os.environ, "PTYD_PURE": "ture"})
    assert out.returncode == 1 and out.stderr.count(b"\n") == 1, out.stderr
    assert b"invalid PTYD_PURE='ture': 'ture' is not a boolean" in out.stderr
    assert not (short_tmp / "d.sock").exists()


def test_attach_A_starts_a_new_session_in_place_of_an_exited_one(daemon) -> None:
    first = int(daemon.cli("new", "-d", "-n", "job", "--", "sh", "-c", "exit 3").stdout)
    assert daemon.cli("wait", "job").returncode == 3
    script = "read word; echo again-$word; exit 7"
    again = daemon.cli("attach", "--no-tty", "-A", "job", "--", "sh", "-c", script, input=b"x\n")
    assert again.returncode == 7 and b"again-x" in again.stdout, again
    assert daemon.cli("wait", str(first)).returncode == 3  # the exited one, by id
    assert daemon.cli("info", "job").stdout.split(b"\n")[0].split()[-1] != str(first).encode()


def test_an_argument_that_is_not_utf8_is_one_line_of_error(daemon) -> None:
    out = daemon.cli("new", "-d", "--", "sh", "-c", "echo \udc9b")
    assert out.returncode == 1 and out.stderr.count(b"\n") == 1, out.stderr
    assert b"is not UTF-8 text" in out.stderr and b"Traceback" not in out.stderr


@pytest.mark.parametrize(
    "value",
    ["1 2 3 4 5 6 7 8 1,2 /x", "0 1 2 3 4 5 6 7 1,2 /x", "garbage", "", "3 4"],
    ids=["stdout-and-stderr", "stdin-and-stdout", "garbage", "empty", "short"],
)
def test_a_stray_handoff_variable_touches_nothing(daemon, value) -> None:
    """``PTYD_HANDOFF`` is the starter's (docs/attach.md): a value that does not name a socket
    and a file this process holds is ignored, its descriptors left alone."""
    daemon.cli("new", "-d", "-n", "h", "--", "cat")
    env = dict(daemon.env, PTYD_HANDOFF=value)
    base = [sys.executable, "-m", "ptyd", "-S", str(daemon.socket), "--no-autostart"]
    listed = subprocess.run([*base, "ls"], env=env, capture_output=True, timeout=60, check=False)
    assert listed.returncode == 0 and listed.stdout.startswith(b"ID"), listed
    sent = subprocess.run(
        [*base, "send", "--stdin", "h"], env=env, input=b"x", capture_output=True, timeout=60
    )
    assert sent.returncode == 0, sent
