"""Fan-out and flow control through the real daemon (issue 7): bounded backlogs, warnings,
the resync / disconnect / block policies, replay, attach consistency and size policies.

Clients that must *not* read are bare sockets (``RawClient``): the library client always reads
in a background thread, so it cannot stall on purpose.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ptyd import errors, protocol
from ptyd._backend import Emulator
from ptyd.errors import RequestError
from ptyd.events import FlowEvent, OutputEvent
from ptyd.shadow import BACKLOG_LIMIT

from .conftest import Daemon, start_daemon
from .helpers import RawClient, Stream, contains, read_until, until_exit

MIB = 1024 * 1024
BLOCK = 48 * 1024  # random bytes per block; base64 lines of 76 characters on the wire

# A program that floods its PTY with deterministic printable data once it reads one byte; the
# PTY is raw, so the bytes on the wire are exactly what it writes. It then waits, so the session
# stays running while the test inspects it.
FLOOD = """
import base64, random, sys, tty
tty.setraw(0)
out = sys.stdout.buffer
out.write(b"READY"); out.flush()
sys.stdin.buffer.read(1)
r = random.Random({seed})
for _ in range({blocks}):
    out.write(base64.encodebytes(r.randbytes({block})))
out.write(b"DONE"); out.flush()
sys.stdin.buffer.read(1)
"""


def flood_argv(seed: int, blocks: int) -> list[str]:
    return ["python3", "-c", FLOOD.format(seed=seed, blocks=blocks, block=BLOCK)]


def flood_bytes(seed: int, blocks: int) -> bytes:
    r = random.Random(seed)
    return (
        b"READY" + b"".join(base64.encodebytes(r.randbytes(BLOCK)) for _ in range(blocks)) + b"DONE"
    )


def flood_blocks(backend: str, mib: int) -> int:
    """Scale the flood to the backend: the pure emulator feeds ~1.2 MB/s, and the session stops
    reading its PTY once the emulator is 8 MiB behind, so pure runs get an eighth of the bytes
    (still several times the flow limit)."""
    size = mib * MIB if backend == "compiled" else max(mib * MIB // 8, 4 * MIB)
    return size * 3 // 4 // BLOCK


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something true: a bounded wait for a condition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def subscriber(
    stats: dict[str, Any], client: int | None = None, policy: str | None = None
) -> dict[str, Any]:
    rows = [
        row
        for row in stats["subscribers"]
        if (client is None or row["client"] == client)
        and (policy is None or row["policy"] == policy)
    ]
    assert len(rows) == 1, rows
    return rows[0]


@pytest.fixture(params=["uvloop", "asyncio"])
def loop(request: pytest.FixtureRequest) -> str:
    """The daemon's event loop: the policies rest on transport write-buffer callbacks, whose
    details differ between uvloop and asyncio."""
    return str(request.param)


@pytest.fixture
def make_daemon(backend: str, short_tmp: Path) -> Iterator[Callable[..., Daemon]]:
    """Start daemons with extra ``serve`` flags; each must exit 0 at the end."""
    started: list[Daemon] = []

    def make(*flags: str, name: str = "d.sock", loop: str = "uvloop") -> Daemon:
        if loop == "asyncio":
            flags = ("--asyncio", *flags)
        running = start_daemon(short_tmp / name, backend, *flags)
        started.append(running)
        return running

    yield make
    for running in started:
        assert running.stop() == 0


def attach_stream(client, session, **options) -> Stream:
    """Attach replaying from offset 0, so output written before the attach is not missed."""
    attached = client.attach(session, snapshot=None, from_offset=0, **options)
    assert attached.resumed and attached.offset == 0
    return Stream(attached.session.id, 0)


def start_flood(client, seed: int, blocks: int, **create: Any) -> tuple[int, Stream]:
    info = client.create(flood_argv(seed, blocks), **create)
    stream = attach_stream(client, info.id, policy="block")
    stream.keep = False
    read_until(client, stream, lambda s: s.offset >= 5)
    return info.id, stream


def test_stalled_client_beside_a_normal_one(make_daemon, backend, loop) -> None:
    """A client that never reads gets warning then limit then lagging, the reading client gets
    every byte, and daemon memory stays within the documented bound."""
    daemon = make_daemon(loop=loop)
    blocks = flood_blocks(backend, 100)
    normal = daemon.client()
    session, stream = start_flood(normal, 1, blocks)
    stalled = RawClient(daemon.socket, rcvbuf=4096)
    stalled.hello()
    stalled.call("attach", session=session, snapshot=None, policy="resync")
    base = normal.stats()
    limit = 1 * MIB  # PTYD_FLOW_MAX_QUEUE_SIZE default
    bound = (
        2 * limit + 1 * MIB + BACKLOG_LIMIT + 16 * MIB
    )  # two backlogs, ring, emulator lag, slack
    peak = base["daemon"]["rss"]
    expected = flood_bytes(1, blocks)
    started = time.monotonic()
    normal.send(session, b"g")
    next_probe = 8 * MIB
    while stream.offset < len(expected):
        stream.take(normal.next_event(30))
        if stream.offset >= next_probe:
            peak = max(peak, normal.stats()["daemon"]["rss"])
            next_probe += 8 * MIB
    elapsed = time.monotonic() - started
    stats = normal.stats()
    peak = max(peak, stats["daemon"]["rss"])
    assert stream.digest.hexdigest() == hashlib.sha256(expected).hexdigest()
    growth = peak - base["daemon"]["rss"]
    print(
        f"\n{backend}: {len(expected) / MIB:.1f} MiB in {elapsed:.2f} s "
        f"({len(expected) / MIB / elapsed:.0f} MiB/s), RSS growth {growth / MIB:.1f} MiB "
        f"(bound {bound / MIB:.0f} MiB)"
    )
    assert growth <= bound
    row = subscriber(stats, policy="resync")
    assert row["level"] == "limit" and row["warnings"] >= 1 and row["resyncs"] >= 1
    assert row["backlog"] <= limit
    # Now the stalled client reads: the level changes came in order, then a fresh snapshot at
    # the current offset.
    seen = []
    while not seen or seen[-1]["event"] != "snapshot":
        message = stalled.read_message()
        assert message is not None
        if message.get("event") != "output":
            seen.append(message)
    names = [(m["event"], m.get("level")) for m in seen]
    assert names[:3] == [("flow", "warning"), ("flow", "limit"), ("lagging", None)], names
    assert seen[-1]["offset"] == len(expected)
    assert seen[1]["backlog"] <= limit and seen[1]["limit"] == limit
    stalled.close()


def test_resync_gives_the_exact_current_screen(make_daemon, loop) -> None:
    """A lagging client's view, rebuilt from its resync snapshots and the output after each,
    equals the session's screen at the end; events come in the order flow, lagging, snapshot,
    and the stream after each snapshot starts exactly at its offset."""
    daemon = make_daemon("--flow-threshold", "16K", "--flow-max-queue-size", "64K", loop=loop)
    client = daemon.client()
    script = (
        "import sys, tty; tty.setraw(0); o = sys.stdout.buffer\n"
        "o.write(b'READY'); o.flush(); sys.stdin.buffer.read(1)\n"
        "for i in range(60000): o.write(b'\\x1b[3%dmline %06d\\r\\n' % (i % 8, i))\n"
        "o.write(b'\\x1b[2J\\x1b[Hfinal screen\\r\\nsecond row'); o.flush()\n"
        "sys.stdin.buffer.read(1); o.write(b' more'); o.flush(); sys.stdin.buffer.read(1)\n"
    )
    info = client.create(["python3", "-c", script], cols=40, rows=5)
    watcher = attach_stream(client, info.id, policy="block")
    watcher.keep = True
    read_until(client, watcher, contains(b"READY"))
    lagger = RawClient(daemon.socket, rcvbuf=4096)
    lagger.hello()
    attached = lagger.call("attach", session=info.id, snapshot="ansi", policy="resync")
    view = Emulator(40, 5, 0)
    view.feed(attached["snapshot"])
    offset = attached["offset"]
    client.send(info.id, b"g")
    read_until(client, watcher, contains(b"second row"))
    final = watcher.offset
    kinds = []
    while offset < final:
        message = lagger.read_message()
        assert message is not None
        kind = message.get("event")
        if kind == "output":
            assert message["offset"] == offset, "gap or duplicate after a snapshot"
            view.feed(message["data"])
            offset += len(message["data"])
            continue
        kinds.append(kind if kind != "flow" else message["level"])
        if kind == "snapshot":
            view = Emulator(40, 5, 0)
            view.feed(message["data"])
            offset = message["offset"]
    assert "lagging" in kinds, kinds
    first_lag = kinds.index("lagging")
    assert kinds[first_lag - 2 : first_lag + 2] == ["warning", "limit", "lagging", "snapshot"]
    assert view.snapshot_text(0) == client.snapshot(info.id, "text").data
    assert view.snapshot_text(0).rstrip("\n") == "final screen\nsecond row"
    client.send(info.id, b"x")
    while True:
        message = lagger.read_message()
        if message.get("event") == "output":
            break
    assert message["offset"] == final and message["data"] == b" more"
    lagger.close()


def start_endless_flood(make_daemon, loop) -> tuple[Daemon, Any, Any]:
    """A daemon with a small flow limit (8K/16K) and a session flooding colour lines without
    end, nobody attached: the test's resync readers alone follow it."""
    daemon = make_daemon("--flow-threshold", "8K", "--flow-max-queue-size", "16K", loop=loop)
    client = daemon.client()
    script = (
        "import itertools, sys, tty; tty.setraw(0); o = sys.stdout.buffer\n"
        "o.write(b'READY'); o.flush(); sys.stdin.buffer.read(1)\n"
        "for i in itertools.count(): o.write(b'\\x1b[3%dmline %09d\\r\\n' % (i % 8, i))\n"
    )
    info = client.create(["python3", "-c", script], cols=40, rows=5)
    watcher = attach_stream(client, info.id, policy="block")
    read_until(client, watcher, contains(b"READY"))
    client.detach(info.id)
    client.send(info.id, b"g")
    return daemon, client, info


