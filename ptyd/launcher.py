"""Start a daemon in the background when none is listening (as tmux does), and wait until it
listens. The daemon detaches from the launching terminal: a new session, stdio on /dev/null
(or the log file), reparented to init by a second fork."""

from __future__ import annotations

import os
import sys
import time

from .blocking import BlockingConnection
from .config import Config
from .errors import ConnectionFailed, NoDaemon
from .socketdir import is_listening, lock_holder

READY = b"ready\n"
# A daemon takes its lock, then binds and listens: a moment in which it holds the lock and its
# socket does not answer yet, which is not a lost socket.
STARTING_SECONDS = 1.0
# A daemon shutting down has closed its listening socket but not yet removed its path: it hangs
# its sessions up (SIGHUP, SIGTERM and SIGKILL, PTYD_KILL_GRACE apart) and flushes its clients
# first. A command waits that long for it to exit, then starts a new one.
STOPPING_SECONDS = 30.0
# Its last step removes the path; its exit then releases the lock.
EXITING_SECONDS = 0.5
# The daemon imports the ptyd this command imported: ``python -m ptyd`` would put the current
# directory first on its path, and from a source checkout import the tree there (without its
# compiled modules: a pure daemon). The directory that holds this package goes first instead.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE = "import sys; sys.path[0] = sys.argv.pop(1); from ptyd.cli import run; run()"


def connect(config: Config) -> BlockingConnection:
    """A connection to the daemon on ``config.socket``, started first if none listens. A
    running daemon costs one connect, with no probe before it."""
    try:
        return BlockingConnection(config.socket)
    except NoDaemon:
        if lost := lost_socket(config.socket):
            raise NoDaemon(lost) from None
        if not config.autostart:
            raise NoDaemon(
                f"no ptyd daemon is listening on {config.socket} (autostart is off: run "
                "`ptyd serve`)"
            ) from None
    start_daemon(config)
    try:
        return BlockingConnection(config.socket)
    except NoDaemon:
        raise NoDaemon(
            lost_socket(config.socket) or "the daemon started but does not listen"
        ) from None


def lost_socket(socket_path: str) -> str:
    """Why nothing listens although a daemon runs there (its socket file was deleted from under
    it), and what to do; "" when no daemon holds that socket's lock, when the one holding it
    starts listening within ``STARTING_SECONDS`` (it had just taken the lock), or when it is
    shutting down (its path is still there, or just removed) and exits in time."""
    holder = lock_holder(socket_path)
    if holder is None or _listens_soon(socket_path):
        return ""
    if os.path.lexists(socket_path):
        if has_exited(socket_path, holder, STOPPING_SECONDS):
            return ""
        return (
            f"the ptyd daemon on {socket_path} (pid {holder}) is shutting down and still "
            f"running after {STOPPING_SECONDS:g} s"
        )
    if has_exited(socket_path, holder, EXITING_SECONDS):  # its shutdown removed the path last
        return ""
    return (
        f"the ptyd daemon on {socket_path} (pid {holder}) has lost its socket file: "
        f"`kill -USR1 {holder}` makes it listen there again"
    )


def has_exited(socket_path: str, pid: int, seconds: float) -> bool:
    """Whether daemon ``pid`` lets go of the socket's lock (it exits) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while lock_holder(socket_path) == pid:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)  # the lock is released at exit; nothing announces it
    return True


def _listens_soon(socket_path: str) -> bool:
    deadline = time.monotonic() + STARTING_SECONDS
    while not is_listening(socket_path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)  # a daemon binds right after taking the lock; it announces nothing
    return True


def start_daemon(config: Config) -> None:
    """Launch ``ptyd serve --background`` and wait for its readiness line (or its error)."""
    import subprocess  # only here: the commands that find a daemon running start faster

    ready_r, ready_w = os.pipe()
    command = [
        sys.executable,
        "-c",
        SERVE,
        PACKAGE_ROOT,
        "serve",
        "--background",
        "-S",
        os.fspath(config.socket),
    ]
    env = dict(os.environ, PTYD_READY_FD=str(ready_w))
    try:
        intermediate = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(ready_w,),
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    finally:
        os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        answer = ready.read()  # EOF once the daemon is ready or has failed
    intermediate.wait()
    if answer == READY:
        return
    message = answer.decode(errors="replace").strip()
    if message.startswith("already running"):
        return  # another client started it first: just as good
    raise ConnectionFailed(f"could not start a daemon on {config.socket}: {message or 'it exited'}")
