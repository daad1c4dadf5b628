"""``wait_for`` and ``ptyd expect``: waiting on a real session's screen for a pattern, or for its
program to go quiet, over a connection of the wait's own (real daemon, both backends)."""

from __future__ import annotations

import asyncio
import pickle
import re
import time

import pytest

from ptyd import (
    AsyncClient,
    ConnectionFailed,
    ScreenWaitExited,
    ScreenWaitTimedOut,
    SessionNotFound,
)
from ptyd.events import OutputEvent

from .helpers import wait_until

# Ticks 0.1 s apart for 2 s (longer than the quiet waited for), then silence: a wait for 1 s
# of quiet can only end after the last tick.
TICKING = (
    "i=1; while [ $i -le 20 ]; do echo tick$i; sleep 0.1; i=$((i + 1)); done; echo LAST; sleep 600"
)


def test_a_pattern_shown_later_returns_its_match_and_the_screen(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "sleep 0.3; echo 'build: OK in 42 s'; sleep 600"])
    match = client.wait_for(info.id, r"^build: (\w+) in (\d+) s$", timeout=30)
    assert match.matched == "build: OK in 42 s" and match.groups == ("OK", "42")
    assert match.snapshot.session == info.id and match.snapshot.format == "text"
    assert "build: OK in 42 s" in match.snapshot.data.splitlines()


def test_rows_are_searched_without_their_trailing_blanks(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh"], env={"PS1": "$ "})
    assert client.wait_for(info.id, r"^\$$", timeout=30).matched == "$"  # the prompt "$ "
    client.send(info.id, "echo 'a  '\n")
    assert client.wait_for(info.id, r"^a$", timeout=30).matched == "a"


def test_a_typed_command_is_on_the_screen_too_so_anchor_the_pattern(daemon) -> None:
    """The shell echoes what is typed: a pattern that the command line contains matches it
    before the command has run; one anchored to a row's start waits for the output."""
    client = daemon.client()
    info = client.create(["sh"], env={"PS1": "$ "})
    client.wait_for(info.id, r"^\$$", timeout=30)
    client.send(info.id, "sleep 2; echo DONE=7\n")
    early = client.wait_for(info.id, r"DONE=(\d+)", timeout=30)
    assert early.matched == "DONE=7" and not re.search(r"^DONE=", early.snapshot.data, re.M)
    late = client.wait_for(info.id, r"^DONE=(\d+)", timeout=30)
    assert late.groups == ("7",)


def test_quiet_alone_waits_for_the_program_to_stop_writing(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", TICKING])
    match = client.wait_for(info.id, quiet=1.0, timeout=30)
    assert match.matched is None and match.groups == ()
    assert "LAST" in match.snapshot.data
    assert match.snapshot.offset == client.snapshot(info.id).offset  # nothing came since


def test_a_pattern_with_quiet_waits_for_both(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", TICKING])
    match = client.wait_for(info.id, r"^tick1$", quiet=1.0, timeout=30)
    assert match.matched == "tick1" and "LAST" in match.snapshot.data


def test_a_timeout_raises_with_what_the_screen_showed(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "echo partial output; sleep 600"])
    client.wait_for(info.id, "^partial", timeout=30)
    start = time.monotonic()
    with pytest.raises(ScreenWaitTimedOut) as timed_out:
        client.wait_for(info.id, "never shown", timeout=0.5)
    assert 0.5 <= time.monotonic() - start < 20
    assert isinstance(timed_out.value, TimeoutError)
    assert "partial output" in timed_out.value.snapshot.data
    assert "'never shown' on the screen within 0.5 s" in str(timed_out.value)


def test_a_timeout_of_0_looks_at_the_screen_once(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "echo here; sleep 600"])
    client.wait_for(info.id, "^here$", timeout=30)
    assert client.wait_for(info.id, "^here$", timeout=0).matched == "here"
    with pytest.raises(ScreenWaitTimedOut) as timed_out:
        client.wait_for(info.id, "^elsewhere$", timeout=0)
    assert timed_out.value.snapshot.data.startswith("here\n")


def test_an_exit_without_the_pattern_raises_with_the_final_screen(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "sleep 0.2; echo failed to build; exit 3"])
    with pytest.raises(ScreenWaitExited) as exited:
        client.wait_for(info.id, "^build: OK", timeout=30)
    assert exited.value.status.code == 3
    assert "failed to build" in exited.value.snapshot.data
    # The final screen is still judged: a pattern it shows is a match, also after the exit.
    assert client.wait_for(info.id, "^failed (.*)", timeout=30).groups == ("to build",)
    assert client.wait_for(info.id, quiet=60, timeout=30).snapshot.offset > 0  # no more output