def test_a_resync_client_that_hits_its_limit_during_the_attach_snapshot_stays_consistent(
    make_daemon, loop
) -> None:
    """Attach (resync, ANSI snapshot) into a flood with a small limit: output that arrives while
    the attach snapshot is taken is held, and can pass the limit before the snapshot is ready.
    Then the resync's snapshot must come before any output after its offset: every output
    frame continues exactly from the last snapshot or output (no gap, no overlap). The attach
    used to go live with the held frames first, so the resync snapshot landed after output
    it had already overtaken."""
    daemon, client, info = start_endless_flood(make_daemon, loop)
    snapshots = 0
    for _ in range(5):
        reader = RawClient(daemon.socket)
        reader.hello()
        attached = reader.call("attach", session=info.id, snapshot="ansi", policy="resync")
        expected = attached["offset"]
        deadline = time.monotonic() + 1  # the reading window, not synchronisation
        while time.monotonic() < deadline:
            message = reader.read_message(timeout=10)
            assert message is not None
            if message.get("event") == "output":
                assert message["offset"] == expected, (message["offset"], expected, snapshots)
                expected += len(message["data"])
            elif message.get("event") == "snapshot":
                snapshots += 1
                expected = message["offset"]
        reader.close()
    client.kill(info.id)
    print(f"\n{daemon.backend}: 5 attaches into a flood, {snapshots} resync snapshots, no gap")


