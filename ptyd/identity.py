"""ptyd acts for the user who runs it, never with someone else's effective ids.

A set-uid or set-gid install (CVE-2011-1496, screen) would let any user open log files, bind
sockets and start programs with the installer's rights, or reach the installer's own daemon
(the peer check sees the effective uid). Every command refuses before it does anything.
"""

from __future__ import annotations

import os

from .errors import PrivilegedStart


def check_identity() -> None:
    """Raise PrivilegedStart when the real and effective uid or gid differ."""
    ruid, euid, _ = os.getresuid()
    rgid, egid, _ = os.getresgid()
    if ruid != euid or rgid != egid:
        raise PrivilegedStart(
            f"refusing to run with real uid/gid {ruid}/{rgid} but effective uid/gid "
            f"{euid}/{egid} (a set-uid or set-gid install): run ptyd as the user it serves"
        )
