"""Reliability and security rows of issue 5 against the real daemon: hostile socket paths,
foreign peers, impostors, start races, hostile frames, slowloris, many clients, churn, signals,
a killed daemon and the hang-up ladder. Each test asserts its figure (docs/reliability.md).

Tests that never touch the output hot path or the emulator (socket directory checks, start
races) run once, without the backend parameter: both backends share that code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest

from ptyd import errors, protocol
from ptyd.client import Client
from ptyd.errors import CallTimedOut, DaemonImpostor, RequestError

from .conftest import Daemon, start_daemon
from .helpers import RawClient, connect_as, needs_root, wait_until

NOBODY = 65534
MIB = 1024 * 1024
FULL_FIGURES = os.environ.get("PTYD_FULL_FIGURES") == "1"  # the rows' own (longer) counts


def serve(
    socket_path: Path, *flags: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A daemon process whose failure we want to see (start_daemon raises on failure)."""
    full_env = {k: v for k, v in (env or os.environ).items() if not k.startswith("PTYD_")}
    return subprocess.Popen(
        [sys.executable, "-m", "ptyd", "serve", "-S", os.fspath(socket_path), *flags],
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def tree_state(root: Path) -> list[tuple[str, int, int, int, int]]:
    """(path, mode, uid, inode, mtime) of everything under ``root``, without following links."""
    rows = []
    for path in sorted([root, *root.rglob("*")]):
        info = os.lstat(path)
        rows.append((str(path), info.st_mode, info.st_uid, info.st_ino, info.st_mtime_ns))
    return rows


def pids_alive(pids: list[int]) -> list[int]:
    """Pids still running (zombies count as gone: they have exited)."""
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z":
            alive.append(pid)
    return alive


# -- A. socket, authentication ------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    ["mode-0755", pytest.param("other-owner", marks=needs_root), "symlink", "regular-file"],
)
def test_hostile_socket_directory_refused_untouched(short_tmp: Path, variant: str) -> None:
    target = short_tmp / "run"
    if variant == "mode-0755":
        target.mkdir(0o755)
        os.chmod(target, 0o755)
    elif variant == "other-owner":
        target.mkdir(0o700)
        os.chown(target, NOBODY, NOBODY)
    elif variant == "symlink":
        real = short_tmp / "real"
        real.mkdir(0o700)
        target.symlink_to(real)
    else:
        target.write_bytes(b"not a directory")
    before = tree_state(short_tmp)
    process = serve(target / "d.sock")
    _, err = process.communicate(timeout=30)
    assert process.returncode != 0
    assert str(target).encode() in err, err
    assert tree_state(short_tmp) == before


def _fd_targets(pid: int) -> set[str]:
    """What each open fd of ``pid`` points at; an fd closed between listing and reading (the
    daemon's own start-up work goes on) is skipped."""
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return targets


def test_socket_0600_in_a_0700_directory(short_tmp: Path) -> None:
    socket_dir = short_tmp / "fresh"
    running = start_daemon(socket_dir / "d.sock", "compiled")
    try:
        assert os.stat(socket_dir).st_mode & 0o777 == 0o700
        assert os.stat(running.socket).st_mode & 0o777 == 0o600
        # No abstract or inet listeners: every socket inode the daemon holds is a path socket.
        inodes = {
            name[8:-1] for name in _fd_targets(running.process.pid) if name.startswith("socket:[")
        }
        tcp = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
        assert not any(
            line.split()[9] in inodes for line in tcp.splitlines()[1:] if len(line.split()) > 9
        )
        abstract = [
            line
            for line in Path("/proc/net/unix").read_text().splitlines()[1:]
            if line.split()[6] in inodes
            and len(line.split()) > 7
            and line.split()[7].startswith("@")
        ]
        assert abstract == []
    finally:
        assert running.stop() == 0


def test_the_log_file_is_created_private_whatever_the_umask(short_tmp: Path) -> None:
    """It records sessions' argv: created 0600 in the foreground too (it used to follow the
    umask there, 0644 under the usual 022)."""
    log_file = short_tmp / "daemon.log"
    running = start_daemon(
        short_tmp / "d.sock",
        "compiled",
        "--log-file",
        os.fspath(log_file),
        preexec_fn=lambda: os.umask(0o022),
    )
    try:
        assert os.stat(log_file).st_mode & 0o777 == 0o600
    finally:
        assert running.stop() == 0


def test_a_log_that_cannot_be_written_costs_its_lines_not_the_daemon(short_tmp: Path) -> None:
    """A full disk (/dev/full: every write fails with ENOSPC): the daemon serves on, and says
    once on stderr that log lines are lost instead of a traceback for each line."""
    running = start_daemon(
        short_tmp / "d.sock",
        "compiled",
        "--log-file",
        "/dev/full",
        "--log-level",
        "debug",
        stderr=subprocess.PIPE,
    )
    try:
        with Client(running.socket, timeout=10) as client:
            info = client.create(["sh", "-c", "exit 3"])
            assert client.wait(info.id, timeout=10).status == 3
    finally:
        assert running.stop() == 0
    assert running.process.stderr is not None
    with running.process.stderr:
        stderr = running.process.stderr.read().decode()
    assert stderr == "ptyd: log lines are lost: [Errno 28] No space left on device\n", stderr


