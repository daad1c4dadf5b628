"""Sessions through the real daemon over its real socket, with real PTYs and programs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ptyd import errors, spawn
from ptyd.errors import RequestError, SessionNotFound, SpawnFailed

from .conftest import start_daemon
from .helpers import (
    RawClient,
    Stream,
    contains,
    echo_seconds,
    hung_directory,
    process_tree,
    read_until,
    rss_bytes,
    until_exit,
    wait_until,
)


def attach_stream(client, session, **options) -> Stream:
    """Attach with a replay of everything since the start (the ring holds it), so that output
    written before the attach completed is not missed."""
    attached = client.attach(session, snapshot=None, from_offset=0, **options)
    assert attached.resumed and attached.offset == 0
    return Stream(attached.session.id, attached.offset)


def test_create_list_info_kill(daemon) -> None:
    client = daemon.client()
    one = client.create(["sleep", "600"], name="sleeper", cols=100, rows=30)
    two = client.create(["sleep", "600"])
    assert one.name == "sleeper" and one.is_running and (one.cols, one.rows) == (100, 30)
    assert [s.id for s in client.list_sessions()] == [one.id, two.id]
    info = client.info("sleeper")
    assert info.id == one.id and info.argv == ["sleep", "600"] and info.pid > 0
    client.kill("sleeper")
    status = client.wait("sleeper")
    assert status.signal == signal.SIGHUP and status.status == 128 + signal.SIGHUP
    assert client.info(one.id).state == "exited"
    assert client.info(two.id).is_running
    with pytest.raises(SessionNotFound):
        client.info("nothing-here")
    assert client.create(["true"], name="sleeper").id not in (one.id, two.id)  # exited: free


def test_spawn_failures_are_errors_not_sessions(daemon) -> None:
    client = daemon.client()
    with pytest.raises(SpawnFailed, match="command not found"):
        client.create(["no-such-program-anywhere"])
    with pytest.raises(SpawnFailed, match="no such directory"):
        client.create(["true"], cwd="/no/such/dir")
    assert client.list_sessions() == []


def test_a_session_starting_on_a_hung_filesystem_holds_up_nothing_else(daemon, short_tmp) -> None:
    """The daemon never touches a new session's directory or PATH itself (tmux's way: the
    child does, between fork and exec): a ``cwd`` on a filesystem that stopped answering
    holds up that create only, not the other clients; once the filesystem fails, the
    create gets ``spawn_failed``, and nothing is left behind. Its name is taken meanwhile."""
    with hung_directory(short_tmp / "hung") as release:
        bystander = daemon.client(timeout=5)
        cat = bystander.create(["cat"])
        bystander.attach(cat.id, snapshot=None)
        creator = daemon.client(timeout=60)
        outcome: list[BaseException | None] = []

        def create() -> None:
            try:
                creator.create(["true"], name="hung", cwd=os.fspath(short_tmp / "hung" / "work"))
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=create)
        thread.start()
        wait_until(
            lambda: len(process_tree(daemon.process.pid)) == 3,  # daemon, cat, the new child
            10,
            "the new session's child to be forked",
        )
        slowest = 0.0
        for _ in range(10):
            slowest = max(slowest, echo_seconds(bystander, cat.id))
            started = time.monotonic()
            assert [found.id for found in bystander.list_sessions()] == [cat.id]
            slowest = max(slowest, time.monotonic() - started)
        assert outcome == [] and thread.is_alive()  # the create is still waiting
        with pytest.raises(RequestError) as taken:
            bystander.create(["true"], name="hung")
        assert taken.value.code == errors.NAME_TAKEN
        release()
        thread.join(30)
    print(
        f"\nwhile a create waited on a hung filesystem: slowest echo or list "
        f"{slowest * 1000:.1f} ms"
    )
    assert slowest < 1.0
    assert len(outcome) == 1 and isinstance(outcome[0], SpawnFailed), outcome
    assert [found.id for found in bystander.list_sessions()] == [cat.id]
    assert len(process_tree(daemon.process.pid)) == 2  # the daemon and cat: the child reaped


def test_shutdown_during_a_create_on_a_hung_filesystem(backend, short_tmp) -> None:
    """SIGTERM while a child waits on a dead filesystem: the child is killed, the create gets
    ``shutting_down`` and the daemon exits 0 with no child left."""
    running = start_daemon(short_tmp / "d.sock", backend)
    try:
        with hung_directory(short_tmp / "hung"):
            creator = running.client(timeout=30)
            outcome: list[BaseException | None] = []

            def create() -> None:
                try:
                    creator.create(["true"], cwd=os.fspath(short_tmp / "hung"))
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=create)
            thread.start()
            wait_until(lambda: len(process_tree(running.process.pid)) == 2, 10, "the child")
            child = process_tree(running.process.pid)[1]
            running.process.send_signal(signal.SIGTERM)
            assert running.process.wait(timeout=20) == 0
            thread.join(30)
    finally:
        running.stop()
    assert len(outcome) == 1 and isinstance(outcome[0], RequestError), outcome
    assert outcome[0].code == errors.SHUTTING_DOWN
    assert not os.path.exists(f"/proc/{child}")


def test_requests_pipelined_after_a_create_see_its_session(daemon) -> None:
    """A client may write ``create`` and then requests naming the new session without waiting
    for the answer: its requests are handled in order, though the create waits for the exec."""
    raw = RawClient(daemon.socket, hello=True)
    raw.sock.sendall(
        RawClient.frame("create", 1, argv=["sleep", "600"], name="piped")
        + RawClient.frame("info", 2, session="piped")
        + RawClient.frame("kill", 3, session="piped")
    )
    answers = {}
    while len(answers) < 3:
        message = raw.read_message()
        assert message is not None
        if message["type"] == "response":
            answers[message["id"]] = message
    assert all(answer["ok"] for answer in answers.values()), answers
    assert answers[2]["result"]["id"] == answers[1]["result"]["id"]
    raw.close()


def test_echo_round_trip_through_a_real_shell(daemon) -> None:
    client = daemon.client()
    info = client.create(["/bin/sh"], env={"PS1": "$ "})
    stream = attach_stream(client, info.id)
    client.send(info.id, "echo round-$((20+22))-trip\n")
    read_until(client, stream, contains(b"round-42-trip\r\n"))
    client.send(info.id, "exit 0\n")
    read_until(client, stream, until_exit)
    assert stream.exit.code == 0


def test_all_byte_values_pass_both_ways_through_cat_in_raw_mode(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "stty raw -echo && echo READY && exec cat"])
    stream = attach_stream(client, info.id)
    read_until(client, stream, contains(b"READY"))
    start = len(stream.data)
    payload = bytes(range(256)) * 4
    client.send(info.id, payload)
    try:
        read_until(client, stream, lambda s: len(s.data) - start >= len(payload), timeout=5)
    except TimeoutError:
        raise AssertionError(f"got {bytes(stream.data)!r} {stream.others}") from None
    assert bytes(stream.data[start:]) == payload


@pytest.mark.parametrize("repeat", range(12))
def test_one_mib_then_exit_3_never_loses_the_tail(daemon, repeat: int) -> None:
    client = daemon.client()
    script = (
        "import sys; sys.stdin.readline();"
        "sys.stdout.buffer.write(bytes(range(256)) * 4096 + b'TAIL'); sys.exit(3)"
    )
    info = client.create(["python3", "-c", script])
    stream = attach_stream(client, info.id, policy="block")
    stream.keep = False
    client.send(info.id, "go\n")
    read_until(client, stream, until_exit)
    expected = b"go\n" + bytes(range(256)) * 4096 + b"TAIL"  # the echo of "go", then the output
    # The PTY translates \n to \r\n (onlcr): count on the cooked form.
    cooked = expected.replace(b"\n", b"\r\n")
    assert stream.offset == len(cooked)
    assert stream.digest.hexdigest() == hashlib.sha256(cooked).hexdigest()
    assert stream.exit.code == 3 and stream.exit.signal is None
    assert client.wait(info.id).code == 3


def test_exit_by_signal_is_reported_as_a_signal(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "kill -TERM $$"])
    status = client.wait(info.id)
    assert (status.code, status.signal) == (None, signal.SIGTERM)


def test_wait_with_timeout_zero_answers_an_exited_session_at_once(daemon) -> None:
    """A poll: timeout 0 gives the status of a session that has exited, and `timeout` for one
    that runs (it used to give `timeout` for both)."""
    client = daemon.client()
    done = client.create(["sh", "-c", "exit 4"])
    assert client.wait(done.id).code == 4
    assert client.wait(done.id, timeout=0).code == 4
    running = client.create(["sleep", "600"])
    with pytest.raises(RequestError) as still:
        client.wait(running.id, timeout=0)
    assert still.value.code == errors.TIMEOUT


def test_timed_out_waits_hold_no_memory(daemon) -> None:
    """A script polling `ptyd wait --timeout` on a long-running session: each timed-out wait
    used to leave a task and a waiter behind until the session exited (about 1 KiB each)."""
    client = daemon.client()
    info = client.create(["sleep", "600"])
    for _ in range(500):  # warm-up: the daemon's own allocations settle
        with pytest.raises(RequestError):
            client.wait(info.id, timeout=0)
    before = rss_bytes(daemon.process.pid)
    for _ in range(10_000):
        with pytest.raises(RequestError):
            client.wait(info.id, timeout=0)
    growth = rss_bytes(daemon.process.pid) - before
    print(f"\n{daemon.backend}: 10,000 timed-out waits: RSS {growth / 1024:+.0f} KiB")
    assert growth < 2 * 1024 * 1024  # leaked: +9 MiB


@pytest.mark.parametrize("bad", ["0", "65", "99", "NOPE", "SIGNOPE"])
def test_signal_numbers_outside_1_to_64_and_unknown_names_are_bad_requests(daemon, bad) -> None:
    client = daemon.client()
    info = client.create(["sleep", "600"])
    for target in ("foreground", "session"):
        with pytest.raises(RequestError) as refused:
            client.signal(info.id, bad, target)
        assert refused.value.code == errors.BAD_REQUEST, refused.value
    assert client.info(info.id).is_running


def test_signal_reaches_the_foreground_program(daemon) -> None:
    client = daemon.client()
    info = client.create(
        ["sh", "-c", "trap 'echo GOT-USR1; exit 7' USR1; echo ARMED; while :; do sleep 1; done"]
    )
    stream = attach_stream(client, info.id)
    read_until(client, stream, contains(b"ARMED"))
    client.signal(info.id, "USR1", "group")
    read_until(client, stream, until_exit)
    assert b"GOT-USR1" in stream.data and stream.exit.code == 7


def test_resize_reaches_the_program(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh"], cols=80, rows=24, env={"PS1": "$ "})
    stream = attach_stream(client, info.id)
    client.send(info.id, "stty size\n")
    read_until(client, stream, contains(b"24 80\r\n"))
    assert client.resize(info.id, 132, 43) == (132, 43)
    client.send(info.id, "stty size\n")
    read_until(client, stream, contains(b"43 132\r\n"))
    assert (client.info(info.id).cols, client.info(info.id).rows) == (132, 43)


def test_two_attached_clients_see_identical_streams(daemon) -> None:
    first, second = daemon.client(), daemon.client()
    info = first.create(["sh", "-c", "read go; seq 1 20000; echo END"])
    streams = [attach_stream(c, info.id) for c in (first, second)]
    first.send(info.id, "go\n")
    for client, stream in zip((first, second), streams, strict=True):
        read_until(client, stream, until_exit)
    assert streams[0].data == streams[1].data
    assert b"20000\r\nEND" in streams[0].data


def test_snapshot_formats(daemon) -> None:
    client = daemon.client()
    info = client.create(
        ["sh", "-c", "printf 'hello\\033[1;31m red\\033[0m'; read x"], cols=40, rows=5
    )
    stream = attach_stream(client, info.id)
    read_until(client, stream, contains(b"red"))
    text = client.snapshot(info.id, "text")
    assert text.data.splitlines()[0] == "hello red" and text.offset == stream.offset
    ansi = client.snapshot(info.id, "ansi")
    assert isinstance(ansi.data, bytes) and b"red" in ansi.data
    as_json = client.snapshot(info.id, "json")
    assert isinstance(as_json.data, dict)


def test_attach_gives_a_snapshot_then_the_stream_from_its_offset(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "echo first; read x; echo second; read y"], cols=40, rows=5)
    watcher = daemon.client()
    live = attach_stream(watcher, info.id)
    read_until(watcher, live, contains(b"first"))
    attached = client.attach(info.id, snapshot="text")
    assert attached.snapshot.splitlines()[0] == "first"
    assert attached.offset == live.offset
    stream = Stream(info.id, attached.offset)
    client.send(info.id, "\n")
    read_until(client, stream, contains(b"second"))
    assert bytes(stream.data).lstrip(b"\r\n").startswith(b"second")


def test_exited_sessions_stay_listed_with_status(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "exit 5"])
    client.wait(info.id)
    listed = {s.id: s for s in client.list_sessions()}
    assert listed[info.id].state == "exited" and listed[info.id].exit_code == 5
    with pytest.raises(RequestError) as exited:
        client.send(info.id, "x")
    assert exited.value.code == errors.SESSION_EXITED


def test_input_over_the_bound_is_refused_not_dropped(backend, short_tmp) -> None:
    from .conftest import start_daemon

    running = start_daemon(short_tmp / "d.sock", backend, "--input-limit", "64K")
    try:
        client = running.client()
        info = client.create(
            ["sh", "-c", "stty raw -echo; echo ready; sleep 600"]
        )  # never reads input
        stream = attach_stream(client, info.id)
        read_until(client, stream, contains(b"ready"))
        sent = 0
        with pytest.raises(RequestError) as overflow:
            for _ in range(100):
                client.send(info.id, b"x" * 16384)
                sent += 16384
        assert overflow.value.code == errors.INPUT_OVERFLOW
        assert 16384 <= sent <= 64 * 1024 + 65536  # kernel buffer + the queue bound
        assert client.info(info.id).is_running
    finally:
        assert running.stop() == 0


def test_child_starts_clean(daemon) -> None:
    client = daemon.client()
    script = (
        "import os,signal;"
        "print('FDS', sorted(int(f) for f in os.listdir('/proc/self/fd')));"
        "print('MASK', sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])));"
        "print('SID', os.getsid(0) == os.getpid(), 'TTY', os.ttyname(0) == os.ttyname(1),"
        " os.tcgetpgrp(0) == os.getpgrp());"
        "print('ENV', sorted(k for k in os.environ if k.startswith('PTYD_')), os.environ['TERM'])"
    )
    info = client.create(["python3", "-c", script], env={"PTYD_PURE": None})
    stream = attach_stream(client, info.id)
    read_until(client, stream, until_exit)
    out = stream.data.decode()
    # python3 itself opens fd 3 to list /proc/self/fd; nothing else may be open. (Dispositions
    # are checked with sh below: Python ignores SIGPIPE and SIGXFSZ itself as it starts.)
    assert "FDS [0, 1, 2, 3]" in out
    assert "MASK []" in out
    assert "SID True TTY True True" in out
    assert "ENV [] xterm-256color" in out


def test_child_signal_dispositions_are_default_even_if_the_daemon_ignores_them(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"])
    stream = attach_stream(client, info.id)
    read_until(client, stream, until_exit)
    assert b"SigIgn:\t0000000000000000" in stream.data
    assert b"SigBlk:\t0000000000000000" in stream.data


def test_no_zombies_after_many_sessions(daemon) -> None:
    client = daemon.client()
    for _ in range(20):
        client.wait(client.create(["true"]).id)
    ps = ["ps", "--ppid", str(daemon.process.pid), "-o", "stat="]
    children = subprocess.run(ps, capture_output=True, text=True, check=False).stdout.split()
    assert not [state for state in children if state.startswith("Z")]


def test_attaching_after_the_exit_still_gets_the_output_and_the_exit(daemon) -> None:
    client = daemon.client()
    info = client.create(["sh", "-c", "echo done-here; exit 6"])
    client.wait(info.id)
    stream = attach_stream(client, info.id)
    read_until(client, stream, until_exit)
    assert b"done-here" in stream.data and stream.exit.code == 6


def test_forgotten_sessions_give_their_memory_back(backend, short_tmp) -> None:
    """Once retention expires, an exited session's replay ring and emulator are freed at once,
    not at Python's next full garbage collection (a reference cycle kept them before)."""
    count, size = (40, 2 * 1024 * 1024) if backend == "compiled" else (8, 1024 * 1024)
    running = start_daemon(short_tmp / "d.sock", backend, "--exit-retention", "0.2")
    try:
        client = running.client()
        baseline = rss_bytes(running.process.pid)
        for _ in range(count):
            info = client.create(["sh", "-c", f"head -c {size} /dev/zero"])
            assert client.wait(info.id, timeout=60).code == 0
        wait_until(lambda: len(client.list_sessions()) == 0, 10, "retention to expire")
        growth = rss_bytes(running.process.pid) - baseline
        print(f"\n{backend}: {count} exited sessions forgotten, RSS {growth / 2**20:+.1f} MiB")
        assert growth < count * min(size, 1 << 20) / 3  # a ring each (1 MiB) would be all of it
    finally:
        assert running.stop() == 0


