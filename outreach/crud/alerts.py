"""Alerts in: one task per root cause out.

:func:`upsert_alert` is idempotent twice over: a replayed alert (same ``alert_id``) changes
nothing, and a new alert for a root cause that already has an open task refreshes that task
instead of adding one. Every change also queues a webhook delivery in the same transaction.
Two writers racing on one root cause: the loser's transaction fails on the unique ``open_key``
(``IntegrityError``) and is retried by the caller (:meth:`outreach.store.TaskStore.upsert_alert`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from forewarn.events import Alert, OutreachTask
from forewarn.value import churn_probability, value_at_risk
from outreach.crud.tasks import add_history, close_as_missed
from outreach.crud.webhooks import add_delivery
from outreach.models import OPEN_STATUSES, AlertSeen, CustomerProfile, Task
from outreach.rules import (
    LEFT_BEFORE_CONTACT,
    SEVERITY_RANK,
    TASK_KIND,
    TEAM,
    OutreachRules,
    due_of,
    in_holdout,
    priority_of,
    queue_of,
    suggestion_of,
    task_key,
    title_of,
)

#: Kinds of task that are pointless once the customer has left (a reply is still owed).
GONE_KINDS = ("visit", "retention")


def upsert_alert(
    *, session: Session, alert: Alert, rules: OutreachRules, now: datetime
) -> OutreachTask | None:
    """Store ``alert`` as a new task or as fresh evidence on the open one; return the task,
    or None when the root cause was fixed recently and the alert is suppressed."""
    seen = session.get(AlertSeen, alert.alert_id)
    if seen is not None:
        if seen.task_id is None:
            return None
        return as_event(session.get_one(Task, seen.task_id), created=False)
    kind = TASK_KIND[alert.kind]
    key = task_key(alert, kind)
    task = session.scalars(select(Task).where(Task.open_key == key).with_for_update()).one_or_none()
    profile = session.get(CustomerProfile, alert.customer_id)
    if task is None and (
        _recently_done(session, alert, kind, key, rules) or _gone(profile, alert, kind)
    ):
        session.add(AlertSeen(alert_id=alert.alert_id, task_id=None))
        return None
    if task is None:
        task = _closed_to_join(session, alert, kind, key, profile, rules)
        if task is not None:
            task.evidence = {"alerts": [*task.evidence.get("alerts", [])[-19:], _evidence(alert)]}
            task.alert_count += 1
            session.add(AlertSeen(alert_id=alert.alert_id, task_id=task.id))
            return as_event(task, created=False)
    created = task is None
    if task is None:
        task = _new_task(session, alert, kind, key, profile, now, rules)
        action = "created"
    else:
        _refresh(task, alert, profile, now)
        action = "refreshed"
    session.add(AlertSeen(alert_id=alert.alert_id, task_id=task.id))
    add_history(
        session=session,
        task_id=task.id,
        action=action,
        at=now,
        detail={"alert_id": alert.alert_id, "severity": alert.severity},
    )
    add_delivery(session=session, task=task, event=f"task.{action}", now=now)
    if created and task.status == "open" and _left_after(profile, alert, kind):
        # The cancellation was applied before this older evidence arrived (tickets and alerts
        # are separate topics): the task is born closed, as it would have been closed had the
        # alert come first. Either order ends the same way.
        close_as_missed(
            session=session,
            task=task,
            reason=LEFT_BEFORE_CONTACT,
            now=now,
            detail={"left_at": profile.left_at.isoformat() if profile and profile.left_at else ""},
        )
    return as_event(task, created=created)


def _left_after(profile: CustomerProfile | None, alert: Alert, kind: str) -> bool:
    return (
        kind in GONE_KINDS
        and profile is not None
        and profile.left_at is not None
        and alert.event_time < profile.left_at
    )


def _closed_to_join(
    session: Session,
    alert: Alert,
    kind: str,
    key: str,
    profile: CustomerProfile | None,
    rules: OutreachRules,
) -> Task | None:
    """The closed task of root cause ``key`` that ``alert`` is more evidence of, if any.

    Older evidence of a root cause whose task the cancellation already closed (tickets and
    alerts are separate topics; a restarted worker reorders them) joins that task, as it would
    have had it come first: either order leaves one task. A held-out customer is held out for
    good (the holdout is drawn by customer), and their task is born closed: later evidence of
    the same root cause joins it rather than open a second held-out task.
    """
    if _left_after(profile, alert, kind):
        return _latest_closed(session, key, Task.close_reason == LEFT_BEFORE_CONTACT)
    if kind == "retention" and in_holdout(alert.customer_id, rules):
        return _latest_closed(session, key, Task.holdout.is_(True))
    return None


def _latest_closed(session: Session, key: str, why: Any) -> Task | None:
    """The latest closed task of root cause ``key`` that also meets ``why``."""
    return session.scalars(
        select(Task)
        .where(Task.dedup_key == key, why)
        .order_by(Task.closed_at.desc())
        .limit(1)
        .with_for_update()
    ).one_or_none()


def as_event(task: Task, created: bool) -> OutreachTask:
    """The task as the ``outreach-tasks`` topic carries it."""
    return OutreachTask(
        event_id=f"{task.id}-{task.alert_count}",
        event_time=task.last_evidence_at,
        task_id=task.id,
        dedup_key=task.dedup_key,
        kind=task.kind,
        status=task.status,
        customer_id=task.customer_id,
        device_id=task.device_id,
        priority=task.priority,
        due_time=task.due_at,
        created=created,
    )


def _gone(profile: CustomerProfile | None, alert: Alert, kind: str) -> bool:
    """The customer cancelled before this evidence: nobody to visit or keep."""
    return (
        kind in GONE_KINDS
        and profile is not None
        and profile.left_at is not None
        and alert.event_time >= profile.left_at
    )


def _recently_done(
    session: Session, alert: Alert, kind: str, key: str, rules: OutreachRules
) -> bool:
    window = rules.suppress_after_done.get(kind)
    if window is None:
        return False
    last = session.scalars(
        select(Task)
        .where(Task.dedup_key == key, Task.status == "done")
        .order_by(Task.closed_at.desc())
        .limit(1)
    ).one_or_none()
    if last is None or last.closed_at is None:
        return False
    # When the fix happened, on the alert's clock: ``closed_at`` is wall time, which the
    # alert's event time can trail by months when old history is replayed or backfilled
    # (every alert would then look "recent"). Evidence dated before the close falls back to
    # the task's last evidence, an event time: old news of the fixed cause stays suppressed,
    # and a replay measures the window in its own time.
    fixed_at = last.closed_at if last.closed_at <= alert.event_time else last.last_evidence_at
    if alert.event_time - fixed_at >= window:
        return False
    if kind == "feedback":
        # One reply task per customer: a new ticket after the reply is a new conversation;
        # only news of a ticket already answered is suppressed.
        return any(a.get("dedup_key") == alert.dedup_key for a in last.evidence.get("alerts", []))
    return True


def _tier_and_value(alert: Alert, profile: CustomerProfile | None) -> tuple[str, float]:
    """The customer's value tier and value at stake: the alert's own (customer alerts carry
    them), else the profile's (the nightly's customer-values, for device alerts).

    For a churn alert the value at stake is the value at risk, P(churn) x 365-day value
    (:func:`forewarn.value.value_at_risk`), as the nightly's at-risk list has it, and 0 (not
    known) when no churn model gave a probability; for a visit or a reply, the customer's
    365-day value."""
    tier = str(alert.evidence.get("value_tier") or (profile.value_tier if profile else ""))
    value = alert.evidence.get("value_eur")
    if not isinstance(value, int | float) or value <= 0:
        value = profile.value_eur if profile and profile.value_eur else 0.0
    if alert.kind == "churn_risk":
        at_risk = alert.evidence.get("value_at_risk")
        p_churn = churn_probability(alert.evidence)
        if isinstance(at_risk, int | float):
            value = at_risk  # the nightly's own figure, to the cent
        elif p_churn is not None:
            value = value_at_risk(p_churn, float(value))
        else:
            value = 0.0  # points are not a probability: no money at risk to state
    return tier, round(float(value), 2)


def _new_task(
    session: Session,
    alert: Alert,
    kind: str,
    key: str,
    profile: CustomerProfile | None,
    now: datetime,
    rules: OutreachRules,
) -> Task:
    tier, value = _tier_and_value(alert, profile)
    holdout = kind == "retention" and in_holdout(alert.customer_id, rules)
    task = Task(
        id=str(uuid.uuid4()),
        dedup_key=key,
        open_key=None if holdout else key,
        kind=kind,
        status="cancelled" if holdout else "open",
        customer_id=alert.customer_id,
        device_id=alert.device_id,
        title=title_of(alert, kind),
        explanation=alert.explanation,
        evidence={"alerts": [_evidence(alert)]},
        severity=alert.severity,
        confidence=alert.confidence,
        priority=priority_of(alert, tier),
        value_at_stake=value,
        value_tier=tier,
        team=TEAM[kind],
        queue=queue_of(
            kind,
            profile.territory if profile else "",
            tier,
            str(alert.evidence.get("device_type", "")),
        ),
        suggestion=suggestion_of(alert, kind),
        holdout=holdout,
        detected_at=alert.event_time,
        last_evidence_at=alert.event_time,
        due_at=due_of(alert, kind),
        closed_at=now if holdout else None,
        alert_count=1,
        created_at=now,
        updated_at=now,
    )
    session.add(task)
    session.flush()
    if holdout:
        add_history(
            session=session,
            task_id=task.id,
            action="held_out",
            at=now,
            detail={"share": rules.holdout_share},
        )
    else:
        _link(session, task, now)
    return task


def _link(session: Session, task: Task, now: datetime) -> None:
    """A visit and a retention task for one customer share a root cause: link them, and
    let the visit's contact cover both, so the customer is not called twice."""
    other_kind = {"visit": "retention", "retention": "visit"}.get(task.kind)
    if other_kind is None:
        return
    other = session.scalars(
        select(Task)
        .where(
            Task.customer_id == task.customer_id,
            Task.kind == other_kind,
            Task.status.in_(OPEN_STATUSES),
        )
        .order_by(Task.created_at)
    ).first()
    if other is None:
        return
    task.linked_task_id, other.linked_task_id = other.id, task.id
    visit = task if task.kind == "visit" else other
    retention = other if visit is task else task
    note = (
        f" One contact covers both: the technician's call for visit {visit.id[:8]} also "
        "handles the retention conversation."
    )
    retention.suggestion = (retention.suggestion + note).strip()
    visit.suggestion = (
        visit.suggestion + " The customer is at risk of leaving: "
        "acknowledge the trouble and mention the retention offer."
    ).strip()
    for t in (task, other):
        add_history(
            session=session,
            task_id=t.id,
            action="linked",
            at=now,
            detail={"linked_task_id": t.linked_task_id},
        )


