"""What the ``ptyd`` starter (``_starter.c``) hands the Python command line after it attached a
terminal and showed the first screen itself: the connection, the answers to its ``hello`` and
``attach``, the attach as it was asked, the terminal's modes to restore, and the stop signals it
holds blocked until the relay's handlers are in place (docs/attach.md "Start").

The command takes the handoff at its start and removes it from the environment, so nothing it
starts inherits it. The attach relay takes the connection over when the handoff is the attach
that the command's own arguments ask for; otherwise ``release`` gives the terminal back as it
was and the command does all its work itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import termios

from . import protocol
from .blocking import BlockingConnection

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    import argparse
    from collections.abc import MutableMapping
    from typing import Any

ENV = "PTYD_HANDOFF"
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTSTP, signal.SIGWINCH)
# The starter's fixed fields before the control characters and the socket path.
_NUMBERS = 10


class Handoff:
    def __init__(
        self,
        sock_fd: int,
        saved_modes: list[Any],
        socket_path: str,
        hello: dict[str, Any],
        attached: dict[str, Any],
        asked: dict[str, Any],
    ) -> None:
        self.sock_fd = sock_fd
        self.saved_modes = saved_modes  # termios.tcgetattr's list, before the starter's raw mode
        self.socket_path = socket_path
        self.hello = hello  # the hello's result
        self.attached = attached  # the attach's result: its snapshot is on the screen already
        self.asked = asked  # the attach request
        self.is_taken = False  # by the relay, which gives the terminal back itself

    def is_for(self, args: argparse.Namespace, target: int | str, socket_path: str) -> bool:
        """Is this the attach the parsed command line asks for? The starter reads the
        arguments with fewer rules than argparse: where it read them otherwise, start over."""
        return (
            args.command == "attach"
            and not args.create
            and not args.no_tty
            and args.from_offset is None
            and os.path.abspath(socket_path) == os.path.abspath(self.socket_path)
            and self.asked.get("session") == target
            and self.asked.get("read_only") == args.read_only
        )

    def connection(self) -> BlockingConnection:
        """The attached connection; its next request id follows the starter's two."""
        import _socket

        sock = _socket.socket(fileno=self.sock_fd)
        return BlockingConnection.taken_over(sock, self.socket_path, self.hello, next_id=3)

    def release(self, stdout_fd: int = 1) -> None:
        """Give the terminal back as the starter found it (the screen it showed stays, as after
        a detach), close the connection (the daemon drops the attachment) and let the held
        signals through."""
        from .attach import RESTORE

        with contextlib.suppress(OSError):
            os.set_blocking(stdout_fd, True)
            os.write(stdout_fd, RESTORE)
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved_modes)
        with contextlib.suppress(OSError):
            os.close(self.sock_fd)
        unblock_signals()


def unblock_signals() -> None:
    """Let the signals the starter held reach their handlers (pending ones arrive now)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)


def take(environ: MutableMapping[str, str]) -> Handoff | None:
    """The handoff in ``environ`` (removed from it), or None when there is none or it cannot be
    read (then whatever of it could be is undone: the terminal's modes, the signals)."""
    text = environ.pop(ENV, None)
    if text is None:
        return None
    words = text.split(" ", _NUMBERS + 1)
    numbers: list[int] = []
    saved_modes: list[Any] | None = None
    try:
        numbers = [int(word) for word in words[:_NUMBERS]]
        sock_fd, answers_fd = numbers[:2]  # then the size asked for, for a reader of the text
        control_chars = [int(word) for word in words[_NUMBERS].split(",")]
        saved_modes = [*numbers[4:_NUMBERS], control_chars]
        with os.fdopen(answers_fd, "rb") as answers:
            data = answers.read()
        hello, attached, asked = protocol.FrameDecoder(protocol.MAX_RESPONSE_FRAME).feed(data)
        assert isinstance(hello, dict) and isinstance(attached, dict) and isinstance(asked, dict)
        os.set_inheritable(sock_fd, False)
        return Handoff(
            sock_fd,
            saved_modes,
            words[_NUMBERS + 1],
            hello["result"],
            attached["result"],
            asked,
        )
    except (ValueError, IndexError, KeyError, TypeError, AssertionError, OSError):
        if saved_modes is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(0, termios.TCSADRAIN, saved_modes)
        if numbers:
            with contextlib.suppress(OSError):
                os.close(numbers[0])
        unblock_signals()
        return None
