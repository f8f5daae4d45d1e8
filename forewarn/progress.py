"""Progress bars that suit both a terminal and a CI log."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(**kwargs: Any) -> tqdm:
    """A tqdm bar that redraws twice a second on a terminal and every 15 s in a log file."""
    kwargs.setdefault("mininterval", 0.5 if sys.stderr.isatty() else 15.0)
    return tqdm(**kwargs)
