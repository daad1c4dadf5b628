"""``python -m ptyd``: the same as the ``ptyd`` command."""

from .cli import run

run()