# A session member in its own process group that ignores HUP and TERM: only a signal to every
# process of the session reaches it (the foreground group and the leader's group do not). The
# program itself dies of the first SIGHUP, leaving the member behind in its session.
STUBBORN_MEMBER = """
import os, signal, sys, time
if os.fork() == 0:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.setpgid(0, 0)
    print("MEMBER", os.getpid(), flush=True)
    time.sleep(600)
    os._exit(0)
time.sleep(600)
"""


def start_stubborn_member(client) -> tuple[str, int]:
    info = client.create([sys.executable, "-c", STUBBORN_MEMBER])
    stream = attach_stream(client, info.id)
    read_until(client, stream, contains(b"\r\n"))
    member = int(stream.data.split(b"MEMBER ")[1].split()[0])
    assert os.getpgid(member) == member != info.pid and os.getsid(member) == info.pid
    return info.id, member


def is_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True


def test_signal_to_the_session_reaches_every_process_in_it(daemon) -> None:
    client = daemon.client()
    session, member = start_stubborn_member(client)
    client.signal(session, "KILL", "session")
    wait_until(lambda: is_gone(member), 10, "the member in its own group killed")
    assert client.wait(session, timeout=10).signal == signal.SIGKILL


def test_kill_ends_a_member_that_ignores_hangup_and_term(daemon) -> None:
    client = daemon.client()
    session, member = start_stubborn_member(client)
    client.kill(session)
    wait_until(lambda: is_gone(member), 30, "the stubborn member killed")


