"""The client library's own behaviour: reconnect with lossless resume, errors, async API."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ptyd import (
    AsyncClient,
    CallTimedOut,
    Client,
    ConnectionFailed,
    DaemonBusy,
    RequestError,
    errors,
)
from ptyd.events import ExitEvent, OutputEvent
from ptyd.protocol import MAX_INPUT_CHUNK

from .conftest import start_daemon
from .helpers import RawClient, Stream, contains, needs_root, read_until, wait_until

NOBODY = 65534


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


def test_connecting_to_nothing_raises_no_daemon(short_tmp) -> None:
    from ptyd import Client, NoDaemon

    with pytest.raises(NoDaemon, match="no ptyd daemon is listening") as info:
        Client(short_tmp / "none.sock")
    assert isinstance(info.value, ConnectionFailed)


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


def test_close_ends_a_consumer_waiting_for_events(daemon) -> None:
    """close() tells whoever waits in events() (a DisconnectedEvent), instead of leaving it
    waiting forever."""

    async def scenario() -> list[object]:
        client = await AsyncClient.connect(daemon.socket)
        seen: list[object] = []

        async def consume() -> None:
            async for event in client.events():
                seen.append(event)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.1)  # let the consumer start waiting (not synchronisation)
        await client.close()
        await asyncio.wait_for(consumer, 10)
        return seen

    seen = asyncio.run(scenario())
    assert len(seen) == 1 and getattr(seen[0], "reason", None) == "closed"


def test_client_timeouts_neither_cut_a_wait_short_nor_lose_an_event(daemon) -> None:
    """Client(timeout=...) bounds each call, but wait() is bounded by its own timeout (the
    daemon's), next_event() by its own, and a call given up on is cancelled: it used to go on
    in the background and swallow the next event."""
    client = daemon.client(timeout=0.3)
    info = client.create(["sh", "-c", "read x; sleep 1; echo after-$x; exit 5"])
    client.attach(info.id, snapshot=None, from_offset=0)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        client.next_event(timeout=0.8)
    assert time.monotonic() - start >= 0.7  # its own timeout, not the client's 0.3 s
    client.send(info.id, "go\n")
    assert client.wait(info.id).code == 5  # about 1 s: longer than the client's timeout
    seen = b""
    while not isinstance(event := client.next_event(5), ExitEvent):
        seen += getattr(event, "data", b"")
    assert b"after-go" in seen


def test_an_exit_is_not_repeated_after_a_reconnect(daemon) -> None:
    client = daemon.client(reconnect=True)
    info = client.create(["sh", "-c", "read x; exit 3"])
    client.attach(info.id, snapshot=None, from_offset=0)
    client.send(info.id, "\n")
    while not isinstance(event := client.next_event(10), ExitEvent):
        pass
    assert event.code == 3
    with pytest.raises((RequestError, ConnectionFailed)):  # frame_too_large: the daemon hangs up
        client.request("input", session=info.id, data=b"x" * (5 << 20))
    wait_until(lambda: _answers(client), 30, "the client to reconnect")
    with pytest.raises(TimeoutError):  # the window in which a repeated exit would come
        client.next_event(timeout=1)


def _answers(client) -> bool:
    try:
        client.list_sessions()
    except ConnectionFailed:
        return False
    return True


def test_a_restarted_daemon_ends_the_attached_sessions_instead_of_resuming_others(
    backend, short_tmp
) -> None:
    """Reconnecting to another daemon on the same socket after the first was killed: the old
    sessions died with it and their ids may name new sessions, so each attached one ends with
    an error event (no_such_session) rather than being resumed into someone else's output."""
    from ptyd.events import ErrorEvent, ShutdownEvent

    from .conftest import start_daemon

    path = short_tmp / "d.sock"
    first = start_daemon(path, backend)
    client = Client(path, reconnect=True, timeout=60)  # outlives the first daemon
    info = client.create(["sleep", "600"])
    client.attach(info.id, snapshot=None)
    # Killed: no exit event reaches the client (a clean stop would end the session with one).
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = start_daemon(path, backend)
    try:
        other = second.client().create(["sh", "-c", "echo UNRELATED; exec sleep 600"])
        assert other.id == info.id  # the same id, another session
        event = client.next_event(30)
        while isinstance(event, OutputEvent | ExitEvent | ShutdownEvent):  # the old daemon ending
            event = client.next_event(30)
        assert isinstance(event, ErrorEvent), event
        assert event.session == info.id and event.code == errors.NO_SUCH_SESSION
        assert "restarted" in event.message
        with pytest.raises(TimeoutError):  # nothing of the new session 1 comes to this client
            client.next_event(timeout=1)
    finally:
        client.close()
        assert second.stop() == 0


def test_a_refusal_before_hello_is_reported_as_itself(short_tmp) -> None:
    """A daemon at its client cap writes its refusal and closes at once, often before the
    client's hello is even written: the client raises that refusal (DaemonBusy, code
    too_many_connections), never a bare ConnectionFailed that hides why."""
    from .conftest import start_daemon

    running = start_daemon(short_tmp / "d.sock", "compiled", "--max-clients", "1")
    try:
        holder = running.client()
        codes = []
        for _ in range(40):
            with pytest.raises(DaemonBusy) as refused:
                Client(running.socket, timeout=10)
            codes.append(refused.value.code)
        assert set(codes) == {errors.TOO_MANY_CONNECTIONS}
        holder.list_sessions()
    finally:
        assert running.stop() == 0


def test_requests_are_answered_while_the_event_queue_is_full(daemon) -> None:
    """A consumer that stops taking events can still make requests: the socket is read for
    their answers (it used to stay paused, and the request waited for ever). The queue then
    holds at most its ceiling (its limit plus ANSWER_HEADROOM_BYTES), and nothing is lost."""
    from ptyd.client import ANSWER_HEADROOM_BYTES

    size = 8_000_000
    control = daemon.client()
    slow = daemon.client(event_queue_bytes=1 << 20, timeout=20)
    info = control.create(["sh", "-c", f"exec head -c {size} /dev/zero"])
    attached = slow.attach(info.id, snapshot=None, policy="block")
    wait_until(lambda: control.stats()["sessions"][0]["paused"], 30, "the session to pause")
    for _ in range(3):
        assert [found.id for found in slow.list_sessions()] == [info.id]
    count, held = slow.queued_events
    print(f"\nheld after 3 requests with a full queue: {count} events, {held / 1024:.0f} KiB")
    assert held <= (1 << 20) + ANSWER_HEADROOM_BYTES + (1 << 20)  # the ceiling, one read
    received = attached.offset
    while received < size:
        event = slow.next_event(30)
        if isinstance(event, OutputEvent):
            assert event.offset == received, "a gap or a duplicate"
            received = event.end
    assert received == size


def test_a_deliver_to_callback_that_raises_costs_only_that_event(daemon) -> None:
    """The exception goes to the loop's exception handler; the connection and the later
    events go on (it used to end the connection)."""

    async def scenario() -> tuple[list[BaseException], int]:
        loop = asyncio.get_running_loop()
        reported: list[BaseException] = []
        loop.set_exception_handler(lambda _, context: reported.append(context["exception"]))
        async with await AsyncClient.connect(daemon.socket) as client:
            info = await client.create(["sh", "-c", "read x; echo second; exit 3"])
            await client.attach(info.id, snapshot=None, from_offset=0)
            exited: asyncio.Future[int] = loop.create_future()

            def on_event(event: object) -> None:
                if isinstance(event, ExitEvent):
                    exited.set_result(event.code or 0)
                elif isinstance(event, OutputEvent):
                    raise ValueError("a consumer bug")

            client.deliver_to(on_event)
            await client.send(info.id, "go\n")
            return reported, await asyncio.wait_for(exited, 30)

    reported, code = asyncio.run(scenario())
    assert code == 3
    assert reported and all(isinstance(exc, ValueError) for exc in reported)


def test_close_returns_when_the_daemon_does_not_read(daemon) -> None:
    """close() lets unsent requests go for CLOSE_GRACE seconds, then drops them: a stopped
    daemon cannot hold the application (close() used to wait for ever)."""
    from ptyd.client import CLOSE_GRACE

    async def scenario() -> float:
        client = await AsyncClient.connect(daemon.socket)
        info = await client.create(["cat"])
        os.kill(daemon.process.pid, signal.SIGSTOP)
        try:
            client.submit("input", session=info.id, data=b"x" * (3 << 20))  # past the buffers
            started = time.monotonic()
            await asyncio.wait_for(client.close(), 10)
            return time.monotonic() - started
        finally:
            os.kill(daemon.process.pid, signal.SIGCONT)

    took = asyncio.run(scenario())
    print(f"\nclose() with 3 MiB unsent to a stopped daemon returned after {took:.2f} s")
    assert CLOSE_GRACE - 0.1 <= took <= CLOSE_GRACE + 2


# -- large input: back-pressure and an honest count -------------------------------------------

INPUT_LIMIT = 600 * 1024  # room for two 256 KiB chunks of send(), not three
# A program that sets its terminal raw and stops itself before reading: the input queue fills
# until the test continues it (SIGCONT); then it reads N bytes and prints their digest.
STOPPED_READER = "stty raw -echo; printf armed; kill -STOP $$; head -c {size} | sha256sum"


def _numbered(size: int) -> bytes:
    """Printable bytes that differ at every position: a byte lost or repeated changes the hash."""
    return b"".join(b"%08d" % index for index in range(size // 8))


def _stopped_reader(client: Client, size: int) -> Stream:
    """The session's stream, once the program is about to stop."""
    info = client.create(["sh", "-c", STOPPED_READER.format(size=size)])
    stream = Stream(info.id, client.attach(info.id, snapshot=None, from_offset=0).offset)
    return read_until(client, stream, contains(b"armed"))


def _input_backlog(client: Client, session: int) -> int:
    return next(s["input_backlog"] for s in client.stats()["sessions"] if s["id"] == session)


def _digest_printed(client: Client, stream: Stream, payload: bytes) -> None:
    """The program's digest of what it read is the payload's: nothing lost, nothing twice."""
    read_until(client, stream, contains(hashlib.sha256(payload).hexdigest().encode()))


def test_a_large_send_waits_for_the_program_to_read_and_delivers_everything_once(
    backend, short_tmp
) -> None:
    """A later chunk refused with input_overflow is sent again as the program reads: the send
    completes, and the program reads the input exactly once (it used to raise after 512 KiB
    of the 2 MiB were queued, so a retry would have sent those twice)."""
    running = start_daemon(short_tmp / "d.sock", backend, "--input-limit", str(INPUT_LIMIT))
    try:
        control = running.client()
        payload = _numbered(2 << 20)
        stream = _stopped_reader(control, len(payload))
        session = stream.session
        failures: list[BaseException] = []

        def send() -> None:
            try:
                running.client().send(session, payload)
            except BaseException as exc:
                failures.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        wait_until(  # the next chunk cannot be queued until the program reads
            lambda: _input_backlog(control, session) > INPUT_LIMIT - MAX_INPUT_CHUNK or failures,
            30,
            "the session's input queue to fill",
        )
        control.signal(session, "CONT", "process")
        sender.join(60)
        assert not sender.is_alive() and not failures, failures
        _digest_printed(control, stream, payload)
    finally:
        assert running.stop() == 0


def test_a_send_out_of_time_says_how_much_was_delivered_and_the_rest_can_follow(
    backend, short_tmp
) -> None:
    """A send the program does not read in time raises CallTimedOut (a PtydError) with
    ``delivered``: exactly what was queued, so sending ``data[delivered:]`` completes the
    input without loss or repetition; a refused first chunk is raised at once, delivered 0."""
    running = start_daemon(short_tmp / "d.sock", backend, "--input-limit", str(INPUT_LIMIT))
    try:
        control = running.client()
        payload = _numbered(2 << 20)
        stream = _stopped_reader(control, len(payload))
        session = stream.session
        with pytest.raises(errors.PtydError) as timed_out:
            running.client(timeout=1).send(session, payload)
        assert isinstance(timed_out.value, errors.CallTimedOut), timed_out.value
        assert timed_out.value.delivered == 2 * MAX_INPUT_CHUNK
        assert timed_out.value.unconfirmed in (0, MAX_INPUT_CHUNK)  # that chunk was refused
        rest = payload[timed_out.value.delivered :]
        with pytest.raises(RequestError) as refused:  # the queue is full: nothing goes in
            running.client(timeout=10).send(session, rest)
        assert refused.value.code == errors.INPUT_OVERFLOW and refused.value.delivered == 0
        control.signal(session, "CONT", "process")
        wait_until(lambda: _input_backlog(control, session) == 0, 30, "the program to read")
        running.client(timeout=60).send(session, rest)
        _digest_printed(control, stream, payload)
    finally:
        assert running.stop() == 0


def test_calls_after_the_daemon_closed_the_connection_raise_connection_failed(daemon) -> None:
    """The daemon answers an oversized frame with frame_too_large and closes: that error is the
    oversized request's; every later call is told the connection is lost (ConnectionFailed,
    naming the cause), not the old RequestError again."""
    client = daemon.client()
    info = client.create(["sleep", "600"])
    with pytest.raises((RequestError, ConnectionFailed)):
        client.request("input", session=info.id, data=b"x" * (5 << 20))
    for call in (client.list_sessions, lambda: client.send(info.id, "x"), client.stats):
        with pytest.raises(errors.PtydError) as lost:
            call()
        assert isinstance(lost.value, ConnectionFailed), repr(lost.value)
        assert "frame_too_large" in str(lost.value)


def test_a_call_that_times_out_raises_call_timed_out_and_may_still_be_carried_out(
    daemon,
) -> None:
    """Every timeout of the library is a CallTimedOut: a PtydError and a TimeoutError. A
    request written before the timeout is not recalled: the daemon still carries it out."""
    client = daemon.client(timeout=0.5)
    control = daemon.client()
    for timed in (lambda: client.next_event(timeout=0.1), lambda: next(client.events(0.1))):
        with pytest.raises(errors.PtydError) as timed_out:
            timed()
        assert isinstance(timed_out.value, errors.CallTimedOut), repr(timed_out.value)
        assert isinstance(timed_out.value, TimeoutError)

    async def next_event() -> BaseException:
        async with await AsyncClient.connect(daemon.socket) as async_client:
            try:
                await async_client.next_event(0.05)
            except BaseException as exc:
                return exc
        raise AssertionError("no timeout")

    assert isinstance(asyncio.run(next_event()), errors.CallTimedOut)
    os.kill(daemon.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(errors.PtydError) as timed_out:
            client.create(["sleep", "600"], name="late")
        assert isinstance(timed_out.value, errors.CallTimedOut)
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
    wait_until(lambda: [s.name for s in control.list_sessions()] == ["late"], 10, "the late create")
    assert [s.name for s in client.list_sessions()] == ["late"]  # the client goes on


@pytest.mark.parametrize("bad", ["FOO", "0", "SIGNOPE", "²"])
def test_an_unknown_signal_is_a_bad_request_before_the_session_is_looked_up(daemon, bad) -> None:
    """The request's fields are checked first: an unknown signal name to a missing session got
    no_such_session (the name was only parsed once the session had been found)."""
    client = daemon.client()
    exited = client.create(["true"])
    client.wait(exited.id)
    for session in ("nobody-by-this-name", 999, exited.id):
        with pytest.raises(RequestError) as refused:
            client.signal(session, bad)
        assert refused.value.code == errors.BAD_REQUEST, (session, refused.value)
        assert "signal" in str(refused.value)


@needs_root
def test_an_allowed_uid_connects_to_another_users_daemon_by_naming_its_owner(
    backend, short_tmp
) -> None:
    """A uid on PTYD_ALLOWED_UIDS was refused by the library itself (DaemonImpostor: the
    socket is not its own) and had no way to connect; ``owner=`` names the daemon's uid, and
    any other owner is still refused."""
    running = start_daemon(short_tmp / "d.sock", backend, "--allowed-uids", str(NOBODY))
    try:
        os.chmod(short_tmp, 0o711)
        os.chmod(running.socket, 0o666)
        got = _as_uid(NOBODY, running.socket, owner=os.getuid())
        assert got["default"] == "DaemonImpostor", got
        assert got["wrong owner"] == "DaemonImpostor", got
        assert got["owner"] == ["shared"], got
    finally:
        assert running.stop() == 0


def _as_uid(uid: int, path: Path, owner: int) -> dict[str, Any]:
    """In a child run as ``uid``: connect by default, naming a wrong owner, naming ``owner``."""
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        got: dict[str, Any] = {}
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            for label, options in (("default", {}), ("wrong owner", {"owner": uid + 1})):
                try:
                    Client(path, timeout=10, **options).close()
                    got[label] = "connected"
                except errors.PtydError as exc:
                    got[label] = type(exc).__name__
            with Client(path, timeout=10, owner=owner) as client:
                client.create(["sleep", "600"], name="shared")
                got["owner"] = [s.name for s in client.list_sessions()]
        except BaseException as exc:
            got["error"] = repr(exc)
        finally:
            os.write(out_w, json.dumps(got).encode())
            os._exit(0)
    os.close(out_w)
    with os.fdopen(out_r, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_send_keys_types_key_names_in_the_programs_cursor_mode(daemon) -> None:
    """The library's send_keys is ptyd send --keys: names to bytes, and the cursor keys as
    ESC O A once the program asked for application cursor keys."""
    program = (
        "import os, sys, tty; tty.setraw(0); os.write(1, b'READY\\r\\n')\n"
        "print(repr(os.read(0, 64)), end='\\r\\n', flush=True)\n"
        "os.write(1, b'\\x1b[?1hAPP\\r\\n')\n"
        "print(repr(os.read(0, 64)), end='\\r\\n', flush=True)\n"
    )
    client = daemon.client()
    info = client.create(["python3", "-c", program])
    client.attach(info.id, snapshot=None, from_offset=0)
    stream = Stream(info.id, 0)
    read_until(client, stream, contains(b"READY"))
    client.send_keys(info.id, "Up", "C-c", "x")
    read_until(client, stream, contains(b"APP"))
    client.send_keys(info.id, "Up", "Enter")
    read_until(client, stream, lambda s: s.exit is not None)
    normal, application = stream.data.split(b"APP")
    assert b"'\\x1b[A\\x03x'" in normal and b"'\\x1bOA\\r'" in application


def test_stats_name_each_subscriber_by_its_hello_without_control_characters(daemon) -> None:
    """An operator reading ``ptyd stats`` sees which program each subscriber is; a name cannot
    send escape sequences to the operator's terminal."""
    client = daemon.client(client_name="ide-backend/2.1 \x1b]0;owned\x07\x1b[2J" + "x" * 200)
    info = client.create(["sleep", "600"])
    client.attach(info.id, snapshot=None)
    (row,) = client.stats()["subscribers"]
    assert row["client_name"] == "ide-backend/2.1 ]0;owned[2J" + "x" * 98  # 128 before
    shown = daemon.cli("stats").stdout.decode()
    assert f"({row['client_name']}) -> session {info.id}" in shown and "\x1b" not in shown


def test_an_exited_sessions_read_rate_is_over_its_lifetime(daemon) -> None:
    """stats' read_rate is bytes/s over the session's life, which ends at its exit: it does
    not keep falling while the exited session is kept."""
    client = daemon.client()
    info = client.create(["sh", "-c", "head -c 100000 /dev/zero"])
    client.wait(info.id, timeout=10)

    def rate() -> float:
        return next(s["read_rate"] for s in client.stats()["sessions"] if s["id"] == info.id)

    first = rate()
    time.sleep(0.3)
    assert first > 0 and rate() == first

    client = daemon.client()
    info = client.create(["cat"])
    with pytest.raises(TypeError, match=r"key names are str arguments .* not list"):
        client.send_keys(info.id, ["Up", "Enter"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not bytes"):
        client.send_keys(info.id, "Up", b"x")  # type: ignore[arg-type]
    assert client.info(info.id).state == "running"


def test_a_cancelled_attach_is_undone(daemon) -> None:
    """A web backend gives up on an attach (a tab closed, a timeout): the daemon attached all
    the same, so the client detaches it, shows none of its events, and a later attach works."""

    async def run() -> tuple[int, list[Any]]:
        client = await AsyncClient.connect(daemon.socket)
        try:
            info = await client.create(["sh", "-c", "while :; do echo tick; sleep 0.05; done"])
            for _ in range(5):
                task = asyncio.create_task(client.attach(info.id))
                await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.sleep(0.5)
            stray = []
            with contextlib.suppress(CallTimedOut):
                while True:
                    stray.append(await client.next_event(timeout=0.2))
            subscribers = len((await client.stats())["subscribers"])
            attached = await client.attach(info.id, snapshot=None)
            first = await client.next_event(timeout=10)
            assert isinstance(first, OutputEvent) and first.offset == attached.offset
            return subscribers, stray
        finally:
            await client.close()

    subscribers, stray = asyncio.run(run())
    assert subscribers == 0 and stray == []


def test_the_end_of_the_events_is_told_to_every_later_reader(daemon) -> None:
    client = daemon.client()
    client.close()
    with pytest.raises(ConnectionFailed, match="this client was closed"):
        client.next_event(timeout=5)  # a closed blocking client has no loop left to ask

    async def run() -> list[Any]:
        async_client = await AsyncClient.connect(daemon.socket)
        await async_client.close()
        told = [await async_client.next_event(timeout=5) for _ in range(2)]
        told += [event async for event in async_client.events()]
        return told

    told = asyncio.run(run())
    assert [type(event).__name__ for event in told] == ["DisconnectedEvent"] * 3


def test_a_hundred_waits_at_once_on_one_client(daemon) -> None:
    """Each wait has a connection of its own; a burst of them must not be refused as
    connections waiting for hello (PTYD_MAX_UNAUTHENTICATED, 64)."""

    async def run() -> int:
        client = await AsyncClient.connect(daemon.socket)
        try:
            info = await client.create(["sh", "-c", "echo ready; sleep 600"])
            found = await asyncio.gather(
                *(client.wait_for(info.id, "^ready$", timeout=60) for _ in range(100))
            )
            return sum(match.matched == "ready" for match in found)
        finally:
            await client.close()

    assert asyncio.run(run()) == 100


def test_empty_input_checks_the_session_but_takes_no_size(backend, short_tmp) -> None:
    """Under the latest policy typing gives a client's size to the session; sending nothing is
    no typing."""
    running = start_daemon(short_tmp / "d.sock", backend)
    try:
        big, small = running.client(), running.client()
        info = big.create(["sleep", "600"])
        big.attach(info.id, cols=120, rows=40)
        small.attach(info.id, cols=60, rows=20)  # the latest to attach: its size
        assert (big.info(info.id).cols, big.info(info.id).rows) == (60, 20)
        big.send(info.id, "")
        assert (big.info(info.id).cols, big.info(info.id).rows) == (60, 20)
        big.send(info.id, " ")
        assert (big.info(info.id).cols, big.info(info.id).rows) == (120, 40)
    finally:
        assert running.stop() == 0


def test_cancelled_waits_are_withdrawn_from_the_daemon(daemon) -> None:
    """A web backend bounds waits with asyncio timeouts: each cancelled wait is withdrawn
    (``cancel``), so forty of them do not hold the connection's 32 requests in progress."""

    async def run() -> tuple[str, Any]:
        client = await AsyncClient.connect(daemon.socket)
        try:
            info = await client.create(["sleep", "600"])
            for _ in range(40):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(client.wait(info.id), 0.01)
            answered = await asyncio.wait_for(client.info(info.id), 10)
            unknown = await client.request("cancel", request=10**9)
            return answered.state, unknown
        finally:
            await client.close()

    state, unknown = asyncio.run(run())
    assert state == "running" and unknown == {"cancelled": False}


def test_a_cancelled_wait_is_answered_cancelled(daemon) -> None:
    raw = RawClient(daemon.socket, hello=True)
    info = daemon.client().create(["sleep", "600"])
    wait_id = raw.send("wait", session=info.id)
    assert raw.call("cancel", request=wait_id) == {"cancelled": True}
    answer = raw.read_message()  # the wait's answer came first; call() kept it
    assert answer is not None and answer["id"] == wait_id
    assert answer["error"]["code"] == "cancelled"
    assert raw.call("cancel", request=wait_id) == {"cancelled": False}  # withdrawn already
    raw.close()
