"""REST API for tasks: list (filters, cursor pages), read, and act: transition, assign,
claim, reschedule, snooze, reopen, record an outcome. Every change takes ``expected_version``
and answers 409 if someone changed the task since it was read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy.orm import Session

from outreach.api.deps import (
    CHANGE_ERRORS,
    ERRORS,
    CurrentUser,
    NowDep,
    SessionDep,
    require_action,
    require_kind,
)
from outreach.crud import customers as customer_crud
from outreach.crud import tasks as crud
from outreach.crud import tokens
from outreach.crud.tasks import InvalidTransition, StaleTask, TaskFilter, TaskNotFound, UnknownStaff
from outreach.crud.tokens import Principal
from outreach.models import KINDS, STATUSES, Task
from outreach.rules import ASSIGNABLE_ROLES, ROLE_KINDS
from outreach.schemas import (
    AssignIn,
    OutcomeIn,
    ReopenIn,
    RescheduleIn,
    SnoozeIn,
    TaskDetail,
    TaskPage,
    TaskPublic,
    TransitionIn,
    VersionIn,
)

router = APIRouter(prefix="/api", tags=["tasks"], responses=ERRORS)

Kind = Literal["visit", "retention", "feedback"]
Status = Literal["open", "assigned", "in_progress", "done", "cancelled", "expired"]
Severity = Literal["low", "medium", "high", "critical"]
#: Largest page; a bigger ``limit`` is a 422 that says so, not silently clamped (issue 17).
PAGE_MAX = 500


def _get(session: Session, task_id: str, user: Principal) -> Task:
    try:
        task = crud.get_task(session=session, task_id=task_id)
    except TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}") from None
    require_kind(user, task.kind)
    return task


def _change(session: Session, task_id: str, change: Callable[[], Task]) -> TaskPublic:
    """Run ``change`` and commit; domain errors become 409 (or 422 for unknown staff)."""
    try:
        task = change()
        session.commit()
    except TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}") from None
    except UnknownStaff as exc:
        session.rollback()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
    except (InvalidTransition, StaleTask) as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return TaskPublic.model_validate(task)


def staff_for(session: Session, kind: str) -> frozenset[str]:
    """Whom a ``kind`` task may be given: people with a live token of the team's roles."""
    return tokens.staff(session=session, roles=ASSIGNABLE_ROLES[kind])


@router.get("/tasks", response_model=TaskPage)
def list_tasks(
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    kind: Kind | None = None,
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    open_only: bool = True,
    assignee: Annotated[str | None, Query(max_length=64, description="'' for unassigned")] = None,
    queue: Annotated[str | None, Query(max_length=64)] = None,
    territory: Annotated[str | None, Query(max_length=32)] = None,
    skill: Annotated[str | None, Query(max_length=32)] = None,
    severity: Severity | None = None,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
    due_before: datetime | None = None,
    due_after: datetime | None = None,
    q: Annotated[str | None, Query(max_length=100, description="customer, device or title")] = None,
    include_snoozed: bool = True,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TaskPage:
    """Tasks of your team, best first (priority, then due time), a page at a time.

    Without ``kind``, the kind your role works on (admins: pass one). ``status`` may repeat;
    without it, ``open_only`` picks open, assigned and in-progress tasks. Held-out retention
    tasks are never listed here.
    """
    mine = sorted(ROLE_KINDS.get(user.role, frozenset()))
    if kind is None:
        if len(mine) != 1:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, f"say which kind: one of {', '.join(mine)}"
            )
        kind = mine[0]  # type: ignore[assignment]
    require_kind(user, kind)
    statuses = tuple(status_) if status_ else (crud.OPEN if open_only else None)
    where = TaskFilter(
        kind=kind,
        statuses=statuses,
        assignee=assignee,
        queue=queue,
        territory=territory,
        skill=skill,
        severity=severity,
        customer_id=customer_id,
        due_before=due_before,
        due_after=due_after,
        search=q,
        include_holdout=False,
        include_snoozed=include_snoozed,
        now=now,
    )
    try:
        tasks = crud.list_tasks(session=session, where=where, after=cursor, limit=limit + 1)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
    more = len(tasks) > limit
    tasks = tasks[:limit]
    return TaskPage(
        items=[TaskPublic.model_validate(t) for t in tasks],
        next_cursor=crud.encode_cursor(tasks[-1]) if more else None,
        total=crud.count_tasks(session=session, where=where),
    )


@router.get("/tasks/{task_id}", response_model=TaskDetail)
def read_task(task_id: str, session: SessionDep, user: CurrentUser) -> TaskDetail:
    """The task with its evidence, history and the customer's contact details."""
    task = _get(session, task_id, user)
    return TaskDetail.of(
        task, customer_crud.get_profile(session=session, customer_id=task.customer_id)
    )


