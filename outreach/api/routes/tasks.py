"""REST API: tasks, daily lists (JSON and CSV), customer timelines, uplift, webhook admin."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from outreach.api.deps import ROLE_KINDS, CurrentUser, SettingsDep, StoreDep, require_kind
from outreach.models import KINDS, STATUSES, Task
from outreach.store import InvalidTransition, StaleTask, TaskNotFound
from outreach.timeline import customer_timeline
from outreach.uplift import churn_times, uplift_report

router = APIRouter(prefix="/api", tags=["tasks"])

Kind = Literal["visit", "retention", "feedback"]


class TaskPublic(BaseModel):
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
    evidence: dict[str, Any]
    history: list[dict[str, Any]]


class TransitionIn(BaseModel):
    to: Literal["open", "assigned", "in_progress", "done", "cancelled", "expired"]
    outcome: str | None = Field(default=None, max_length=32)
    assignee: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=2000)
    expected_version: int | None = None


def public(task: Task) -> TaskPublic:
    return TaskPublic.model_validate(task)


def _get(store: StoreDep, task_id: str, user: CurrentUser) -> Task:
    try:
        task = store.get(task_id)
    except TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}") from None
    require_kind(user, task.kind)
    return task


@router.get("/tasks", response_model=list[TaskPublic])
def list_tasks(
    store: StoreDep, user: CurrentUser, kind: Kind, open_only: bool = True, limit: int = 200
) -> list[TaskPublic]:
    require_kind(user, kind)
    tasks = store.tasks(kind=kind, open_only=open_only, include_holdout=False)
    return [public(t) for t in tasks[: max(1, min(limit, 1000))]]


@router.get("/tasks/{task_id}", response_model=TaskDetail)
def read_task(task_id: str, store: StoreDep, user: CurrentUser) -> TaskDetail:
    task = _get(store, task_id, user)
    history = [
        {"at": h.at, "actor": h.actor, "action": h.action, "detail": h.detail} for h in task.history
    ]
    return TaskDetail(**public(task).model_dump(), evidence=task.evidence, history=history)


@router.post("/tasks/{task_id}/transition", response_model=TaskPublic)
def transition_task(
    task_id: str, body: TransitionIn, store: StoreDep, user: CurrentUser
) -> TaskPublic:
    task = _get(store, task_id, user)
    # Any transition can carry an assignee (issue 13: a technician reassigned a visit through
    # in_progress), so the rule is checked whatever the target state.
    if (
        task.kind == "visit"
        and user.role == "technician"
        and body.assignee not in (None, user.name)
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only dispatchers assign visits to others")
    try:
        return public(
            store.transition(
                task.id,
                to=body.to,
                actor=user.name,
                outcome=body.outcome,
                assignee=body.assignee,
                note=body.note,
                expected_version=body.expected_version,
            )
        )
    except InvalidTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except StaleTask as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


# The CSV route comes first: /lists/{kind} would otherwise take 'visit.csv' as a kind.
CSV_COLUMNS = (
    "priority",
    "id",
    "title",
    "customer_id",
    "device_id",
    "severity",
    "queue",
    "value_at_stake",
    "due_at",
    "status",
    "assignee",
    "explanation",
    "suggestion",
)


@router.get("/lists/{kind}.csv")
def daily_list_csv(kind: Kind, store: StoreDep, user: CurrentUser) -> Response:
    require_kind(user, kind)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for t in store.daily_list(kind):
        row = public(t).model_dump()
        writer.writerow([_safe_cell(row[c]) for c in CSV_COLUMNS])
    return Response(
        buffer.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{kind}-list.csv"'},
    )


#: First characters that make a spreadsheet read a cell as a formula. TAB and CR count because
#: Excel skips them before the formula sign, and Excel and LibreOffice take the full-width
#: forms for the ASCII ones (OWASP "CSV Injection"; issue 13).
FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def _safe_cell(value: Any) -> Any:
    """``value``, with a leading apostrophe if a spreadsheet would run it as a formula."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


@router.get("/lists/{kind}", response_model=list[TaskPublic])
def daily_list(kind: Kind, store: StoreDep, user: CurrentUser) -> list[TaskPublic]:
    """Today's list for the team: open tasks, best first, cut to the team's capacity."""
    require_kind(user, kind)
    return [public(t) for t in store.daily_list(kind)]


@router.get("/customers/{customer_id}/timeline")
def timeline(
    customer_id: str, store: StoreDep, settings: SettingsDep, user: CurrentUser
) -> list[dict[str, Any]]:
    """The customer's orders, tickets and tasks across channels, newest first. Visible to a
    role only for customers it has a task for (need to know)."""
    mine = ROLE_KINDS.get(user.role, frozenset())
    if not any(t.kind in mine for t in store.tasks(customer_id=customer_id)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"role {user.role} has no task for customer {customer_id}"
        )
    return customer_timeline(store, settings.lake_dir, customer_id)


@router.get("/uplift")
def uplift(store: StoreDep, settings: SettingsDep, user: CurrentUser) -> dict[str, Any]:
    require_kind(user, "retention")
    return uplift_report(store, churn_times(settings.lake_dir))


@router.get("/meta")
def meta(user: CurrentUser) -> dict[str, Any]:
    return {"kinds": KINDS, "statuses": STATUSES, "you": {"name": user.name, "role": user.role}}