def test_a_flood_is_followed_to_its_end(daemon) -> None:
    client = daemon.client()
    count = 200_000 if daemon.backend == "compiled" else 20_000
    info = client.create(["sh", "-c", f"seq 1 {count}; echo FIN; sleep 600"])
    match = client.wait_for(info.id, r"^FIN$", quiet=0.3, timeout=120)
    assert match.snapshot.data.splitlines()[-2:] == [str(count), "FIN"]
    assert match.snapshot.offset == client.snapshot(info.id).offset


def test_the_callers_own_attachment_and_events_are_untouched(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "sleep 0.3; for i in 1 2 3; do echo line$i; done; sleep 600"])
    attached = client.attach(info.id, snapshot=None)
    client.wait_for(info.id, "^line3$", timeout=30)
    # The wait's connection has closed (the daemon sees it go a moment later).
    wait_until(lambda: client.info(info.id).clients == 1, 10, "the wait's attachment to go")
    received = b""
    offset = attached.offset
    while b"line3" not in received:
        event = client.next_event(timeout=30)
        assert isinstance(event, OutputEvent) and event.offset == offset
        offset = event.end
        received += event.data
    assert b"line1" in received and b"line2" in received


def test_what_to_wait_for_and_which_session_are_checked(daemon) -> None:
    client = daemon.client()
    info = client.create(["sleep", "600"])
    with pytest.raises(ValueError, match="pattern, quiet seconds, or both"):
        client.wait_for(info.id)
    with pytest.raises(SessionNotFound):
        client.wait_for("nosuch", "x", timeout=10)
    with pytest.raises(re.error):
        client.wait_for(info.id, "(", timeout=10)


def test_the_async_client_waits_alongside_other_work(daemon) -> None:
    async def run() -> tuple[str | None, str | None]:
        client = await AsyncClient.connect(daemon.socket)
        try:
            first = await client.create(["sh", "-c", "sleep 0.3; echo one; sleep 600"])
            second = await client.create(["sh", "-c", "sleep 0.2; echo two; sleep 600"])
            one, two = await asyncio.gather(
                client.wait_for(first.id, "^one$", timeout=30),
                client.wait_for(second.id, "^two$", timeout=30),
            )
            return one.matched, two.matched
        finally:
            await client.close()

    assert asyncio.run(run()) == ("one", "two")


