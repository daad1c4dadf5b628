"""Fan-out of one shared frame to 1, 10 and 100 live subscribers, and a whole publish.

Run: python -m pytest benchmarks/bench_fanout.py --benchmark-columns=min,median,rounds
The transport drains instantly (an idle socket), so the figure is the hot path's own cost.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.terminal_text import generate
from ptyd import protocol

CHUNK = 65536
LIMIT = 4 << 20


class DrainedTransport:
    """A socket that takes every write at once: its buffer stays empty."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_write_buffer_size(self) -> int:
        return 0


def _live(fast: ModuleType, count: int) -> list:
    subs = []
    for _ in range(count):
        sub = fast.Subscriber(DrainedTransport(), fast.RESYNC, LIMIT // 2, LIMIT, None)
        sub.take_held()  # live: frames go straight to the transport
        subs.append(sub)
    return subs


@pytest.mark.parametrize("subscribers", (1, 10, 100))
def test_fan_out(benchmark: BenchmarkFixture, fast: ModuleType, subscribers: int) -> None:
    subs = _live(fast, subscribers)
    frame = fast.encode_output(protocol.output_frame_prefix(1), 0, generate(CHUNK)[:CHUNK])
    assert benchmark(fast.fan_out, subs, frame) == []
    assert all(sub.transport.written == sub.bytes_delivered > 0 for sub in subs)


@pytest.mark.parametrize("subscribers", (1, 10, 100))
def test_publish(benchmark: BenchmarkFixture, fast: ModuleType, subscribers: int) -> None:
    """Ring append, one frame and the fan-out: everything pump() does after read()."""
    pump = fast.OutputPump(-1, protocol.output_frame_prefix(1), 1 << 20, 256 * 1024)
    pump.subscribers.extend(_live(fast, subscribers))
    data = generate(CHUNK)[:CHUNK]
    assert benchmark(pump.publish, data) == []
