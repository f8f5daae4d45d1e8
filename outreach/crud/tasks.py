"""Tasks: reading them (filters, cursor pages, today's lists), their lifecycle (transitions,
assignment, rescheduling, snoozing, reopening, attempts; all with history), escalation,
expiry and counts.

Domain errors (:class:`TaskNotFound`, :class:`InvalidTransition`, :class:`StaleTask`,
:class:`UnknownStaff`) are raised here; the API turns them into HTTP answers. Who may do what
is :mod:`outreach.rules` (``may_act``), checked by the routes before they call in here.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql import Select

from forewarn.events import MaintenanceVisit
from outreach.crud.webhooks import add_delivery
from outreach.models import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    STATUSES,
    CustomerProfile,
    Task,
    TaskHistory,
    WebhookDelivery,
)
from outreach.rules import (
    EXPIRE_AFTER_DUE,
    KIND_OUTCOMES,
    TEAM,
    TRANSITIONS,
    OutreachRules,
    expires_at,
)

log = logging.getLogger(__name__)
SYSTEM_ACTOR = "forewarn"
NOTE_MAX = 2000


class TaskNotFound(LookupError):
    """No task with that id."""


class InvalidTransition(ValueError):
    """A status change the lifecycle does not allow (e.g. closing a closed task)."""


class StaleTask(RuntimeError):
    """Someone else changed the task since it was read; reload and try again.

    ``task`` is the task as it is now, so a page can say what changed and keep the note."""

    def __init__(self, message: str, task: Task | None = None) -> None:
        super().__init__(message)
        self.task = task


class UnknownStaff(ValueError):
    """An assignee who is nobody the service knows (no live token of a role for the task)."""


def add_history(
    *,
    session: Session,
    task_id: str,
    action: str,
    at: datetime,
    detail: dict[str, Any],
    actor: str = SYSTEM_ACTOR,
) -> None:
    """One line of a task's history: who did what, when (the service's clock)."""
    session.add(TaskHistory(task_id=task_id, at=at, actor=actor, action=action, detail=detail))


def get_task(*, session: Session, task_id: str) -> Task:
    """The task ``task_id`` with its history loaded; :class:`TaskNotFound` if there is none."""
    task = session.get(Task, task_id)
    if task is None:
        raise TaskNotFound(task_id)
    _ = list(task.history)  # loaded now, so it stays readable once the session has closed
    return task


# -- reading: filters and pages -----------------------------------------------------------------


@dataclass(frozen=True)
class TaskFilter:
    """What a list shows. Every field is optional; ``None`` means "any".

    ``assignee=""`` means unassigned. ``territory`` and ``skill`` are the two halves of a
    visit's queue (``north/hvac``). ``search`` matches the customer id or name, the device id
    or the title, case-insensitively. Snoozed tasks are left out until their time unless
    ``include_snoozed``; ``now`` is the clock that decides.
    """

    kind: str | None = None
    statuses: tuple[str, ...] | None = None
    customer_id: str | None = None
    assignee: str | None = None
    queue: str | None = None
    territory: str | None = None
    skill: str | None = None
    severity: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    search: str | None = None
    include_holdout: bool = True
    include_snoozed: bool = True
    now: datetime | None = None


OPEN = (*OPEN_STATUSES,)


def _filtered(query: Select[Any], f: TaskFilter) -> Select[Any]:
    if f.kind is not None:
        query = query.where(Task.kind == f.kind)
    if f.statuses is not None:
        query = query.where(Task.status.in_(f.statuses))
    if f.customer_id is not None:
        query = query.where(Task.customer_id == f.customer_id)
    if f.assignee is not None:
        query = query.where(
            Task.assignee.is_(None) | (Task.assignee == "")
            if f.assignee == ""
            else Task.assignee == f.assignee
        )
    if f.queue is not None:
        query = query.where(Task.queue == f.queue)
    if f.territory:
        query = query.where(Task.queue.startswith(f"{f.territory}/", autoescape=True))
    if f.skill:
        query = query.where(Task.queue.endswith(f"/{f.skill}", autoescape=True))
    if f.severity is not None:
        query = query.where(Task.severity == f.severity)
    if f.due_before is not None:
        query = query.where(Task.due_at < f.due_before)
    if f.due_after is not None:
        query = query.where(Task.due_at >= f.due_after)
    if f.search:
        needle = f.search.strip()[:100]
        named = select(CustomerProfile.customer_id).where(
            CustomerProfile.name.icontains(needle, autoescape=True)
        )
        query = query.where(
            or_(
                Task.customer_id.icontains(needle, autoescape=True),
                Task.device_id.icontains(needle, autoescape=True),
                Task.title.icontains(needle, autoescape=True),
                Task.customer_id.in_(named),
            )
        )
    if not f.include_holdout:
        query = query.where(Task.holdout.is_(False))
    if not f.include_snoozed and f.now is not None:
        query = query.where(Task.snoozed_until.is_(None) | (Task.snoozed_until <= f.now))
    return query


ORDER = (Task.priority.desc(), Task.due_at, Task.id)


def encode_cursor(task: Task) -> str:
    """An opaque cursor: the sort key of the last task a page showed."""
    raw = json.dumps([task.priority, task.due_at.isoformat(), task.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, datetime, str]:
    """The sort key in ``cursor``; ValueError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        priority, due, task_id = json.loads(raw)
        return int(priority), datetime.fromisoformat(due), str(task_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cursor {cursor[:40]!r} is not a cursor this API gave out") from exc


def list_tasks(
    *,
    session: Session,
    kind: str | None = None,
    open_only: bool = False,
    customer_id: str | None = None,
    include_holdout: bool = True,
    where: TaskFilter | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[Task]:
    """Tasks matching ``where`` (or the shorthand arguments), highest priority first, then
    earliest due; ``after`` a cursor (:func:`encode_cursor`) continues a page."""
    f = where or TaskFilter(
        kind=kind,
        statuses=OPEN if open_only else None,
        customer_id=customer_id,
        include_holdout=include_holdout,
    )
    query = _filtered(select(Task), f).order_by(*ORDER)
    if after is not None:
        priority, due, task_id = decode_cursor(after)
        query = query.where(
            or_(
                Task.priority < priority,
                and_(Task.priority == priority, Task.due_at > due),
                and_(Task.priority == priority, Task.due_at == due, Task.id > task_id),
            )
        )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_tasks(*, session: Session, where: TaskFilter) -> int:
    return session.scalar(_filtered(select(func.count()).select_from(Task), where)) or 0


def capacity(*, rules: OutreachRules, kind: str) -> int:
    """Tasks of ``kind`` the team can finish in a day."""
    return rules.capacity.get(TEAM[kind], 20)


def daily_list(
    *, session: Session, rules: OutreachRules, kind: str, now: datetime | None = None
) -> list[Task]:
    """Today's open tasks of a kind, best first, cut to the team's capacity (snoozed tasks
    wait until their time when ``now`` is given)."""
    where = TaskFilter(kind=kind, statuses=OPEN, include_snoozed=now is None, now=now)
    return list_tasks(session=session, where=where, limit=capacity(rules=rules, kind=kind))


# -- the lifecycle --------------------------------------------------------------------------------


def _locked(session: Session, task_id: str, expected_version: int | None) -> Task:
    task = session.get(Task, task_id, with_for_update=True)
    if task is None:
        raise TaskNotFound(task_id)
    if expected_version is not None and task.version != expected_version:
        raise StaleTask(
            f"task {task_id} is at version {task.version}, "
            f"you read version {expected_version}: reload it",
            task,
        )
    return task


def _flush(session: Session, task_id: str) -> None:
    try:
        session.flush()
    except StaleDataError:
        raise StaleTask(f"task {task_id} changed while you were editing: reload it") from None


def _changed(
    session: Session, task: Task, action: str, actor: str, now: datetime, detail: dict[str, Any]
) -> None:
    task.updated_at = now
    add_history(
        session=session, task_id=task.id, action=action, at=now, detail=detail, actor=actor[:64]
    )
    add_delivery(session=session, task=task, event=f"task.{action}", now=now)
    _flush(session, task.id)
    # Ids and sizes only: notes and task text quote customers (issue 13).
    text = str(detail.get("note") or detail.get("reason") or "")
    change = f"{detail['from']} -> {action}" if detail.get("from") in STATUSES else action
    log.info("task %s %s by %s (note: %d characters)", task.id, change, actor[:64], len(text))


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
    task = _locked(session, task_id, expected_version)
    if to not in TRANSITIONS.get(task.status, ()):
        raise InvalidTransition(
            f"a {task.status} task cannot become {to} (allowed: "
            f"{', '.join(TRANSITIONS.get(task.status, ())) or 'none, it is closed'})"
        )
    if to == "done":
        if outcome not in KIND_OUTCOMES[task.kind] or outcome == "no_answer":
            raise InvalidTransition(
                f"closing a {task.kind} task needs an outcome, one of "
                f"{', '.join(o for o in KIND_OUTCOMES[task.kind] if o != 'no_answer')}; got "
                f"{outcome!r} ('no answer' is an attempt: the task stays open)"
            )
        task.outcome = outcome
    if assignee is not None:
        task.assignee = assignee[:64] or None
    before = task.status
    task.status = to
    if to not in OPEN_STATUSES:
        task.open_key = None
        task.closed_at = now
    _changed(
        session,
        task,
        to,
        actor,
        now,
        {"from": before, "outcome": outcome, "assignee": assignee, "note": note[:NOTE_MAX]},
    )
    return task


def assign_task(
    *,
    session: Session,
    task_id: str,
    assignee: str,
    staff: frozenset[str],
    actor: str,
    now: datetime,
    note: str = "",
    expected_version: int | None = None,
) -> Task:
    """Assign (or reassign, or claim) an open task to ``assignee``, one of ``staff``."""
    if assignee not in staff:
        raise UnknownStaff(
            f"nobody called {assignee[:64]!r} works on these tasks; assign one of: "
            f"{', '.join(sorted(staff)) or 'nobody yet (create their token first)'}"
        )
    task = _locked(session, task_id, expected_version)
    if task.status not in OPEN_STATUSES:
        raise InvalidTransition(f"a {task.status} task cannot be assigned: reopen it first")
    before = task.assignee
    task.assignee = assignee
    if task.status == "open":
        task.status = "assigned"
    _changed(
        session,
        task,
        "assigned",
        actor,
        now,
        {"from": before, "assignee": assignee, "note": note[:NOTE_MAX]},
    )
    return task


def reschedule_task(
    *,
    session: Session,
    task_id: str,
    due_at: datetime,
    reason: str,
    actor: str,
    now: datetime,
    expected_version: int | None = None,
) -> Task:
    """Move an open task's due time, with a reason; escalation starts over from it."""
    if not reason.strip():
        raise InvalidTransition("rescheduling needs a reason (the customer asked, no parts, ...)")
    task = _locked(session, task_id, expected_version)
    if task.status not in OPEN_STATUSES:
        raise InvalidTransition(f"a {task.status} task cannot be rescheduled: reopen it first")
    before = task.due_at
    task.due_at, task.escalated = due_at, False
    _changed(
        session,
        task,
        "rescheduled",
        actor,
        now,
        {"from": before.isoformat(), "to": due_at.isoformat(), "reason": reason[:NOTE_MAX]},
    )
    return task


def snooze_task(
    *,
    session: Session,
    task_id: str,
    until: datetime,
    reason: str,
    actor: str,
    now: datetime,
    expected_version: int | None = None,
) -> Task:
    """Hide an open task from the lists until ``until``, with a reason."""
    if not reason.strip():
        raise InvalidTransition("snoozing needs a reason (waiting for the customer, ...)")
    if until <= now:
        raise InvalidTransition(f"snooze until a time after now ({now:%Y-%m-%d %H:%M} UTC)")
    task = _locked(session, task_id, expected_version)
    if task.status not in OPEN_STATUSES:
        raise InvalidTransition(f"a {task.status} task cannot be snoozed")
    task.snoozed_until = until
    _changed(
        session,
        task,
        "snoozed",
        actor,
        now,
        {"until": until.isoformat(), "reason": reason[:NOTE_MAX]},
    )
    return task


def reopen_task(
    *,
    session: Session,
    task_id: str,
    reason: str,
    actor: str,
    now: datetime,
    expected_version: int | None = None,
) -> Task:
    """Open a closed task again (a mistake must not be permanent); needs a reason. Refused
    while another open task stands for the same root cause: work on that one."""
    if not reason.strip():
        raise InvalidTransition("reopening needs a reason")
    task = _locked(session, task_id, expected_version)
    if task.status not in CLOSED_STATUSES:
        raise InvalidTransition(f"a {task.status} task is open already")
    other = session.scalars(select(Task.id).where(Task.open_key == task.dedup_key)).first()
    if other is not None:
        raise InvalidTransition(
            f"task {other} is open for the same {task.kind} already: work on that one"
        )
    before, outcome = task.status, task.outcome
    task.status = "assigned" if task.assignee else "open"
    task.open_key, task.closed_at, task.outcome = task.dedup_key, None, None
    task.snoozed_until = None
    try:
        _changed(
            session,
            task,
            "reopened",
            actor,
            now,
            {"from": before, "outcome": outcome, "reason": reason[:NOTE_MAX]},
        )
    except IntegrityError:
        raise InvalidTransition(
            f"another {task.kind} task for the same root cause opened meanwhile: reload"
        ) from None
    return task


def record_attempt(
    *,
    session: Session,
    task_id: str,
    actor: str,
    now: datetime,
    note: str = "",
    expected_version: int | None = None,
) -> Task:
    """ "No answer": one more attempt; the task stays open (issue 17)."""
    task = _locked(session, task_id, expected_version)
    if task.status not in OPEN_STATUSES:
        raise InvalidTransition(f"a {task.status} task takes no more attempts")
    task.attempts += 1
    _changed(
        session,
        task,
        "no_answer",
        actor,
        now,
        {"attempt": task.attempts, "note": note[:NOTE_MAX]},
    )
    return task


def record_outcome(
    *,
    session: Session,
    task_id: str,
    outcome: str,
    actor: str,
    now: datetime,
    note: str = "",
    expected_version: int | None = None,
    linked_outcome: str | None = None,
) -> tuple[Task, Task | None]:
    """What the contact achieved: "no answer" is an attempt (the task stays open), any other
    outcome closes the task. One contact covers both: a linked open task is closed too with
    ``linked_outcome``, or told what happened if that is None. Returns (task, linked task)."""
    if outcome == "no_answer":
        task = record_attempt(
            session=session,
            task_id=task_id,
            actor=actor,
            now=now,
            note=note,
            expected_version=expected_version,
        )
        return task, None
    task = transition_task(
        session=session,
        task_id=task_id,
        to="done",
        actor=actor,
        now=now,
        outcome=outcome,
        note=note,
        expected_version=expected_version,
    )
    linked = session.get(Task, task.linked_task_id) if task.linked_task_id else None
    if linked is None or linked.status not in OPEN_STATUSES:
        return task, None
    via = {"via_task": task.id, "via_outcome": outcome}
    if linked_outcome:
        if linked_outcome not in KIND_OUTCOMES[linked.kind] or linked_outcome == "no_answer":
            raise InvalidTransition(
                f"the linked {linked.kind} task's outcome must be one of "
                f"{', '.join(o for o in KIND_OUTCOMES[linked.kind] if o != 'no_answer')}"
            )
        linked.outcome, linked.status = linked_outcome, "done"
        linked.open_key, linked.closed_at = None, now
        _changed(session, linked, "done", actor, now, {"outcome": linked_outcome, **via})
    else:
        _changed(session, linked, "contacted", actor, now, {"note": note[:NOTE_MAX], **via})
    return task, linked


def close_as_missed(
    *,
    session: Session,
    task: Task,
    reason: str,
    now: datetime,
    detail: dict[str, Any],
    status: str = "cancelled",
) -> None:
    """Close ``task`` (locked by the caller) because of what happened to the customer, not
    because anyone worked it: the reason is kept and it counts as a miss."""
    before = task.status
    task.status, task.open_key, task.closed_at = status, None, now
    task.close_reason, task.missed = reason[:200], True
    _changed(session, task, status, SYSTEM_ACTOR, now, {"from": before, "reason": reason, **detail})


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
            detail={"due_at": task.due_at.isoformat()},
        )
        add_delivery(session=session, task=task, event="task.escalated", now=now)
        ids.append(task.id)
    return ids


def expire_stale(*, session: Session, now: datetime) -> list[str]:
    """Close open tasks left :data:`outreach.rules.EXPIRE_AFTER_DUE` past their due time as
    ``expired`` (a miss); return their ids."""
    ids = []
    for kind, grace in EXPIRE_AFTER_DUE.items():
        stale = session.scalars(
            select(Task)
            .where(
                Task.kind == kind,
                Task.status.in_(OPEN_STATUSES),
                Task.due_at < now - grace,
            )
            .with_for_update()
        )
        for task in stale:
            days = grace.days
            reason = f"expired: nobody acted within {days} days after it was due"
            close_as_missed(
                session=session,
                task=task,
                reason=reason,
                now=now,
                detail={
                    "due_at": task.due_at.isoformat(),
                    "expired_at": expires_at(kind, task.due_at).isoformat(),
                },
                status="expired",
            )
            ids.append(task.id)
    return ids


def counts(*, session: Session) -> dict[str, dict[tuple[str, str], int]]:
    """Tasks by (kind, status), proactive misses by (kind, reason) and webhook deliveries by
    (event, status), for metrics."""
    tasks = session.execute(
        select(Task.kind, Task.status, func.count()).group_by(Task.kind, Task.status)
    )
    reason = func.coalesce(func.nullif(Task.close_reason, ""), Task.flag)
    misses = session.execute(
        select(Task.kind, reason, func.count())
        .where(Task.missed.is_(True))
        .group_by(Task.kind, reason)
    )
    deliveries = session.execute(
        select(WebhookDelivery.event, WebhookDelivery.status, func.count()).group_by(
            WebhookDelivery.event, WebhookDelivery.status
        )
    )
    return {
        "tasks": {(k, s): n for k, s, n in tasks},
        "misses": {(k, r): n for k, r, n in misses},
        "deliveries": {(e, s): n for e, s, n in deliveries},
    }


def proactive_kpis(*, session: Session, kind: str) -> dict[str, Any]:
    """How proactive the team was with ``kind`` tasks: worked before the customer acted
    (done, not flagged) versus misses (the customer left or complained first, or the task
    expired), with the misses by reason. Held-out tasks are not counted."""
    rows = session.execute(
        select(Task.status, Task.missed, Task.close_reason, Task.flag).where(
            Task.kind == kind, Task.holdout.is_(False)
        )
    ).all()
    reasons: dict[str, int] = {}
    for _status, missed, close_reason, flag in rows:
        if missed:
            key = (close_reason or flag).split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    worked = sum(1 for status, missed, _, _ in rows if status == "done" and not missed)
    missed_n = sum(reasons.values())
    decided = worked + missed_n
    return {
        "kind": kind,
        "tasks": len(rows),
        "open": sum(1 for status, *_ in rows if status in OPEN_STATUSES),
        "worked_in_time": worked,
        "missed": missed_n,
        "missed_by_reason": reasons,
        "miss_rate": round(missed_n / decided, 4) if decided else None,
    }


#: The field-service system, as the actor of a task closed by its record of a visit.
FSM_ACTOR = "field-service system"
#: What a recorded visit's outcome does to the device's open visit task (None: stays open).
VISIT_OUTCOME = {"fixed": "fixed", "replaced": "fixed", "no_fault_found": "no_fault_found"}


def apply_maintenance(*, session: Session, visit: MaintenanceVisit, now: datetime) -> list[str]:
    """A technician's visit recorded in the field-service system: the device's open visit
    tasks raised before it are closed with its outcome (``fixed`` or ``no_fault_found``), or,
    for ``not_fixed`` or no outcome, keep open with a note. Safe to call again with the same
    visit (a closed task is not touched; a note is added once). Returns the ids changed."""
    tasks = session.scalars(
        select(Task)
        .where(
            Task.device_id == visit.device_id,
            Task.kind == "visit",
            Task.status.in_(OPEN_STATUSES),
            Task.detected_at <= visit.event_time,
        )
        .with_for_update()
    ).all()
    note = (
        f"visit {visit.visit_id} on {visit.event_time:%Y-%m-%d %H:%M} UTC ({visit.kind}"
        f"{', ' + visit.technician if visit.technician else ''}): "
        f"{visit.outcome or 'no outcome recorded'}. {visit.note}"
    ).strip()
    changed = []
    for task in tasks:
        outcome = VISIT_OUTCOME.get(visit.outcome or "")
        if outcome is not None:
            transition_task(
                session=session,
                task_id=task.id,
                to="done",
                actor=FSM_ACTOR,
                now=now,
                outcome=outcome,
                note=note,
            )
        elif not any(h.detail.get("visit_id") == visit.visit_id for h in task.history):
            add_history(
                session=session,
                task_id=task.id,
                action="noted",
                at=now,
                actor=FSM_ACTOR,
                detail={"visit_id": visit.visit_id, "note": note[:NOTE_MAX]},
            )
            task.updated_at = now
        else:
            continue
        changed.append(task.id)
    return changed
