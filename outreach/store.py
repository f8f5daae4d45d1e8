"""The outreach task store: alerts in, one task per root cause out, and the task lifecycle.

Any SQLAlchemy URL works; SQLite is the embedded default and PostgreSQL the production one.
``upsert_alert`` is idempotent twice over: a replayed alert (same ``alert_id``) changes
nothing, and a new alert for a root cause that already has an open task refreshes that task
instead of adding one. Callers commit their Kafka offsets only after it returns. Every change
also writes a webhook delivery to the outbox in the same transaction.

Domain errors (:class:`TaskNotFound`, :class:`InvalidTransition`, :class:`StaleTask`) are
raised here; the API turns them into HTTP answers.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from forewarn.events import Alert, OutreachTask
from outreach.config import token_ttl
from outreach.db import make_engine, session_factory
from outreach.models import (
    OPEN_STATUSES,
    ROLES,
    AlertSeen,
    ApiToken,
    CustomerProfile,
    Task,
    TaskHistory,
    WebhookDelivery,
    WebSession,
)
from outreach.rules import (
    KIND_OUTCOMES,
    SEVERITY_RANK,
    TASK_KIND,
    TEAM,
    TRANSITIONS,
    OutreachRules,
    due_of,
    in_holdout,
    priority_of,
    queue_of,
    suggestion_of,
    title_of,
)

log = logging.getLogger(__name__)
SYSTEM_ACTOR = "forewarn"
#: A page login lasts a working day at most (and never beyond its token's expiry).
SESSION_TTL = timedelta(hours=12)


class TaskNotFound(LookupError):
    """No task with that id."""


class InvalidTransition(ValueError):
    """A status change the lifecycle does not allow (e.g. closing a closed task)."""


class StaleTask(RuntimeError):
    """Someone else changed the task since it was read; reload and try again."""


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name and role."""

    name: str
    role: str