@needs_root
def test_foreign_uid_refused_before_a_byte_is_read(daemon) -> None:
    """With only the peer check standing in the way (dir 0711, socket 0666), uid 65534 gets one
    auth_refused frame and EOF: its hello and a malformed frame behind it are never parsed."""
    os.chmod(daemon.socket.parent, 0o711)
    os.chmod(daemon.socket, 0o666)
    hello = protocol.encode(protocol.request(1, "hello", version=protocol.VERSION_TEXT))
    times = []
    for _ in range(20):
        start = time.monotonic()
        got = connect_as(NOBODY, daemon.socket, hello + b"\x00\x00\x00\x02\xc1\xc1")
        times.append(time.monotonic() - start)
        messages = protocol.FrameDecoder(1 << 20).feed(got)
        assert len(messages) == 1, got
        assert messages[0]["id"] is None and messages[0]["error"]["code"] == errors.AUTH_REFUSED
    print(
        f"\n{daemon.backend}: 20/20 foreign connections refused, slowest {max(times) * 1000:.0f} ms"
    )
    with daemon.client() as client:
        assert client.stats()["daemon"]["clients"] == 1


@needs_root
def test_peer_uids_above_two_to_the_31_are_read_as_they_are(short_tmp: Path) -> None:
    """uid_t is unsigned: a peer with uid 3,000,000,000 (valid on Linux) was read as a negative
    number, so a daemon run by such a user refused its own user."""
    from ptyd.connection import peer_credentials

    path = short_tmp / "peer.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(path))
    listener.listen(1)
    os.chmod(path, 0o666)
    os.chmod(short_tmp, 0o711)
    try:
        high = 3_000_000_000
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.setresgid(high, high, high)
                os.setresuid(high, high, high)
                peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                peer.connect(os.fspath(path))
                peer.recv(1)
            finally:
                os._exit(0)
        accepted, _ = listener.accept()
        with accepted:
            assert peer_credentials(accepted) == (pid, high)
        os.waitpid(pid, 0)
    finally:
        listener.close()


@needs_root
def test_client_refuses_an_impostor_socket(short_tmp: Path) -> None:
    path = short_tmp / "d.sock"
    impostor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    impostor.bind(os.fspath(path))
    impostor.listen(8)
    impostor.setblocking(False)
    try:
        os.chown(path, NOBODY, NOBODY)
        with pytest.raises(DaemonImpostor, match="owned by uid 65534"):
            Client(path, timeout=10)
        with pytest.raises(BlockingIOError):
            impostor.accept()  # the client never even connected
    finally:
        impostor.close()


