"""The hot path in process, on both twins: replay ring, try-put, levels and held frames."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from ptyd import protocol


class MemoryTransport:
    """A transport whose socket never drains: its buffer is the subscriber's backlog."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.frames))


@given(st.lists(st.binary(max_size=50), max_size=30), st.integers(0, 64))
def test_replay_ring_keeps_exactly_the_last_capacity_bytes(
    chunks: list[bytes], capacity: int
) -> None:
    from ptyd import _fast, _fast_py

    for module in (_fast, _fast_py):
        ring = module.ReplayRing(capacity)
        stream = b""
        for chunk in chunks:
            ring.append(chunk)
            stream += chunk
        assert ring.end == len(stream)
        assert ring.start == len(stream) - min(capacity, len(stream))
        for offset in range(len(stream) + 2):
            expected = stream[offset:] if ring.start <= offset <= len(stream) else None
            assert ring.since(offset) == expected


def test_levels_change_once_each_way(fast) -> None:
    transport = MemoryTransport()
    sub = fast.Subscriber(transport, fast.BLOCK, 1000, 3000, "owner")
    sub.take_held()
    frame = b"x" * 400
    levels = []
    for _ in range(10):
        for changed in fast.fan_out([sub], frame):
            levels.append(changed.level)
    assert levels == [fast.WARNING, fast.LIMIT]  # block policy keeps taking frames
    assert len(transport.frames) == 10 and sub.warnings == 1
    transport.frames.clear()
    assert sub.update_level() and sub.level == fast.NORMAL


def test_resync_policy_drops_at_the_limit_and_disconnect_keeps_the_bound(fast) -> None:
    frame = b"y" * 400
    for policy in (fast.RESYNC, fast.DISCONNECT):
        transport = MemoryTransport()
        sub = fast.Subscriber(transport, policy, 1000, 3000, None)
        sub.take_held()
        changes = [c.level for _ in range(20) for c in fast.fan_out([sub], frame)]
        assert changes == [fast.WARNING, fast.LIMIT]
        assert sub.backlog() <= 3000  # never past the limit
        assert sub.is_lagging is (policy == fast.RESYNC)
        assert sub.resyncs == (1 if policy == fast.RESYNC else 0)


def test_frames_are_shared_not_copied(fast) -> None:
    subs = [fast.Subscriber(MemoryTransport(), fast.RESYNC, 1 << 20, 2 << 20, i) for i in range(3)]
    for sub in subs:
        sub.take_held()
    fast.fan_out(subs, b"z" * 100)
    first = subs[0].transport.frames[0]
    assert all(sub.transport.frames[0] is first for sub in subs)


def test_frames_are_held_until_the_snapshot_is_sent(fast) -> None:
    sub = fast.Subscriber(MemoryTransport(), fast.RESYNC, 1000, 3000, None)
    fast.fan_out([sub], b"a" * 10)
    fast.fan_out([sub], b"b" * 10)
    assert sub.transport.frames == [] and sub.held_bytes == 20
    assert sub.take_held() == [b"a" * 10, b"b" * 10] and sub.is_live


def test_pump_reads_a_batch_and_frames_it_once(fast) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    try:
        pump = fast.OutputPump(read_fd, protocol.output_frame_prefix(5), 8, 1 << 16)
        sub = fast.Subscriber(MemoryTransport(), fast.RESYNC, 1 << 20, 2 << 20, None)
        sub.take_held()
        pump.subscribers.append(sub)
        os.write(write_fd, b"hello ")
        os.write(write_fd, b"world")
        data, is_eof, changed = pump.pump()
        assert (data, is_eof, changed) == (b"hello world", False, [])
        assert pump.offset == 11 and pump.ring.since(3) == b"lo world"
        decoded = protocol.FrameDecoder(1 << 20).feed(b"".join(sub.transport.frames))
        assert decoded == [
            {"type": "event", "event": "output", "session": 5, "offset": 0, "data": b"hello world"}
        ]
        assert pump.pump() == (b"", False, [])
        os.close(write_fd)
        write_fd = -1
        assert pump.pump() == (b"", True, [])
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


@given(st.lists(st.binary(min_size=1, max_size=3000), max_size=12), st.integers(0, 9000))
def test_replay_ring_grows_on_demand_and_wraps(chunks: list[bytes], capacity: int) -> None:
    from ptyd import _fast, _fast_py

    for module in (_fast, _fast_py):
        ring = module.ReplayRing(capacity)
        assert ring.allocated == 0  # nothing allocated before the first byte
        stream = b""
        for chunk in chunks:
            ring.append(chunk)
            stream += chunk
            assert ring.allocated <= capacity
        assert ring.start == len(stream) - min(capacity, len(stream))
        for offset in (0, ring.start, (ring.start + len(stream)) // 2, len(stream)):
            expected = stream[offset:] if ring.start <= offset <= len(stream) else None
            assert ring.since(offset) == expected


def test_pump_hands_back_a_view_of_the_shared_frame(fast) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    try:
        pump = fast.OutputPump(read_fd, protocol.output_frame_prefix(7), 1 << 10, 1 << 16)
        os.write(write_fd, b"nobody")
        data, _, _ = pump.pump()
        assert isinstance(data, bytes) and data == b"nobody"  # no subscriber: no frame built
        sub = fast.Subscriber(MemoryTransport(), fast.RESYNC, 1 << 20, 2 << 20, None)
        sub.take_held()
        pump.subscribers.append(sub)
        os.write(write_fd, b"shared")
        data, _, _ = pump.pump()
        [frame] = sub.transport.frames
        assert isinstance(data, memoryview) and data.obj is frame and bytes(data) == b"shared"
        assert pump.ring.since(0) == b"nobodyshared"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_read_batch_takes_what_is_there_and_reports_the_end(fast) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    try:
        pump = fast.OutputPump(read_fd, protocol.output_frame_prefix(9), 1 << 10, 1 << 14)
        os.write(write_fd, b"a" * 5000)
        assert pump.read_batch(4096) == (b"a" * 4096, False)  # the budget bounds the batch
        assert pump.read_batch(1 << 16, 1, 5) == (b"a" * 904, False)  # dry and quiet: ends
        assert pump.offset == 0  # reading publishes nothing
        assert pump.publish(b"a" * 904) == [] and pump.offset == 904
        os.write(write_fd, b"tail")
        os.close(write_fd)
        write_fd = -1
        assert pump.read_batch(1 << 16, 1, 5) == (b"tail", True)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
