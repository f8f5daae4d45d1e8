"""Outreach tables: tasks people work from, and each task's history.

One open task per root cause is enforced by the database itself: a unique index on
``open_key``, a column that holds the dedup key while the task is open and NULL once it is
closed (NULLs never collide, in SQLite and PostgreSQL alike). So two workers racing on one
alert cannot both insert, whatever the isolation level.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

OPEN_STATUSES = ("open", "assigned", "in_progress")
CLOSED_STATUSES = ("done", "cancelled", "expired")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Task(Base):
    """An outreach task: a visit, a retention call or a feedback reply."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), index=True)
    open_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # visit | retention | feedback
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    explanation: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    severity: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer)
    team: Mapped[str] = mapped_column(String(32))
    # Event time of the first and latest evidence: how early we knew, independent of lag.
    detected_at: Mapped[datetime]
    last_evidence_at: Mapped[datetime]
    due_at: Mapped[datetime]
    alert_count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

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
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"))