def test_expect_prints_the_match_or_the_screen_and_says_why_it_failed(daemon) -> None:
    client = daemon.client()
    client.create(["sh", "-c", "sleep 0.2; echo 'ready on port 8080'; sleep 600"], name="web")
    out = daemon.cli("expect", "web", r"port (\d+)", "--timeout", "30")
    assert (out.returncode, out.stdout) == (0, b"port 8080\n")
    out = daemon.cli("expect", "web", "--timeout", "30", "--", "-?ready on")  # after options
    assert (out.returncode, out.stdout) == (0, b"ready on\n")
    out = daemon.cli("expect", "web", "--quiet", "0.2", "--screen")
    assert out.returncode == 0 and out.stdout.startswith(b"ready on port 8080\n")
    out = daemon.cli("expect", "web", "^never", "--timeout", "0.3", "--screen")
    assert out.returncode == 124 and out.stdout.startswith(b"ready on port 8080\n")
    assert out.stderr == b"ptyd: no '^never' on the screen within 0.3 s\n"
    client.create(["sh", "-c", "echo oops; exit 4"], name="job")
    out = daemon.cli("expect", "job", "^done", "--timeout", "30")
    assert out.returncode == 1 and b"exited (code 4) without showing '^done'" in out.stderr
    for args, message in [
        ((), b"nothing to wait for"),
        (("(",), b"invalid PATTERN '('"),
        (("x", "--timeout", "-1"), b"--timeout must be 0 or more"),
    ]:
        out = daemon.cli("expect", "web", *args)
        assert out.returncode == 2 and message in out.stderr
    assert daemon.cli("expect", "nosuch", "x").returncode == 1


def test_with_quiet_a_pattern_that_scrolled_away_still_counts(daemon) -> None:
    """The pattern is kept from the screen that showed it; the match's screen is the quiet
    one (a harness waits for DONE, then for the program to settle)."""
    client = daemon.client()
    script = "sleep 0.3; echo READY 1; sleep 0.3; clear; echo gone; sleep 600"
    info = client.create(["sh", "-c", script])
    match = client.wait_for(info.id, r"^READY (\d)$", quiet=1.0, timeout=30)
    assert match.matched == "READY 1" and match.groups == ("1",)
    assert match.snapshot.data.startswith("gone\n") and "READY" not in match.snapshot.data


def test_arguments_are_checked_before_anything_is_sent(daemon) -> None:
    client = daemon.client()
    info = client.create(["sleep", "600"])
    for bad in (
        {"quiet": -1},
        {"quiet": float("nan")},
        {"quiet": True},
        {"timeout": -1},
        {"timeout": "1"},
        {"scrollback": -5},
        {"scrollback": 1.5},
        {"scrollback": 10**8},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            client.wait_for(info.id, "x", **bad)
    with pytest.raises(TypeError, match="pattern must be a str"):
        client.wait_for(info.id, 5)
    assert client.info(info.id).clients == 0  # nothing attached


def test_a_closed_client_says_so(daemon) -> None:
    client = daemon.client()
    info = client.create(["sleep", "600"])
    client.close()
    for call in (lambda: client.wait_for(info.id, "x"), client.list_sessions):
        with pytest.raises(ConnectionFailed, match="this client was closed"):
            call()

    async def closed_async() -> None:
        async_client = await AsyncClient.connect(daemon.socket)
        await async_client.close()
        with pytest.raises(ConnectionFailed, match="this client was closed"):
            await async_client.wait_for(info.id, "x")

    asyncio.run(closed_async())


def test_the_errors_cross_processes(daemon) -> None:
    """Harnesses hand results to other processes: the errors pickle with what they carry."""
    client = daemon.client()
    info = client.create(["sh", "-c", "echo shown; sleep 600"])
    with pytest.raises(ScreenWaitTimedOut) as timed_out:
        client.wait_for(info.id, "^never", timeout=0.3)
    copy = pickle.loads(pickle.dumps(timed_out.value))
    assert str(copy) == str(timed_out.value) and copy.snapshot == timed_out.value.snapshot
    with pytest.raises(SessionNotFound) as missing:
        client.info("nosuch")
    copy = pickle.loads(pickle.dumps(missing.value))
    assert (type(copy), copy.code, str(copy)) == (
        SessionNotFound,
        "no_such_session",
        str(missing.value),
    )


def test_expect_refuses_scrollback_past_the_protocols_limit(daemon) -> None:
    out = daemon.cli("expect", "1", "x", "--scrollback", "100000000")
    assert out.returncode == 2 and b"--scrollback must be 0 to 10000000 lines" in out.stderr
