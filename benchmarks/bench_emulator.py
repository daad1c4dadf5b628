"""Emulator feed throughput, compiled and pure side by side (pytest-benchmark).

Run: PYTHONPATH=. python -m pytest benchmarks/bench_emulator.py --benchmark-only \
         --benchmark-columns=min,median,rounds -p no:randomly
Each result carries ``MB/s`` (from the fastest round) in its extra info; docs/emulator.md has
the table. Inputs are fed in 64 KiB chunks, as the daemon reads them from the PTY. Besides the
two backends, unmodified pyte (``Screen`` and ``HistoryScreen``) runs the same inputs: the pure
backend is pyte corrected, and this shows what the corrections cost.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pyte
import pytest

from ptyd._vt import VtEmulator
from ptyd.pyte_backend import PyteEmulator
from tests.emulator_corpus import PYTE, VTEBENCH

CHUNK = 65536
COLS, ROWS = 80, 24


class PlainPyte:
    """Unmodified pyte, for reference: what the pure backend is built on, before correction."""

    screen_class: type[pyte.Screen] = pyte.Screen

    def __init__(self, cols: int, rows: int, scrollback: int) -> None:
        if self.screen_class is pyte.HistoryScreen:
            self.screen = pyte.HistoryScreen(cols, rows, history=scrollback)
        else:
            self.screen = self.screen_class(cols, rows)
        self.stream = pyte.ByteStream(self.screen)

    def feed(self, data: bytes) -> None:
        # pyte 0.8.2 raises on some valid sequences (docs/emulator.md).
        with contextlib.suppress(TypeError):
            self.stream.feed(data)


class PlainPyteHistory(PlainPyte):
    screen_class = pyte.HistoryScreen


BACKENDS: dict[str, type] = {
    "compiled": VtEmulator,
    "pure": PyteEmulator,
    "pyte_screen": PlainPyte,
    "pyte_history": PlainPyteHistory,
}
# The Python backends are hundreds of times slower: they get a slice of each workload.
SIZE = {"compiled": 4 << 20, "pure": 64 << 10, "pyte_screen": 64 << 10, "pyte_history": 64 << 10}


def _ascii(n: int) -> bytes:
    return b"".join(b"%06d " % i + b"abcdefghij" * 7 + b"xyz\r\n" for i in range(n))


def _sgr(n: int) -> bytes:
    return b"".join(
        b"\x1b[1;3%dm%06d\x1b[0m \x1b[38;5;%dmcoloured\x1b[0m " % (i % 8, i, i % 256)
        + b"plain text " * 4
        + b"\x1b[48;2;10;20;%dmtruecolour\x1b[m\r\n" % (i % 256)
        for i in range(n)
    )


def _redraw(n: int) -> bytes:
    frames = []
    for frame in range(n):
        rows = [b"\x1b[H\x1b[1;7m  PID USER      CPU%  MEM%  COMMAND\x1b[K\x1b[m"]
        for row in range(2, ROWS + 1):
            rows.append(
                b"\x1b[%d;1H%5d root   \x1b[32m%5.1f\x1b[m %5.1f  process-%d\x1b[K"
                % (row, 1000 + row, (frame * row) % 100 / 1.0, row / 3, frame)
            )
        frames.append(b"".join(rows))
    return b"".join(frames)


def _unicode(n: int) -> bytes:
    line = "日本語のテキスト ünïcödé e\u0301a\u0308 中文字符 한국어 ".encode()
    return (line + b"\r\n") * n


def _region(n: int) -> bytes:
    head = b"\x1b[?1049h\x1b[2;23r\x1b[23;1H"
    return head + b"".join(b"line %d of a scrolling region\r\n" % i for i in range(n))


def _captured(_: int) -> bytes:
    files = [VTEBENCH / "medium_cells" / "vim_session", VTEBENCH / "unicode" / "symbols"]
    files += sorted(PYTE.glob("*.input"))
    return b"".join(Path(f).read_bytes() for f in files)


WORKLOADS: dict[str, Callable[[int], bytes]] = {
    "ascii_lines": _ascii,
    "sgr_lines": _sgr,
    "redraw_top": _redraw,
    "unicode_wide_combining": _unicode,
    "region_scroll": _region,
    "captured_corpus": _captured,
}


def workload(name: str, backend: str) -> bytes:
    data = WORKLOADS[name](1)
    unit = len(data) or 1
    data = WORKLOADS[name](max(1, SIZE[backend] // unit)) if name != "captured_corpus" else data
    while len(data) < SIZE[backend]:
        data += data
    return data[: SIZE[backend]]


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_feed_throughput(benchmark: pytest.FixtureRequest, name: str, backend: str) -> None:
    data = workload(name, backend)
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    cls = BACKENDS[backend]

    def setup() -> tuple[tuple[object], dict[str, object]]:
        return (cls(COLS, ROWS, 10_000),), {}

    def feed(emu: VtEmulator) -> None:
        for chunk in chunks:
            emu.feed(chunk)

    benchmark.pedantic(feed, setup=setup, rounds=5 if backend == "compiled" else 2)
    benchmark.extra_info["MB/s"] = round(len(data) / benchmark.stats.stats.min / 1e6, 2)


@pytest.mark.parametrize("backend", ["compiled", "pure"])
def test_scrollback_memory(benchmark: pytest.FixtureRequest, backend: str) -> None:
    """Memory of an 80x24 emulator holding 10,000 full lines of scrollback.

    Compiled: its own count of C allocations; pure: what tracemalloc sees it allocate.
    """
    data = _ascii(10_000 + ROWS)
    cls = BACKENDS[backend]
    kept: list[object] = []

    def fill() -> None:
        tracemalloc.start()
        emu = cls(COLS, ROWS, 10_000)
        emu.feed(data)
        emu.snapshot_text()
        kept.append(emu)
        kept.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()

    benchmark.pedantic(fill, rounds=1)
    emu, traced = kept
    used = emu.memory_usage if backend == "compiled" else traced  # type: ignore[attr-defined]
    benchmark.extra_info["KiB"] = used // 1024
    assert len(emu.snapshot_text(10_000).split("\n")) == 10_000 + ROWS  # type: ignore[attr-defined]
