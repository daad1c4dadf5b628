"""Frame encode/decode: output frames built by the hot path, requests built with msgpack.

Run: python -m pytest benchmarks/bench_protocol.py --benchmark-columns=min,median,rounds
"""

from __future__ import annotations

from types import ModuleType

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.terminal_text import generate
from ptyd import protocol

SIZES = (256, 65536)  # a keystroke echo and a full read
PREFIX = protocol.output_frame_prefix(1)


@pytest.mark.parametrize("size", SIZES)
def test_encode_output(benchmark: BenchmarkFixture, fast: ModuleType, size: int) -> None:
    data = generate(size)[:size]
    frame = benchmark(fast.encode_output, PREFIX, 12345, data)
    assert frame.endswith(data)


def test_encode_input_request(benchmark: BenchmarkFixture) -> None:
    message = protocol.request(7, "input", session=1, data=b"ls -l\r")
    assert benchmark(protocol.encode, message)


@pytest.mark.parametrize("size", SIZES)
def test_decode_output_frames(benchmark: BenchmarkFixture, fast: ModuleType, size: int) -> None:
    """The client side: 16 output frames arriving in one read."""
    data = generate(size)[:size]
    stream = b"".join(fast.encode_output(PREFIX, i * size, data) for i in range(16))

    def decode() -> list:
        return protocol.FrameDecoder(protocol.MAX_RESPONSE_FRAME).feed(stream)

    messages = benchmark(decode)
    assert len(messages) == 16 and messages[-1]["data"] == data
