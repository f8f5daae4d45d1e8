"""The worker with its device step off: the most a faster device core could give.

``python -m bench.ceiling_worker worker -l info`` is ``python -m streams worker`` with the
device agent's detection step replaced by one that scores nothing: readings still come as
runs, are validated, archived at checkpoints and acknowledged as in the worker, but no
detector runs, no device state is read or written and no device alert is raised. The customer
agent, the task sink and the intake run as in the worker.

bench/stream.py drains the same topics with it, in the same run as the worker. Issue 19's
items 2 and 3 (a vectorised detector core, device states in arrays) can at most take the
step's cost away, so this rate bounds what they could reach on the machine it runs on.
"""

from __future__ import annotations

import runpy
from collections.abc import Iterable
from typing import Any

from forewarn.settings import keep_files_private
from streams.device_faults.step import Outcome


def score_nothing(readings: Iterable[Any]) -> Outcome:
    """The step's signature, without its work: no alert, no state, no count."""
    return Outcome()


if __name__ == "__main__":
    keep_files_private()  # before the app creates its data folder, as streams/__main__ does
    from streams.device_faults import agents

    agents.step.run = score_nothing  # type: ignore[method-assign]
    runpy.run_module("streams", run_name="__main__", alter_sys=True)
