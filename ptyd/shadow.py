"""A session's emulator, fed on a worker thread in stream order.

The loop thread forwards output to clients the moment it is read; the emulator follows behind
on a worker thread (the compiled engine releases the GIL while it feeds, so two sessions use two
cores and the loop keeps forwarding echoes during a flood). Every operation (data, resize,
snapshot, a read of the input modes) is queued in stream order, so a snapshot requested when
the stream was at offset X is taken after exactly the bytes before X: the consistency of
attach rests on that, and keys sent by name wait for their cursor mode the same way.

Threading: one thread at a time touches the emulator: the worker while it runs, else the loop,
which feeds small output (a keystroke's echo) itself when the queue is empty and no worker runs
(only the loop submits, so none can start meanwhile). The queue is shared under a lock; results
come back to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from ._backend import BACKEND, Emulator

log = logging.getLogger(__name__)

FEED_BATCH = (
    1024 * 1024
)  # most bytes handed to one feed() call; the worker checks for close between
# Unfed bytes at which the session stops reading its PTY (it reads again at half): about a
# second of the engine's work, so a snapshot never waits long behind queued output. The pyte
# backend feeds well under 1 MB/s.
BACKLOG_LIMIT = 8 * 1024 * 1024 if BACKEND == "compiled" else 512 * 1024
# Output up to this size is fed on the loop thread when the worker is idle: a keystroke's echo
# costs the emulator a microsecond, less than waking a worker and reporting back to the loop.
INLINE_BYTES = 1024


# Operations that answer through a future, their last element.
_ANSWERED = ("snapshot", "cursor_keys")


def _ignore_progress(replies: bytes, title: str) -> None:
    """A closed shadow's progress callback: the session is gone."""


class EmulatorShadow:
    """Owns one emulator; the loop side queues operations, a worker applies them in order."""

    def __init__(
        self,
        cols: int,
        rows: int,
        scrollback: int,
        loop: asyncio.AbstractEventLoop,
        executor: Executor,
        on_progress: Callable[[bytes, str], None],
    ) -> None:
        self._emulator = Emulator(cols, rows, scrollback)
        self._loop = loop
        self._executor = executor
        self._on_progress = on_progress  # (replies to write to the PTY, title), on the loop
        self._lock = threading.Lock()
        self._ops: deque[tuple[Any, ...]] = deque()
        self._is_running = False
        self._is_closed = False
        self.backlog = 0  # bytes queued and not yet fed; maintained on the loop thread
        # DECCKM as of the output fed so far, for keys sent by name; kept on the loop thread.
        self.cursor_keys = False

    def feed(self, data: bytes | memoryview) -> None:
        """Queue output for the emulator (a view of a shared frame is kept, never copied)."""
        if len(data) <= INLINE_BYTES and not self._is_running and not self._is_closed:
            # No worker holds the emulator and none can start (only this thread submits).
            self._apply_inline(data)
            return
        self.backlog += len(data)
        self._submit(("data", data))

    def _apply_inline(self, data: bytes | memoryview) -> None:
        emulator = self._emulator
        try:
            emulator.feed(data)
        except Exception:  # the emulator must never take the daemon down
            log.exception("emulator failed on data")
        self.cursor_keys = emulator.cursor_keys
        self._on_progress(emulator.take_replies(), emulator.title)

    def resize(self, cols: int, rows: int) -> None:
        self._submit(("resize", cols, rows))

    def snapshot(self, fmt: str, scrollback: int = 0) -> asyncio.Future[Any]:
        """A future for the snapshot after everything queued so far."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._submit(("snapshot", fmt, scrollback, future))
        return future

    def cursor_keys_after_queued(self) -> asyncio.Future[bool]:
        """A future for DECCKM once everything queued so far is emulated: keys sent by name
        follow the mode of the output clients were sent before them."""
        future: asyncio.Future[bool] = self._loop.create_future()
        self._submit(("cursor_keys", future))
        return future

    def close(self) -> None:
        """Stop feeding; pending snapshots fail with CancelledError. Drops the callback into the
        session too: that reference cycle kept every forgotten session's emulator and replay ring
        alive until Python's next full garbage collection (soak: +1.1 MiB per exited flood)."""
        self._on_progress = _ignore_progress
        with self._lock:
            self._is_closed = True
            pending = [op[-1] for op in self._ops if op[0] in _ANSWERED]
            self._ops.clear()
        for future in pending:
            future.cancel()

    def _submit(self, op: tuple[Any, ...]) -> None:
        with self._lock:
            if self._is_closed:
                if op[0] in _ANSWERED:
                    op[-1].cancel()
                return
            self._ops.append(op)
            if self._is_running:
                return
            self._is_running = True
        self._executor.submit(self._work)

    def _take_batch(self) -> list[tuple[Any, ...]] | None:
        """The next operations: consecutive data coalesced up to FEED_BATCH, or one other op."""
        with self._lock:
            if not self._ops or self._is_closed:
                self._is_running = False
                return None
            batch = [self._ops.popleft()]
            if batch[0][0] == "data":
                size = len(batch[0][1])
                while self._ops and self._ops[0][0] == "data" and size < FEED_BATCH:
                    size += len(self._ops[0][1])
                    batch.append(self._ops.popleft())
            return batch

    def _work(self) -> None:
        """Worker thread: apply queued operations until the queue is empty."""
        emulator = self._emulator
        while (batch := self._take_batch()) is not None:
            kind = batch[0][0]
            result: Any = None
            fed = 0
            try:
                if kind == "data":
                    data = batch[0][1] if len(batch) == 1 else b"".join(op[1] for op in batch)
                    fed = len(data)
                    emulator.feed(data)
                elif kind == "resize":
                    emulator.resize(batch[0][1], batch[0][2])
                elif kind == "cursor_keys":
                    result = emulator.cursor_keys
                else:
                    result = _render(emulator, batch[0][1], batch[0][2])
            except Exception as exc:  # the emulator must never take the daemon down
                log.exception("emulator failed on %s", kind)
                result = exc
            replies = emulator.take_replies()
            title = emulator.title
            modes = emulator.cursor_keys
            self._loop.call_soon_threadsafe(self._done, batch, fed, result, replies, title, modes)

    def _done(
        self,
        batch: list[tuple[Any, ...]],
        fed: int,
        result: Any,
        replies: bytes,
        title: str,
        cursor_keys: bool,
    ) -> None:
        """Loop thread: account for fed bytes, resolve a snapshot, pass on replies and title."""
        self.backlog -= fed
        self.cursor_keys = cursor_keys
        if batch[0][0] in _ANSWERED:
            future = batch[0][-1]
            if not future.done():
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        self._on_progress(replies, title)


def _render(emulator: Any, fmt: str, scrollback: int) -> Any:
    if fmt == "text":
        return emulator.snapshot_text(scrollback)
    if fmt == "ansi":
        return emulator.snapshot_ansi()
    return emulator.snapshot_json(scrollback)