@needs_root
def test_client_refuses_a_listener_of_another_uid_behind_a_socket_of_its_own(
    short_tmp: Path,
) -> None:
    """A4: the socket and its directory are yours, but the process listening on it is not
    (root moved another user's socket there): the library and the command line check the
    peer's uid before sending anything."""
    os.chmod(short_tmp, 0o711)
    theirs, mine = short_tmp / "theirs", short_tmp / "mine"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    mine.mkdir(mode=0o700)
    ready_r, ready_w = os.pipe()
    got_r, got_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the other user's listener
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(os.fspath(theirs / "d.sock"))
            listener.listen(8)
            os.write(ready_w, b"x")
            received = 0
            for _ in range(2):  # the library, then the command line
                peer, _ = listener.accept()
                peer.settimeout(5)
                with contextlib.suppress(OSError):
                    while chunk := peer.recv(65536):
                        received += len(chunk)
                peer.close()
            os.write(got_w, str(received).encode())
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(got_w)
    try:
        assert os.read(ready_r, 1) == b"x"
        path = mine / "d.sock"
        os.rename(theirs / "d.sock", path)
        os.chown(path, 0, 0)
        with pytest.raises(DaemonImpostor, match="listening runs as uid 65534"):
            Client(path, timeout=10)
        out = subprocess.run(
            [sys.executable, "-m", "ptyd", "-S", os.fspath(path), "--no-autostart", "ls"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert out.returncode == 1 and b"listening runs as uid 65534" in out.stderr, out
        assert os.read(got_r, 64) == b"0"  # not even a hello reached it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(got_r)


def test_concurrent_starts_leave_exactly_one_daemon(short_tmp: Path) -> None:
    for trial in range(3):
        path = short_tmp / f"race{trial}.sock"
        ready_r, ready_w = os.pipe()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PTYD_")}
        env["PTYD_READY_FD"] = str(ready_w)
        racers = [
            subprocess.Popen(
                [sys.executable, "-m", "ptyd", "serve", "-S", os.fspath(path)],
                env=env,
                pass_fds=(ready_w,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(5)
        ]
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            ready.read()  # EOF once every racer has reported ready or failure
        losers = []
        with Client(path, timeout=10) as client:
            survivor_pid = client.daemon_info["pid"]
        for racer in racers:
            if racer.pid == survivor_pid:
                continue
            _, err = racer.communicate(timeout=30)
            assert racer.returncode != 0 and b"already running" in err, err
            losers.append(racer)
        assert len(losers) == 4
        survivor = next(r for r in racers if r.pid == survivor_pid)
        survivor.terminate()
        survivor.communicate(timeout=30)
        assert survivor.returncode == 0
        assert not path.exists()


def test_stale_socket_replaced_live_one_kept(short_tmp: Path) -> None:
    path = short_tmp / "d.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(path))
    stale.close()  # a socket file nobody listens on
    running = start_daemon(path, "compiled")
    try:
        second = serve(path)
        _, err = second.communicate(timeout=30)
        assert second.returncode != 0 and b"already running" in err
        with Client(path, timeout=10) as client:
            assert client.daemon_info["pid"] == running.process.pid
    finally:
        assert running.stop() == 0


def test_regular_file_at_the_socket_path_is_left_alone(short_tmp: Path) -> None:
    path = short_tmp / "d.sock"
    path.write_bytes(b"precious")
    before = tree_state(short_tmp)
    process = serve(path)
    _, err = process.communicate(timeout=30)
    assert process.returncode != 0 and str(path).encode() in err
    assert [row for row in tree_state(short_tmp) if row[0] == str(path)] == before[1:]
    assert path.read_bytes() == b"precious"


def test_socket_path_too_long(short_tmp: Path) -> None:
    """107 bytes is the most sun_path holds with its NUL: it works; 108 and 200 are refused
    with the limit in the message and nothing is created at a truncated path."""
    deep = short_tmp / ("x" * (104 - len(os.fsencode(short_tmp))))
    ok = deep / "s"
    assert len(os.fsencode(ok)) == 107
    running = start_daemon(ok, "compiled")
    assert running.stop() == 0
    for path in (deep / "sx", short_tmp / ("y" * 200)):
        process = serve(path)
        _, err = process.communicate(timeout=30)
        assert process.returncode != 0 and b"107 bytes" in err, err
    assert not any(p.is_socket() for p in short_tmp.rglob("*"))


def test_session_names_validated(daemon) -> None:
    client = daemon.client()
    bad = [
        "",
        "a/b",
        "..",
        ".",
        "-x",
        "1abc",
        "a b",
        "x\x1b[2J",
        "n" * 65,
        "x" * 10000,
        "é",
        "a\nb",
    ]
    for name in bad:
        with pytest.raises(RequestError) as refused:
            client.request("create", argv=["true"], name=name)
        assert refused.value.code == errors.BAD_REQUEST, name
    assert client.list_sessions() == []


# -- B. wire protocol ---------------------------------------------------------------------------


def _bombs() -> list[tuple[str, bytes, str]]:
    """(label, frame body, expected error code) for each hostile frame."""
    deep = b"\x91" * 100_000 + b"\xc0"
    return [
        ("invalid byte 0xc1", b"\xc1", errors.BAD_FRAME),
        ("not a map", msgpack.packb([1, 2, 3]), errors.BAD_FRAME),
        ("trailing data", msgpack.packb({"type": "list", "id": 9}) + b"\x01", errors.BAD_FRAME),
        ("array32 of 2**32-1", b"\xdd\xff\xff\xff\xff", errors.BAD_FRAME),
        ("map32 of 2**32-1", b"\xdf\xff\xff\xff\xff", errors.BAD_FRAME),
        ("str32 of 2**32-1", b"\xdb\xff\xff\xff\xff", errors.BAD_FRAME),
        ("100,000-deep nesting", deep, errors.BAD_FRAME),
        ("64 KiB of empty arrays", b"\xdd\x00\x01\x00\x00" + b"\x90" * 65536, errors.BAD_FRAME),
        (
            "wide map of empty maps",  # past MAX_REQUEST_CONTAINER entries: refused undecoded
            msgpack.packb({"type": "list", "id": 9, "x": [{}] * 60000}),
            errors.BAD_FRAME,
        ),
        (
            "4 MiB of nested empty arrays",  # each container small, four million objects in all
            msgpack.packb({"type": "list", "id": 9, "x": [[[]] * 4095] * 1022}),
            errors.BAD_FRAME,
        ),
        (
            "4 MiB of arrays of empty maps",
            msgpack.packb({"type": "list", "id": 9, "x": [[{}] * 4095] * 1022}),
            errors.BAD_FRAME,
        ),
        ("unknown type", msgpack.packb({"type": "frobnicate", "id": 9}), errors.UNKNOWN_TYPE),
        (
            "bad field type",
            msgpack.packb({"type": "info", "id": 9, "session": [1]}),
            errors.BAD_REQUEST,
        ),
        ("rows 0", msgpack.packb({"type": "create", "id": 9, "rows": 0}), errors.BAD_REQUEST),
        (
            "cols 65536",
            msgpack.packb({"type": "create", "id": 9, "cols": 65536}),
            errors.BAD_REQUEST,
        ),
        ("negative id", msgpack.packb({"type": "list", "id": -1}), errors.BAD_REQUEST),
        (
            "session in Arabic-Indic digits",  # int() reads them: U+0661 was session 1
            msgpack.packb({"type": "info", "id": 9, "session": "\u0661"}),
            errors.BAD_REQUEST,
        ),
        ("non-utf8 str", b"\x82\xa4type\xa4list\xa2id\xa2\xff\xfe", errors.BAD_FRAME),
    ]


def test_hostile_frames_get_errors_while_others_keep_working(daemon) -> None:
    bystander = daemon.client()
    info = bystander.create(["cat"])
    base = bystander.stats()["daemon"]
    hostile = RawClient(daemon.socket, hello=True)
    worst = 0.0
    for label, body, code in _bombs():
        start = time.monotonic()
        hostile.sock.sendall(struct.pack(">I", len(body)) + body)
        answer = hostile.read_message(timeout=10)
        worst = max(worst, time.monotonic() - start)
        assert answer is not None and not answer["ok"], label
        assert answer["error"]["code"] == code, (label, answer)
        assert bystander.info(info.id).is_running  # the daemon still serves others
    assert hostile.call("list")["sessions"][0]["id"] == info.id  # and the hostile one too
    # Oversized prefixes: frame_too_large, then the connection closes.
    for prefix in (0xFFFFFFFF, 4 * MIB + 1, 2**31):
        victim = RawClient(daemon.socket, hello=True)
        victim.sock.sendall(struct.pack(">I", prefix) + b"\x80")
        answer = victim.read_message(timeout=10)
        assert answer["error"]["code"] == errors.FRAME_TOO_LARGE
        assert victim.read_message(timeout=10) is None
        victim.close()
    # Truncated frames: EOF mid-prefix and mid-body.
    for cut in (b"\x00\x00", b"\x00\x00\x00\x10\x81"):
        truncated = RawClient(daemon.socket, hello=True)
        truncated.sock.sendall(cut)
        truncated.close()
    hostile.close()
    after = bystander.stats()["daemon"]
    growth = after["rss"] - base["rss"]
    print(
        f"\n{daemon.backend}: {len(_bombs())} hostile frames, worst answer {worst * 1000:.0f} ms, "
        f"RSS growth {growth / MIB:.1f} MiB"
    )
    assert growth <= 16 * MIB
    assert worst < 1.0
    wait_until(lambda: bystander.stats()["daemon"]["clients"] == 1, 10, "hostile clients gone")


def test_slowloris_before_hello_timed_out_and_capped(backend, short_tmp: Path) -> None:
    """B5: connections that never say hello are closed at the deadline, and at most
    PTYD_MAX_UNAUTHENTICATED are held: a new one past the cap closes the oldest, so a flood
    of idle connections never keeps a client that says hello out."""
    running = start_daemon(
        short_tmp / "d.sock", backend, "--hello-timeout", "1", "--max-unauthenticated", "8"
    )
    try:
        start = time.monotonic()
        idle = [RawClient(running.socket) for _ in range(8)]
        idle[0].sock.sendall(b"\x00")  # one drips a byte
        for _ in range(20):  # the owner, while the slots are full: each time the oldest goes
            with Client(running.socket, timeout=10) as client:
                client.list_sessions()
            idle.append(RawClient(running.socket))
        made_room = []
        for sock in idle[:20]:
            answer = sock.read_message(timeout=5)
            assert answer["error"]["code"] == errors.TOO_MANY_CONNECTIONS
            assert "closed to make room" in answer["error"]["message"]
            assert sock.read_message(timeout=5) is None
            made_room.append(sock)
            sock.close()
        closed_at = []
        for sock in idle[20:]:
            answer = sock.read_message(timeout=5)
            assert answer["error"]["code"] == errors.TIMEOUT
            assert sock.read_message(timeout=5) is None
            closed_at.append(time.monotonic() - start)
            sock.close()
        print(
            f"\n{backend}: slowloris closed after "
            f"{min(closed_at):.2f}-{max(closed_at):.2f} s (timeout 1 s)"
        )
        assert len(closed_at) == 8 and min(closed_at) >= 0.9 and max(closed_at) <= 2.5
        with Client(running.socket, timeout=10) as client:
            assert client.stats()["daemon"]["clients"] == 1
    finally:
        assert running.stop() == 0


# -- C. connections and resources ---------------------------------------------------------------


def test_a_thousand_concurrent_clients_held(backend: str, short_tmp: Path) -> None:
    """C1: 1,000 attached idle clients (5,000 with PTYD_FULL_FIGURES=1; conftest raises
    RLIMIT_NOFILE for the tests and their daemons): RSS per client, 50 new attaches (connect,
    hello, attach with an ANSI snapshot) while they are held, one line to all of them."""
    count = 5000 if FULL_FIGURES else 1000
    daemon = start_daemon(short_tmp / "d.sock", backend, "--max-clients", str(count + 64))
    try:
        _hold_clients(daemon, count)
    finally:
        assert daemon.stop() == 0


def _hold_clients(daemon: Daemon, count: int) -> None:
    client = daemon.client()
    info = client.create(["cat"])
    base = client.stats()["daemon"]
    socks = []
    for _ in range(count):
        raw = RawClient(daemon.socket)
        raw.sock.sendall(RawClient.frame("hello", 1, version=protocol.VERSION_TEXT))
        raw.sock.sendall(RawClient.frame("attach", 2, session=info.id, snapshot=None))
        socks.append(raw)
    for raw in socks:
        for _ in range(2):
            assert raw.read_message(timeout=30)["ok"]
    held = client.stats()["daemon"]
    assert held["clients"] == count + 1
    per_client = (held["rss"] - base["rss"]) / count
    attach_times = []
    for _ in range(50):
        start = time.monotonic()
        newcomer = RawClient(daemon.socket, hello=True)
        assert newcomer.call("attach", session=info.id, snapshot="ansi").get("snapshot") is not None
        newcomer.close()
        attach_times.append(time.monotonic() - start)
    attach_p99 = sorted(attach_times)[-1]  # the slowest of 50 stands for the p99
    start = time.monotonic()
    client.send(info.id, b"ping-all\n")
    for raw in socks:
        message = raw.read_message(timeout=30)
        assert message["event"] == "output" and b"ping-all" in message["data"]
    fan_out = time.monotonic() - start
    print(
        f"\n{daemon.backend}: {count} attached clients, {per_client / 1024:.1f} KiB RSS each; "
        f"a new attach while they are held: median "
        f"{sorted(attach_times)[25] * 1000:.1f} ms, slowest of 50 {attach_p99 * 1000:.1f} ms; "
        f"one line reached all in {fan_out * 1000:.0f} ms"
    )
    assert per_client <= 16 * 1024
    assert attach_p99 <= 0.1
    assert fan_out < 2.0
    for raw in socks:
        raw.close()
    wait_until(lambda: client.stats()["daemon"]["clients"] == 1, 60, "clients gone")


def test_clients_killed_mid_write_and_churn_leave_no_residue(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "stty raw -echo; while :; do cat /etc/services; done"])
    for _ in range(5):  # warm up every code path once
        RawClient(daemon.socket, hello=True).close()
    base = client.stats()["daemon"]
    # Each snapshot attach waits for the emulator to catch up with the flood: pyte is slow.
    cycles = 200 if daemon.backend == "compiled" else 40
    for cycle in range(cycles):
        raw = RawClient(daemon.socket, hello=True, rcvbuf=4096)
        raw.call("attach", session=info.id, snapshot="text" if cycle % 2 else None)
        if cycle % 4 == 0:
            raw.call("detach", session=info.id)
        else:
            raw.sock.recv(1000)
        if cycle % 3 == 0:  # reset: SO_LINGER 0 makes close send RST mid-stream
            raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
    wait_until(lambda: client.stats()["daemon"]["clients"] == 1, 30, "clients gone")
    after = client.stats()["daemon"]
    print(
        f"\n{daemon.backend}: {cycles} connect/attach/detach/reset cycles: "
        f"fds {base['open_fds']} -> "
        f"{after['open_fds']}, RSS {(after['rss'] - base['rss']) / MIB:+.1f} MiB"
    )
    assert abs(after["open_fds"] - base["open_fds"]) <= 2
    assert client.stats()["sessions"][0]["subscribers"] == 0
    client.kill(info.id)


# -- G. lifecycle, F. children ------------------------------------------------------------------

LOOPS = ["uvloop", "asyncio"]


def _loop_flags(loop: str) -> tuple[str, ...]:
    return ("--asyncio",) if loop == "asyncio" else ()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGHUP", "shutdown"])
def test_graceful_shutdown(backend, short_tmp: Path, loop: str, how: str) -> None:
    running = start_daemon(short_tmp / "d.sock", backend, *_loop_flags(loop))
    client = running.client()
    pids = [client.create(["sleep", "600"]).pid for _ in range(3)]
    pids.append(client.create(["sh", "-c", "trap '' HUP; exec sleep 600"]).pid)
    watcher = running.client()
    watcher.attach(1, snapshot=None)
    start = time.monotonic()
    if how == "shutdown":
        assert running.cli("shutdown").returncode == 0
    else:
        running.process.send_signal(getattr(signal, how))
    status = running.process.wait(timeout=30)
    elapsed = time.monotonic() - start
    events = []
    while True:
        event = watcher.next_event(10)
        events.append(type(event).__name__)
        if event.__class__.__name__ == "DisconnectedEvent":
            break
    print(f"\n{backend}/{loop}/{how}: exit {status} in {elapsed:.2f} s")
    assert status == 0
    assert "ShutdownEvent" in events
    assert pids_alive(pids) == []
    assert not running.socket.exists()
    assert elapsed <= 2 * 0.5 + 2.5  # kill ladder (PTYD_KILL_GRACE 0.5) + flush bound


@pytest.mark.parametrize("loop", LOOPS)
def test_second_signal_exits_at_once(backend, short_tmp: Path, loop: str) -> None:
    env = dict(os.environ, PTYD_KILL_GRACE="30")
    running = start_daemon(short_tmp / "d.sock", backend, *_loop_flags(loop), env=env)
    client = running.client()
    stubborn = client.create(
        ["sh", "-c", "trap '' HUP TERM; echo armed; while :; do sleep 1; done"]
    )
    wait_until(lambda: client.info(stubborn.id).bytes_out >= 5, 10, "trap armed")
    running.process.send_signal(signal.SIGTERM)
    wait_until(
        lambda: not running.socket.exists() or _is_shutting_down(running.socket),
        10,
        "shutdown began",
    )
    start = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    status = running.process.wait(timeout=10)
    elapsed = time.monotonic() - start
    print(f"\n{backend}/{loop}: second signal -> exit {status} in {elapsed * 1000:.0f} ms")
    assert elapsed <= 0.5 and status != 0
    wait_until(lambda: pids_alive([stubborn.pid]) == [], 5, "stubborn child killed")


def _is_shutting_down(path: Path) -> bool:
    try:
        with Client(path, timeout=5) as probe:
            probe.list_sessions()
    except Exception:
        return True
    return False


@pytest.mark.parametrize("loop", LOOPS)
def test_sigkilled_daemon_hangs_up_its_sessions_and_restarts(
    backend, short_tmp: Path, loop: str
) -> None:
    running = start_daemon(short_tmp / "d.sock", backend, *_loop_flags(loop))
    client = running.client()
    pids = [client.create(["sleep", "600"]).pid for _ in range(10)]
    running.process.kill()
    running.process.wait(timeout=10)
    gone = wait_until(lambda: pids_alive(pids) == [], 5, "sessions hung up")
    assert running.socket.exists()  # stale: left behind by the dead daemon
    start = time.monotonic()
    again = start_daemon(running.socket, backend, *_loop_flags(loop))
    ready = time.monotonic() - start
    print(
        f"\n{backend}/{loop}: 10/10 sessions gone {gone:.2f} s after SIGKILL; "
        f"restart ready in {ready:.2f} s"
    )
    try:
        assert again.client().list_sessions() == []
    finally:
        assert again.stop() == 0


@pytest.mark.parametrize(
    ("trap", "expected"),
    [("HUP", signal.SIGTERM), ("HUP TERM", signal.SIGKILL)],
)
def test_hang_up_ladder(daemon, trap: str, expected: int) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", f"trap '' {trap}; echo armed; while :; do sleep 1; done"])
    wait_until(lambda: client.info(info.id).bytes_out >= 5, 10, "trap armed")
    start = time.monotonic()
    client.kill(info.id)
    status = client.wait(info.id, timeout=10)
    elapsed = time.monotonic() - start
    assert status.signal == expected
    assert elapsed <= 2 * 0.5 + 0.5  # PTYD_KILL_GRACE 0.5 in tests
    wait_until(lambda: pids_alive([info.pid]) == [], 5, "child gone")


def test_background_process_does_not_keep_a_session_alive(daemon, short_tmp: Path) -> None:
    """A setsid-ed grandchild holds the PTY open; the session still ends when the shell exits."""
    client = daemon.client()
    marker = short_tmp / "bg.pid"
    script = (
        f"setsid sh -c 'echo $$ > {marker}.tmp; mv {marker}.tmp {marker}; exec sleep 600' & "
        f"while [ ! -e {marker} ]; do :; done; exit 4"
    )
    info = client.create(["sh", "-c", script])
    start = time.monotonic()
    status = client.wait(info.id, timeout=10)
    elapsed = time.monotonic() - start
    background = int(marker.read_text())
    try:
        print(f"\n{daemon.backend}: session ended {elapsed:.2f} s after start with a setsid child")
        assert status.code == 4 and elapsed <= 1.5
        assert pids_alive([background]) == [background]  # it escaped; the session ended anyway
    finally:
        os.kill(background, signal.SIGKILL)


# -- B8/B9 input, E5/E7 query replies ------------------------------------------------------------

# Print the hex of every byte read, one token per byte: what reaches the program, exactly.
HEX_ECHO = """
import os, tty
tty.setraw(0)
os.write(1, b"READY ")
while True:
    os.write(1, b"%02x " % os.read(0, 1)[0])
"""


def test_every_byte_value_reaches_the_program_unchanged(daemon) -> None:
    """B9: each of the 256 byte values sent alone arrives as itself; the session lives on."""
    client = daemon.client()
    info = client.create(["python3", "-c", HEX_ECHO])
    client.attach(info.id, snapshot=None, from_offset=0)
    seen = bytearray()
    while b"READY " not in seen:
        seen += client.next_event(10).data
    for value in range(256):
        client.send(info.id, bytes([value]))
    expected = "".join(f"{value:02x} " for value in range(256)).encode()
    while not seen.endswith(expected):
        event = client.next_event(10)
        assert getattr(event, "data", None) is not None, event
        seen += event.data
    assert client.info(info.id).is_running
    print(f"\n{daemon.backend}: 256/256 byte values delivered unchanged, session alive")


def test_a_paste_into_a_program_that_never_reads_is_refused_not_buffered(daemon) -> None:
    """B8: 100 MiB sent to a program that never reads: the bounded input queue refuses the
    excess with input_overflow, daemon memory stays bounded, other sessions are served. (In
    raw mode: a canonical-mode terminal drops what does not fit and keeps accepting.) The one
    send that fills the queue midway waits for the program, up to the client's timeout."""
    client = daemon.client(timeout=2)
    stuck = client.create(["sh", "-c", "stty raw -echo; echo ready; exec sleep 600"])
    wait_until(lambda: "ready" in client.snapshot(stuck.id).data, 10, "raw mode")
    other = client.create(["cat"])
    base = client.stats()["daemon"]["rss"]
    chunk = b"x" * (1024 * 1024)
    accepted = refused = 0
    for _ in range(100):
        try:
            client.send(stuck.id, chunk)
            accepted += 1
        except (RequestError, CallTimedOut) as exc:
            assert isinstance(exc, CallTimedOut) or exc.code == errors.INPUT_OVERFLOW
            refused += 1
    growth = client.stats()["daemon"]["rss"] - base
    print(
        f"\n{daemon.backend}: 100 MiB paste: {accepted} MiB queued, {refused} MiB refused with "
        f"input_overflow, RSS growth {growth / MIB:.1f} MiB"
    )
    assert refused >= 90 and growth <= 16 * MIB  # 4 MiB PTYD_INPUT_LIMIT + one frame + slack
    client.attach(other.id, snapshot=None, from_offset=0)
    client.send(other.id, b"still-served\n")
    seen = b""
    while b"still-served" not in seen:
        seen += client.next_event(10).data
    assert client.info(stuck.id).is_running


# The program asks, then reports (as hex) every byte the terminal side answered, after 0.3 s of
# quiet following the DSR 5 sentinel's answer.
ASK = """
import os, select, sys, time, tty
tty.setraw(0)
os.write(1, bytes.fromhex(sys.argv[1]) + b"\\x1b[5n")
got, deadline = b"", time.monotonic() + 10
while time.monotonic() < deadline:
    if select.select([0], [], [], 0.3)[0]:
        got += os.read(0, 4096)
    elif got.endswith(b"\\x1b[0n"):
        break
os.write(1, b"\\r\\nGOT:" + got.hex().encode() + b":END\\r\\n")
os.read(0, 1)
"""


def replies_to(daemon, query: bytes, attached: int) -> bytes:
    """Everything written back into the PTY after ``query`` (with ``attached`` clients)."""
    client = daemon.client()
    info = client.create(["python3", "-c", ASK, query.hex()])
    watchers = [daemon.client() for _ in range(attached)]
    for watcher in watchers:
        watcher.attach(info.id, snapshot="ansi")
    seen = b""
    client.attach(info.id, snapshot=None, from_offset=0)
    while b":END" not in seen:
        seen += client.next_event(15).data
    hex_text = seen.split(b"GOT:")[1].split(b":END")[0].decode()
    client.kill(info.id)
    return bytes.fromhex(hex_text)


@pytest.mark.parametrize("attached", [0, 1, 2])
def test_each_query_is_answered_once_by_the_daemon(daemon, attached: int) -> None:
    """E7: DA1, DA2 and CPR are answered exactly once, whether 0, 1 or 2 clients watch."""
    got = replies_to(daemon, b"\x1b[c\x1b[>c\x1b[3;7H\x1b[6n", attached)
    assert got == b"\x1b[?62;22c\x1b[>1;10;0c\x1b[3;7R\x1b[0n", got


def test_no_reply_echoes_program_text(daemon) -> None:
    """E5: title report, DECRQSS, OSC 52 and OSC 50 queries after a hostile title get no reply
    at all (CVE-2003-0063, CVE-2008-2383, CVE-2022-45063): only the DSR sentinel is answered."""
    hostile = (
        b"\x1b]2;rm -rf ~\n\x07"  # a title with a newline in it
        b"\x1b[21t\x1b[20t"  # report title / icon name
        b"\x1bP$qrm -rf ~\n\x1b\\"  # DECRQSS with an unknown request
        b"\x1b]52;c;?\x07\x1b]50;?\x07"  # clipboard and font queries
    )
    got = replies_to(daemon, hostile, 1)
    assert got == b"\x1b[0n", got
    print(f"\n{daemon.backend}: 6 hostile queries, 0 replies; sentinel answered once")


def test_a_query_flood_from_a_program_that_never_reads_stays_bounded(daemon) -> None:
    """E6: 10^5 cursor-position queries from a program that never reads its input: replies
    past the reply backlog are dropped, memory stays bounded, other sessions are served."""
    client = daemon.client()
    count = 100_000 if daemon.backend == "compiled" else 10_000
    flood = (
        f"stty raw -echo; printf '\\033[6n%.0s' $(seq {count}); echo queries-sent; exec sleep 600"
    )
    info = client.create(["sh", "-c", flood])
    base = client.stats()["daemon"]["rss"]
    wait_until(lambda: "queries-sent" in client.snapshot(info.id).data, 120, "the query flood")
    stats = client.stats()
    session = next(row for row in stats["sessions"] if row["id"] == info.id)
    growth = stats["daemon"]["rss"] - base
    print(
        f"\n{daemon.backend}: {count} queries unread: input backlog "
        f"{session['input_backlog']} B, RSS growth {growth / MIB:.1f} MiB"
    )
    assert session["input_backlog"] <= 64 * 1024 + 4096
    assert growth <= 8 * MIB
    other = client.create(["sh", "-c", "echo other-served"])
    wait_until(lambda: "other-served" in client.snapshot(other.id).data, 10, "another session")


def test_the_pty_is_private_to_its_user(daemon) -> None:
    """F2: the slave side of every session's PTY has no group-read and no other bits."""
    client = daemon.client()
    modes = []
    for _ in range(20):
        info = client.create(["sleep", "600"])
        slave = os.readlink(f"/proc/{info.pid}/fd/0")
        modes.append(os.stat(slave).st_mode & 0o777)
    print(f"\n{daemon.backend}: 20 PTYs, modes {sorted(set(oct(m) for m in modes))}")
    assert all(mode & 0o047 == 0 for mode in modes), modes


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_no_busy_loop_after_sessions_end_with_clients_attached(daemon) -> None:
    """F7: 50 sessions exit while a client stays attached to each; afterwards the daemon idles
    (no reader left on a PTY at EIO)."""
    client = daemon.client()
    watcher = daemon.client()
    sessions = [client.create(["sh", "-c", "read x; echo bye"]) for _ in range(50)]
    for info in sessions:
        watcher.attach(info.id, snapshot=None)
    for info in sessions:
        client.send(info.id, b"\n")
    for info in sessions:
        client.wait(info.id, timeout=30)
    before = _cpu_seconds(daemon.process.pid)
    time.sleep(2)  # the measurement window itself, not synchronisation
    used = _cpu_seconds(daemon.process.pid) - before
    print(f"\n{daemon.backend}: daemon CPU over 2 s after 50 exits: {used / 2:.1%}")
    assert used / 2 <= 0.05


def test_shutdown_removes_only_its_own_socket(backend, short_tmp: Path) -> None:
    """A6: daemon A's socket path is taken over by daemon B's socket; stopping A leaves B's."""
    first = start_daemon(short_tmp / "a.sock", backend)
    second = start_daemon(short_tmp / "b.sock", backend)
    try:
        os.replace(short_tmp / "b.sock", short_tmp / "a.sock")
        assert first.stop() == 0
        with Client(short_tmp / "a.sock", timeout=10) as client:
            assert client.daemon_info["pid"] == second.process.pid
    finally:
        second.stop()


def test_sigusr1_recreates_a_deleted_socket(daemon) -> None:
    """G4: a tmp cleaner deletes the socket; SIGUSR1 (as with tmux) listens again at the path,
    sessions and connected clients untouched."""
    client = daemon.client()
    info = client.create(["sleep", "600"])
    os.unlink(daemon.socket)
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(OSError):
        probe.connect(os.fspath(daemon.socket))
    # A command (which would start a daemon) says which daemon lost it and how to recover.
    command = [sys.executable, "-m", "ptyd", "-S", str(daemon.socket), "ls"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PTYD_")}
    told = subprocess.run(command, capture_output=True, timeout=60, env=env, check=False)
    pid = daemon.process.pid
    assert told.returncode == 1
    assert f"(pid {pid}) has lost its socket file: `kill -USR1 {pid}`".encode() in told.stderr
    for argv in (["--no-autostart", "ls"], ["shutdown"], ["serve"]):
        told = subprocess.run(
            [*command[:-1], *argv], capture_output=True, timeout=60, env=env, check=False
        )
        assert told.returncode == 1 and f"`kill -USR1 {pid}`".encode() in told.stderr, argv
    daemon.process.send_signal(signal.SIGUSR1)
    wait_until(lambda: daemon.socket.exists(), 10, "the socket to come back")
    with Client(daemon.socket, timeout=10) as again:
        assert [s.id for s in again.list_sessions()] == [info.id]
    assert client.info(info.id).is_running  # the old connection still works
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    daemon.process.send_signal(signal.SIGUSR1)  # in place: nothing changes
    assert client.info(info.id).is_running
