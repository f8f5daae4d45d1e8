"""Alerts become outreach tasks: an idempotent upsert, then the offset may be committed.

The agent awaits the store before taking the next alert, and Faust commits an offset only
after the agent has moved past it, so a task is stored before its alert's offset is committed.
While the database is down the agent retries with back-off and commits nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from sqlalchemy.exc import OperationalError

from forewarn.events import Alert, InvalidEvent, decode, encode
from outreach.store import TaskStore
from streams.app import alerts_topic, app, outreach_tasks_topic, settings
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