def test_shutdown_ends_a_member_that_ignores_hangup_and_term(short_tmp, backend) -> None:
    daemon = start_daemon(short_tmp / "d.sock", backend)
    try:
        _, member = start_stubborn_member(daemon.client())
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.wait(timeout=30)
        wait_until(lambda: is_gone(member), 10, "the stubborn member killed")
    finally:
        daemon.stop()


# Ignores HUP and TERM and forks children that ignore them too, every 2 ms, all in its group.
FORK_LOOP = "trap '' HUP TERM; while :; do (trap '' HUP TERM; exec sleep 1000) & sleep 0.002; done"


def test_kill_ends_a_program_that_keeps_forking(short_tmp, backend) -> None:
    """The ladder's SIGKILL reaches children forked while it runs (their process group), so
    nothing of the session is left once it ends."""
    daemon = start_daemon(short_tmp / "d.sock", backend, "--kill-grace", "0.3")
    client = daemon.client()
    info = client.create(["sh", "-c", FORK_LOOP])
    try:
        wait_until(lambda: len(spawn.session_processes(info.pid)) > 20, 10, "children forked")
        client.kill(info.id)
        assert client.wait(info.id, timeout=10).signal == signal.SIGKILL
        wait_until(lambda: not spawn.session_processes(info.pid), 5, "the session emptied")
    finally:
        for pid in spawn.session_processes(info.pid):
            os.kill(pid, signal.SIGKILL)
        assert daemon.stop() == 0