def test_every_resync_snapshot_follows_a_lagging_event(make_daemon, loop) -> None:
    """Slow resync readers of an endless flood: a reader that falls behind again while its
    resync snapshot is on its way gets another one, and each snapshot comes after a
    ``lagging`` (the second one used to come with none: a client following the documented
    events saw a snapshot it had not been told of)."""
    daemon, client, info = start_endless_flood(make_daemon, loop)
    readers = [RawClient(daemon.socket, rcvbuf=4096) for _ in range(4)]
    told = [True] * len(readers)  # a lagging since the last snapshot (the attach counts)
    snapshots = 0
    for reader in readers:
        reader.hello()
        reader.call("attach", session=info.id, snapshot=None, policy="resync")
    deadline = time.monotonic() + 3  # the reading window, not synchronisation
    while time.monotonic() < deadline:
        for n, reader in enumerate(readers):
            message = reader.read_message(timeout=10)
            assert message is not None
            if message.get("event") == "lagging":
                told[n] = True
            elif message.get("event") == "snapshot":
                assert told[n], f"reader {n}: a snapshot with no lagging before it"
                told[n] = False
                snapshots += 1
        time.sleep(0.002 * len(readers))  # slow readers: the workload, not synchronisation
    for reader in readers:
        reader.close()
    client.kill(info.id)
    assert snapshots > 0
    print(f"\n{daemon.backend}: {snapshots} resync snapshots, each after a lagging")


