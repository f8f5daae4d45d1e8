"""Stored states a step could not read: what the agents report instead of stopping.

A damaged changelog record, or one written by a version that changed a field's type, raised
in the agent on every batch that met its key: the worker stopped, restarted and stopped again,
and nothing was scored. The steps (streams/device_faults/step.py,
streams/customer_risk/step.py) start such a key over from no history and report it here; the
agents log it and keep the document whole as a dead letter
(:func:`streams.dead_letters.unreadable_letters`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Unreadable:
    """A stored state that could not be read: ``key`` started over from no history. The event
    that needed it is ``partition``@``offset``; ``document`` is what was stored."""

    key: str
    partition: int
    offset: int
    document: Any
    reason: str


def reason_of(what: str, exc: Exception) -> str:
    """The one-line reason for an unreadable state of ``what`` ("device D00002")."""
    return f"the stored state of {what} could not be read ({exc!r}); it starts over from no history"
