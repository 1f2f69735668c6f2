"""``python -m asymlib ...``: the same as the ``asymlib`` command (``execution.cli``)."""

import sys

from .execution.cli import main

sys.exit(main())
