"""Outreach tables: tasks people work from, their history, tokens, webhook outbox, customers.

One open task per root cause is enforced by the database itself: a unique index on
``open_key``, a column that holds the dedup key while the task is open and NULL once it is
closed (NULLs never collide, in SQLite and PostgreSQL alike). So two workers racing on one
alert cannot both insert, whatever the isolation level. Concurrent edits of one task are
caught by optimistic locking (``version``): the second writer gets a conflict, not a silent
overwrite. The schema is managed by Alembic (``outreach/migrations``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from outreach.db import UTCDateTime

OPEN_STATUSES = ("open", "assigned", "in_progress")
CLOSED_STATUSES = ("done", "cancelled", "expired")
STATUSES = (*OPEN_STATUSES, *CLOSED_STATUSES)
KINDS = ("visit", "retention", "feedback")
OUTCOMES = ("fixed", "no_fault_found", "customer_kept", "customer_left", "no_answer", "replied")
ROLES = ("technician", "dispatcher", "retention", "support", "admin")


class Base(DeclarativeBase):
    # Every datetime column reads back aware UTC, on SQLite too (outreach.db.UTCDateTime).
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class Task(Base):
    """An outreach task: a visit, a retention call or a feedback reply."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), index=True)
    open_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # visit | retention | feedback
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    explanation: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    severity: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer, index=True)
    value_at_stake: Mapped[float] = mapped_column(Float, default=0.0)
    team: Mapped[str] = mapped_column(String(32), index=True)
    queue: Mapped[str] = mapped_column(String(64), default="")  # territory or value tier
    assignee: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(32))
    suggestion: Mapped[str] = mapped_column(Text, default="")
    linked_task_id: Mapped[str | None] = mapped_column(String(36))
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    # The owner's value tier when the task was opened or refreshed: part of the priority.
    value_tier: Mapped[str] = mapped_column(String(16), default="")
    # Why the task was closed or flagged by what happened to the customer, in plain words
    # ("customer left before contact"); ``missed`` counts it as a proactive miss (issue 17).
    close_reason: Mapped[str] = mapped_column(String(200), default="")
    flag: Mapped[str] = mapped_column(String(200), default="")
    missed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    # Contact attempts without an answer ("no answer" keeps the task open).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Hidden from the lists until then (a snooze, with its reason in the history).
    snoozed_until: Mapped[datetime | None]
    # Event time of the first and latest evidence: how early we knew, independent of lag.
    detected_at: Mapped[datetime]
    last_evidence_at: Mapped[datetime]
    due_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    alert_count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version}

    history: Mapped[list[TaskHistory]] = relationship(
        back_populates="task", order_by="TaskHistory.id", cascade="all, delete-orphan"
    )


class TaskHistory(Base):
    """Who changed what on a task, and when (wall-clock time of the change)."""

    __tablename__ = "task_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    task: Mapped[Task] = relationship(back_populates="history")


class AlertSeen(Base):
    """Alerts already applied: a replayed alert (after a crash) changes nothing."""

    __tablename__ = "alerts_seen"

    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_id: Mapped[str | None] = mapped_column(String(36))  # None: suppressed


class ApiToken(Base):
    """An API token: only its SHA-256 is stored; the token itself is shown once. It stops
    working at ``expires_at`` or when revoked (``forewarn outreach token revoke``)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class WebSession(Base):
    """A page login. The cookie holds a random session id, never the token, and only the id's
    SHA-256 is stored; a session ends at ``expires_at``, on logout, or when its token is
    revoked or expires."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # Messages to show on the next page ("Recorded: fixed"), popped when shown: flash messages
    # live on the server, so a link cannot print its own banner (issue 17, item 7).
    flash: Mapped[list[Any] | None] = mapped_column(JSON, default=None)


class WebhookDelivery(Base):
    """The outbox: a task change to deliver to the CRM, written in the task's transaction so
    no change is lost, retried with back-off, dead-lettered after the last attempt."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class CustomerProfile(Base):
    """What staff need to know of a customer: routing (territory, value tier), how to reach
    them (name, channel, contact details; imported from the CRM or the simulator), their value
    (the nightly's customer-values, through the stream's sink) and whether they left."""

    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    territory: Mapped[str] = mapped_column(String(32), default="")
    value_tier: Mapped[str] = mapped_column(String(16), default="")
    preferred_channel: Mapped[str] = mapped_column(String(16), default="")
    name: Mapped[str] = mapped_column(String(120), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(300), default="")
    value_eur: Mapped[float | None] = mapped_column(Float)
    # Event time of the customer's cancellation: no new proactive task opens after it.
    left_at: Mapped[datetime | None]
