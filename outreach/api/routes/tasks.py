"""REST API for tasks: list, read, and move along the lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, status
from sqlalchemy.orm import Session

from outreach.api.deps import CurrentUser, SessionDep, require_kind
from outreach.crud import tasks as crud
from outreach.crud.tasks import InvalidTransition, StaleTask, TaskNotFound
from outreach.crud.tokens import Principal
from outreach.models import KINDS, STATUSES, Task
from outreach.schemas import TaskDetail, TaskPublic, TransitionIn

router = APIRouter(prefix="/api", tags=["tasks"])

Kind = Literal["visit", "retention", "feedback"]


def _get(session: Session, task_id: str, user: Principal) -> Task:
    try:
        task = crud.get_task(session=session, task_id=task_id)
    except TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}") from None
    require_kind(user, task.kind)
    return task


@router.get("/tasks", response_model=list[TaskPublic])
def list_tasks(
    session: SessionDep, user: CurrentUser, kind: Kind, open_only: bool = True, limit: int = 200
) -> list[TaskPublic]:
    require_kind(user, kind)
    tasks = crud.list_tasks(session=session, kind=kind, open_only=open_only, include_holdout=False)
    return [TaskPublic.model_validate(t) for t in tasks[: max(1, min(limit, 1000))]]


@router.get("/tasks/{task_id}", response_model=TaskDetail)
def read_task(task_id: str, session: SessionDep, user: CurrentUser) -> TaskDetail:
    return TaskDetail.of(_get(session, task_id, user))


@router.post("/tasks/{task_id}/transition", response_model=TaskPublic)
def transition_task(
    task_id: str, body: TransitionIn, session: SessionDep, user: CurrentUser
) -> TaskPublic:
    task = _get(session, task_id, user)
    # Any transition can carry an assignee (issue 13: a technician reassigned a visit through
    # in_progress), so the rule is checked whatever the target state.
    if (
        task.kind == "visit"
        and user.role == "technician"
        and body.assignee not in (None, user.name)
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only dispatchers assign visits to others")
    # Read again under the row lock the transition takes: the task read above may be stale.
    session.rollback()
    try:
        task = crud.transition_task(
            session=session,
            task_id=task_id,
            to=body.to,
            actor=user.name,
            now=datetime.now(UTC),
            outcome=body.outcome,
            assignee=body.assignee,
            note=body.note,
            expected_version=body.expected_version,
        )
        session.commit()
    except (InvalidTransition, StaleTask) as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return TaskPublic.model_validate(task)


@router.get("/meta")
def meta(user: CurrentUser) -> dict[str, Any]:
    return {"kinds": KINDS, "statuses": STATUSES, "you": {"name": user.name, "role": user.role}}
