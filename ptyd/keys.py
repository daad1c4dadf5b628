"""Key names (as tmux's send-keys knows them) to the bytes a terminal sends for them."""

from __future__ import annotations

_NAMED: dict[str, bytes] = {
    "enter": b"\r",
    "tab": b"\t",
    "btab": b"\x1b[Z",
    "escape": b"\x1b",
    "esc": b"\x1b",
    "space": b" ",
    "bspace": b"\x7f",
    "backspace": b"\x7f",
    "up": b"\x1b[A",
    "down": b"\x1b[B",
    "right": b"\x1b[C",
    "left": b"\x1b[D",
    "home": b"\x1b[H",
    "end": b"\x1b[F",
    "pageup": b"\x1b[5~",
    "ppage": b"\x1b[5~",
    "pagedown": b"\x1b[6~",
    "npage": b"\x1b[6~",
    "insert": b"\x1b[2~",
    "ic": b"\x1b[2~",
    "delete": b"\x1b[3~",
    "dc": b"\x1b[3~",
    "f1": b"\x1bOP",
    "f2": b"\x1bOQ",
    "f3": b"\x1bOR",
    "f4": b"\x1bOS",
    "f5": b"\x1b[15~",
    "f6": b"\x1b[17~",
    "f7": b"\x1b[18~",
    "f8": b"\x1b[19~",
    "f9": b"\x1b[20~",
    "f10": b"\x1b[21~",
    "f11": b"\x1b[23~",
    "f12": b"\x1b[24~",
}

KEY_NAMES = sorted(_NAMED)


def ctrl(char: str) -> bytes | None:
    """The control byte for ``C-x``/``^X`` style keys: letters, @ [ \\ ] ^ _ and ? (DEL)."""
    if len(char) != 1:
        return None
    if char == "?":
        return b"\x7f"
    code = ord(char.upper())
    if 0x40 <= code <= 0x5F:
        return bytes([code - 0x40])
    return None


def key_bytes(name: str) -> bytes:
    """Bytes for one key name; ``C-x`` is Ctrl, ``M-x`` is Meta (ESC prefix); a word that is
    not a key name is sent as the text itself (as tmux's send-keys does)."""
    if name.startswith("M-") and len(name) > 2:
        return b"\x1b" + key_bytes(name[2:])
    if name.startswith(("C-", "^")) and len(name) in (2, 3):
        control = ctrl(name[-1])
        if control is not None:
            return control
    return _NAMED.get(name.lower(), name.encode())


def parse_detach_key(spec: str) -> int:
    """The byte of a detach key written as ``^X``/``C-x``, or a single character."""
    if spec.startswith(("^", "C-")):
        control = ctrl(spec[-1])
        if control is not None and len(spec) in (2, 3):
            return control[0]
    if len(spec) == 1:
        return ord(spec)
    raise ValueError(f"{spec!r} is not a key such as ^\\ or ^A")
