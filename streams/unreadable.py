"""Stored states a step could not read: what the agents report instead of stopping.

A damaged changelog record, or one written by a version that changed a field's type, raised
in the agent on every batch that met its key: the worker stopped, restarted and stopped again,
and nothing was scored. The steps (streams/device_faults/step.py,
streams/customer_risk/step.py) start such a key over from no history and report it here; the
agents log it and keep the document whole as a dead letter (:func:`as_letter`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from forewarn.events import DeadLetter


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


def as_letter(changelog: str, bad: Unreadable) -> DeadLetter:
    """``bad`` as a dead letter of the table's ``changelog`` topic, the document whole.

    Its id is its own (one batch can find several) and within an id's 64 characters whatever
    the group's name; partition and offset are those of the event that needed the state."""
    from streams.dead_letters import dead_letter  # the Faust app: not for the steps' import

    raw = json.dumps(bad.document, default=repr).encode()
    made = dead_letter("state", bad.partition, bad.offset, raw, bad.reason)
    digest = hashlib.sha256(f"{changelog}/{bad.key}/{made.event_id}".encode()).hexdigest()
    return made.model_copy(
        update={"event_id": f"dlq-state-{digest[:24]}", "source_topic": changelog}
    )
