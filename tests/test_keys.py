"""Key names to bytes, as xterm sends the keys and tmux's send-keys names them (xterm's
ctlseqs, "PC-Style Function Keys": modifier parameter 1 + Shift 1 + Alt 2 + Control 4)."""

from __future__ import annotations

import pytest

from ptyd.keys import in_application_cursor_mode, key_bytes, key_input, parse_detach_key

CASES = [
    ("Enter", b"\r"),
    ("Tab", b"\t"),
    ("BTab", b"\x1b[Z"),
    ("S-Tab", b"\x1b[Z"),
    ("Up", b"\x1b[A"),
    ("S-Up", b"\x1b[1;2A"),
    ("M-Up", b"\x1b[1;3A"),
    ("C-Up", b"\x1b[1;5A"),
    ("C-S-Right", b"\x1b[1;6C"),
    ("S-C-Right", b"\x1b[1;6C"),
    ("C-M-Left", b"\x1b[1;7D"),
    ("C-Home", b"\x1b[1;5H"),
    ("S-End", b"\x1b[1;2F"),
    ("F1", b"\x1bOP"),
    ("S-F1", b"\x1b[1;2P"),
    ("C-F4", b"\x1b[1;5S"),
    ("F5", b"\x1b[15~"),
    ("C-F5", b"\x1b[15;5~"),
    ("M-Delete", b"\x1b[3;3~"),
    ("C-PageUp", b"\x1b[5;5~"),
    ("S-NPage", b"\x1b[6;2~"),
    ("C-c", b"\x03"),
    ("^C", b"\x03"),
    ("C-@", b"\x00"),
    ("C-Space", b"\x00"),
    ("C-BSpace", b"\x08"),
    ("C-?", b"\x7f"),
    ("M-x", b"\x1bx"),
    ("C-M-x", b"\x1b\x18"),
    ("M-Enter", b"\x1b\r"),
    ("M-Escape", b"\x1b\x1b"),
    ("hello", b"hello"),  # not a key name: the text itself
    ("C-", b"C-"),
    ("up", b"\x1b[A"),  # names are case-insensitive
]


@pytest.mark.parametrize(("name", "expected"), CASES)
def test_key_names_give_what_xterm_sends(name: str, expected: bytes) -> None:
    assert key_bytes(name) == expected


def test_detach_keys() -> None:
    assert parse_detach_key("^\\") == 0x1C
    assert parse_detach_key("C-a") == 0x01
    assert parse_detach_key("q") == ord("q")
    assert parse_detach_key("^^") == 0x1E
    assert parse_detach_key("^") == ord("^")


@pytest.mark.parametrize("spec", ["C-Up", "^^^", "^ab", "C-", "C-ab", "^C-a", "", "é", "€"])
def test_a_detach_key_that_is_not_one_key_is_refused(spec) -> None:
    with pytest.raises(ValueError, match="is not a key"):
        parse_detach_key(spec)


@pytest.mark.parametrize(
    ("names", "normal", "application"),
    [
        (["Up", "C-c", "x", "Enter"], b"\x1b[A\x03x\r", b"\x1bOA\x03x\r"),
        (["Escape", "[A", "Up"], b"\x1b[A\x1b[A", b"\x1b[A\x1bOA"),  # text after Escape
        (["M-[", "D", "Left"], b"\x1b[D\x1b[D", b"\x1b[D\x1bOD"),
        (["\x1b[A", "Down"], b"\x1b[A\x1b[B", b"\x1b[A\x1bOB"),  # a word is text
        (["x\x1b[Hy", "\x1b[F", "Enter"], b"x\x1b[Hy\x1b[F\r", b"x\x1b[Hy\x1b[F\r"),
        (["C-Up", "Home", "End"], b"\x1b[1;5A\x1b[H\x1b[F", b"\x1b[1;5A\x1bOH\x1bOF"),
    ],
)
def test_key_input_turns_only_the_named_cursor_keys(names, normal, application) -> None:
    """What the program reads in each cursor mode, the daemon applying DECCKM to every request
    sent as keys: only the cursor keys named, never text that reads like one."""
    runs = key_input(names)
    assert b"".join(data for data, _ in runs) == normal
    as_sent = [in_application_cursor_mode(data) if keys else data for data, keys in runs]
    assert b"".join(as_sent) == application
    assert len(runs) <= 2
