"""ptyd: a PTY session daemon with exact screen snapshots and bounded fan-out."""

from ._version import __version__

__all__ = ["__version__"]
