"""The emulators on the other shared corpora (Alacritty recordings, vt100-rust steps).

Their expected screens come from other emulators, not from xterm: Alacritty's and libvterm's
(the portable subset: cursor and row text) are compared where they follow xterm (the rest is
listed with reasons); vt100-rust's model differs from
xterm in many steps (no column-0 move on IL/DL, cursor at column 80 while a wrap is pending,
...), so there both backends must agree with each other and never raise, step by step.
"""

from __future__ import annotations

import pytest

from ptyd._vt import VtEmulator
from ptyd.emulator import COLOR_INDEXED, COLOR_RGB
from ptyd.pyte_backend import PyteEmulator
from tests.emulator_corpus import (
    ALACRITTY_UNCOVERED,
    LIBVTERM_UNCOVERED,
    VT100_ATTRIBUTE_DIFFERENCES,
    alacritty_case,
    alacritty_cases,
    libvterm_cases,
    libvterm_script,
    vt100_expected_attributes,
    vt100_input,
    vt100_steps,
)

BACKENDS: dict[str, type] = {"compiled": VtEmulator, "pure": PyteEmulator}


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def emu_class(request: pytest.FixtureRequest) -> type:
    return BACKENDS[request.param]


@pytest.mark.parametrize("name", alacritty_cases())
def test_alacritty_recordings(emu_class: type, name: str) -> None:
    data, cols, rows, history, expected = alacritty_case(name)
    emu = emu_class(cols, rows, scrollback=history)
    emu.feed(data)
    screen = emu.snapshot_text().replace("\u00a0", " ").split("\n")
    if name in ALACRITTY_UNCOVERED:
        assert screen != expected, f"{name} now passes: remove it from ALACRITTY_UNCOVERED"
    else:
        assert screen == expected


def test_vt100_rust_steps_agree() -> None:
    for group, step in vt100_steps():
        data = vt100_input(group, step)
        states = []
        for cls in BACKENDS.values():
            emu = cls(80, 24, scrollback=0)
            emu.feed(data)
            states.append((emu.state(), emu.take_replies()))
        assert states[0] == states[1], (group, step)


@pytest.mark.parametrize("name", libvterm_cases())
def test_libvterm_scripts(emu_class: type, name: str) -> None:
    emu = emu_class(80, 25, scrollback=0)
    misses = []
    for kind, arg in libvterm_script(name):
        if kind == "init":
            emu = emu_class(80, 25, scrollback=0)
        elif kind == "push":
            emu.feed(arg)
        elif kind == "resize":
            emu.resize(*arg)
        elif kind == "cursor":
            state = emu.state(0)
            if (state.cursor_y, state.cursor_x) != arg:
                misses.append((kind, arg, (state.cursor_y, state.cursor_x)))
        else:
            row, text = arg
            got = emu.snapshot_text().split("\n")[row]
            if got != text:
                misses.append((kind, arg, got))
    expected = LIBVTERM_UNCOVERED.get(name, (0, ""))[0]
    assert len(misses) == expected, misses


def vt100_attributes(state: object) -> dict[str, dict[str, object]]:
    """A screen's non-default cell attributes in vt100-rust's fixture vocabulary."""
    out: dict[str, dict[str, object]] = {}
    flag_names = ((1, "bold"), (2, "dim"), (4, "italic"), (8, "underline"), (32, "inverse"))
    for y, row in enumerate(state.lines):  # type: ignore[attr-defined]
        for x, (_, fg, bg, flags) in enumerate(row):
            attrs: dict[str, object] = {}
            for name, colour in (("fgcolor", fg), ("bgcolor", bg)):
                if colour & COLOR_RGB:
                    attrs[name] = f"#{colour & 0xFFFFFF:06x}"
                elif colour & COLOR_INDEXED:
                    attrs[name] = str(colour & 0xFF)
            attrs.update({name: True for bit, name in flag_names if flags & bit})
            if attrs:
                out[f"{y},{x}"] = attrs
    return out


def test_vt100_rust_attributes(emu_class: type) -> None:
    differing = set()
    for group, step in vt100_steps():
        emu = emu_class(80, 24, scrollback=0)
        emu.feed(vt100_input(group, step))
        if vt100_attributes(emu.state()) != vt100_expected_attributes(group, step):
            differing.add((group, step))
    assert differing == set(VT100_ATTRIBUTE_DIFFERENCES)
