"""``python -m ptyd``: the same as the ``ptyd`` command."""

import sys

from .cli import main

sys.exit(main())
