"""The daemon's log: to a file (``PTYD_LOG_FILE``) or stderr, and what happens when it cannot
be written."""

from __future__ import annotations

import contextlib
import logging
import sys

FORMAT = "%(asctime)s ptyd[%(process)d] %(levelname)s %(name)s: %(message)s"


def configure(level: str, log_file: str | None) -> None:
    handler = _FileLog(log_file) if log_file else _StderrLog()
    logging.basicConfig(level=level.upper(), format=FORMAT, handlers=[handler])


class _SaysOnceWhenLinesAreLost(logging.Handler):
    """A log that cannot be written (a full disk) costs its lines, not a traceback per line
    on stderr as logging's default does: one line on stderr says so, the first time."""

    _has_failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if self._has_failed:
            return
        self._has_failed = True
        with contextlib.suppress(Exception):
            print(f"ptyd: log lines are lost: {sys.exc_info()[1]}", file=sys.stderr, flush=True)


class _FileLog(_SaysOnceWhenLinesAreLost, logging.FileHandler):
    pass


class _StderrLog(_SaysOnceWhenLinesAreLost, logging.StreamHandler):
    pass
