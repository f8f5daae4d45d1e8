"""The webhook outbox: a row per task change, written in the change's transaction, delivered
and retried by :class:`outreach.webhook.WebhookDeliverer`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.models import Task, WebhookDelivery


def task_payload(task: Task) -> dict[str, Any]:
    """What a CRM receives about a task (no free text beyond the explanation)."""
    return {
        "task_id": task.id,
        "kind": task.kind,
        "status": task.status,
        "customer_id": task.customer_id,
        "device_id": task.device_id,
        "title": task.title,
        "explanation": task.explanation,
        "priority": task.priority,
        "severity": task.severity,
        "team": task.team,
        "queue": task.queue,
        "assignee": task.assignee,
        "outcome": task.outcome,
        "due_at": task.due_at.isoformat(),
        "linked_task_id": task.linked_task_id,
        "version": task.version,
    }


def add_delivery(*, session: Session, task: Task, event: str, now: datetime) -> None:
    """Queue ``event`` about ``task`` for the CRM, in the caller's transaction."""
    session.add(
        WebhookDelivery(
            task_id=task.id,
            event=event,
            payload=task_payload(task),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def due_deliveries(*, session: Session, now: datetime, limit: int = 200) -> list[WebhookDelivery]:
    """Pending deliveries whose time has come, oldest first."""
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.id)
            .limit(limit)
        )
    )


def record_attempt(
    *,
    session: Session,
    delivery_id: int,
    status: str,
    now: datetime,
    attempts: int | None = None,
    error: str = "",
    next_at: datetime | None = None,
) -> None:
    """Write down how an attempt went: delivered, pending again (``next_at``) or dead."""
    row = session.get_one(WebhookDelivery, delivery_id)
    row.status = status
    row.last_error = error[:2000]
    if attempts is not None:
        row.attempts = attempts
    if next_at is not None:
        row.next_attempt_at = next_at
    if status == "delivered":
        row.attempts += 1
        row.delivered_at = now


def redrive(*, session: Session, delivery_id: int) -> bool:
    """Give a dead delivery a fresh set of attempts; False if there is no such delivery."""
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        return False
    row.status, row.attempts, row.next_attempt_at = "pending", 0, datetime.now(UTC)
    return True


def dead_deliveries(*, session: Session) -> list[WebhookDelivery]:
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.status == "dead")
            .order_by(WebhookDelivery.id)
        )
    )