def _refresh(task: Task, alert: Alert, profile: CustomerProfile | None, now: datetime) -> None:
    # Fresh evidence refreshes the task; priority and due time only ever tighten.
    tier, value = _tier_and_value(alert, profile)
    task.evidence = {"alerts": [*task.evidence.get("alerts", [])[-19:], _evidence(alert)]}
    task.explanation = alert.explanation
    if task.kind == "visit" and alert.event_time >= task.last_evidence_at:
        task.title = title_of(alert, task.kind)  # the newest evidence says what is wrong now
    task.confidence = max(task.confidence, alert.confidence)
    if SEVERITY_RANK[alert.severity] > SEVERITY_RANK[task.severity]:
        task.severity = alert.severity
    task.value_tier = tier or task.value_tier
    if task.kind == "retention":
        task.queue = queue_of(task.kind, "", task.value_tier, "")  # one tier on every screen
    task.priority = max(task.priority, priority_of(alert, task.value_tier))
    task.due_at = min(task.due_at, due_of(alert, task.kind))
    task.last_evidence_at = max(task.last_evidence_at, alert.event_time)
    # The latest figure, not the largest: the value at risk moves with P(churn) (issue 17:
    # the list and the nightly's at-risk page must show the same number).
    task.value_at_stake = value if task.kind == "retention" else max(task.value_at_stake, value)
    task.alert_count += 1
    task.updated_at = now


def _evidence(alert: Alert) -> dict:
    return {
        "alert_id": alert.alert_id,
        "dedup_key": alert.dedup_key,
        "at": alert.event_time.isoformat(),
        "detector": alert.detector,
        "fault_kind": alert.fault_kind,
        "severity": alert.severity,
        "confidence": alert.confidence,
        "score": alert.score,
        "explanation": alert.explanation,
        **alert.evidence,
    }
