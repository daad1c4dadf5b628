"""``ptyd record``: a real session recorded as an asciicast v2 file by the real command line,
then played back into the emulator (both backends)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ptyd._vt import VtEmulator
from ptyd.repaint import REPAINT

from .helpers import wait_until


def record(daemon: Any, *args: str, **popen: Any) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ptyd", "-S", str(daemon.socket), "--no-autostart"]
    return subprocess.Popen([*command, "record", *args], env=daemon.env, **popen)


def read_cast(path: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    header, *events = (json.loads(line) for line in path.read_text().splitlines())
    return header, events


def test_a_recording_plays_back_to_the_sessions_screen_with_its_pauses(daemon, tmp_path) -> None:
    client = daemon.client()
    script = (
        "read go; echo one; sleep 0.6; printf 'caf\\303'; sleep 0.3; printf '\\251 two\\n'; "
        "printf '\\033[1;31mred\\033[0m\\n'; exit 5"
    )
    info = client.create(["sh", "-c", script], cols=100, rows=30)
    cast = tmp_path / "session.cast"
    recorder = record(daemon, str(info.id), str(cast), "--title", "demo")
    wait_until(lambda: client.info(info.id).clients == 1, 30, "the recorder to attach")
    client.send(info.id, "go\n")
    assert recorder.wait(timeout=60) == 5  # the session's status
    header, events = read_cast(cast)
    assert header["version"] == 2 and (header["width"], header["height"]) == (100, 30)
    assert header["title"] == "demo" and isinstance(header["timestamp"], int)
    assert all(kind == "o" for _, kind, _ in events)
    times = [time for time, _, _ in events]
    assert times == sorted(times) and times[0] < 1
    assert events[0][2].startswith(REPAINT.decode())  # the screen the recording started on
    text = "".join(data for _, _, data in events)
    assert "café two" in text  # the character split between two writes, whole
    one = next(time for time, _, data in events if "one" in data)
    two = next(time for time, _, data in events if "two" in data)
    assert two - one >= 0.5  # the program's pause is in the recording
    player = VtEmulator(100, 30)
    player.feed(text.encode())
    assert player.snapshot_text() == client.snapshot(info.id).data


def test_a_stop_signal_ends_the_file_complete(daemon, tmp_path) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "echo before; read x; echo after; sleep 600"])
    cast = tmp_path / "session.cast"
    recorder = record(daemon, str(info.id), str(cast))
    wait_until(lambda: client.info(info.id).clients == 1, 30, "the recorder to attach")
    client.send(info.id, "x\n")
    wait_until(lambda: "after" in cast.read_text(), 30, "the output in the file")
    recorder.send_signal(signal.SIGTERM)
    assert recorder.wait(timeout=30) == 0
    header, events = read_cast(cast)  # every line whole JSON
    assert header["width"] == 80 and "before" in events[0][2]
    assert client.info(info.id).is_running


def test_recording_to_stdout_and_errors(daemon, tmp_path) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "echo finished; exit 3"])
    client.wait(info.id, timeout=30)
    out = daemon.cli("record", str(info.id), "-")
    assert out.returncode == 3  # an exited session: its final screen, then its status
    header, *events = (json.loads(line) for line in out.stdout.decode().splitlines())
    assert header["version"] == 2 and "finished" in events[0][2]
    missing = tmp_path / "never.cast"
    out = daemon.cli("record", "nosuch", str(missing))
    assert out.returncode == 1 and b"no session 'nosuch'" in out.stderr
    assert not missing.exists()


def test_recording_to_a_closed_stdout_is_one_error_line(daemon) -> None:
    client = daemon.client()
    info = client.create(["sleep", "600"])
    closed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; os.close(1); os.execv(sys.argv[1], sys.argv[1:])",
            sys.executable,
            "-m",
            "ptyd",
            "-S",
            str(daemon.socket),
            "--no-autostart",
            "record",
            str(info.id),
            "-",
        ],
        env=daemon.env,
        capture_output=False,
        stderr=subprocess.PIPE,
        timeout=60,
        check=False,
    )
    assert closed.returncode == 1
    assert closed.stderr == b"ptyd: cannot record to standard output: it is closed\n"
