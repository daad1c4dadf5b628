"""The sequences an attach writes to the user's terminal around a session's screen: one module
with no imports, shared by the attach relay, the handoff from the ``ptyd`` starter and the
starter itself (``setup.py`` compiles them into it)."""

# Undo whatever the session's programs left on: CAN ends a sequence cut short, then alternate
# screen, margins, origin/insert/newline modes, charsets, cursor keys and keypad, mouse (all
# tracking modes and encodings), focus, bracketed paste, synchronized output, reverse video,
# cursor shape and visibility, attributes; the cursor goes to the last row, erased, for our
# message (the session's text there would otherwise show to the right of it).
RESTORE = (
    b"\x18\x1b[?1049l\x1b[r\x1b[?6l\x1b[4l\x1b[20l\x1b[?7h\x1b(B\x1b)B\x0f\x1b[?1l\x1b>"
    b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l\x1b[?1015l\x1b[?1004l"
    b"\x1b[?2004l\x1b[?2026l\x1b[?5l\x1b[0 q\x1b[?25h\x1b[0m\x1b[999H\x1b[2K"
)
# Before a snapshot: end any sequence cut short by dropped output; the snapshot expects a blank
# screen.
REPAINT = b"\x18\x1b[0m\x1b[H\x1b[2J"