def test_a_session_that_exits_while_a_client_lags_ends_with_snapshot_then_exit(
    make_daemon, loop
) -> None:
    """Exit while a resync client is still lagging (its socket full): once it reads again it
    gets the final screen as a snapshot and then the exit, last: ``exit`` follows everything
    the client is given, as for a live client (it used to come before the snapshot)."""
    daemon = make_daemon("--flow-threshold", "16K", "--flow-max-queue-size", "64K", loop=loop)
    client = daemon.client()
    script = (
        "import sys, tty; tty.setraw(0); o = sys.stdout.buffer\n"
        "o.write(b'READY'); o.flush(); sys.stdin.buffer.read(1)\n"
        "for i in range(60000): o.write(b'line %06d\\r\\n' % i)\n"
        "o.write(b'\\x1b[2J\\x1b[Hlast screen'); o.flush(); sys.exit(3)\n"
    )
    info = client.create(["python3", "-c", script], cols=40, rows=5)
    watcher = attach_stream(client, info.id, policy="block")
    watcher.keep = False
    read_until(client, watcher, lambda s: s.offset >= 5)
    lagger = RawClient(daemon.socket, rcvbuf=4096)
    lagger.hello()
    lagger.call("attach", session=info.id, snapshot="ansi", policy="resync")
    client.send(info.id, b"g")
    read_until(client, watcher, until_exit)  # exited while the lagger has not read a byte
    kinds, view = [], None
    while True:
        message = lagger.read_message()
        assert message is not None, f"EOF before the exit event, after {kinds}"
        kind = message.get("event")
        if kind == "output":
            if view is not None:  # output after the snapshot (it may precede the last write)
                view.feed(message["data"])
            continue
        kinds.append(kind)
        if kind == "snapshot":
            view = Emulator(40, 5, 0)
            view.feed(message["data"])
        if kind == "exit":
            break
    screen = view.snapshot_text(0) if view is not None else None
    assert message["code"] == 3
    assert "lagging" in kinds and kinds.index("lagging") < kinds.index("snapshot"), kinds
    # flow events may come in between (the level falls once the socket drains)
    assert [kind for kind in kinds if kind != "flow"][-2:] == ["snapshot", "exit"], kinds
    assert screen is not None and screen.startswith("last screen")
    lagger.close()


def test_disconnect_policy_closes_only_the_slow_client(make_daemon, backend, loop) -> None:
    """At the limit: flow(limit), an error event flow_limit, then EOF; the session and the
    other client carry on untouched."""
    daemon = make_daemon("--flow-auto-disconnect", "true", loop=loop)
    client = daemon.client()
    blocks = flood_blocks(backend, 8)
    session, stream = start_flood(client, 2, blocks)
    slow = RawClient(daemon.socket, rcvbuf=4096)
    slow.hello()
    slow.call("attach", session=session, snapshot=None)  # the daemon default: disconnect
    client.send(session, b"g")
    expected = flood_bytes(2, blocks)
    read_until(client, stream, lambda s: s.offset >= len(expected))
    assert stream.digest.hexdigest() == hashlib.sha256(expected).hexdigest()
    tail = []
    while (message := slow.read_message()) is not None:
        if message.get("event") != "output":
            tail.append(message)
    assert [(m["event"], m.get("level") or m.get("code")) for m in tail][-2:] == [
        ("flow", "limit"),
        ("error", errors.FLOW_LIMIT),
    ]
    slow.close()
    assert client.info(session).is_running
    assert [row["policy"] for row in client.stats()["subscribers"]] == ["block"]


