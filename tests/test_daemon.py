"""The daemon's contract on its socket: hello, bad input, permissions, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import stat
import struct
import subprocess

import msgpack
import pytest

from ptyd import errors, protocol, server
from ptyd.errors import VersionMismatch

from .conftest import start_daemon
from .helpers import needs_root

_open_sockets: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_raw_sockets():
    yield
    while _open_sockets:
        _open_sockets.pop().close()


def raw_connect(path) -> socket.socket:
    """A bare socket speaking frames by hand (closed after the test)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _open_sockets.append(sock)
    sock.settimeout(30)
    sock.connect(str(path))
    return sock


def read_frame(sock: socket.socket) -> dict:
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        assert chunk, "connection closed"
        header += chunk
    (length,) = struct.unpack(">I", header)
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return msgpack.unpackb(body)


def hello(sock: socket.socket, version: str = protocol.VERSION_TEXT) -> dict:
    sock.sendall(protocol.encode({"type": "hello", "id": 1, "version": version}))
    return read_frame(sock)


def test_hello_negotiates_features(daemon) -> None:
    sock = raw_connect(daemon.socket)
    sock.sendall(
        protocol.encode(
            {"type": "hello", "id": 1, "version": "1.9", "features": ["replay", "teleport"]}
        )
    )
    reply = read_frame(sock)
    assert reply["ok"] and reply["result"]["features"] == ["replay"]
    assert reply["result"]["version"] == protocol.VERSION_TEXT


def test_requests_before_hello_are_refused(daemon) -> None:
    sock = raw_connect(daemon.socket)
    sock.sendall(protocol.encode({"type": "list", "id": 1}))
    assert read_frame(sock)["error"]["code"] == errors.HELLO_REQUIRED


def test_version_mismatch_names_both_versions(daemon) -> None:
    sock = raw_connect(daemon.socket)
    reply = hello(sock, "2.0")
    assert reply["error"]["code"] == errors.VERSION_MISMATCH
    assert "2.0" in reply["error"]["message"] and protocol.VERSION_TEXT in reply["error"]["message"]
    assert sock.recv(1) == b""  # closed
    with pytest.raises(VersionMismatch):
        raise errors.RequestError.from_wire(errors.VERSION_MISMATCH, "x")


def test_bad_frames_get_errors_while_another_client_keeps_working(daemon) -> None:
    good = daemon.client()
    session = good.create(["sleep", "600"])
    sock = raw_connect(daemon.socket)
    assert hello(sock)["ok"]
    sock.sendall(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
    assert read_frame(sock)["error"]["code"] == errors.BAD_FRAME
    sock.sendall(protocol.encode({"type": "frobnicate", "id": 2}))
    assert read_frame(sock)["error"]["code"] == errors.UNKNOWN_TYPE
    sock.sendall(protocol.encode({"type": "info", "id": 3, "session": 999}))
    assert read_frame(sock)["error"]["code"] == errors.NO_SUCH_SESSION
    sock.sendall(protocol.encode({"type": "list", "id": True}))  # a bool is no id
    answer = read_frame(sock)
    assert answer["error"]["code"] == errors.BAD_REQUEST and answer["id"] is None
    sock.sendall(protocol.encode({"type": "list", "id": 4}))
    assert read_frame(sock)["ok"]  # the connection survived all of that
    sock.sendall(struct.pack(">I", 1 << 30))
    reply = read_frame(sock)
    assert reply["error"]["code"] == errors.FRAME_TOO_LARGE and sock.recv(1) == b""
    assert good.info(session.id).is_running


def test_socket_and_directory_permissions(daemon) -> None:
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.socket.parent).st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701])
def test_open_socket_directory_is_refused_untouched(backend, short_tmp, mode) -> None:
    directory = short_tmp / "open"
    directory.mkdir()
    os.chmod(directory, mode)
    with pytest.raises(RuntimeError, match=r"allow group or other access"):
        start_daemon(directory / "d.sock", backend, stderr=subprocess.DEVNULL)
    assert stat.S_IMODE(os.stat(directory).st_mode) == mode
    assert os.listdir(directory) == []


