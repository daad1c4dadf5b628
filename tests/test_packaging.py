"""What ``pip install`` gets from an sdist: every Cython source the build compiles.

setup.py builds each ``ptyd/*.pyx`` it finds, so an sdist without them (it used to carry only
the generated .c files) installs with no compiled backend, silently."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_sdist_carries_every_cython_source(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (its tracked files are what an sdist is made of)")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    tree = tmp_path / "tree"
    for name in tracked:  # a copy: the build writes generated files beside the sources
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
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
