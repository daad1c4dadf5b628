# Type stub of the compiled hot path; the pure twin _fast_py has the same surface.
from typing import Any

from ._fast_py import Transport

NORMAL: int
WARNING: int
LIMIT: int
RESYNC: int
DISCONNECT: int
BLOCK: int

class Subscriber:
    transport: Transport
    policy: int
    threshold: int
    limit: int
    owner: Any
    level: int
    is_live: bool
    is_lagging: bool
    held: list[bytes]
    held_bytes: int
    bytes_delivered: int
    warnings: int
    resyncs: int
    def __init__(
        self, transport: Transport, policy: int, threshold: int, limit: int, owner: Any
    ) -> None: ...
    def backlog(self) -> int: ...
    def update_level(self) -> bool: ...
    def take_held(self) -> list[bytes]: ...
    def start_lagging(self) -> None: ...

class ReplayRing:
    capacity: int
    end: int
    def __init__(self, capacity: int) -> None: ...
    def append(self, data: bytes) -> None: ...
    @property
    def start(self) -> int: ...
    @property
    def allocated(self) -> int: ...
    def since(self, offset: int) -> bytes | None: ...

class OutputPump:
    fd: int
    frame_prefix: bytes
    ring: ReplayRing
    read_budget: int
    subscribers: list[Subscriber]
    def __init__(
        self, fd: int, frame_prefix: bytes, ring_capacity: int, read_budget: int
    ) -> None: ...
    @property
    def offset(self) -> int: ...
    def pump(self) -> tuple[bytes | memoryview, bool, list[Subscriber]]: ...
    def read_batch(self, budget: int, quiet_ms: int = 0, max_ms: int = 0) -> tuple[bytes, bool]: ...
    def publish(self, data: bytes) -> list[Subscriber]: ...

def encode_output(prefix: bytes, offset: int, data: bytes) -> bytes: ...
def fan_out(subscribers: list[Subscriber], frame: bytes) -> list[Subscriber]: ...
