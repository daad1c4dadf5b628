"""Waiting until a session's screen shows a pattern, or its program has been quiet for a
while: what agent harnesses and test rigs otherwise poll for (and race the shell's echo with).

The wait has a connection of its own, so it never takes events from the application's, and
attaches to the session without a snapshot: output events say when the program writes, and
text snapshots say what the screen shows. A snapshot is asked for only when output arrived
since the last one, one at a time and at most one per ``SNAPSHOT_INTERVAL`` (a program that
floods its terminal costs the daemon a hundred snapshots a second, not one per output event).
A pattern found on any screen the session showed counts, even if more output came since; a
miss, and quiet, are judged only on a screen that includes all the output seen so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from typing import TYPE_CHECKING, TypeVar

from .errors import ConnectionFailed, RequestError, ScreenWaitExited, ScreenWaitTimedOut
from .events import DisconnectedEvent, ErrorEvent, Event, ExitEvent, OutputEvent, SnapshotEvent
from .records import ExitStatus, ScreenMatch, Snapshot

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from .client import AsyncClient
    from .records import Target

T = TypeVar("T")

SNAPSHOT_INTERVAL = 0.01  # seconds between two snapshots while output keeps coming
LAST_SCREEN_SECONDS = 1.0  # how long a timed-out wait tries for a current last screen
MAX_SCROLLBACK = 10_000_000  # lines a snapshot request may ask for (docs/protocol.md, Limits)


def check_arguments(pattern: object, quiet: object, scrollback: object, timeout: object) -> None:
    """ValueError (TypeError for a pattern that is no str) naming the first bad argument,
    before anything is sent: the daemon's own refusal would not say which call was wrong."""
    if pattern is None and quiet is None:
        raise ValueError("wait_for needs a pattern, quiet seconds, or both")
    if pattern is not None and not isinstance(pattern, (str, re.Pattern)):
        raise TypeError(f"pattern must be a str or a compiled re.Pattern, not {pattern!r}")
    for name, seconds in (("quiet", quiet), ("timeout", timeout)):
        if seconds is not None and not _is_seconds(seconds):
            raise ValueError(f"{name} must be a number of seconds, 0 or more, not {seconds!r}")
    if not _is_count(scrollback, MAX_SCROLLBACK):
        raise ValueError(
            f"scrollback must be a whole number of lines from 0 to {MAX_SCROLLBACK:,}, "
            f"not {scrollback!r}"
        )


