"""Tasks: reading them, their lifecycle (transitions with history), escalation and counts.

Domain errors (:class:`TaskNotFound`, :class:`InvalidTransition`, :class:`StaleTask`) are
raised here; the API turns them into HTTP answers.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from outreach.crud.webhooks import add_delivery
from outreach.models import OPEN_STATUSES, Task, TaskHistory, WebhookDelivery
from outreach.rules import KIND_OUTCOMES, TEAM, TRANSITIONS, OutreachRules

log = logging.getLogger(__name__)
SYSTEM_ACTOR = "forewarn"


class TaskNotFound(LookupError):
    """No task with that id."""


class InvalidTransition(ValueError):
    """A status change the lifecycle does not allow (e.g. closing a closed task)."""


class StaleTask(RuntimeError):
    """Someone else changed the task since it was read; reload and try again."""


def add_history(
    *,
    session: Session,
    task_id: str,
    action: str,
    at: datetime,
    detail: dict[str, Any],
    actor: str = SYSTEM_ACTOR,
) -> None:
    """One line of a task's history: who did what, when."""
    session.add(TaskHistory(task_id=task_id, at=at, actor=actor, action=action, detail=detail))


def get_task(*, session: Session, task_id: str) -> Task:
    """The task ``task_id`` with its history loaded; :class:`TaskNotFound` if there is none."""
    task = session.get(Task, task_id)
    if task is None:
        raise TaskNotFound(task_id)
    _ = list(task.history)  # loaded now, so it stays readable once the session has closed
    return task


def list_tasks(
    *,
    session: Session,
    kind: str | None = None,
    open_only: bool = False,
    customer_id: str | None = None,
    include_holdout: bool = True,
) -> list[Task]:
    """Tasks, highest priority first."""
    query = select(Task).order_by(Task.priority.desc(), Task.due_at, Task.id)
    if kind is not None:
        query = query.where(Task.kind == kind)
    if open_only:
        query = query.where(Task.status.in_(OPEN_STATUSES))
    if customer_id is not None:
        query = query.where(Task.customer_id == customer_id)
    if not include_holdout:
        query = query.where(Task.holdout.is_(False))
    return list(session.scalars(query))


def capacity(*, rules: OutreachRules, kind: str) -> int:
    """Tasks of ``kind`` the team can finish in a day."""
    return rules.capacity.get(TEAM[kind], 20)


def daily_list(*, session: Session, rules: OutreachRules, kind: str) -> list[Task]:
    """Today's open tasks of a kind, best first, cut to the team's capacity."""
    tasks = list_tasks(session=session, kind=kind, open_only=True)
    return tasks[: capacity(rules=rules, kind=kind)]


def transition_task(
    *,
    session: Session,
    task_id: str,
    to: str,
    actor: str,
    now: datetime,
    outcome: str | None = None,
    assignee: str | None = None,
    note: str = "",
    expected_version: int | None = None,
) -> Task:
    """Move a task along its lifecycle, with history; raise a domain error if not allowed.

    ``expected_version`` is the version the caller read: if someone changed the task since,
    :class:`StaleTask` is raised instead of overwriting their change.
    """
    try:
        task = session.get(Task, task_id, with_for_update=True)
        if task is None:
            raise TaskNotFound(task_id)
        if expected_version is not None and task.version != expected_version:
            raise StaleTask(
                f"task {task_id} is at version {task.version}, "
                f"you read version {expected_version}: reload it"
            )
        if to not in TRANSITIONS.get(task.status, ()):
            raise InvalidTransition(
                f"a {task.status} task cannot become {to} (allowed: "
                f"{', '.join(TRANSITIONS.get(task.status, ())) or 'none, it is closed'})"
            )
        if to == "done":
            if outcome not in KIND_OUTCOMES[task.kind]:
                raise InvalidTransition(
                    f"closing a {task.kind} task needs an outcome, one of "
                    f"{', '.join(KIND_OUTCOMES[task.kind])}; got {outcome!r}"
                )
            task.outcome = outcome
        if assignee is not None:
            task.assignee = assignee[:64]
        before = task.status
        task.status = to
        task.updated_at = now
        if to not in OPEN_STATUSES:
            task.open_key = None
            task.closed_at = now
        add_history(
            session=session,
            task_id=task.id,
            action=to,
            at=now,
            detail={"from": before, "outcome": outcome, "assignee": assignee, "note": note[:2000]},
            actor=actor[:64],
        )
        add_delivery(session=session, task=task, event=f"task.{to}", now=now)
        session.flush()
    except StaleDataError:
        raise StaleTask(f"task {task_id} changed while you were editing: reload it") from None
    # Ids and sizes only: notes and task text quote customers (issue 13).
    log.info(
        "task %s %s -> %s by %s (note: %d characters)", task_id, before, to, actor[:64], len(note)
    )
    return task


def escalate_overdue(*, session: Session, rules: OutreachRules, now: datetime) -> list[str]:
    """Raise the priority of open tasks past their due time, once each; return their ids."""
    overdue = session.scalars(
        select(Task).where(
            Task.status.in_(OPEN_STATUSES), Task.escalated.is_(False), Task.due_at < now
        )
    )
    ids = []
    for task in overdue:
        task.escalated = True
        task.priority = min(100, task.priority + rules.escalation_bump)
        task.updated_at = now
        add_history(
            session=session,
            task_id=task.id,
            action="escalated",
            at=now,
            detail={"due_at": str(task.due_at)},
        )
        add_delivery(session=session, task=task, event="task.escalated", now=now)
        ids.append(task.id)
    return ids


def counts(*, session: Session) -> dict[str, dict[tuple[str, str], int]]:
    """Tasks by (kind, status) and webhook deliveries by (event, status), for metrics."""
    tasks = session.execute(
        select(Task.kind, Task.status, func.count()).group_by(Task.kind, Task.status)
    )
    deliveries = session.execute(
        select(WebhookDelivery.event, WebhookDelivery.status, func.count()).group_by(
            WebhookDelivery.event, WebhookDelivery.status
        )
    )
    return {
        "tasks": {(k, s): n for k, s, n in tasks},
        "deliveries": {(e, s): n for e, s, n in deliveries},
    }