def test_block_policy_is_lossless_through_a_stalling_reader(make_daemon, backend, loop) -> None:
    """The block subscriber gets every byte in order while the session is seen paused each
    time the reader stops."""
    daemon = make_daemon(loop=loop)
    control = daemon.client()
    blocks = flood_blocks(backend, 100)
    expected = flood_bytes(3, blocks)
    info = control.create(flood_argv(3, blocks))
    reader = RawClient(daemon.socket, rcvbuf=4096)
    reader.hello()
    reader.call("attach", session=info.id, snapshot=None, from_offset=0, policy="block")
    wait_for(lambda: control.info(info.id).bytes_out >= 5, what="READY")
    control.send(info.id, b"g")
    digest, offset, pauses = hashlib.sha256(), 0, 0
    while offset < len(expected):
        row = wait_for(lambda: control.stats()["sessions"][0], what="stats")
        if offset + 4 * MIB < len(expected):
            # Stop reading until the daemon has paused the PTY for us.
            wait_for(lambda: control.stats()["sessions"][0]["paused"], what="session paused")
            pauses += 1
        target = min(offset + 2 * MIB, len(expected))
        while offset < target:
            message = reader.read_message()
            assert message is not None
            if message.get("event") == "output":
                assert message["offset"] == offset, "gap or duplicate"
                digest.update(message["data"])
                offset += len(message["data"])
    assert row["bytes_out"] <= len(expected)
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert pauses >= 1
    reader.close()


def test_resume_inside_the_ring_is_exact_outside_gives_a_snapshot(make_daemon) -> None:
    daemon = make_daemon("--replay-bytes", "64K")
    client = daemon.client()
    script = (
        "import sys, tty; tty.setraw(0); o = sys.stdout.buffer\n"
        "o.write(b'READY'); o.flush()\n"
        "while True:\n"
        "    n = int(sys.stdin.buffer.readline())\n"
        "    o.write(bytes(i % 251 for i in range(n)) + b'END'); o.flush()\n"
    )
    info = client.create(["python3", "-c", script], cols=40, rows=5)
    first = daemon.client()
    stream = attach_stream(first, info.id)
    read_until(first, stream, contains(b"READY"))
    client.send(info.id, b"1000\n")
    read_until(first, stream, contains(b"END"))
    resume_at = stream.offset
    first.close()
    client.send(info.id, b"30000\n")
    watcher = attach_stream(client, info.id, policy="block")
    read_until(client, watcher, lambda s: s.data.count(b"END") == 2)
    again = daemon.client()
    attached = again.attach(info.id, from_offset=resume_at)
    assert attached.resumed and attached.offset == resume_at and attached.snapshot is None
    replay = read_until(again, Stream(info.id, resume_at), lambda s: s.offset >= watcher.offset)
    assert bytes(replay.data) == bytes(watcher.data[resume_at:])
    again.detach(info.id)
    client.send(info.id, b"70000\n")  # pushes resume_at out of the 64 KiB ring
    read_until(client, watcher, lambda s: s.data.count(b"END") == 3)
    late = again.attach(info.id, from_offset=resume_at, snapshot="text")
    assert not late.resumed and late.offset == watcher.offset and late.snapshot.endswith("END")


