"""``TaskStore``: a thin facade over :mod:`outreach.crud` for callers outside the web service.

The streams sink, the nightly, the console and the tests call one method per transaction
instead of managing sessions: each method opens a session on the store's engine, calls the
resource's CRUD function and commits. The web service uses the CRUD functions directly with a
request's session (:data:`outreach.api.deps.SessionDep`).

Any SQLAlchemy URL works; SQLite is the embedded default and PostgreSQL the production one.
The schema must exist: opening a store never migrates (:func:`outreach.migrate.migrate`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from forewarn.events import Alert, CustomerValue, MaintenanceVisit, OutreachTask, Ticket
from outreach.crud import alerts, customers, tokens
from outreach.crud import tasks as task_crud
from outreach.crud.tasks import SYSTEM_ACTOR, InvalidTransition, StaleTask, TaskNotFound
from outreach.crud.tokens import SESSION_TTL, Principal, hash_token
from outreach.crud.webhooks import task_payload
from outreach.db import make_engine, session_factory
from outreach.models import Task
from outreach.rules import OutreachRules

#: Attempts of an alert's upsert that lost a race (unique ``open_key`` or ``alert_id``).
UPSERT_ATTEMPTS = 5


class TaskStore:
    """Outreach tasks in a SQL database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///var/outreach.db`` or ``postgresql+psycopg://...``.
    rules : OutreachRules
        Suppression, holdout and capacity settings.
    """

    def __init__(self, url: str, rules: OutreachRules | None = None) -> None:
        self.url = url
        self.rules = rules or OutreachRules()
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)

    # -- alerts in (outreach.crud.alerts) ------------------------------------------------------

    def upsert_alert(self, alert: Alert, now: datetime | None = None) -> OutreachTask | None:
        """Store ``alert`` as a new task or as fresh evidence on the open one; return the task,
        or None when the root cause was fixed recently and the alert is suppressed.

        Safe to call again with the same alert, and from several workers at once. Callers
        commit their Kafka offsets only after it returns.
        """
        now = now or datetime.now(UTC)
        for _attempt in range(UPSERT_ATTEMPTS):
            try:
                with self.sessions.begin() as session:
                    return alerts.upsert_alert(
                        session=session, alert=alert, rules=self.rules, now=now
                    )
            except IntegrityError:
                # Another writer inserted the same open task or alert first: read it again.
                continue
        raise RuntimeError(
            f"could not store alert {alert.alert_id} after {UPSERT_ATTEMPTS} attempts"
        )

    # -- tasks (outreach.crud.tasks) -----------------------------------------------------------

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
        """See :func:`outreach.crud.tasks.transition_task`."""
        with self.sessions.begin() as session:
            return task_crud.transition_task(
                session=session,
                task_id=task_id,
                to=to,
                actor=actor,
                now=now or datetime.now(UTC),
                outcome=outcome,
                assignee=assignee,
                note=note,
                expected_version=expected_version,
            )

    def escalate_overdue(self, now: datetime | None = None) -> list[str]:
        """Raise the priority of open tasks past their due time, once each; return their ids."""
        with self.sessions.begin() as session:
            return task_crud.escalate_overdue(
                session=session, rules=self.rules, now=now or datetime.now(UTC)
            )

    def expire_stale(self, now: datetime | None = None) -> list[str]:
        """Close open tasks long past due as expired (:func:`outreach.crud.tasks.expire_stale`)."""
        with self.sessions.begin() as session:
            return task_crud.expire_stale(session=session, now=now or datetime.now(UTC))

    def record_outcome(
        self,
        task_id: str,
        *,
        outcome: str,
        actor: str,
        note: str = "",
        linked_outcome: str | None = None,
        expected_version: int | None = None,
        now: datetime | None = None,
    ) -> Task:
        """See :func:`outreach.crud.tasks.record_outcome`."""
        with self.sessions.begin() as session:
            task, _ = task_crud.record_outcome(
                session=session,
                task_id=task_id,
                outcome=outcome,
                actor=actor,
                now=now or datetime.now(UTC),
                note=note,
                linked_outcome=linked_outcome,
                expected_version=expected_version,
            )
            return task

    def reopen(self, task_id: str, *, reason: str, actor: str, now: datetime | None = None) -> Task:
        with self.sessions.begin() as session:
            return task_crud.reopen_task(
                session=session,
                task_id=task_id,
                reason=reason,
                actor=actor,
                now=now or datetime.now(UTC),
            )

    def proactive_kpis(self, kind: str) -> dict:
        """See :func:`outreach.crud.tasks.proactive_kpis`."""
        with self.sessions() as session:
            return task_crud.proactive_kpis(session=session, kind=kind)

    # -- customer events in (outreach.crud.customers) ------------------------------------------

    def apply_ticket(self, ticket: Ticket, now: datetime | None = None) -> list[str]:
        """Close or flag the customer's open proactive tasks a ticket makes stale (safe to call
        again with the same ticket); return the ids of the tasks changed."""
        with self.sessions.begin() as session:
            return customers.apply_ticket(
                session=session, ticket=ticket, now=now or datetime.now(UTC)
            )

    def apply_maintenance(self, visit: MaintenanceVisit, now: datetime | None = None) -> list[str]:
        """Close (or note on) the device's open visit tasks a recorded visit answers; return
        the ids changed (``outreach.crud.tasks.apply_maintenance``)."""
        with self.sessions.begin() as session:
            return task_crud.apply_maintenance(
                session=session, visit=visit, now=now or datetime.now(UTC)
            )

    def apply_customer_value(self, value: CustomerValue) -> None:
        """Keep the customer's value tier and 365-day value for ranking their tasks."""
        with self.sessions.begin() as session:
            customers.apply_customer_value(session=session, value=value)

    def get(self, task_id: str) -> Task:
        with self.sessions() as session:
            return task_crud.get_task(session=session, task_id=task_id)

    def tasks(
        self,
        *,
        kind: str | None = None,
        open_only: bool = False,
        customer_id: str | None = None,
        include_holdout: bool = True,
    ) -> list[Task]:
        """Tasks, highest priority first (detached objects, safe to read after return)."""
        with self.sessions() as session:
            return task_crud.list_tasks(
                session=session,
                kind=kind,
                open_only=open_only,
                customer_id=customer_id,
                include_holdout=include_holdout,
            )

    def capacity(self, kind: str) -> int:
        """Tasks of ``kind`` the team can finish in a day."""
        return task_crud.capacity(rules=self.rules, kind=kind)

    def daily_list(self, kind: str, now: datetime | None = None) -> list[Task]:
        """Today's open tasks of a kind, best first, cut to the team's capacity."""
        with self.sessions() as session:
            return task_crud.daily_list(session=session, rules=self.rules, kind=kind, now=now)

    def counts(self) -> dict[str, dict[tuple[str, str], int]]:
        """Tasks by (kind, status) and webhook deliveries by (event, status), for metrics."""
        with self.sessions() as session:
            return task_crud.counts(session=session)

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # -- customers and tokens (outreach.crud.customers, outreach.crud.tokens) ------------------

    def import_customers(self, rows: list[dict[str, str]]) -> int:
        with self.sessions.begin() as session:
            return customers.import_customers(session=session, rows=rows)

    def create_token(self, name: str, role: str, ttl: timedelta | None = None) -> str:
        """See :func:`outreach.crud.tokens.create_token`."""
        with self.sessions.begin() as session:
            return tokens.create_token(session=session, name=name, role=role, ttl=ttl)

    def authenticate(self, raw: str | None) -> Principal | None:
        with self.sessions() as session:
            return tokens.authenticate(session=session, raw=raw)

    def revoke_tokens(self, *, name: str | None = None, raw: str | None = None) -> int:
        """See :func:`outreach.crud.tokens.revoke_tokens`."""
        with self.sessions.begin() as session:
            return tokens.revoke_tokens(session=session, name=name, raw=raw)

    def open_session(
        self, raw: str, ttl: timedelta = SESSION_TTL
    ) -> tuple[str, Principal] | tuple[None, None]:
        with self.sessions.begin() as session:
            return tokens.open_session(session=session, raw=raw, ttl=ttl)

    def session_principal(self, session_id: str | None) -> Principal | None:
        with self.sessions() as session:
            return tokens.session_principal(session=session, session_id=session_id)

    def close_session(self, session_id: str | None) -> None:
        with self.sessions.begin() as session:
            tokens.close_session(session=session, session_id=session_id)

    def close(self) -> None:
        self.engine.dispose()


__all__ = [
    "SESSION_TTL",
    "SYSTEM_ACTOR",
    "InvalidTransition",
    "Principal",
    "StaleTask",
    "TaskNotFound",
    "TaskStore",
    "hash_token",
    "task_payload",
]
