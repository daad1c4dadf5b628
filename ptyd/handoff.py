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
import stat

from . import protocol
from .blocking import BlockingConnection
from .errors import ProtocolError
from .repaint import RESTORE

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, MutableMapping
    from typing import Any

ENV = "PTYD_HANDOFF"
# The signals the starter holds: SIGINT, SIGTERM, SIGHUP, SIGTSTP, SIGWINCH. (``signal`` and
# ``termios`` are imported where used: every command imports this module, few use it.)
HELD_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGTSTP", "SIGWINCH")
# The starter's fixed fields before the control characters and the socket path.
_NUMBERS = 8


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
        with contextlib.suppress(OSError):
            os.set_blocking(stdout_fd, True)
            os.write(stdout_fd, RESTORE)
        _restore_modes(self.saved_modes)
        with contextlib.suppress(OSError):
            os.close(self.sock_fd)
        unblock_signals()


def unblock_signals() -> None:
    """Let the signals the starter held reach their handlers (pending ones arrive now)."""
    import signal

    signal.pthread_sigmask(signal.SIG_UNBLOCK, [getattr(signal, name) for name in HELD_SIGNALS])


def _restore_modes(modes: list[Any]) -> None:
    import termios

    with contextlib.suppress(termios.error, OSError):
        termios.tcsetattr(0, termios.TCSADRAIN, modes)


def take(environ: MutableMapping[str, str]) -> Handoff | None:
    """The handoff in ``environ`` (removed from it), or None. A value that does not name a
    socket and a file open in this process is not the starter's: nothing of it is touched. One
    whose answers cannot be read is undone (``release``)."""
    text = environ.pop(ENV, None)
    if text is None:
        return None
    words = text.split(" ", _NUMBERS + 1)
    try:
        numbers = [int(word) for word in words[:_NUMBERS]]
        control_chars = [int(word) for word in words[_NUMBERS].split(",")]
        socket_path = words[_NUMBERS + 1]
    except (ValueError, IndexError):
        return None
    sock_fd, answers_fd = numbers[:2]
    if not (_is_open(sock_fd, stat.S_ISSOCK) and _is_open(answers_fd, stat.S_ISREG)):
        return None
    handoff = Handoff(sock_fd, [*numbers[2:], control_chars], socket_path, {}, {}, {})
    try:
        with os.fdopen(answers_fd, "rb") as answers:
            data = answers.read()
        hello, attached, asked = protocol.FrameDecoder(protocol.MAX_RESPONSE_FRAME).feed(data)
        assert isinstance(hello, dict) and isinstance(attached, dict) and isinstance(asked, dict)
        handoff.hello, handoff.attached, handoff.asked = hello["result"], attached["result"], asked
        os.set_inheritable(sock_fd, False)
    except (ValueError, KeyError, TypeError, AssertionError, OSError, ProtocolError):
        handoff.release()
        return None
    return handoff


def _is_open(fd: int, is_kind: Callable[[int], bool]) -> bool:
    """``fd`` is one the starter passed: above stdio, open, of that kind."""
    try:
        return fd > 2 and is_kind(os.fstat(fd).st_mode)
    except OSError:
        return False
