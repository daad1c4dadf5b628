"""Start a program on a new PTY as the leader of a new session, and set window sizes.

The child gets a clean start: a new session with the PTY as its controlling terminal, fds 0-2
on the PTY and nothing else open, default signal dispositions and an empty signal mask (a
daemon started from a shell with SIGINT ignored, or Python's ignored SIGPIPE, must not leak
into the user's programs), the requested environment, directory and size. Failures to start
(missing program, bad directory) come back as SpawnError, not as a session that dies at once.

The daemon never touches the new session's directory or PATH itself: the child checks them
between fork and exec and reports through a close-on-exec pipe, which the daemon watches on its
event loop (``start``, then ``finish`` once the pipe is readable). A directory on a filesystem
that stopped answering holds up that one child, as in tmux, never the daemon.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import struct
import termios
from dataclasses import dataclass

_WINSIZE = struct.Struct("HHHH")
# Variables describing the daemon's own terminal, socket or activation, never passed to
# sessions (a child that saw LISTEN_PID/LISTEN_FDS could take the daemon's sockets for its own).
_DAEMON_ONLY_ENV = (
    "TMUX",
    "TMUX_PANE",
    "STY",
    "WINDOW",
    "COLUMNS",
    "LINES",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
)
_DAEMON_ONLY_PREFIX = "PTYD_"  # the daemon's settings, readiness fd and test hooks


class SpawnError(Exception):
    """The program could not be started; the message says why."""


class PtyUnavailable(SpawnError):
    """No PTY, or no fd to hold one: the daemon (EMFILE) or the system (ENFILE, ENOSPC at
    kernel.pty.max, EAGAIN) is out of them. Other sessions are unaffected."""


@dataclass(frozen=True, slots=True)
class Child:
    pid: int
    master_fd: int  # non-blocking, close-on-exec
    pidfd: int  # readable once the child has exited; close-on-exec


@dataclass(frozen=True, slots=True)
class Starting:
    """A child forked and not yet known to have exec'd."""

    child: Child
    error_fd: int  # readable at exec (EOF) or once the child has written why it failed


