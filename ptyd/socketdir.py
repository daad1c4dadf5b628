"""Where the daemon listens, and the checks that make that place safe.

The socket lives in a directory that only its owner may enter (0700), and is itself 0600, bound
under a restrictive umask so it is never briefly open to others. An existing directory that is
not ours, not a real directory, or open to group/other is refused without touching it. A lock
file beside the socket makes "is a daemon already serving this path" race-free.
"""

from __future__ import annotations

import _socket  # the C module under ``socket``: commands import this module (is_listening)
import errno
import fcntl
import os
import stat
import sys

from .errors import AlreadyRunning, DaemonImpostor, SocketPathError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: every command imports this module
if TYPE_CHECKING:
    import socket
    from os import PathLike
    from typing import Any

    StrPath = str | PathLike[str]


def check_dir(directory: StrPath, *, create: bool) -> None:
    """Make sure ``directory`` is a real directory owned by us with mode 0700 (creating it if
    asked and absent). Never chmod, chown or follow a symlink: refuse and say why."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        if not create:
            raise SocketPathError(
                f"{directory}: no such directory (is the daemon running?)"
            ) from None
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass  # created concurrently: checked below like any existing directory
        except OSError as exc:
            raise SocketPathError(f"{directory}: cannot create: {exc.strerror}") from None
        info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode):
        raise SocketPathError(f"{directory}: refusing a symbolic link as the socket directory")
    if not stat.S_ISDIR(info.st_mode):
        raise SocketPathError(f"{directory}: exists but is not a directory")
    if info.st_uid != os.getuid():
        raise SocketPathError(
            f"{directory}: owned by uid {info.st_uid}, not by you (uid {os.getuid()}); refusing it"
        )
    if info.st_mode & 0o077:
        raise SocketPathError(
            f"{directory}: permissions {stat.S_IMODE(info.st_mode):04o} allow group or other "
            "access; it must be 0700"
        )


def check_daemon_socket(path: StrPath) -> None:
    """Client side: refuse to talk to a socket (or directory) that someone else owns."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return  # nothing there yet: connecting fails with a clear error anyway
    if info.st_uid != os.getuid():
        raise DaemonImpostor(
            f"{path}: owned by uid {info.st_uid}, not by you (uid {os.getuid()}); refusing to "
            "connect"
        )
    if not stat.S_ISSOCK(info.st_mode):
        raise DaemonImpostor(f"{path}: exists but is not a socket")
    directory = os.path.dirname(os.fspath(path)) or "."
    parent = os.lstat(directory)
    if parent.st_uid != os.getuid():
        raise DaemonImpostor(
            f"{directory}: owned by uid {parent.st_uid}, not by you; refusing to connect"
        )


def check_daemon_peer(sock: Any, path: StrPath, owner: int | None = None) -> None:
    """Client side, once connected and before sending anything: the process listening must
    run as the socket's rightful owner (you, or ``owner``) or root. The path checks alone
    would trust a socket that root moved into your directory for someone else's process."""
    expected = os.getuid() if owner is None else owner
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # pid, uid, gid
    uid = int.from_bytes(creds[4:8], sys.byteorder)
    if uid not in (expected, 0):
        raise DaemonImpostor(
            f"{path}: the process listening runs as uid {uid}, not as uid {expected} or root; "
            "refusing to talk to it"
        )


def is_listening(path: StrPath) -> bool:
    """True if something accepts connections on ``path`` right now."""
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def lock_holder(path: StrPath) -> int | None:
    """The pid of the daemon holding the lock of socket ``path`` (it writes its pid there), or
    None if no process holds it."""
    try:
        fd = os.open(os.fspath(path) + ".lock", os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32)
            return int(text) if text.strip().isdigit() else None
        return None  # nobody holds it
    finally:
        os.close(fd)


class Listener:
    """The daemon's listening socket and its lock; ``close`` removes only what it created."""

    def __init__(self, path: StrPath) -> None:
        self.path = os.fspath(path)
        self.directory = os.path.dirname(self.path) or "."
        self.lock_path = self.path + ".lock"
        self.sock: socket.socket | None = None
        self._lock_fd = -1
        self._inode: tuple[int, int] | None = None

    def open(self) -> socket.socket:
        check_dir(self.directory, create=True)
        if len(os.fsencode(self.path)) >= 108:
            raise SocketPathError(f"{self.path}: longer than the 107 bytes a socket path may have")
        self._lock_fd = os.open(
            self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise AlreadyRunning(f"a ptyd daemon is already running on {self.path}") from None
        os.ftruncate(self._lock_fd, 0)
        os.write(self._lock_fd, b"%d\n" % os.getpid())  # lock_holder reads it
        try:
            return self._bind()
        except BaseException:
            self._release_lock()
            raise

    def _bind(self) -> socket.socket:
        import socket  # the daemon's: asyncio takes socket.socket objects

        if os.path.lexists(self.path):
            if is_listening(self.path):  # a daemon that lost its lock file; never touch it
                raise AlreadyRunning(f"a ptyd daemon is already running on {self.path}")
            info = os.lstat(self.path)
            if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
                raise SocketPathError(f"{self.path}: exists and is not a stale socket of ours")
            os.unlink(self.path)  # stale: nothing listens, we hold the lock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)
        try:
            sock.bind(os.fspath(self.path))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise AlreadyRunning(f"a ptyd daemon is already running on {self.path}") from None
            raise SocketPathError(f"{self.path}: cannot bind: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)  # already 0600 from the umask; explicit for clarity
        info = os.stat(self.path)
        self._inode = (info.st_dev, info.st_ino)
        sock.listen(1024)
        sock.setblocking(False)
        self.sock = sock
        return sock

    def rebind(self) -> socket.socket | None:
        """A fresh listening socket at the path if ours is gone from it (a tmp cleaner or a
        user deleted it), else None. We still hold the lock, so no other daemon owns the
        path; the caller closes the old socket once it listens on the new one."""
        try:
            info = os.lstat(self.path)
            if (info.st_dev, info.st_ino) == self._inode:
                return None
        except FileNotFoundError:
            pass
        check_dir(self.directory, create=True)
        return self._bind()

    def close(self) -> None:
        """Remove the socket if it is still the one we bound; release the lock."""
        if self._inode is not None:
            try:
                info = os.lstat(self.path)
                if (info.st_dev, info.st_ino) == self._inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            self._inode = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