@router.post("/tasks/{task_id}/transition", response_model=TaskPublic, responses=CHANGE_ERRORS)
def transition_task(
    task_id: str, body: TransitionIn, session: SessionDep, user: CurrentUser, now: NowDep
) -> TaskPublic:
    task = _get(session, task_id, user)
    # Any transition can carry an assignee (issue 13: a technician reassigned a visit through
    # in_progress), so the rule is checked whatever the target state.
    giving = body.assignee not in (None, user.name)
    require_action(user, task.kind, task.assignee, "assign" if giving else "work")
    if body.assignee is not None and body.assignee not in staff_for(session, task.kind):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"nobody called {body.assignee!r} works on {task.kind} tasks",
        )
    # Read again under the row lock the transition takes: the task read above may be stale.
    session.rollback()
    return _change(
        session,
        task_id,
        lambda: crud.transition_task(
            session=session,
            task_id=task_id,
            to=body.to,
            actor=user.name,
            now=now,
            outcome=body.outcome,
            assignee=body.assignee,
            note=body.note,
            expected_version=body.expected_version,
        ),
    )


@router.post("/tasks/{task_id}/assign", response_model=TaskPublic, responses=CHANGE_ERRORS)
def assign(
    task_id: str, body: AssignIn, session: SessionDep, user: CurrentUser, now: NowDep
) -> TaskPublic:
    """Assign or reassign to a known member of the team (422 for anyone else)."""
    task = _get(session, task_id, user)
    action = "claim" if body.assignee == user.name else "assign"
    require_action(user, task.kind, task.assignee, action)
    staff = staff_for(session, task.kind)
    session.rollback()
    return _change(
        session,
        task_id,
        lambda: crud.assign_task(
            session=session,
            task_id=task_id,
            assignee=body.assignee,
            staff=staff,
            actor=user.name,
            now=now,
            note=body.note,
            expected_version=body.expected_version,
        ),
    )


@router.post("/tasks/{task_id}/claim", response_model=TaskPublic, responses=CHANGE_ERRORS)
def claim(
    task_id: str, body: VersionIn, session: SessionDep, user: CurrentUser, now: NowDep
) -> TaskPublic:
    """Take an unassigned task (or one of yours) yourself."""
    return assign(
        task_id,
        AssignIn(assignee=user.name, expected_version=body.expected_version),
        session,
        user,
        now,
    )


@router.post("/tasks/{task_id}/reschedule", response_model=TaskPublic, responses=CHANGE_ERRORS)
def reschedule(
    task_id: str, body: RescheduleIn, session: SessionDep, user: CurrentUser, now: NowDep
) -> TaskPublic:
    task = _get(session, task_id, user)
    require_action(user, task.kind, task.assignee, "reschedule")
    session.rollback()
    return _change(
        session,
        task_id,
        lambda: crud.reschedule_task(
            session=session,
            task_id=task_id,
            due_at=body.due_at,
            reason=body.reason,
            actor=user.name,
            now=now,
            expected_version=body.expected_version,
        ),
    )


@router.post("/tasks/{task_id}/snooze", response_model=TaskPublic, responses=CHANGE_ERRORS)
def snooze(
    task_id: str, body: SnoozeIn, session: SessionDep, user: CurrentUser, now: NowDep
) -> TaskPublic:
    task = _get(session, task_id, user)
    require_action(user, task.kind, task.assignee, "snooze")
    session.rollback()
    return _change(
        session,
        task_id,
        lambda: crud.snooze_task(
            session=session,
            task_id=task_id,
            until=body.until,
            reason=body.reason,
            actor=user.name,
            now=now,
            expected_version=body.expected_version,
        ),
    )


@router.post("/tasks/{task_id}/reopen", response_model=TaskPublic, responses=CHANGE_ERRORS)
def reopen(
    task_id: str, body: ReopenIn, session: SessionDep, user: CurrentUser, now: NowDep
) -> TaskPublic:
    """Dispatchers (visits) and admins reopen a closed task, with a reason."""
    task = _get(session, task_id, user)
    require_action(user, task.kind, task.assignee, "reopen")
    session.rollback()
    return _change(
        session,
        task_id,
        lambda: crud.reopen_task(
            session=session,
            task_id=task_id,
            reason=body.reason,
            actor=user.name,
            now=now,
            expected_version=body.expected_version,
        ),
    )


@router.post("/tasks/{task_id}/outcome", response_model=TaskPublic, responses=CHANGE_ERRORS)
def record_outcome(
    task_id: str, body: OutcomeIn, session: SessionDep, user: CurrentUser, now: NowDep
) -> TaskPublic:
    """Record a contact: ``no_answer`` keeps the task open and counts the attempt."""
    task = _get(session, task_id, user)
    require_action(user, task.kind, task.assignee, "work")
    session.rollback()
    return _change(
        session,
        task_id,
        lambda: crud.record_outcome(
            session=session,
            task_id=task_id,
            outcome=body.outcome,
            actor=user.name,
            now=now,
            note=body.note,
            linked_outcome=body.linked_outcome,
            expected_version=body.expected_version,
        )[0],
    )


@router.get("/staff")
def staff(session: SessionDep, user: CurrentUser, kind: Kind) -> list[str]:
    """Whom ``kind`` tasks can be assigned to."""
    require_kind(user, kind)
    return sorted(staff_for(session, kind))


@router.get("/meta")
def meta(user: CurrentUser) -> dict[str, Any]:
    return {"kinds": KINDS, "statuses": STATUSES, "you": {"name": user.name, "role": user.role}}
