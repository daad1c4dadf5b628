"""The client library's own behaviour: reconnect with lossless resume, errors, async API."""

from __future__ import annotations

import asyncio
import time

import pytest

from ptyd import AsyncClient, ConnectionFailed, RequestError, errors
from ptyd.events import ExitEvent, OutputEvent

from .helpers import Stream, contains, read_until, wait_until


def test_reconnect_resumes_from_the_last_offset_without_gap_or_duplicate(daemon) -> None:
    client = daemon.client(reconnect=True)
    info = client.create(["sh", "-c", "stty -echo; while read line; do echo got-$line; done"])
    client.attach(info.id, snapshot=None, from_offset=0)
    stream = Stream(info.id, 0)
    client.send(info.id, "one\n")
    read_until(client, stream, contains(b"got-one"))
    # An oversized frame makes the daemon close this connection (frame_too_large).
    with pytest.raises((RequestError, ConnectionFailed)):
        client.request("input", session=info.id, data=b"x" * (5 << 20))
    deadline = time.monotonic() + 30
    while True:  # requests fail until the client has reconnected
        try:
            client.send(info.id, "two\n")
            break
        except ConnectionFailed:
            assert time.monotonic() < deadline, "the client did not reconnect"
            time.sleep(0.05)  # bounded retry of a request, not synchronisation
    read_until(client, stream, contains(b"got-two"))  # Stream asserts contiguous offsets
    assert stream.data.count(b"got-one") == 1


def test_async_client_round_trip(daemon) -> None:
    async def scenario() -> tuple[int | None, bytes]:
        async with await AsyncClient.connect(daemon.socket) as client:
            info = await client.create(["sh", "-c", "read x; echo async-$x; exit 2"])
            await client.attach(info.id, snapshot=None, from_offset=0)
            await client.send(info.id, "ok\n")
            seen = b""
            async for event in client.events():
                data = getattr(event, "data", None)
                if isinstance(data, bytes):
                    seen += data
                if getattr(event, "code", None) is not None:
                    return event.code, seen  # the exit event
        raise AssertionError("no exit event")

    code, seen = asyncio.run(scenario())
    assert code == 2 and b"async-ok" in seen


def test_errors_have_stable_codes(daemon) -> None:
    client = daemon.client()
    with pytest.raises(RequestError) as info:
        client.resize("nobody-by-this-name", 80, 24)
    assert info.value.code == errors.NO_SUCH_SESSION


def test_connecting_to_nothing_raises_connection_failed(short_tmp) -> None:
    from ptyd import Client

    with pytest.raises(ConnectionFailed, match="no ptyd daemon is listening"):
        Client(short_tmp / "none.sock")


def test_a_consumer_that_stops_taking_events_holds_bounded_memory(daemon) -> None:
    """The client stops reading its socket at event_queue_bytes: the daemon's flow control
    (here: block, the session pauses) takes over, and nothing is lost."""
    size = 8_000_000
    control = daemon.client()
    slow = daemon.client(event_queue_bytes=1 << 20)
    info = control.create(["sh", "-c", f"exec head -c {size} /dev/zero"])
    attached = slow.attach(info.id, snapshot=None, policy="block")
    wait_until(lambda: control.stats()["sessions"][0]["paused"], 30, "the session to pause")
    count, held = slow.queued_events
    print(f"\nheld by a consumer that stopped: {count} events, {held / 1024:.0f} KiB")
    assert held <= (1 << 20) + (1 << 20)  # the limit plus one read
    received = attached.offset  # output before the attach is not sent (no snapshot asked)
    while received < size:
        event = slow.next_event(30)
        if isinstance(event, OutputEvent):
            received += len(event.data)
    assert received == size
    assert slow.queued_events[1] == 0  # the byte count follows what was taken


def test_deliver_to_passes_events_as_they_arrive_and_pause_holds_them(daemon) -> None:
    """deliver_to(): events already queued first, then each as it arrives, in order; while the
    consumer holds them (pause_events) the daemon's block policy pauses the session, and
    nothing is lost once it resumes."""
    size = 4_000_000

    async def scenario() -> tuple[int, bool, bool]:
        async with await AsyncClient.connect(daemon.socket) as client:
            info = await client.create(["sh", "-c", f"read x; head -c {size} /dev/zero; exit 4"])
            attached = await client.attach(info.id, snapshot=None, policy="block")
            await client.send(info.id, "go\n")
            await client.request("stats")  # output may now be queued before deliver_to
            loop = asyncio.get_running_loop()
            received = attached.offset
            held: asyncio.Future[None] = loop.create_future()
            exited: asyncio.Future[int] = loop.create_future()

            def on_event(event: object) -> None:
                nonlocal received
                if isinstance(event, OutputEvent):
                    assert event.offset == received, "a gap or a duplicate"
                    received = event.end
                    if received > size // 2 and not held.done():
                        client.pause_events()
                        held.set_result(None)
                elif isinstance(event, ExitEvent) and not exited.done():
                    exited.set_result(event.code or 0)

            client.deliver_to(on_event)
            with pytest.raises(RuntimeError, match="deliver_to"):
                await client.next_event(0.1)
            await asyncio.wait_for(held, 30)
            async with await AsyncClient.connect(daemon.socket) as control:
                deadline = loop.time() + 30
                while not (await control.stats())["sessions"][0]["paused"]:
                    assert loop.time() < deadline, "the session never paused"
                    await asyncio.sleep(0.02)  # poll interval of a bounded wait
                was_paused = received < size
                client.resume_events()
                code = await asyncio.wait_for(exited, 30)
                is_complete = received == size + len(b"go\r\n")
            return code, was_paused, is_complete

    code, was_paused, is_complete = asyncio.run(scenario())
    assert code == 4 and was_paused and is_complete