def _is_seconds(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return 0 <= value < math.inf  # NaN is neither


def _is_count(value: object, most: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


def compile_pattern(pattern: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    """A str pattern is searched with ``^`` and ``$`` matching at each row's start and end."""
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    return re.compile(pattern, re.MULTILINE)


class _Watch:
    """One wait: what the watching connection's events told so far, and the last screen."""

    def __init__(
        self, pattern: re.Pattern[str] | None, quiet: float | None, timeout: float | None
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.pattern = pattern
        self.quiet = quiet
        self.timeout = timeout
        self.deadline = None if timeout is None else self.loop.time() + timeout
        self.latest = 0  # the end of the output known to exist
        self.last_output = self.loop.time()  # when output last arrived (before any: the start)
        self.exit: ExitEvent | None = None
        self.lost: str | None = None  # why the watch cannot go on
        self.changed = asyncio.Event()
        self.screen: Snapshot | None = None
        self.found: re.Match[str] | None = None  # the pattern on a screen seen
        self.taken_at = -SNAPSHOT_INTERVAL  # when the last snapshot was asked for

    def on_event(self, event: Event) -> None:
        if isinstance(event, OutputEvent):
            self.latest = max(self.latest, event.end)
            self.last_output = self.loop.time()
        elif isinstance(event, SnapshotEvent):  # after lagging: the output before it is gone
            self.latest = max(self.latest, event.offset)
        elif isinstance(event, ExitEvent):
            self.exit = event
            self.latest = max(self.latest, event.offset)
        elif isinstance(event, ErrorEvent):
            self.lost = f"{event.code}: {event.message}"
        elif isinstance(event, DisconnectedEvent):
            self.lost = f"lost the ptyd daemon: {event.reason}"
        self.changed.set()

    @property
    def is_fresh(self) -> bool:
        """The last screen includes all the output seen so far."""
        return self.screen is not None and self.screen.offset >= self.latest

    def quiet_left(self) -> float:
        """Seconds until the program has been quiet long enough (0 or less: it has)."""
        if self.quiet is None or self.exit is not None:
            return 0.0
        return self.last_output + self.quiet - self.loop.time()

    def outcome(self) -> ScreenMatch | None:
        """The match, once the condition is met; raises ScreenWaitExited once the final
        screen is in and the pattern never showed. With ``quiet`` the pattern is kept from the
        screen that showed it (it may scroll away before the program goes quiet), and the
        match's screen is the quiet one."""
        screen = self.screen
        if screen is None:
            return None
        if self.pattern is not None and self.found is None:
            self.found = self.pattern.search(screen.data)
            if self.found is None:
                if self.is_fresh and self.exit is not None:
                    status = ExitStatus(self.exit.code, self.exit.signal)
                    raise ScreenWaitExited(
                        f"session {screen.session} exited ({_describe(status)}) without "
                        f"showing {self.pattern.pattern!r}",
                        screen,
                        status,
                    )
                return None
        if self.quiet is not None and not (self.is_fresh and self.quiet_left() <= 0):
            return None
        found = self.found
        return ScreenMatch(
            screen,
            found.group(0) if found is not None else None,
            found.groups() if found is not None else (),
        )

    async def bounded(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``, given up on at the deadline (ScreenWaitTimedOut); until the first
        screen is in, at least LAST_SCREEN_SECONDS (a timeout of 0 looks once)."""
        left = None if self.deadline is None else max(self.deadline - self.loop.time(), 0.0)
        if left is not None and self.screen is None:
            left = max(left, LAST_SCREEN_SECONDS)
        try:
            return await asyncio.wait_for(awaitable, left)
        except TimeoutError:
            raise ScreenWaitTimedOut(self.timeout_message(), self.screen) from None

    def timeout_message(self) -> str:
        wanted = []
        if self.pattern is not None:
            wanted.append(f"{self.pattern.pattern!r} on the screen")
        if self.quiet is not None:
            wanted.append(f"{self.quiet:g} s without output")
        return f"no {' and '.join(wanted)} within {self.timeout:g} s"


async def watch_screen(
    watcher: AsyncClient,
    session: Target,
    pattern: re.Pattern[str] | None,
    *,
    quiet: float | None,
    scrollback: int,
    timeout: float | None,
) -> ScreenMatch:
    """Wait on ``watcher`` (a connection of the wait's own) until ``session``'s screen shows
    ``pattern`` and, with ``quiet``, its program has written nothing for ``quiet`` seconds."""
    watch = _Watch(pattern, quiet, timeout)
    watcher.deliver_to(watch.on_event)
    attached = await watch.bounded(watcher.attach(session, snapshot=None))
    target = attached.session.id
    watch.latest = max(watch.latest, attached.offset)
    while True:
        if watch.lost is not None:
            raise ConnectionFailed(watch.lost)
        if (match := watch.outcome()) is not None:
            return match
        now = watch.loop.time()
        if watch.deadline is not None and now >= watch.deadline and watch.screen is not None:
            raise ScreenWaitTimedOut(
                watch.timeout_message(), await _last_screen(watcher, watch, target, scrollback)
            )
        if not watch.is_fresh and now - watch.taken_at >= SNAPSHOT_INTERVAL:
            watch.taken_at = now
            watch.screen = await watch.bounded(watcher.snapshot(target, "text", scrollback))
            continue
        if not watch.is_fresh:
            pause: float | None = watch.taken_at + SNAPSHOT_INTERVAL - now
        else:  # the screen misses the pattern, or the program has not been quiet long enough
            pause = watch.quiet_left() if watch.quiet_left() > 0 else None
        if watch.deadline is not None:
            pause = watch.deadline - now if pause is None else min(pause, watch.deadline - now)
        watch.changed.clear()
        with contextlib.suppress(TimeoutError):  # the pause is over: look again
            await asyncio.wait_for(watch.changed.wait(), pause)


async def _last_screen(
    watcher: AsyncClient, watch: _Watch, target: int, scrollback: int
) -> Snapshot | None:
    """The screen to give with a timeout: a current one when it comes quickly (what the
    program showed so far is what a caller that gave up needs), else the last one taken."""
    if watch.is_fresh:
        return watch.screen
    try:
        return await asyncio.wait_for(
            watcher.snapshot(target, "text", scrollback), LAST_SCREEN_SECONDS
        )
    except (TimeoutError, ConnectionFailed, RequestError):
        return watch.screen


def _describe(status: ExitStatus) -> str:
    return f"signal {status.signal}" if status.signal is not None else f"code {status.code}"
