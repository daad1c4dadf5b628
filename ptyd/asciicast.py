"""A session recorded as an asciicast v2 file (asciinema's format, one JSON value per line):
the screen as it was when the recording started, then each output chunk with the time it
arrived, so a player shows the session as it happened, pauses included.

The first event repaints the screen from the session's ANSI snapshot (``REPAINT`` first, as an
attach does), so a recording started on a running program plays from its real screen instead
of a blank one; so does each fresh snapshot after the recorder lagged behind a flood. Output is
bytes and asciicast text is JSON strings: bytes are decoded incrementally (a UTF-8 character
split between two chunks is written once, whole), invalid UTF-8 as U+FFFD.
"""

from __future__ import annotations

import codecs
import json
import time
from typing import TextIO

from .repaint import REPAINT

VERSION = 2


class AsciicastWriter:
    """Writes one recording to ``stream``: the header at once, then ``output`` events timed
    from the moment the writer was made."""

    def __init__(self, stream: TextIO, cols: int, rows: int, *, title: str = "") -> None:
        self.stream = stream
        self._start = time.monotonic()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        header: dict[str, object] = {
            "version": VERSION,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
        }
        if title:
            header["title"] = title
        self._write(header)

    def screen(self, ansi: bytes) -> None:
        """A repaint of the whole screen from an ANSI snapshot (at the start, after lagging)."""
        self._decoder.reset()  # a character cut short before the snapshot is gone with it
        self.output(REPAINT + ansi)

    def output(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._write([round(time.monotonic() - self._start, 6), "o", text])

    def close(self) -> None:
        """Write what the decoder holds (a character cut short at the end: U+FFFD) and flush."""
        text = self._decoder.decode(b"", final=True)
        if text:
            self._write([round(time.monotonic() - self._start, 6), "o", text])
        self.stream.flush()

    def _write(self, value: object) -> None:
        self.stream.write(json.dumps(value, ensure_ascii=False) + "\n")
