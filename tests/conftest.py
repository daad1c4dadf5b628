"""Shared fixtures: the backend parameter and a real daemon on a real socket.

Every daemon test runs once per backend (ids ``compiled`` and ``pure``): the daemon is a real
``python -m ptyd serve`` process, with ``PTYD_PURE`` set for the pure run, and the fixture
checks the backend the daemon reports, so a missing compiled build fails instead of silently
testing the pure one twice.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ptyd import _fast_py, _relay_py
from ptyd.client import Client

BACKENDS = ("compiled", "pure")


def _compiled_fast() -> ModuleType | None:
    try:
        return importlib.import_module("ptyd._fast")
    except ImportError:
        return None


def _default_timeout(config: pytest.Config) -> float:
    """pytest-timeout's default for unmarked tests: --timeout, then PYTEST_TIMEOUT, then the ini."""
    for value in (
        config.getoption("timeout"),
        os.environ.get("PYTEST_TIMEOUT"),
        config.getini("timeout"),
    ):
        if value not in (None, ""):
            return float(value)
    return 0.0


def _marked_timeout(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("timeout")
    if marker is None:
        return None
    return float(marker.kwargs.get("timeout", marker.args[0] if marker.args else 0))


def pytest_configure(config: pytest.Config) -> None:
    _raise_fd_limit()


def _raise_fd_limit() -> None:
    """Tests hold 1,000 clients (C1: 5,000 with PTYD_FULL_FIGURES=1) and the daemons they
    start inherit this process's limit: take the hard limit (the row asks for 12k)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """H1: a hang must fail the test, not the CI job. Every test needs an effective timeout (the
    default or a marker); a test allowed longer than the default must also be marked ``slow``, so
    long tests are visible; and faulthandler must dump the stacks shortly before the default."""
    default = _default_timeout(config)
    dump = float(config.getini("faulthandler_timeout") or 0)
    problems = []
    if not 0 < dump < default:
        problems.append(
            f"faulthandler_timeout ({dump:g}) must be set below the default timeout ({default:g})"
        )
    for item in items:
        marked = _marked_timeout(item)
        effective = default if marked is None else marked
        if effective <= 0:
            problems.append(f"{item.nodeid}: no timeout")
        elif marked is not None and marked > default and item.get_closest_marker("slow") is None:
            problems.append(
                f"{item.nodeid}: timeout {marked:g} s over the default {default:g} s "
                "without the slow marker"
            )
    if problems:
        raise pytest.UsageError("tests without a proper timeout (H1):\n  " + "\n  ".join(problems))


_WALL_TIME: defaultdict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _WALL_TIME[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """H5: wall time per test file (setup, call, teardown): the suite's budget stays visible."""
    if not _WALL_TIME:
        return
    terminalreporter.write_sep(
        "-", f"wall time per test file ({sum(_WALL_TIME.values()):.0f} s in all)"
    )
    for path, seconds in sorted(_WALL_TIME.items(), key=lambda row: -row[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {path}")


def pytest_report_header(config: pytest.Config) -> list[str]:
    from ptyd import _backend

    compiled = "available" if _compiled_fast() is not None else "NOT BUILT"
    return [
        f"ptyd backend in this process: {_backend.BACKEND} "
        f"(PTYD_PURE={os.environ.get('PTYD_PURE', '')!r}); "
        f"compiled extension: {compiled}; daemon tests run on: {', '.join(BACKENDS)}"
    ]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend a daemon under test must run (compiled or pure)."""
    return str(request.param)


@pytest.fixture(params=BACKENDS)
def fast(request: pytest.FixtureRequest) -> ModuleType:
    """The hot-path module itself, for in-process tests: compiled ``_fast`` or ``_fast_py``."""
    if request.param == "pure":
        return _fast_py
    module = _compiled_fast()
    if module is None:
        pytest.fail(
            "the compiled ptyd._fast is not built "
            "(run: pip install -e . or setup.py build_ext --inplace)"
        )
    return module


@pytest.fixture(params=BACKENDS)
def relay(request: pytest.FixtureRequest) -> ModuleType:
    """The attach relay's quiet loop: compiled ``_relay`` or ``_relay_py``."""
    if request.param == "pure":
        return _relay_py
    try:
        return importlib.import_module("ptyd._relay")
    except ImportError:
        pytest.fail("the compiled ptyd._relay is not built (run: pip install -e .)")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short private directory: socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ptyd-t-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Daemon:
    """A running ``ptyd serve`` process and how to reach it."""

    socket: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    backend: str
    clients: list[Client] = field(default_factory=list)
    loop: str = "uvloop"  # the daemon's event loop (``serve --asyncio`` runs plain asyncio)

    def client(self, **options: Any) -> Client:
        client = Client(self.socket, **{"timeout": 60, **options})
        self.clients.append(client)
        return client

    def cli(
        self, *args: str, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the ``ptyd`` command line against this daemon."""
        return subprocess.run(
            [sys.executable, "-m", "ptyd", "-S", str(self.socket), "--no-autostart", *args],
            env=self.env,
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def stop(self, signum: int = signal.SIGTERM) -> int:
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=30)


def start_daemon(
    socket_path: Path, backend: str, *extra: str, env: dict[str, str] | None = None, **popen: Any
) -> Daemon:
    """Start ``ptyd serve`` and return once it listens (its readiness pipe says so)."""
    full_env = dict(os.environ if env is None else env)
    for name in [key for key in full_env if key.startswith("PTYD_")]:
        del full_env[name]
    if backend == "pure":
        full_env["PTYD_PURE"] = "1"
    full_env.setdefault("PTYD_KILL_GRACE", "0.5")
    ready_r, ready_w = os.pipe()
    full_env["PTYD_READY_FD"] = str(ready_w)
    process = subprocess.Popen(
        [sys.executable, "-m", "ptyd", "serve", "-S", str(socket_path), *extra],
        env=full_env,
        pass_fds=(ready_w,),
        stdin=subprocess.DEVNULL,
        **popen,
    )
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        answer = ready.read()
    del full_env["PTYD_READY_FD"]
    if answer != b"ready\n":
        process.kill()
        process.wait()
        raise RuntimeError(f"daemon did not start: {answer!r}")
    daemon = Daemon(socket_path, process, full_env, backend)
    with Client(socket_path, timeout=30) as probe:
        running = probe.daemon_info["backend"]
    if running != backend:
        daemon.stop()
        raise RuntimeError(
            f"the daemon runs the {running} backend, not the {backend} one (from a source "
            "checkout, build it in place first: pip install -e '.[test]')"
        )
    return daemon


@pytest.fixture
def daemon(backend: str, short_tmp: Path) -> Iterator[Daemon]:
    running = start_daemon(short_tmp / "d.sock", backend)
    yield running
    status = running.stop()
    assert status == 0, f"daemon exited with {status}"


@pytest.fixture(params=["uvloop", "asyncio"])
def daemon_on_each_loop(
    request: pytest.FixtureRequest, backend: str, short_tmp: Path
) -> Iterator[Daemon]:
    """A daemon on uvloop, then on plain asyncio (``serve --asyncio``): for the lifecycle and
    fan-out tests, whose transport callbacks differ between the two loops (checklist H3)."""
    flags = ("--asyncio",) if request.param == "asyncio" else ()
    running = start_daemon(short_tmp / "d.sock", backend, *flags)
    running.loop = str(request.param)
    yield running
    status = running.stop()
    assert status == 0, f"daemon exited with {status}"
