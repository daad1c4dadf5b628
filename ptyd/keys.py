"""Key names (as tmux's send-keys knows them) to the bytes a terminal sends for them."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from collections.abc import Iterable

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

# Keys that take xterm's modifier parameter (CSI 1;m X or CSI n;m ~), m = 1 + Shift 1 + Meta 2
# + Ctrl 4: the cursor and editing keys and F1-F12, as xterm and tmux send them.
_FINAL = {"up": "A", "down": "B", "right": "C", "left": "D", "home": "H", "end": "F"}
_FINAL.update({"f1": "P", "f2": "Q", "f3": "R", "f4": "S"})
_TILDE = {"insert": 2, "ic": 2, "delete": 3, "dc": 3, "pageup": 5, "ppage": 5}
_TILDE.update({"pagedown": 6, "npage": 6, "f5": 15, "f6": 17, "f7": 18, "f8": 19, "f9": 20})
_TILDE.update({"f10": 21, "f11": 23, "f12": 24})
_SHIFT, _META, _CTRL = 1, 2, 4
_MODIFIERS = {"S": _SHIFT, "M": _META, "C": _CTRL}


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
    """Bytes for one key name, as tmux's send-keys sends them: ``C-``, ``M-`` and ``S-``
    prefixes in any order (``C-M-x``, ``S-Up``, ``C-F5``); a word that is not a key name is
    sent as the text itself."""
    if name.startswith("^") and len(name) == 2 and (control := ctrl(name[1])) is not None:
        return control
    modifiers, key = 0, name
    while len(key) > 2 and key[1] == "-" and key[0] in _MODIFIERS:
        modifiers |= _MODIFIERS[key[0]]
        key = key[2:]
    lower = key.lower()
    if modifiers and lower in _FINAL:
        return f"\x1b[1;{modifiers + 1}{_FINAL[lower]}".encode()
    if modifiers and lower in _TILDE:
        return f"\x1b[{_TILDE[lower]};{modifiers + 1}~".encode()
    if modifiers and (lower in _NAMED or len(key) == 1):
        return _modified(key, modifiers)
    return _NAMED.get(lower, name.encode())


def _modified(key: str, modifiers: int) -> bytes:
    """A character or one of Enter, Tab, Space, BSpace, Escape with modifiers: Shift-Tab is
    back-tab, Ctrl makes a control byte (Ctrl-Space NUL, Ctrl-BSpace BS), Meta adds ESC."""
    lower = key.lower()
    if lower == "tab" and modifiers & _SHIFT:
        data = _NAMED["btab"]
    elif modifiers & _CTRL and lower == "space":
        data = b"\x00"
    elif modifiers & _CTRL and lower in ("bspace", "backspace"):
        data = b"\x08"
    elif modifiers & _CTRL and len(key) == 1 and (control := ctrl(key)) is not None:
        data = control
    elif len(key) == 1:
        data = (key.upper() if modifiers & _SHIFT else key).encode()
    else:
        data = _NAMED[lower]
    return b"\x1b" + data if modifiers & _META else data


# Unmodified cursor keys as sent in normal mode, and as sent once a program has asked for
# application cursor keys (DECCKM, CSI ?1h): xterm and tmux's send-keys switch on that mode.
_APPLICATION_CURSOR = {f"\x1b[{final}".encode(): f"\x1bO{final}".encode() for final in "ABCDHF"}


def in_application_cursor_mode(data: bytes) -> bytes:
    """Key bytes made from names, as a terminal sends them in application cursor mode."""
    for normal, application in _APPLICATION_CURSOR.items():
        data = data.replace(normal, application)
    return data


def key_input(names: Iterable[str]) -> list[tuple[bytes, bool]]:
    """Key names as the data of ``input`` requests and whether each is sent as ``keys``.

    A daemon turns every normal-mode cursor key in a ``keys`` request's data into its
    application form, so the names go in one request unless joining them would make text read
    as a cursor key (``Escape`` then ``[A``) or a word holds one (``$'\\e[A'``): such text goes
    in a request of its own, sent as it is, as tmux's send-keys sends a string."""
    runs: list[tuple[bytes, bool]] = []
    for name in names:
        data = key_bytes(name)
        wanted = data if data == name.encode() else _APPLICATION_CURSOR.get(data, data)
        as_keys = in_application_cursor_mode(data) == wanted  # False: text holding a cursor key
        if runs:
            last, last_as_keys = runs[-1]
            if last_as_keys and as_keys:
                as_one = in_application_cursor_mode(last + data)
                if as_one == in_application_cursor_mode(last) + wanted:
                    runs[-1] = (last + data, True)
                    continue
            elif not last_as_keys and wanted == data:  # sent as it is in either mode
                runs[-1] = (last + data, False)
                continue
        runs.append((data, as_keys))
    return runs


def parse_detach_key(spec: str) -> int:
    """The byte of a detach key written as ``^X``/``C-x``, or a single character."""
    for prefix in ("^", "C-"):
        if spec.startswith(prefix) and len(spec) == len(prefix) + 1:
            control = ctrl(spec[-1])
            if control is not None:
                return control[0]
    if len(spec) == 1 and spec.isascii():  # a terminal sends other characters as several bytes
        return ord(spec)
    raise ValueError(f"{spec!r} is not a key such as ^\\ or ^A")
