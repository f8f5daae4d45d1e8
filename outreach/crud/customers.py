"""Customers: profiles (routing, contact details, value) and what happens to them that changes
the lists: a cancellation closes their open proactive tasks, a complaint flags them.

Lists must stay true (issue 17): a visit for a customer who cancelled three weeks ago, still
"critical, overdue", sends a technician to the wrong door. The stream's sink hands every ticket
and every nightly customer value here (``streams/outreach_sink``), as it hands alerts to
:mod:`outreach.crud.alerts`. Applying an event twice changes nothing the second time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from forewarn.events import CustomerValue, Ticket
from outreach.crud.tasks import add_history, close_as_missed
from outreach.crud.webhooks import add_delivery
from outreach.models import OPEN_STATUSES, CustomerProfile, Task
from outreach.rules import (
    COMPLAINED_BEFORE_CALL,
    COMPLAINED_BEFORE_VISIT,
    COMPLAINT_CATEGORIES,
    LEFT_BEFORE_CONTACT,
)

#: Task kinds opened before the customer asks: what a cancellation or complaint makes a miss.
PROACTIVE_KINDS = ("visit", "retention")
PROFILE_FIELDS = (
    "territory",
    "value_tier",
    "preferred_channel",
    "name",
    "phone",
    "email",
    "address",
)


def import_customers(*, session: Session, rows: list[dict[str, str]]) -> int:
    """Insert or update a profile per row (columns as in :data:`PROFILE_FIELDS`, all but
    ``customer_id`` optional); return how many rows there were. Value and departure, which
    come from the stream, are kept."""
    for row in rows:
        profile = session.get(CustomerProfile, row["customer_id"]) or CustomerProfile(
            customer_id=row["customer_id"]
        )
        for name in PROFILE_FIELDS:
            if name in row or getattr(profile, name) is None:
                setattr(profile, name, str(row.get(name, ""))[:300])
        session.add(profile)
    return len(rows)


def get_profile(*, session: Session, customer_id: str) -> CustomerProfile | None:
    return session.get(CustomerProfile, customer_id)


def _profile(session: Session, customer_id: str) -> CustomerProfile:
    profile = session.get(CustomerProfile, customer_id)
    if profile is None:
        profile = CustomerProfile(customer_id=customer_id, **{name: "" for name in PROFILE_FIELDS})
        session.add(profile)
    return profile


def apply_customer_value(*, session: Session, value: CustomerValue) -> None:
    """The nightly's value of a customer: its tier and 365-day value rank their tasks."""
    profile = _profile(session, value.customer_id)
    profile.value_tier = value.value_tier
    profile.value_eur = float(value.clv_365d)


def apply_ticket(*, session: Session, ticket: Ticket, now: datetime) -> list[str]:
    """Close or flag the customer's open proactive tasks the ticket makes stale; return the
    ids of the tasks changed.

    * A cancellation: the customer left. Their open visits and retention calls close as
      cancelled, "customer left before contact", and count as misses; no new proactive task
      opens for them after it (:func:`outreach.crud.alerts.upsert_alert`).
    * A fault ticket or complaint about a device with an open visit (or, without a device, any
      open visit of the customer): the customer called first. The visit stays open (the unit
      still needs fixing) and is flagged "complained before the visit", a miss. A complaint
      flags an open retention call the same way ("complained before the call").
    """
    changed: list[str] = []
    open_tasks = list(
        session.scalars(
            select(Task)
            .where(
                Task.customer_id == ticket.customer_id,
                Task.kind.in_(PROACTIVE_KINDS),
                Task.status.in_(OPEN_STATUSES),
            )
            .with_for_update()
        )
    )
    detail = {
        "ticket_id": ticket.ticket_id,
        "category": ticket.category,
        "event_time": ticket.event_time.isoformat(),
    }
    if ticket.category == "cancellation":
        profile = _profile(session, ticket.customer_id)
        if profile.left_at is None or ticket.event_time < profile.left_at:
            profile.left_at = ticket.event_time
        for task in open_tasks:
            close_as_missed(
                session=session, task=task, reason=LEFT_BEFORE_CONTACT, now=now, detail=detail
            )
            changed.append(task.id)
        return changed
    if ticket.category not in COMPLAINT_CATEGORIES:
        return changed
    for task in open_tasks:
        if task.flag:
            continue  # flagged once; later tickets add nothing the team does not know
        if task.kind == "visit" and ticket.device_id not in (None, task.device_id):
            continue
        if task.kind == "retention" and ticket.category != "complaint":
            continue
        task.flag = COMPLAINED_BEFORE_VISIT if task.kind == "visit" else COMPLAINED_BEFORE_CALL
        task.missed = True
        task.updated_at = now
        add_history(
            session=session,
            task_id=task.id,
            action="flagged",
            at=now,
            detail={"reason": task.flag, **detail},
        )
        add_delivery(session=session, task=task, event="task.flagged", now=now)
        changed.append(task.id)
    return changed