def set_winsize(fd: int, cols: int, rows: int) -> None:
    """TIOCSWINSZ on the PTY: the kernel sends SIGWINCH to its foreground process group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, _WINSIZE.pack(rows, cols, 0, 0))


def build_env(base: dict[str, str], overrides: dict[str, str | None], term: str) -> dict[str, str]:
    """The session's environment: the daemon's base, minus daemon-only names (``PTYD_*``,
    ``LISTEN_*`` of socket activation, the launching terminal's), plus the client's overrides
    (None unsets; a client may set any name for its session), with TERM defaulted."""
    env = {
        key: value
        for key, value in base.items()
        if key not in _DAEMON_ONLY_ENV and not key.startswith(_DAEMON_ONLY_PREFIX)
    }
    env["TERM"] = term
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def resolve_program(argv0: str, env: dict[str, str], cwd: str) -> str:
    """The executable's path as execvpe would find it, or SpawnError with the reason."""
    if "/" in argv0:
        path = argv0 if os.path.isabs(argv0) else os.path.join(cwd, argv0)
        if not os.path.exists(path):
            raise SpawnError(f"{argv0}: no such file")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise SpawnError(f"{argv0}: not an executable file")
        return path
    found = shutil.which(argv0, path=env.get("PATH", os.defpath))
    if found is None:
        raise SpawnError(f"{argv0}: command not found")
    return found


def start(argv: list[str], env: dict[str, str], cwd: str, cols: int, rows: int) -> Starting:
    """Fork the child that checks ``cwd`` and the program and execs ``argv`` on a new PTY;
    return without waiting for the exec. Raises PtyUnavailable when there is no PTY or fd."""
    error_r, error_w, master_fd, slave_fd = _open_fds()
    pidfd = -1
    try:
        os.set_blocking(master_fd, False)
        set_winsize(master_fd, cols, rows)
        slave_name = os.ttyname(slave_fd)
        # The daemon must not keep the slave open, or the PTY never reports EOF.
        os.close(slave_fd)
        slave_fd = -1
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through the pipe
            _exec_child(argv, env, cwd, slave_name, error_w)
        os.close(error_w)
        error_w = -1
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            reason = (
                "this kernel has no pidfd_open (ptyd needs Linux 5.3 or newer)"
                if exc.errno == errno.ENOSYS
                else _describe(exc)
            )
            raise PtyUnavailable(f"no fd to watch the child: {reason}") from None
        os.set_inheritable(pidfd, False)
        os.set_blocking(error_r, False)
        return Starting(Child(pid, master_fd, pidfd), error_r)
    except BaseException:
        for fd in (master_fd, slave_fd, error_r, error_w, pidfd):
            if fd >= 0:
                os.close(fd)
        raise


def finish(starting: Starting) -> Child:
    """Once ``starting.error_fd`` is readable: the running child, or SpawnError with the
    reason it gave (the failed child is reaped and its fds closed)."""
    try:
        failure = os.read(starting.error_fd, 4096)  # EOF at exec; the reason if it failed
    finally:
        os.close(starting.error_fd)
    if not failure:
        return starting.child
    child = starting.child
    os.waitpid(child.pid, 0)  # it exits right after writing
    os.close(child.master_fd)
    os.close(child.pidfd)
    raise SpawnError(failure.decode(errors="replace"))


def abandon(starting: Starting) -> None:
    """Kill a child that has not exec'd yet and close its fds except the pidfd, which the
    caller watches to reap it (a child stuck on a dead filesystem dies when it is killed,
    not necessarily at once)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(starting.child.pid, signal.SIGKILL)
    os.close(starting.error_fd)
    os.close(starting.child.master_fd)


def _open_fds() -> tuple[int, int, int, int]:
    """The error pipe and the PTY (every fd a spawn needs, taken before the fork), or
    PtyUnavailable naming the errno."""
    try:
        error_r, error_w = os.pipe2(os.O_CLOEXEC)
    except OSError as exc:
        raise PtyUnavailable(f"no fd for a new PTY: {_describe(exc)}") from None
    try:
        master_fd, slave_fd = os.openpty()
    except OSError as exc:
        os.close(error_r)
        os.close(error_w)
        raise PtyUnavailable(f"cannot open a PTY: {_describe(exc)}") from None
    return error_r, error_w, master_fd, slave_fd


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "?")
    return f"{exc.strerror} ({name})"


def _exec_child(
    argv: list[str], env: dict[str, str], cwd: str, slave_name: str, error_w: int
) -> None:  # pragma: no cover - runs in the child
    """Between fork and exec: only async-signal-tolerant steps, then the checks that touch
    the filesystem, then exec; or report why not and exit."""
    try:
        os.setsid()
        # A session leader without a controlling terminal acquires the first tty it opens.
        fd = os.open(slave_name, os.O_RDWR)
        fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
        for target in (0, 1, 2):
            os.dup2(fd, target, inheritable=True)
        os.closerange(3, error_w)
        os.closerange(error_w + 1, _max_fd())
        for signum in range(1, signal.NSIG):
            if signum in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:  # noqa: SIM105 (between fork and exec: no context manager objects)
                signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass  # signals the runtime reserves (32, 33) cannot be set
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if not os.path.isdir(cwd):
            raise SpawnError(f"{cwd}: no such directory")
        if not os.access(cwd, os.X_OK):
            raise SpawnError(f"{cwd}: permission denied")
        program = resolve_program(argv[0], env, cwd)
        os.chdir(cwd)
        os.execve(program, argv, env)
    except BaseException as exc:
        if isinstance(exc, SpawnError):
            message = str(exc)
        else:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"{argv[0]}: {reason}"
        try:
            os.write(error_w, message.encode())
        finally:
            os._exit(127)


def _max_fd() -> int:
    limit = os.sysconf("SC_OPEN_MAX")
    return limit if limit > 0 else 65536


def exit_status(status: int) -> tuple[int | None, int | None]:
    """(exit code, signal number) from a waitpid status; exactly one is not None."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status), None


def reap(pid: int) -> tuple[int | None, int | None] | None:
    """The exit of an exited child, or None if it has not exited (never blocks)."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if got == 0:
        return None
    return exit_status(status)


def session_members(session_id: int) -> list[tuple[int, int]]:
    """(pid, process group) of every live process whose session id is ``session_id``, read
    from /proc (zombies are dead: only their parent's wait removes them)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # Fields after "(comm)": state ppid pgrp session.
        if int(fields[3]) == session_id and fields[0] != b"Z":
            members.append((int(entry), int(fields[2])))
    return members


def session_processes(session_id: int) -> list[int]:
    """Pids of every live process of the session ``session_id``."""
    return [pid for pid, _ in session_members(session_id)]


def is_gone(error: OSError) -> bool:
    return error.errno == errno.ESRCH
