"""Build the compiled modules: every ``ptyd/*.pyx`` becomes an extension of the same name."""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("PTYD_DEBUG_BUILD") == "1"

extensions = [
    Extension(
        f"ptyd.{path.stem}",
        [str(path)],
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
    )
    for path in sorted(Path("ptyd").glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": DEBUG,
            "embedsignature": True,
        },
        annotate=os.environ.get("PTYD_ANNOTATE") == "1",
    ),
)