def test_stale_socket_is_replaced_and_live_one_kept(backend, short_tmp) -> None:
    path = short_tmp / "d.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file with nothing listening
    first = start_daemon(path, backend)
    try:
        with pytest.raises(RuntimeError, match="already running"):
            start_daemon(path, backend, stderr=subprocess.DEVNULL)
        assert first.client().list_sessions() == []
    finally:
        assert first.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_graceful_shutdown_leaves_no_child_and_no_socket(backend, short_tmp, signum) -> None:
    running = start_daemon(short_tmp / "d.sock", backend)
    client = running.client()
    # One child that ignores SIGHUP and SIGTERM: the ladder must still end it.
    stubborn = client.create(
        ["sh", "-c", "trap '' HUP TERM; echo armed; while :; do sleep 1; done"]
    )
    polite = client.create(["sleep", "600"])
    client.attach(stubborn.id, snapshot="text")
    assert running.stop(signum) == 0
    for pid in (stubborn.pid, polite.pid):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not running.socket.exists()


def test_shutdown_request_tells_attached_clients(daemon) -> None:
    from ptyd.events import ShutdownEvent

    watcher = daemon.client()
    session = watcher.create(["sleep", "600"])
    watcher.attach(session.id, snapshot=None)
    daemon.client().shutdown()
    events = []
    while not any(isinstance(e, ShutdownEvent) for e in events):
        events.append(watcher.next_event(30))
    assert daemon.process.wait(30) == 0


@needs_root
def test_a_peer_with_another_uid_is_refused_before_anything_is_read(backend) -> None:
    """The daemon runs as nobody; root connects (root can reach any socket) and is refused."""
    import shutil
    import sys
    import sysconfig
    import tempfile
    from pathlib import Path

    nobody = 65534
    repo = Path(__file__).resolve().parent.parent
    env = {
        "PYTHONPATH": f"{repo}:{sysconfig.get_paths()['purelib']}",
        "HOME": "/",
        "PATH": "/usr/bin:/bin",
    }
    if backend == "pure":
        env["PTYD_PURE"] = "1"
    python = "/usr/bin/python3"
    probe = subprocess.run(
        [python, "-c", "import ptyd._backend as b; print(b.BACKEND)"],
        user=nobody,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.strip() != backend or sys.version_info[:2] != (3, 11):
        pytest.skip(
            f"no interpreter with ptyd that uid {nobody} can run here: {probe.stderr[-200:]}"
        )
    directory = Path(tempfile.mkdtemp(prefix="ptyd-u-", dir="/tmp"))
    os.chown(directory, nobody, nobody)
    ready_r, ready_w = os.pipe()
    env["PTYD_READY_FD"] = str(ready_w)
    process = subprocess.Popen(
        [python, "-m", "ptyd", "serve", "-S", str(directory / "d.sock")],
        user=nobody,
        group=nobody,
        env=env,
        pass_fds=(ready_w,),
        stdin=subprocess.DEVNULL,
    )
    os.close(ready_w)
    try:
        with os.fdopen(ready_r, "rb") as ready:
            assert ready.read() == b"ready\n"
        sock = raw_connect(directory / "d.sock")
        reply = read_frame(sock)  # sent before this client has written anything
        assert reply["error"]["code"] == errors.AUTH_REFUSED
        assert "uid 0" in reply["error"]["message"]
        assert sock.recv(1) == b""
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        shutil.rmtree(directory, ignore_errors=True)


def _nice_of_threads(pid: int) -> dict[int, int]:
    """Thread id -> nice value, from /proc (field 19 of stat, after the command's parentheses)."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[int(task)] = int(fields[16])
    return out


def test_worker_threads_yield_to_the_loop(daemon) -> None:
    """Flood reads and emulation run nicer than the loop thread, which answers keystrokes."""
    client = daemon.client()
    session = client.create(["sh", "-c", "head -c 8000000 /dev/zero | tr '\\0' x"])
    assert client.wait(session.id).status == 0
    nice = _nice_of_threads(daemon.process.pid)
    loop_nice = nice.pop(daemon.process.pid)
    assert loop_nice == os.getpriority(os.PRIO_PROCESS, 0)
    assert min(loop_nice + server.WORKER_NICE, 19) in nice.values(), nice
