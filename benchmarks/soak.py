"""Long-run drift (checklist G6): a mixed workload against a real daemon for N minutes.

Run: python -m benchmarks.soak --minutes N [--backend compiled|pure] [--samples K]

Each round: a session floods 2 MiB to 3 attached readers and exits (every reader must get the
same byte count, then the exit); 20 clients connect, attach with an ANSI snapshot and leave
(half detach, half just close); 5 sessions exit with codes 0-4 (each status checked); one
keystroke round-trips through a long-lived `cat` session. Between rounds, at a quiet point, the
daemon's RSS, open fds, live children and zombies are sampled K times over the run (default:
once a minute, at least 10 samples). Rounds start once a second (--pace). Exited sessions are
retained 5 s, so retention expiry is part of the steady state.

The RSS slope is fitted (least squares) over the samples after the warm-up (10 minutes, or the
first fifth of shorter runs) and judged against the row's bar, 1 MiB/h, only when that window
spans at least 10 minutes: a shorter run prints it for information. The run fails (exit 1) on
a slope over the bar, on a fd or child count that differs between the first and the last sample
after warm-up, or on any zombie.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptyd.client import Client
from tests.conftest import Daemon, start_daemon
from tests.helpers import RawClient, wait_until

MIB = 1024 * 1024
SLOPE_BAR = 1.0  # MiB per hour (G6)
WARM_UP = 600.0  # seconds
JUDGED_WINDOW = 600.0  # the slope is judged only over at least this much time


@dataclass
class Sample:
    at: float  # seconds since the start
    rss: int
    fds: int
    children: int
    zombies: int
    rounds: int


def sample(daemon: Daemon, started: float, rounds: int) -> Sample:
    pid = daemon.process.pid
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
            try:
                states.append(
                    Path(f"/proc/{child}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
                )
            except OSError:
                continue
    return Sample(
        at=time.monotonic() - started,
        rss=rss,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        children=sum(1 for state in states if state != b"Z"),
        zombies=sum(1 for state in states if state == b"Z"),
        rounds=rounds,
    )


def read_to_exit(raws: list[RawClient], timeout: float = 60) -> list[int]:
    """Bytes each raw reader got before its session's exit event, reading all of them at once
    (with the block policy, one reader left unread would pause the session)."""
    counts = [0] * len(raws)
    done: set[int] = set()
    deadline = time.monotonic() + timeout

    def take(index: int, messages: list[Any]) -> None:
        for message in messages:
            if message.get("event") == "output":
                counts[index] += len(message["data"])
            elif message.get("event") == "exit":
                done.add(index)

    with selectors.DefaultSelector() as selector:
        for index, raw in enumerate(raws):
            take(index, list(raw.pending))  # what arrived with the attach response
            raw.pending.clear()
            selector.register(raw.sock, selectors.EVENT_READ, index)
        while len(done) < len(raws):
            assert time.monotonic() < deadline, "timed out before the exit events"
            for key, _ in selector.select(1.0):
                data = raws[key.data].sock.recv(1 << 20)
                assert data, "connection closed before the exit event"
                take(key.data, raws[key.data].decoder.feed(data))
    return counts


def one_round(daemon: Daemon, client: Client, echo_session: int, quiet_session: int) -> float:
    """The mixed workload once; returns the keystroke round trip in seconds."""
    flood = client.create(
        ["sh", "-c", "stty raw -echo; printf R; head -c1 >/dev/null; head -c 2097152 /dev/zero"]
    )
    readers = [RawClient(daemon.socket, hello=True) for _ in range(3)]
    for raw in readers:
        raw.call("attach", session=flood.id, snapshot=None, from_offset=0, policy="block")
    # "R" says the PTY is raw: only then may the go byte be sent (it is not echoed).
    wait_until(lambda: client.info(flood.id).bytes_out >= 1, 10, "the flood to be ready")
    client.send(flood.id, b"g")
    counts = read_to_exit(readers)
    assert counts == [2 * MIB + 1] * 3, counts
    for raw in readers:
        raw.close()
    for index in range(20):
        raw = RawClient(daemon.socket, hello=True)
        raw.call("attach", session=quiet_session, snapshot="ansi")
        if index % 2:
            raw.call("detach", session=quiet_session)
        raw.close()
    exits = [client.create(["sh", "-c", f"exit {code}"]) for code in range(5)]
    for code, info in enumerate(exits):
        assert client.wait(info.id, timeout=30).code == code
    start = time.monotonic()
    client.send(echo_session, b"k")
    event = client.next_event(10)
    assert getattr(event, "data", None) == b"k", event
    return time.monotonic() - start


def slope_mib_per_hour(samples: list[Sample]) -> float:
    if len(samples) < 2:
        return 0.0
    fit = statistics.linear_regression([s.at for s in samples], [s.rss / MIB for s in samples])
    return fit.slope * 3600


def _exit_on_signal(signum: int, frame: object) -> None:
    """SIGTERM and SIGHUP end the run like Ctrl-C: the daemon and its sessions are stopped."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--backend", choices=("compiled", "pure"), default="compiled")
    parser.add_argument("--samples", type=int, default=None, help="default: per minute, >= 10")
    parser.add_argument("--pace", type=float, default=1.0, help="seconds between round starts")
    args = parser.parse_args(argv)
    duration = args.minutes * 60
    count = args.samples or max(10, int(args.minutes))
    interval = duration / count
    warm_up = min(WARM_UP, duration / 5)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    folder = Path(tempfile.mkdtemp(prefix="ptyd-soak-", dir="/tmp"))
    daemon = start_daemon(folder / "d.sock", args.backend, "--exit-retention", "5")
    samples: list[Sample] = []
    echoes: list[float] = []
    rounds = 0
    try:
        client = daemon.client()
        echo = client.create(["sh", "-c", "stty raw -echo; exec cat"])
        quiet = client.create(["sh", "-c", "printf 'a quiet session\\n'; exec sleep 100000"])
        client.attach(echo.id, snapshot=None)
        started = time.monotonic()
        next_sample = 0.0
        print(
            f"soak: {args.backend}, {args.minutes:g} min, {count} samples, warm-up {warm_up:.0f} s"
        )
        print(
            f"{'t (s)':>7} {'rounds':>7} {'RSS MiB':>8} {'fds':>5} {'children':>8} {'zombies':>7}"
        )
        while True:
            now = time.monotonic() - started
            if now >= next_sample:
                # A quiet point: this round's sessions have exited and its clients are gone
                # (exited sessions may still be retained, their children are reaped).
                row = sample(daemon, started, rounds)
                samples.append(row)
                print(
                    f"{row.at:7.0f} {row.rounds:7} {row.rss / MIB:8.1f} {row.fds:5} "
                    f"{row.children:8} {row.zombies:7}",
                    flush=True,
                )
                next_sample += interval
            if now >= duration:
                break
            round_start = time.monotonic()
            echoes.append(one_round(daemon, client, echo.id, quiet.id))
            rounds += 1
            time.sleep(max(0.0, args.pace - (time.monotonic() - round_start)))  # pacing
    finally:
        status = daemon.stop()
        shutil.rmtree(folder, ignore_errors=True)
    steady = [row for row in samples if row.at >= warm_up]
    slope = slope_mib_per_hour(steady)
    window = steady[-1].at - steady[0].at if len(steady) > 1 else 0.0
    echoes.sort()
    failures = []
    if any(row.zombies for row in samples):
        failures.append("zombies seen")
    if steady and steady[0].fds != steady[-1].fds:
        failures.append(f"open fds {steady[0].fds} -> {steady[-1].fds}")
    if steady and steady[0].children != steady[-1].children:
        failures.append(f"children {steady[0].children} -> {steady[-1].children}")
    judged = window >= JUDGED_WINDOW
    if judged and slope > SLOPE_BAR:
        failures.append(f"RSS slope {slope:.2f} MiB/h over the {SLOPE_BAR} MiB/h bar")
    if status != 0:
        failures.append(f"daemon exited with {status}")
    p99 = echoes[max(0, int(len(echoes) * 0.99) - 1)] if echoes else float("nan")
    print(
        f"{rounds} rounds; RSS slope after warm-up {slope:+.2f} MiB/h over {window / 60:.1f} min "
        f"({f'bar {SLOPE_BAR} MiB/h' if judged else 'too short to judge: under 10 min'}); "
        f"echo p99 {p99 * 1000:.1f} ms; " + ("FAILED: " + "; ".join(failures) if failures else "ok")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