def test_attach_during_heavy_output_has_no_gap_and_no_duplicate(make_daemon, backend) -> None:
    """Each attach's snapshot equals a reference emulator fed the exact stream up to its offset,
    and its first output event starts at that offset, over many trials."""
    daemon = make_daemon()
    client = daemon.client()
    # The pure emulator feeds ~1 MB/s: its producer paces itself (in the program, not the test)
    # so that each attach does not wait for megabytes of emulator backlog.
    pace = 0.0002 if backend == "compiled" else 0.002
    script = (
        "import sys, time, tty; tty.setraw(0); o = sys.stdout.buffer; i = 0\n"
        "while True:\n"
        "    o.write(b''.join(b'\\x1b[%dm%08d\\r\\n' % (31 + (i + k) % 7, i + k)\n"
        "                     for k in range(64)))\n"
        f"    o.flush(); i += 64; time.sleep({pace})\n"
    )
    cols, rows = 30, 6
    info = client.create(["python3", "-c", script], cols=cols, rows=rows)
    full = attach_stream(client, info.id, policy="block")
    reference = Emulator(cols, rows, 0)
    fed = 0
    trials = 300 if backend == "compiled" else 40
    for _ in range(trials):
        other = daemon.client()
        # Block policy: the attach can never be resolved by a resync, so every trial tests the
        # seam between snapshot and stream (flow events may come first).
        attached = other.attach(info.id, snapshot="text", policy="block")
        first = None
        while first is None:
            try:
                event = other.next_event(0.05)
            except TimeoutError:
                # The lossless observer may be what holds the session paused: take everything
                # its client has queued so the daemon can read the PTY again.
                full.take(client.next_event(30))
                with contextlib.suppress(TimeoutError):
                    while True:
                        full.take(client.next_event(0.001))
                continue
            assert isinstance(event, OutputEvent | FlowEvent), event
            first = event if isinstance(event, OutputEvent) else None
        assert first.offset == attached.offset, "gap or duplicate after the snapshot"
        read_until(client, full, lambda s, end=first.end: s.offset >= end)
        assert bytes(full.data[first.offset : first.end]) == first.data
        reference.feed(bytes(full.data[fed : attached.offset]))
        fed = attached.offset
        assert reference.snapshot_text(0) == attached.snapshot
        other.close()
    print(f"\n{backend}: {trials}/{trials} attaches during output exact, {fed} bytes streamed")
    client.kill(info.id)


def test_snapshot_flood_without_reading_stays_bounded(make_daemon) -> None:
    """Unread replies count against the same bound: 10,000 snapshot requests from a client
    that never reads leave daemon memory bounded and other clients served."""
    daemon = make_daemon("--scrollback", "2000")
    client = daemon.client()
    info = client.create(["sh", "-c", "seq 1 3000; exec sleep 600"], cols=80, rows=24)
    wait_for(lambda: client.info(info.id).bytes_out >= 13000, what="seq output")
    one = len(client.snapshot(info.id, "text", 2000).data)
    base = client.stats()["daemon"]["rss"]
    flooder = RawClient(daemon.socket, rcvbuf=4096)
    flooder.hello()
    flooder.sock.setblocking(False)
    sent = 0
    for request_id in range(1000, 11000):
        request = flooder.frame(
            "snapshot", request_id, session=info.id, format="text", scrollback=2000
        )
        try:
            flooder.sock.send(request)  # all or nothing for small frames on a Unix socket
        except BlockingIOError:
            break
        sent += 1
    stats = client.stats()
    growth = stats["daemon"]["rss"] - base
    print(
        f"\nsnapshot flood: {sent} requests accepted before backpressure, RSS growth "
        f"{growth / MIB:.1f} MiB"
    )
    assert sent < 10000, "the daemon never stopped reading the flooding client"
    assert growth <= 1 * MIB + 32 * one + 8 * MIB  # limit + in-flight snapshots + slack
    assert "\n3000\n" in client.snapshot(info.id, "text").data
    flooder.close()
    wait_for(lambda: client.stats()["daemon"]["clients"] == 1, what="flooder gone")


