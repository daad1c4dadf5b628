"""The emulators against tmux 3.x: the same bytes, the same screen text.

tmux is the oracle for real programs. It keeps pyte's pending-wrap model (the cursor sits past
the last column), so the random streams here never reach the right margin, where xterm, which
ptyd follows, and tmux differ (docs/emulator.md). DEC line drawing is left out too: capture-pane
prints those cells as the ASCII bytes that selected them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptyd._vt import VtEmulator
from ptyd.emulator import MAX_COMBINING
from ptyd.pyte_backend import PyteEmulator
from tests.emulator_corpus import pyte_case, pyte_cases
from tests.helpers import kill_tree

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
BACKENDS: dict[str, type] = {"compiled": VtEmulator, "pure": PyteEmulator}
COLS, ROWS = 80, 24


class Tmux:
    """A private tmux server (own socket and config) with one pane of a fixed size."""

    def __init__(self, workdir: Path) -> None:
        config = workdir / "tmux.conf"
        config.write_text("set -g status off\nset -g escape-time 0\n")
        self.base = ["tmux", "-L", f"ptyd-emu-{os.getpid()}", "-f", str(config)]
        self.workdir = workdir

    def run(self, *args: str) -> str:
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=20)
        return done.stdout

    def start(self, command: str) -> None:
        self.run("kill-server")
        self.run(
            "new-session", "-d", "-x", str(COLS), "-y", str(ROWS), "-c", str(self.workdir), command
        )

    def screen(self) -> list[str]:
        return [line.rstrip() for line in self.run("capture-pane", "-p").split("\n")][:ROWS]

    def wait_until(self, predicate: object, what: str, timeout: float = 15) -> None:
        """Poll the pane until the predicate holds: tmux offers no event for "drawn"."""
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"tmux: timed out waiting for {what}: {self.screen()}")
            time.sleep(0.02)

    def close(self) -> None:
        # script(1) in a pane survives the server's hang-up, with its program: end them first.
        for pane in self.run("list-panes", "-a", "-F", "#{pane_pid}").split():
            kill_tree(int(pane))
        self.run("kill-server")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Tmux(Path(tmp))
        yield server
        server.close()


def tmux_screen_of(tmux: Tmux, data: bytes) -> list[str]:
    """The screen text tmux shows after a raw-mode pane cats ``data``."""
    path = tmux.workdir / "stream"
    path.write_bytes(data)
    marker = f"ptyd-done-{time.monotonic_ns()}"
    tmux.start(f"stty raw -echo; cat {path}; printf '\\033]2;{marker}\\033\\\\'; exec sleep 600")
    tmux.wait_until(
        lambda: tmux.run("display", "-p", "#{pane_title}").strip() == marker, "the stream"
    )
    return tmux.screen()


def emulated(cls: type, data: bytes) -> list[str]:
    emu = cls(COLS, ROWS)
    emu.feed(data)
    return emu.snapshot_text().split("\n")


@pytest.mark.parametrize("name", pyte_cases())
def test_captured_sessions_match_tmux(tmux: Tmux, name: str) -> None:
    data, _ = pyte_case(name)
    expected = tmux_screen_of(tmux, data)
    for cls in BACKENDS.values():
        assert emulated(cls, data) == expected


# Left out where tmux and xterm differ (xterm is the reference; tests/test_emulator.py runs
# its corpus): after IL/DL xterm returns to the left margin and tmux keeps the column
# (xterm corpus t0051-IL); in insert mode a write into a wide character's right half erases
# it in xterm and lands after it in tmux; a 1049 set while on the alternate screen saves the
# cursor and clears again in xterm and does nothing in tmux, and a reset on the primary screen
# restores the cursor in xterm only; xterm keeps a saved cursor per screen, which 1049 saves
# into as DECSC does, while tmux keeps 1049's apart and one DECSC cursor for both screens, so a
# DECRC differs unless a DECSC on its screen came after the last switch (`_comparable`).
_TEXT = st.text(alphabet=st.sampled_from([*"abc XYZ-", "é", "中", "\u0301"]), max_size=10)
_SAFE = st.sampled_from(
    [
        "\x1b[J",
        "\x1b[1J",
        "\x1b[2J",
        "\x1b[K",
        "\x1b[1K",
        "\x1b[2K",
        "\x1b[2@",
        "\x1b[P",
        "\x1b[3P",
        "\x1b[2X",
        "\x1b[S",
        "\x1b[2T",
        "\x1b[1;31m",
        "\x1b[0m",
        "\x1b[3;20r",
        "\x1b[r",
        "\x1bM",
        "\x1bD",
        "\x1bE",
        "\r\n",
        "\n",
        "\x1b[2A",
        "\x1b[B",
        "\x1b[3C",
        "\x1b[2D",
        "\x1b7",
        "\x1b8",
        "\x1b[?1049h",
        "\x1b[?1049l",
        "\t",
    ]
)
_TOKEN = st.one_of(
    st.builds(lambda y, x, t: f"\x1b[{y};{x}H{t}", st.integers(1, ROWS), st.integers(1, 50), _TEXT),
    _SAFE,
)


def cap_marks(line: str) -> str:
    """tmux keeps every combining mark; ptyd keeps two per cell, as xterm does by default."""
    out, run = [], 0
    for ch in line:
        run = run + 1 if unicodedata.combining(ch) else 0
        if run <= MAX_COMBINING:
            out.append(ch)
    return "".join(out)


def _comparable(tokens: list[str]) -> list[str]:
    """The tokens without a 1049 set or reset that would not change screens, and without a
    DECRC with no DECSC on its screen since the last switch (see above)."""
    kept, is_alternate, is_saved = [], False, False
    for token in tokens:
        if token in ("\x1b[?1049h", "\x1b[?1049l"):
            if (token == "\x1b[?1049h") == is_alternate:
                continue
            is_alternate, is_saved = not is_alternate, False
        elif token == "\x1b7":
            is_saved = True
        elif token == "\x1b8" and not is_saved:
            continue
        kept.append(token)
    return kept


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(tokens=st.lists(_TOKEN, max_size=30))
def test_random_streams_match_tmux(tokens: list[str]) -> None:
    data = "".join(_comparable(tokens)).encode()
    with tempfile.TemporaryDirectory() as tmp:
        server = Tmux(Path(tmp))
        try:
            expected = tmux_screen_of(server, data)
        finally:
            server.close()
    expected = [cap_marks(line) for line in expected]
    for cls in BACKENDS.values():
        assert emulated(cls, data) == expected


PROGRAMS = {
    # name: (command, text once drawn, keys to send, text once the keys took effect)
    "bash": (
        "bash --norc --noprofile -i",
        "bash-",
        ["ls -la /etc | head -30; printf '\\e[1;32mok\\e[0m\\n'", "Enter"],
        "ok",
    ),
    "less": ("less services.txt", "Sample line 1 ", ["G"], "(END)"),
    "vim": (
        "vim -u NONE -N -n -i NONE services.txt",
        '"services.txt"',
        ["G", "O", "edited", "Escape", "k", "k"],
        "edited",
    ),
    "man": ("man ls", "LS(1)", ["Space"], "Manual page ls"),
    "top": ("top -d 600", "PID", [], "PID"),
}


SAMPLE_TEXT = "".join(
    f"Sample line {n} \t{'é中' * (n % 3)} {'word ' * (n % 17)}\n" for n in range(1, 400)
)


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_real_programs_match_tmux(tmux: Tmux, program: str) -> None:
    command, ready, keys, marker = PROGRAMS[program]
    for tool in (command.split()[0], "script"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    recording = tmux.workdir / "recording"
    (tmux.workdir / "services.txt").write_text(SAMPLE_TEXT)
    tmux.start(f"script -q -f -c {shlex.quote(command)} {recording}; exec sleep 600")
    tmux.wait_until(lambda: any(ready in line for line in tmux.screen()), ready)
    for key in keys:
        tmux.run("send-keys", *(["-l", key] if len(key) > 1 and key[0].islower() else [key]))
    tmux.wait_until(lambda: any(marker in line for line in tmux.screen()), marker)
    for cls in BACKENDS.values():
        # The recording is flushed as script writes to the pane: wait for them to agree.
        tmux.wait_until(
            lambda cls=cls: emulated_recording(cls, recording) == tmux.screen(),
            f"{cls.__name__} to match tmux",
        )


def emulated_recording(cls: type, recording: Path) -> list[str]:
    data = recording.read_bytes()
    # script(1) starts the file with a header line.
    if data.startswith(b"Script started"):
        data = data.split(b"\n", 1)[1] if b"\n" in data else b""
    return emulated(cls, data)


KEY_BYTES = {"Enter": b"\r", "Escape": b"\x1b", "Space": b" "}


# top is left out here: two top processes show different live data (it is compared above,
# through one recording shown by both).
@pytest.mark.parametrize("backend_name", list(BACKENDS))
@pytest.mark.parametrize("program", [name for name in PROGRAMS if name != "top"])
def test_real_programs_in_ptyd_match_tmux(
    tmux: Tmux, program: str, backend_name: str, tmp_path: Path
) -> None:
    """The same program, size, TERM and keys in a ptyd session and in tmux: same text."""
    try:
        from tests.conftest import start_daemon  # the daemon's fixture helpers
    except ImportError:
        pytest.skip("needs the ptyd daemon and its test helpers (tests/conftest.py)")
    command, ready, keys, marker = PROGRAMS[program]
    if shutil.which(command.split()[0]) is None:
        pytest.skip(f"{command.split()[0]} is not installed")
    (tmux.workdir / "services.txt").write_text(SAMPLE_TEXT)
    (tmux.workdir / "tmux.conf").write_text(
        "set -g status off\nset -g escape-time 0\nset -g default-terminal xterm-256color\n"
    )
    tmux.start(command)
    running = start_daemon(tmp_path / "d.sock", backend_name)
    try:
        client = running.client()
        info = client.create(
            ["sh", "-c", command],
            cwd=str(tmux.workdir),
            cols=COLS,
            rows=ROWS,
            term="xterm-256color",
        )

        def ptyd_screen() -> list[str]:
            return str(client.snapshot(info.id, "text").data).split("\n")

        for screen in (tmux.screen, ptyd_screen):
            tmux.wait_until(lambda s=screen: any(ready in line for line in s()), ready)
        for key in keys:
            tmux.run("send-keys", *(["-l", key] if len(key) > 1 and key[0].islower() else [key]))
            client.send(info.id, KEY_BYTES.get(key, key.encode()))
        for screen in (tmux.screen, ptyd_screen):
            tmux.wait_until(lambda s=screen: any(marker in line for line in s()), marker)
        tmux.wait_until(lambda: ptyd_screen() == tmux.screen(), "ptyd to match tmux")
    finally:
        running.stop()