def test_past_the_cap_the_oldest_exited_session_is_forgotten_first(short_tmp, backend) -> None:
    """PTYD_MAX_EXITED bounds what exited sessions hold (a screen and a replay ring each) for a
    client that starts short sessions in a loop; running sessions never count."""
    daemon = start_daemon(short_tmp / "d.sock", backend, "--max-exited", "2")
    try:
        client = daemon.client()
        running = client.create(["sleep", "600"])
        exited = []
        for code in (1, 2, 3):
            info = client.create(["sh", "-c", f"exit {code}"], name=f"job{code}")
            assert client.wait(info.id, timeout=10).status == code
            exited.append(info.id)
        listed = {s.id: s.state for s in client.list_sessions()}
        assert listed == {running.id: "running", exited[1]: "exited", exited[2]: "exited"}
        with pytest.raises(SessionNotFound):
            client.info("job1")
        assert client.wait("job2", timeout=10).status == 2  # the newer ones keep their status
        assert client.info(running.id).is_running
    finally:
        assert daemon.stop() == 0


def test_the_name_of_an_exited_session_can_be_taken_again(short_tmp, backend) -> None:
    daemon = start_daemon(short_tmp / "d.sock", backend, "--exit-retention", "1")
    try:
        client = daemon.client()
        first = client.create(["sh", "-c", "exit 3"], name="job")
        assert client.wait("job", timeout=10).status == 3
        with pytest.raises(RequestError) as taken:  # a running session keeps its name
            client.create(["sleep", "600"], name="run")
            client.create(["sleep", "600"], name="run")
        assert taken.value.code == errors.NAME_TAKEN
        second = client.create(["sleep", "600"], name="job")
        assert client.info("job").id == second.id != first.id
        assert client.wait(first.id, timeout=10).status == 3  # still there, by id
        wait_until(lambda: first.id not in [s.id for s in client.list_sessions()], 10, "forgot")
        assert client.info("job").id == second.id and client.info("job").is_running
    finally:
        assert daemon.stop() == 0


def test_a_name_passing_to_a_starting_session_no_longer_finds_the_exited_one(
    daemon, short_tmp
) -> None:
    """While a create takes an exited session's name, the name finds nothing (the attach of a
    racing ``attach -A`` waits for the new session instead of attaching to the old one); the
    exited session stays reachable by id."""
    client = daemon.client(timeout=10)
    old = client.create(["sh", "-c", "exit 9"], name="r")
    assert client.wait("r", timeout=10).status == 9
    with hung_directory(short_tmp / "hung") as release:
        creator = daemon.client(timeout=60)

        def create() -> None:
            with contextlib.suppress(SpawnFailed):  # once released, the directory fails
                creator.create(["true"], name="r", cwd=os.fspath(short_tmp / "hung" / "w"))

        thread = threading.Thread(target=create, daemon=True)
        thread.start()
        wait_until(lambda: len(process_tree(daemon.process.pid)) == 2, 10, "the new child forked")
        with pytest.raises(SessionNotFound, match="it is starting"):
            client.info("r")
        assert client.info(old.id).exit_code == 9
        release()
        thread.join(30)
    assert client.info("r").id == old.id  # the start failed: the name still finds the old one