def test_replies_to_one_read_of_requests_stop_at_the_flow_limit(make_daemon) -> None:
    """A client packs 2,000 ``list`` requests (each reply about 40 KiB) into one write and
    does not read: the daemon handles them only while the replies fit under the flow limit
    (they would be about 80 MiB), and once the client reads, every request has its reply, in
    order."""
    daemon = make_daemon()
    client = daemon.client()
    for _ in range(20):
        client.create(["sh", "-c", "exec sleep 600", "x" * 2000])
    base = client.stats()["daemon"]["rss"]
    count = 2000
    flooder = RawClient(daemon.socket, rcvbuf=4096, hello=True)
    flooder.sock.sendall(b"".join(RawClient.frame("list", n) for n in range(1, count + 1)))
    client.list_sessions()  # the daemon has read and handled what it would
    growth = client.stats()["daemon"]["rss"] - base
    ids = []
    while len(ids) < count:
        message = flooder.read_message()
        assert message is not None and message["ok"], message
        ids.append(message["id"])
    reply = len(protocol.encode(message))
    print(
        f"\n{count} list requests in one write ({count * reply / MIB:.0f} MiB of replies): "
        f"RSS growth {growth / MIB:.1f} MiB before the client read; {len(ids)} replies after"
    )
    assert growth <= 8 * MIB
    assert ids == list(range(1, count + 1))
    flooder.close()


def test_pipelined_requests_are_each_answered_once_across_pauses(make_daemon) -> None:
    """3,000 requests written in one go by a client that reads through a small buffer, mixing
    immediate ones (list, info, stats, an unknown type) with long ones (snapshot, a wait that
    times out): the daemon stops for its backlog and for 32 requests in flight, and still
    answers every request exactly once, the immediate ones in the order sent."""
    daemon = make_daemon()
    client = daemon.client()
    info = client.create(["sh", "-c", "seq 1 2000; exec sleep 600", *["x" * 4000] * 3])
    wait_for(lambda: client.info(info.id).bytes_out >= 8893, what="seq output")
    mix: list[tuple[str, dict[str, Any]]] = [
        ("list", {}),
        ("snapshot", {"session": info.id, "format": "text", "scrollback": 2000}),
        ("info", {"session": info.id}),
        ("wait", {"session": info.id, "timeout": 0.01}),
        ("stats", {}),
        ("no_such_request", {}),
    ]
    count = 3000
    kinds = {n: mix[n % len(mix)][0] for n in range(1, count + 1)}
    frames = b"".join(RawClient.frame(kinds[n], n, **mix[n % len(mix)][1]) for n in kinds)
    raw = RawClient(daemon.socket, rcvbuf=4096, hello=True)
    sender = threading.Thread(target=raw.sock.sendall, args=(frames,))
    sender.start()
    answered: list[int] = []
    while len(answered) < count:
        message = raw.read_message()
        assert message is not None, f"closed after {len(answered)} answers"
        if message["type"] == "response":
            answered.append(message["id"])
    sender.join()
    immediate = [n for n in answered if kinds[n] not in ("snapshot", "wait")]
    print(f"\n{count} pipelined requests: {len(set(answered))} answered once each")
    assert sorted(answered) == list(range(1, count + 1))
    assert immediate == sorted(immediate)
    raw.close()


def test_a_half_frame_from_a_client_that_does_not_read_is_timed_out(make_daemon) -> None:
    """The partial-frame clock keeps running while the daemon stops reading a client that
    does not read its replies (it used to stop, so such a client held its share of the
    partial-frame budget until it went away)."""
    daemon = make_daemon("--frame-timeout", "2")
    client = daemon.client()
    client.create(["sh", "-c", "exec sleep 600", *["x" * 4000] * 5])
    flooder = RawClient(daemon.socket, rcvbuf=4096, hello=True)
    requests = b"".join(RawClient.frame("list", n) for n in range(1, 200))  # 4 MiB of replies
    flooder.sock.sendall(requests + (1000).to_bytes(4, "big") + b"\x81")  # and half a frame
    wait_for(lambda: client.stats()["daemon"]["clients"] == 2, what="the flooder counted")
    started = time.monotonic()
    wait_for(lambda: client.stats()["daemon"]["clients"] == 1, timeout=15, what="flooder closed")
    closed_after = time.monotonic() - started
    print(f"\nnon-reading client with a half frame closed after {closed_after:.1f} s (limit 2)")
    assert closed_after <= 2 + 1 + 3  # the frame timeout, the close's grace, slack
    while (message := flooder.read_message()) is not None:  # replies, then the end
        assert message["ok"] or message["error"]["code"] == errors.TIMEOUT, message
    flooder.close()


