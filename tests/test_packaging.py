"""What ``pip install`` gets: from an sdist, every source the build compiles; from a wheel, the
``ptyd`` command (the compiled starter) beside the Python command line it runs.

setup.py builds each ``ptyd/*.pyx`` it finds, so an sdist without them (it used to carry only
the generated .c files) installs with no compiled backend, silently."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tracked_tree(tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the checkout's tracked files (the build writes generated files beside the
    sources), and their names."""
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (its tracked files are what an sdist is made of)")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    tree = tmp_path / "tree"
    for name in tracked:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    return tree, tracked


def test_the_sdist_carries_every_cython_source(tmp_path: Path) -> None:
    tree, tracked = tracked_tree(tmp_path)
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
        cwd=tree,
        capture_output=True,
        check=True,
        timeout=100,
    )
    [sdist] = (tmp_path / "dist").glob("ptyd-*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {Path(name).relative_to(Path(name).parts[0]) for name in archive.getnames()}
    sources = {Path(name) for name in tracked if name.endswith((".pyx", ".pxd"))}
    assert {Path("ptyd/_fast.pyx"), Path("ptyd/_relay.pyx"), Path("ptyd/_vt.pyx")} <= sources
    assert sources <= members
    assert Path("ptyd/widths.py") in members  # setup.py generates the width table from it
    assert Path("ptyd/_starter.c") in members  # the ptyd command


@pytest.mark.slow
def test_a_wheel_installs_the_ptyd_command_beside_the_python_one(tmp_path: Path) -> None:
    """Built and installed as pip does (into a fresh venv; the dependencies come from this
    one's site-packages): ``ptyd`` is the compiled starter, ``ptyd-py`` the Python command
    line, and ``ptyd --version`` runs through both."""
    tree, _ = tracked_tree(tmp_path)
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(wheels), str(tree)], check=True, timeout=600)
    [wheel] = wheels.glob("ptyd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [starter] = [name for name in names if name.endswith(".data/scripts/ptyd")]
        assert archive.read(starter)[:4] == b"\x7fELF"
        [entry_points] = [name for name in names if name.endswith("entry_points.txt")]
        assert archive.read(entry_points).decode().split() == [
            "[console_scripts]",
            "ptyd-py",
            "=",
            "ptyd.cli:run",
        ]
        assert not [name for name in names if name.endswith((".c", ".pyx"))]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site] = venv.glob("lib/python*/site-packages")
    here = [path for path in sys.path if path.endswith("site-packages")]
    (site / "dependencies.pth").write_text("\n".join(here) + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run([*install, "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    done = subprocess.run(
        [str(venv / "bin" / "ptyd"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # not the checkout: the installed package is the one imported
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PTYD_PURE")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ptyd ") and "compiled backend" in done.stdout
    assert (venv / "bin" / "ptyd-py").read_text().startswith(f"#!{venv}")
