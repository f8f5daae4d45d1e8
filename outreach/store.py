"""The outreach task store: alerts in, one task per root cause out.

Any SQLAlchemy URL works; SQLite is the embedded default and PostgreSQL the production one.
``upsert_alert`` is idempotent twice over: a replayed alert (same ``alert_id``) changes nothing,
and a new alert for a root cause that already has an open task refreshes that task instead of
adding one. Callers commit their Kafka offsets only after it returns.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from forewarn.events import Alert, OutreachTask
from outreach.models import OPEN_STATUSES, AlertSeen, Base, Task, TaskHistory

TASK_KIND = {"device_fault": "visit", "churn_risk": "retention", "negative_feedback": "feedback"}
TEAM = {"visit": "field-service", "retention": "retention", "feedback": "support"}
SEVERITY_PRIORITY = {"low": 25, "medium": 50, "high": 75, "critical": 90}
# How long a team has to act, by severity. Negative feedback is answered within one hour
# whatever its severity (MISSION.md, "Answer negative feedback fast").
SLA = {
    "low": timedelta(days=7),
    "medium": timedelta(days=3),
    "high": timedelta(hours=24),
    "critical": timedelta(hours=4),
}
FEEDBACK_SLA = timedelta(hours=1)
SYSTEM_ACTOR = "forewarn"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so a worker and the web
    service can share one file."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (see below).
            conn.isolation_level = None
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # type: ignore[no-untyped-def]
            # pysqlite starts a transaction only at the first write, so a read-modify-write
            # loses concurrent updates (tests/outreach/test_store.py caught it). BEGIN IMMEDIATE
            # takes the write lock up front, as SELECT ... FOR UPDATE does on PostgreSQL.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def aware(dt: datetime) -> datetime:
    """SQLite hands datetimes back naive; everything stored is UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def priority_of(alert: Alert) -> int:
    """0-100: severity sets the band, confidence orders within it."""
    return min(100, SEVERITY_PRIORITY[alert.severity] + round(alert.confidence * 9))


def due_of(alert: Alert, kind: str) -> datetime:
    return alert.event_time + (FEEDBACK_SLA if kind == "feedback" else SLA[alert.severity])


class TaskStore:
    """Outreach tasks in a SQL database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///var/outreach.db`` or ``postgresql+psycopg://...``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def upsert_alert(self, alert: Alert, now: datetime | None = None) -> OutreachTask:
        """Store ``alert`` as a new task or as fresh evidence on the open one; return the task.

        Safe to call again with the same alert, and from several workers at once.
        """
        now = now or datetime.now(UTC)
        for _attempt in range(5):
            try:
                with self.sessions.begin() as session:
                    return self._apply(session, alert, now)
            except IntegrityError:
                # Another writer inserted the same open task or alert first: read it again.
                continue
        raise RuntimeError(f"could not store alert {alert.alert_id} after 5 attempts")

    def _apply(self, session: Session, alert: Alert, now: datetime) -> OutreachTask:
        seen = session.get(AlertSeen, alert.alert_id)
        if seen is not None:
            return self._as_event(session.get_one(Task, seen.task_id), created=False)
        task = session.scalars(
            select(Task).where(Task.open_key == alert.dedup_key).with_for_update()
        ).one_or_none()
        created = task is None
        if task is None:
            kind = TASK_KIND[alert.kind]
            task = Task(
                id=str(uuid.uuid4()),
                dedup_key=alert.dedup_key,
                open_key=alert.dedup_key,
                kind=kind,
                status="open",
                customer_id=alert.customer_id,
                device_id=alert.device_id,
                title=_title(alert, kind),
                explanation=alert.explanation,
                evidence={"alerts": [_evidence(alert)]},
                severity=alert.severity,
                confidence=alert.confidence,
                priority=priority_of(alert),
                team=TEAM[kind],
                detected_at=alert.event_time,
                last_evidence_at=alert.event_time,
                due_at=due_of(alert, kind),
                alert_count=1,
                created_at=now,
                updated_at=now,
            )
            session.add(task)
            session.flush()
            action = "created"
        else:
            # Fresh evidence refreshes the task; priority and due time only ever tighten.
            task.evidence = {"alerts": [*task.evidence.get("alerts", [])[-19:], _evidence(alert)]}
            task.explanation = alert.explanation
            task.confidence = max(task.confidence, alert.confidence)
            if SEVERITY_PRIORITY[alert.severity] > SEVERITY_PRIORITY[task.severity]:
                task.severity = alert.severity
            task.priority = max(task.priority, priority_of(alert))
            task.due_at = min(aware(task.due_at), due_of(alert, task.kind))
            task.last_evidence_at = max(aware(task.last_evidence_at), alert.event_time)
            task.alert_count += 1
            task.updated_at = now
            action = "refreshed"
        session.add(AlertSeen(alert_id=alert.alert_id, task_id=task.id))
        session.add(
            TaskHistory(
                task_id=task.id,
                at=now,
                actor=SYSTEM_ACTOR,
                action=action,
                detail={"alert_id": alert.alert_id, "severity": alert.severity},
            )
        )
        return self._as_event(task, created=created)

    @staticmethod
    def _as_event(task: Task, created: bool) -> OutreachTask:
        return OutreachTask(
            event_id=f"{task.id}-{task.alert_count}",
            event_time=aware(task.last_evidence_at),
            task_id=task.id,
            dedup_key=task.dedup_key,
            kind=task.kind,
            status=task.status,
            customer_id=task.customer_id,
            device_id=task.device_id,
            priority=task.priority,
            due_time=aware(task.due_at),
            created=created,
        )

    def tasks(self, *, kind: str | None = None, open_only: bool = False) -> list[Task]:
        """Tasks, highest priority first (detached objects, safe to read after return)."""
        query = select(Task).order_by(Task.priority.desc(), Task.detected_at)
        if kind is not None:
            query = query.where(Task.kind == kind)
        if open_only:
            query = query.where(Task.status.in_(OPEN_STATUSES))
        with self.sessions() as session:
            return list(session.scalars(query))

    def close(self) -> None:
        self.engine.dispose()


def _title(alert: Alert, kind: str) -> str:
    if kind == "visit":
        return f"Visit device {alert.device_id}: {alert.fault_kind or 'fault'}"
    if kind == "retention":
        return f"Retention call for {alert.customer_id}"
    return f"Reply to {alert.customer_id} within one hour"


def _evidence(alert: Alert) -> dict:
    return {
        "alert_id": alert.alert_id,
        "at": alert.event_time.isoformat(),
        "detector": alert.detector,
        "fault_kind": alert.fault_kind,
        "severity": alert.severity,
        "confidence": alert.confidence,
        "score": alert.score,
        "explanation": alert.explanation,
        **alert.evidence,
    }
