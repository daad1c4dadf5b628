"""A session's input queue against its emulator worker, in this process: a real PTY and
program, the daemon's own Session, and an emulator worker held busy so that the order of the
loop's and the worker's steps is the test's to choose."""

from __future__ import annotations

import asyncio
import os
import select
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ptyd import config, spawn
from ptyd.session import Session

# Raw mode, then output a client receives before the emulator has seen it: a screenful and the
# switch to application cursor keys. Then what the program reads, up to a Z, into a file.
PROGRAM = """
import os, sys, tty
tty.setraw(0)
os.write(1, b"x" * 4000 + b"\\x1b[?1hAPP")
got = b""
while not got.endswith(b"Z"):
    got += os.read(0, 64)
with open(sys.argv[1], "w") as out:
    out.write(repr(got))
"""


async def _keys_behind_the_emulator(result: Path) -> str:
    loop = asyncio.get_running_loop()
    emulator_free = threading.Event()
    emulators = ThreadPoolExecutor(1)
    emulators.submit(emulator_free.wait)  # the worker is busy: the emulator falls behind
    readers = ThreadPoolExecutor(1)
    argv = [sys.executable, "-c", PROGRAM, str(result)]
    env = spawn.build_env(dict(os.environ), {}, "xterm-256color")
    starting = spawn.start(argv, env, "/", 80, 24)
    select.select([starting.error_fd], [], [], 10)  # readable once the program is exec'd
    child = spawn.finish(starting)
    session = Session(
        1, None, argv, "/", child, 80, 24, config.load({}), loop, emulators, readers,
        lambda _: None,
    )  # fmt: skip
    session.start()
    try:
        while session.pump.offset < 4000 + len(b"\x1b[?1hAPP"):  # all of it sent on
            await asyncio.sleep(0.01)
        session.send_input(b"\x1b[A\x1b[D", keys=True)  # Up Left, by name
        session.send_input(b"tZ")  # typed after them
        await asyncio.sleep(0.2)
        assert not result.exists(), "input went ahead of the keys held for their mode"
        emulator_free.set()
        await asyncio.wait_for(session.wait(), 10)
        return result.read_text()
    finally:
        emulator_free.set()
        if session.is_running:
            session.hang_up(0.5)
            await asyncio.wait_for(session.wait(), 10)
        session.close()
        emulators.shutdown()
        readers.shutdown()


def test_keys_by_name_take_the_mode_of_the_output_clients_were_sent(tmp_path) -> None:
    """Clients see output before the session's emulator works through it (a flood): keys
    sent by name wait for the emulator to reach the output sent before them, and go in the
    cursor mode it finds there; input sent after them stays after them."""
    got = asyncio.run(_keys_behind_the_emulator(tmp_path / "got"))
    assert got == repr(b"\x1bOA\x1bODtZ")