class TaskStore:
    """Outreach tasks in a SQL database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///var/outreach.db`` or ``postgresql+psycopg://...``.
    rules : OutreachRules
        Suppression, holdout and capacity settings.

    The schema must exist: opening a store never migrates (``outreach.migrate.migrate`` does).
    """

    def __init__(self, url: str, rules: OutreachRules | None = None) -> None:
        self.url = url
        self.rules = rules or OutreachRules()
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)

    # -- alerts in ---------------------------------------------------------------------------

    def upsert_alert(self, alert: Alert, now: datetime | None = None) -> OutreachTask | None:
        """Store ``alert`` as a new task or as fresh evidence on the open one; return the task,
        or None when the root cause was fixed recently and the alert is suppressed.

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

    def _apply(self, session: Session, alert: Alert, now: datetime) -> OutreachTask | None:
        seen = session.get(AlertSeen, alert.alert_id)
        if seen is not None:
            if seen.task_id is None:
                return None
            return self._as_event(session.get_one(Task, seen.task_id), created=False)
        task = session.scalars(
            select(Task).where(Task.open_key == alert.dedup_key).with_for_update()
        ).one_or_none()
        kind = TASK_KIND[alert.kind]
        if task is None and self._recently_done(session, alert, kind):
            session.add(AlertSeen(alert_id=alert.alert_id, task_id=None))
            return None
        created = task is None
        if task is None:
            task = self._new_task(session, alert, kind, now)
            action = "created"
        else:
            self._refresh(task, alert, now)
            action = "refreshed"
        session.add(AlertSeen(alert_id=alert.alert_id, task_id=task.id))
        _history(
            session, task.id, action, now, {"alert_id": alert.alert_id, "severity": alert.severity}
        )
        self._outbox(session, task, f"task.{action}", now)
        return self._as_event(task, created=created)

    def _recently_done(self, session: Session, alert: Alert, kind: str) -> bool:
        window = self.rules.suppress_after_done.get(kind)
        if window is None:
            return False
        last = session.scalars(
            select(Task)
            .where(Task.dedup_key == alert.dedup_key, Task.status == "done")
            .order_by(Task.closed_at.desc())
            .limit(1)
        ).one_or_none()
        return (
            last is not None
            and last.closed_at is not None
            and (alert.event_time - last.closed_at < window)
        )

    def _new_task(self, session: Session, alert: Alert, kind: str, now: datetime) -> Task:
        profile = session.get(CustomerProfile, alert.customer_id)
        tier = str(alert.evidence.get("value_tier") or (profile.value_tier if profile else ""))
        holdout = kind == "retention" and in_holdout(alert.customer_id, self.rules)
        task = Task(
            id=str(uuid.uuid4()),
            dedup_key=alert.dedup_key,
            open_key=None if holdout else alert.dedup_key,
            kind=kind,
            status="cancelled" if holdout else "open",
            customer_id=alert.customer_id,
            device_id=alert.device_id,
            title=title_of(alert, kind),
            explanation=alert.explanation,
            evidence={"alerts": [_evidence(alert)]},
            severity=alert.severity,
            confidence=alert.confidence,
            priority=priority_of(alert),
            value_at_stake=float(alert.evidence.get("value_eur", 0.0) or 0.0),
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
            _history(session, task.id, "held_out", now, {"share": self.rules.holdout_share})
        else:
            self._link(session, task, now)
        return task

    def _link(self, session: Session, task: Task, now: datetime) -> None:
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
            _history(session, t.id, "linked", now, {"linked_task_id": t.linked_task_id})

    @staticmethod
    def _refresh(task: Task, alert: Alert, now: datetime) -> None:
        # Fresh evidence refreshes the task; priority and due time only ever tighten.
        task.evidence = {"alerts": [*task.evidence.get("alerts", [])[-19:], _evidence(alert)]}
        task.explanation = alert.explanation
        task.confidence = max(task.confidence, alert.confidence)
        if SEVERITY_RANK[alert.severity] > SEVERITY_RANK[task.severity]:
            task.severity = alert.severity
        task.priority = max(task.priority, priority_of(alert))
        task.due_at = min(task.due_at, due_of(alert, task.kind))
        task.last_evidence_at = max(task.last_evidence_at, alert.event_time)
        task.value_at_stake = max(
            task.value_at_stake, float(alert.evidence.get("value_eur", 0.0) or 0.0)
        )
        task.alert_count += 1
        task.updated_at = now

    # -- people act --------------------------------------------------------------------------

    def transition(
        self,
        task_id: str,
        *,
        to: str,
        actor: str,
        outcome: str | None = None,
        assignee: str | None = None,
        note: str = "",
        expected_version: int | None = None,
        now: datetime | None = None,
    ) -> Task:
        """Move a task along its lifecycle, with history; raise a domain error if not allowed.

        ``expected_version`` is the version the caller read: if someone changed the task since,
        :class:`StaleTask` is raised instead of overwriting their change.
        """
        now = now or datetime.now(UTC)
        try:
            with self.sessions.begin() as session:
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
                _history(
                    session,
                    task.id,
                    to,
                    now,
                    {
                        "from": before,
                        "outcome": outcome,
                        "assignee": assignee,
                        "note": note[:2000],
                    },
                    actor=actor[:64],
                )
                self._outbox(session, task, f"task.{to}", now)
                session.flush()
            # Ids and sizes only: notes and task text quote customers (issue 13).
            log.info(
                "task %s %s -> %s by %s (note: %d characters)",
                task_id,
                before,
                to,
                actor[:64],
                len(note),
            )
            return task
        except StaleDataError:
            raise StaleTask(f"task {task_id} changed while you were editing: reload it") from None

    def escalate_overdue(self, now: datetime | None = None) -> list[str]:
        """Raise the priority of open tasks past their due time, once each; return their ids."""
        now = now or datetime.now(UTC)
        with self.sessions.begin() as session:
            overdue = session.scalars(
                select(Task).where(
                    Task.status.in_(OPEN_STATUSES), Task.escalated.is_(False), Task.due_at < now
                )
            )
            ids = []
            for task in overdue:
                task.escalated = True
                task.priority = min(100, task.priority + self.rules.escalation_bump)
                task.updated_at = now
                _history(session, task.id, "escalated", now, {"due_at": str(task.due_at)})
                self._outbox(session, task, "task.escalated", now)
                ids.append(task.id)
            return ids

    # -- reading -----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        with self.sessions() as session:
            task = session.get(Task, task_id)
            if task is None:
                raise TaskNotFound(task_id)
            _ = list(task.history)  # load before the session closes
            return task

    def tasks(
        self,
        *,
        kind: str | None = None,
        open_only: bool = False,
        customer_id: str | None = None,
        include_holdout: bool = True,
    ) -> list[Task]:
        """Tasks, highest priority first (detached objects, safe to read after return)."""
        query = select(Task).order_by(Task.priority.desc(), Task.due_at, Task.id)
        if kind is not None:
            query = query.where(Task.kind == kind)
        if open_only:
            query = query.where(Task.status.in_(OPEN_STATUSES))
        if customer_id is not None:
            query = query.where(Task.customer_id == customer_id)
        if not include_holdout:
            query = query.where(Task.holdout.is_(False))
        with self.sessions() as session:
            return list(session.scalars(query))

    def capacity(self, kind: str) -> int:
        """Tasks of ``kind`` the team can finish in a day."""
        return self.rules.capacity.get(TEAM[kind], 20)

    def daily_list(self, kind: str) -> list[Task]:
        """Today's open tasks of a kind, best first, cut to the team's capacity."""
        return self.tasks(kind=kind, open_only=True)[: self.capacity(kind)]

    def counts(self) -> dict[str, dict[tuple[str, str], int]]:
        """Tasks by (kind, status) and webhook deliveries by (event, status), for metrics."""
        with self.sessions() as session:
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

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # -- customers, tokens, outbox -----------------------------------------------------------

    def import_customers(self, rows: list[dict[str, str]]) -> int:
        with self.sessions.begin() as session:
            for row in rows:
                session.merge(
                    CustomerProfile(
                        customer_id=row["customer_id"],
                        territory=row.get("territory", ""),
                        value_tier=row.get("value_tier", ""),
                        preferred_channel=row.get("preferred_channel", ""),
                    )
                )
        return len(rows)

    def create_token(self, name: str, role: str, ttl: timedelta | None = None) -> str:
        """A new API token for ``role``, valid for ``ttl`` (default: :func:`token_ttl`);
        returns the token, of which only a hash is kept."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        raw = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            session.add(
                ApiToken(
                    token_hash=hash_token(raw),
                    name=name[:64],
                    role=role,
                    created_at=now,
                    expires_at=now + (ttl if ttl is not None else token_ttl()),
                )
            )
        return raw

    @staticmethod
    def _live_token(session: Session, raw: str, now: datetime) -> ApiToken | None:
        return session.scalars(
            select(ApiToken).where(
                ApiToken.token_hash == hash_token(raw),
                ApiToken.revoked.is_(False),
                ApiToken.expires_at > now,
            )
        ).first()

    def authenticate(self, raw: str | None) -> Principal | None:
        """Who holds the token ``raw``; None if it is unknown, revoked or expired."""
        if not raw:
            return None
        with self.sessions() as session:
            token = self._live_token(session, raw, datetime.now(UTC))
            return Principal(token.name, token.role) if token else None

    def revoke_tokens(self, *, name: str | None = None, raw: str | None = None) -> int:
        """Revoke the token ``raw``, or every token of ``name``, and end their page sessions;
        return how many tokens were revoked."""
        if (name is None) == (raw is None):
            raise ValueError("revoke_tokens needs exactly one of name= or raw=")
        query = select(ApiToken).where(ApiToken.revoked.is_(False))
        if raw is not None:
            query = query.where(ApiToken.token_hash == hash_token(raw))
        else:
            query = query.where(ApiToken.name == name)
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            tokens = list(session.scalars(query.with_for_update()))
            for token in tokens:
                token.revoked, token.revoked_at = True, now
            ids = [t.id for t in tokens]
            if ids:
                session.execute(delete(WebSession).where(WebSession.token_id.in_(ids)))
            return len(tokens)

    def open_session(
        self, raw: str, ttl: timedelta = SESSION_TTL
    ) -> tuple[str, Principal] | tuple[None, None]:
        """Log in with the token ``raw``: a new session id for the cookie and who it is, or
        (None, None) if the token is not valid. Expired sessions are swept on the way."""
        now = datetime.now(UTC)
        session_id = secrets.token_urlsafe(32)
        with self.sessions.begin() as session:
            token = self._live_token(session, raw, now)
            if token is None:
                return None, None
            session.execute(delete(WebSession).where(WebSession.expires_at <= now))
            session.add(
                WebSession(
                    id_hash=hash_token(session_id),
                    token_id=token.id,
                    created_at=now,
                    expires_at=min(now + ttl, token.expires_at),
                )
            )
            return session_id, Principal(token.name, token.role)

    def session_principal(self, session_id: str | None) -> Principal | None:
        """Who the session ``session_id`` belongs to; None once it or its token has ended."""
        if not session_id:
            return None
        now = datetime.now(UTC)
        with self.sessions() as session:
            token = session.scalars(
                select(ApiToken)
                .join(WebSession, WebSession.token_id == ApiToken.id)
                .where(
                    WebSession.id_hash == hash_token(session_id),
                    WebSession.expires_at > now,
                    ApiToken.revoked.is_(False),
                    ApiToken.expires_at > now,
                )
            ).first()
            return Principal(token.name, token.role) if token else None

    def close_session(self, session_id: str | None) -> None:
        if session_id:
            with self.sessions.begin() as session:
                session.execute(
                    delete(WebSession).where(WebSession.id_hash == hash_token(session_id))
                )

    @staticmethod
    def _outbox(session: Session, task: Task, event_name: str, now: datetime) -> None:
        session.add(
            WebhookDelivery(
                task_id=task.id,
                event=event_name,
                payload=task_payload(task),
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )

    @staticmethod
    def _as_event(task: Task, created: bool) -> OutreachTask:
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

    def close(self) -> None:
        self.engine.dispose()


def _history(
    session: Session,
    task_id: str,
    action: str,
    at: datetime,
    detail: dict[str, Any],
    actor: str = SYSTEM_ACTOR,
) -> None:
    """One line of a task's history: who did what, when."""
    session.add(TaskHistory(task_id=task_id, at=at, actor=actor, action=action, detail=detail))


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


__all__ = ["InvalidTransition", "StaleTask", "TaskNotFound", "TaskStore"]
