"""What the API answers and accepts: pydantic schemas beside the tables of
:mod:`outreach.models` (the ``Public``/``In`` families of the FastAPI full-stack template).

Datetimes are aware UTC, as the tables hand them back (:class:`outreach.db.UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from outreach.models import CustomerProfile, Task


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
    value_tier: str
    flag: str
    close_reason: str
    missed: bool
    attempts: int
    snoozed_until: datetime | None
    detected_at: datetime
    due_at: datetime
    closed_at: datetime | None
    alert_count: int
    version: int


class TaskPage(BaseModel):
    """One page of a task list; pass ``next_cursor`` as ``cursor`` for the next (None: the
    last page)."""

    items: list[TaskPublic]
    next_cursor: str | None
    total: int = Field(description="tasks matching the filters, on every page")


class ErrorOut(BaseModel):
    """Every error answer: what went wrong and how to fix it, in words."""

    detail: str | list[dict[str, Any]]


class CustomerPublic(BaseModel):
    """Whom to contact and how (the customer's profile)."""

    model_config = ConfigDict(from_attributes=True)

    customer_id: str
    name: str
    preferred_channel: str
    phone: str
    email: str
    address: str
    territory: str
    value_tier: str
    value_eur: float | None
    left_at: datetime | None


class TaskDetail(TaskPublic):
    """One task with its evidence, history and the customer's contact details."""

    evidence: dict[str, Any]
    history: list[dict[str, Any]]
    customer: CustomerPublic | None = None

    @classmethod
    def of(cls, task: Task, profile: CustomerProfile | None = None) -> TaskDetail:
        history = [
            {"at": h.at, "actor": h.actor, "action": h.action, "detail": h.detail}
            for h in task.history
        ]
        return cls(
            **TaskPublic.model_validate(task).model_dump(),
            evidence=task.evidence,
            history=history,
            customer=CustomerPublic.model_validate(profile) if profile else None,
        )


Note = Field(default="", max_length=2000)
Reason = Field(max_length=2000, min_length=1)


class AssignIn(BaseModel):
    """Give an open task to someone (a known member of the team), or take it back."""

    assignee: str = Field(max_length=64, min_length=1)
    note: str = Note
    expected_version: int | None = None


class VersionIn(BaseModel):
    expected_version: int | None = None


class RescheduleIn(BaseModel):
    due_at: datetime
    reason: str = Reason
    expected_version: int | None = None


class SnoozeIn(BaseModel):
    until: datetime
    reason: str = Reason
    expected_version: int | None = None


class ReopenIn(BaseModel):
    reason: str = Reason
    expected_version: int | None = None


class OutcomeIn(BaseModel):
    """What a contact achieved. ``no_answer`` counts an attempt and keeps the task open; any
    other outcome closes it. ``linked_outcome`` closes the linked task too (one contact covers
    both); without it the linked task is told about the contact and stays open."""

    outcome: str = Field(max_length=32)
    note: str = Note
    linked_outcome: str | None = Field(default=None, max_length=32)
    expected_version: int | None = None


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
