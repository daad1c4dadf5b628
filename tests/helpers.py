"""Helpers for tests that read a session's stream: collect output until a condition holds."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ptyd.client import Client
from ptyd.events import Event, ExitEvent, OutputEvent


@dataclass
class Stream:
    """Everything one client received for one session, checked for gaps as it arrives."""

    session: int
    offset: int
    data: bytearray = field(default_factory=bytearray)
    exit: ExitEvent | None = None
    others: list[Event] = field(default_factory=list)
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    keep: bool = True

    @property
    def end(self) -> int:
        return self.offset

    def take(self, event: Event) -> None:
        if isinstance(event, OutputEvent) and event.session == self.session:
            assert event.offset == self.offset, f"gap or overlap: expected {self.offset}, got {event.offset}"
            self.offset = event.end
            self.digest.update(event.data)
            if self.keep:
                self.data += event.data
        elif isinstance(event, ExitEvent) and event.session == self.session:
            self.exit = event
        else:
            self.others.append(event)


def read_until(client: Client, stream: Stream, done: Callable[[Stream], bool], timeout: float = 30) -> Stream:
    """Feed events into ``stream`` until ``done(stream)``; fail after ``timeout`` seconds of silence."""
    while not done(stream):
        stream.take(client.next_event(timeout))
    return stream


def until_exit(stream: Stream) -> bool:
    return stream.exit is not None


def contains(text: bytes) -> Callable[[Stream], bool]:
    return lambda stream: text in stream.data
