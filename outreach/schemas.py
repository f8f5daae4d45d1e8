"""What the API answers and accepts: pydantic schemas beside the tables of
:mod:`outreach.models` (the ``Public``/``In`` families of the FastAPI full-stack template).

Datetimes are aware UTC, as the tables hand them back (:class:`outreach.db.UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from outreach.models import Task


class TaskPublic(BaseModel):
    """A task as lists and the task API show it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    status: str
    customer_id: str
    device_id: str | None
    title: str
    explanation: str
    suggestion: str
    severity: str
    confidence: float
    priority: int
    value_at_stake: float
    team: str
    queue: str
    assignee: str | None
    outcome: str | None
    linked_task_id: str | None
    holdout: bool
    escalated: bool
    detected_at: datetime
    due_at: datetime
    alert_count: int
    version: int


class TaskDetail(TaskPublic):
    """One task with its evidence and history."""

    evidence: dict[str, Any]
    history: list[dict[str, Any]]

    @classmethod
    def of(cls, task: Task) -> TaskDetail:
        history = [
            {"at": h.at, "actor": h.actor, "action": h.action, "detail": h.detail}
            for h in task.history
        ]
        return cls(
            **TaskPublic.model_validate(task).model_dump(),
            evidence=task.evidence,
            history=history,
        )


class TransitionIn(BaseModel):
    """A status change asked for through the API."""

    to: Literal["open", "assigned", "in_progress", "done", "cancelled", "expired"]
    outcome: str | None = Field(default=None, max_length=32)
    assignee: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=2000)
    expected_version: int | None = None


class DeadDelivery(BaseModel):
    """A webhook delivery that used up its attempts."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: str
    event: str
    attempts: int
    last_error: str
