"""Alerts become outreach tasks: an idempotent upsert, then the offset may be committed.

The agent awaits the store before taking the next alert, and Faust commits an offset only
after the agent has moved past it, so a task is stored before its alert's offset is committed.
While the database is down the agent retries with back-off and commits nothing.

A second agent keeps the lists true (issue 17): tickets, the nightly's customer values and the
CRM's customer records (``forewarn import customers``: contact details) and the field-service
system's recorded visits (``forewarn import maintenance``: a fixed device's visit task closes)
reach the store too. A
cancellation closes the customer's open proactive tasks, a complaint flags the device's open
visit (:func:`outreach.crud.customers.apply_ticket`), and a customer value gives visits the
owner's value tier (device alerts know no customer value). All are idempotent, so at-least-once
delivery is enough. Tickets and alerts are separate topics, which Kafka does not order against
each other: an alert read after the cancellation that it predates still joins or opens its task
(by event time it came first), one raised after it opens none.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from sqlalchemy.exc import OperationalError

from forewarn.events import (
    Alert,
    CustomerAttributes,
    CustomerValue,
    Event,
    InvalidEvent,
    MaintenanceVisit,
    Ticket,
    decode,
    encode,
)
from outreach.rules import COMPLAINT_CATEGORIES
from outreach.store import TaskStore
from streams.app import TICKETS, alerts_topic, app, outreach_tasks_topic, settings
from streams.dead_letters import counters, dead_letter, reject
from streams.metrics import observe_task_stored
from streams.retry import with_retry

log = logging.getLogger(__name__)


@functools.cache
def task_store() -> TaskStore:
    """Opened on first use, not at import: importing the app must not touch a database. The
    worker may start before the outreach service, so it brings the schema up first."""
    return TaskStore(settings.database_url)


async def store_with_retry(alert: Alert):  # type: ignore[no-untyped-def]
    """Upsert ``alert``'s task, waiting out a database outage (only that is retried: any other
    refusal is the alert's own, see the agent)."""
    return await with_retry(
        lambda: asyncio.to_thread(task_store().upsert_alert, alert),
        f"outreach store unavailable: storing alert {alert.alert_id}",
        (OperationalError,),
        log,
    )


@app.agent(alerts_topic)
async def store_outreach_tasks(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        try:
            alert = decode(alerts_topic.get_topic_name(), event.value)
        except InvalidEvent as exc:
            log.error("invalid alert at offset %d skipped: %s", event.message.offset, exc)
            continue
        assert isinstance(alert, Alert)
        started = time.perf_counter()
        try:
            task = await store_with_retry(alert)
        except Exception as exc:  # one alert the store cannot take must not stop every task
            message = event.message
            log.exception("the outreach store refused alert %s", alert.alert_id)
            reason = f"the outreach store refused this alert: {exc!r}"
            letter = dead_letter(
                message.topic, message.partition, message.offset, event.value, reason
            )
            await reject([letter], "refused")
            continue
        # The alert's message timestamp is when a detector raised it (its event_time is the
        # evidence's time, which a replay puts in the past).
        observe_task_stored(time.perf_counter() - started, event.message.timestamp)
        if task is None:
            counters["alerts.suppressed"] += 1  # root cause fixed recently
            continue
        await outreach_tasks_topic.send(key=task.dedup_key.encode(), value=encode(task))


#: Tickets that can make a proactive task stale: the rest never reach the store.
STALE_MAKING = ("cancellation", *COMPLAINT_CATEGORIES)
customer_events_topic = app.topic(
    TICKETS, CustomerValue.topic, CustomerAttributes.topic, MaintenanceVisit.topic, internal=False
)


def apply_customer_event(store: TaskStore, event: Event) -> list[str]:
    """Hand a ticket, a customer value, a CRM record or a recorded maintenance visit to the
    store; return the ids of the tasks it closed, flagged or noted on (plain and synchronous:
    the agent runs it in a thread, tests call it). A CRM record brings the contact and routing
    fields it has (empty ones keep what the store holds)."""
    if isinstance(event, Ticket) and event.category in STALE_MAKING:
        return store.apply_ticket(event)
    if isinstance(event, MaintenanceVisit):
        return store.apply_maintenance(event)
    if isinstance(event, CustomerValue):
        store.apply_customer_value(event)
    if isinstance(event, CustomerAttributes):
        profile = {name: str(getattr(event, name) or "") for name in event.contact_fields}
        store.import_customers(
            [{"customer_id": event.customer_id, **{k: v for k, v in profile.items() if v}}]
        )
    return []


@app.agent(customer_events_topic)
async def close_stale_tasks(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        message = event.message
        try:
            customer_event = decode(message.topic, event.value)
        except InvalidEvent:
            continue  # dead-lettered by the intake (tickets) or the customer agent (values)
        try:
            changed = await with_retry(
                lambda e=customer_event: asyncio.to_thread(apply_customer_event, task_store(), e),
                f"outreach store unavailable: applying {message.topic} offset {message.offset}",
                (OperationalError,),
                log,
            )
        except Exception as exc:  # one event the store cannot take must not stop the rest
            log.exception("the outreach store refused %s offset %d", message.topic, message.offset)
            reason = f"the outreach store refused this event: {exc!r}"
            letter = dead_letter(
                message.topic, message.partition, message.offset, event.value, reason
            )
            await reject([letter], "refused")
            continue
        counters["outreach.tasks_closed_or_flagged"] += len(changed)
