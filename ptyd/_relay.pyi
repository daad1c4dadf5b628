# Type stub of the compiled attach relay; the pure twin _relay_py has the same surface.
from typing import Any

WAKE: int
KEYS: int
SOCKET: int
HELD: int
UNSENT: int
CLOSED: int
LOAD_PATH: str
REPLY_WAIT_MS: int

def runnable_tasks(text: bytes) -> int: ...

class RelayCore:
    fd_in: int
    fd_out: int
    sock_fd: int
    wake_fd: int
    output_prefix: bytes
    layout: Any
    detach_key: int
    next_id: int
    input_request: int
    spin_ns: int
    filters_replies: bool
    reply_wait_ns: int
    def __init__(
        self,
        fd_in: int,
        fd_out: int,
        sock_fd: int,
        wake_fd: int,
        session_id: int,
        detach_key: int,
        spin_us: int = 0,
        load_path: str = ...,
        filters_replies: bool = True,
        reply_wait_ms: int = ...,
    ) -> None: ...
    def run(
        self, read_keys: bool, send_keys: bool, skip_before: int
    ) -> tuple[int, bytes, bytes]: ...
    def expect_replies(self, output: bytes) -> None: ...
    def drop_replies(self, keys: bytes) -> bytes: ...