@pytest.mark.parametrize("policy", ["latest", "manual"])
def test_read_only_attachment_refused_input_and_resize(backend, short_tmp, policy) -> None:
    """Under every size policy (manual used to let a read-only attachment resize)."""
    running = start_daemon(short_tmp / "d.sock", backend, "--size-policy", policy)
    try:
        client = running.client()
        info = client.create(["sleep", "600"], cols=80, rows=24)
        viewer = running.client()
        viewer.attach(info.id, read_only=True, cols=100, rows=40)
        for call in (lambda: viewer.send(info.id, b"x"), lambda: viewer.resize(info.id, 90, 30)):
            with pytest.raises(RequestError) as refused:
                call()
            assert refused.value.code == errors.READ_ONLY
        now = client.info(info.id)
        assert (now.cols, now.rows) == (80, 24)
        assert client.stats()["sessions"][0]["input_backlog"] == 0
        assert client.stats()["daemon"]["bytes_in"] == 0
    finally:
        assert running.stop() == 0


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("latest", (100, 30)), ("smallest", (60, 20)), ("largest", (100, 30)), ("manual", (80, 24))],
)
def test_size_policies(backend, short_tmp, policy, expected) -> None:
    """Two clients of different sizes; the one that typed last is the 100x30 one."""
    running = start_daemon(short_tmp / "d.sock", backend, "--size-policy", policy)
    try:
        creator = running.client()
        info = creator.create(["cat"], cols=80, rows=24)
        small, big = running.client(), running.client()
        small.attach(info.id, cols=60, rows=20)
        big.attach(info.id, cols=100, rows=30)
        small.send(info.id, b"a")
        big.send(info.id, b"b")
        now = creator.info(info.id)
        assert (now.cols, now.rows) == expected
        if policy == "smallest":
            small.detach(info.id)
            now = creator.info(info.id)
            assert (now.cols, now.rows) == (100, 30)
    finally:
        assert running.stop() == 0


def test_reads_are_coalesced_under_a_flood_and_each_echo_goes_at_once(daemon, backend) -> None:
    """A flooding session sends few large frames; an interactive one sends each keystroke's
    echo as its own frame, at once."""
    client = daemon.client()
    blocks = flood_blocks(backend, 16)
    expected = flood_bytes(4, blocks)
    flood, stream = start_flood(client, 4, blocks)
    client.send(flood, b"g")
    read_until(client, stream, lambda s: s.offset >= len(expected))
    row = next(row for row in client.stats()["sessions"] if row["id"] == flood)
    mean = row["bytes_out"] / row["frames_out"]
    echo = client.create(["python3", "-c", RAW_ECHO])
    typed = attach_stream(client, echo.id)
    read_until(client, typed, contains(b"READY"))
    before = next(r for r in client.stats()["sessions"] if r["id"] == echo.id)["frames_out"]
    for key in b"keystrokes":
        client.send(echo.id, bytes([key]))
        event = client.next_event(10)
        while not isinstance(event, OutputEvent):  # e.g. the flood's last flow event
            event = client.next_event(10)
        assert event.session == echo.id and event.data == bytes([key]), event
        typed.take(event)
    after = next(r for r in client.stats()["sessions"] if r["id"] == echo.id)["frames_out"]
    print(
        f"\n{backend}: flood {row['bytes_out'] / MIB:.1f} MiB in {row['frames_out']} frames "
        f"(mean {mean / 1024:.1f} KiB); 10 keystrokes echoed in {after - before} frames"
    )
    assert after - before == 10
    assert mean >= 4096, "reads under a flood are not coalesced"


# Echo each byte as it comes, unbuffered, in raw mode: one keystroke in, one byte out.
RAW_ECHO = """
import os, tty
tty.setraw(0)
os.write(1, b"READY")
while True:
    os.write(1, os.read(0, 1))
"""
