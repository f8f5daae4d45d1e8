"""The outreach service's background loops, started in one place.

Two loops run beside the web pages: escalation and expiry of overdue tasks (every minute)
and, when a webhook is configured, delivery of the outbox. Several web replicas must not each
run them, so a replica runs them only if ``FOREWARN_OUTREACH_BACKGROUND`` is on (the default,
right for the single-process local stack); with several replicas, turn it off on all of them and run
``forewarn outreach background`` once (docs/operations.md). Run per replica, two passes
could escalate one task twice and post one delivery twice (issue 14, item 7).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from outreach.config import OutreachSettings
from outreach.store import TaskStore
from outreach.webhook import WebhookDeliverer

log = logging.getLogger(__name__)
ESCALATE_EVERY_S = 60.0


def escalate_forever(store: TaskStore, stop: threading.Event) -> None:
    """Every :data:`ESCALATE_EVERY_S` until ``stop`` is set: escalate overdue tasks, and
    expire those left too long after their due time (outreach.rules.EXPIRE_AFTER_DUE)."""
    while not stop.wait(ESCALATE_EVERY_S):
        try:
            store.escalate_overdue()
            store.expire_stale()
        except Exception:
            log.exception("escalation pass failed; retrying")


def loops(
    store: TaskStore, settings: OutreachSettings
) -> dict[str, Callable[[threading.Event], None]]:
    """The loops to run, by thread name: escalation, and delivery if a webhook is set."""
    named: dict[str, Callable[[threading.Event], None]] = {
        "outreach-escalation": lambda stop: escalate_forever(store, stop)
    }
    if settings.webhook_url:
        deliverer = WebhookDeliverer(store, settings.webhook_url, settings.webhook_secret.encode())
        named["outreach-webhook"] = deliverer.run
    return named


def start(
    store: TaskStore, settings: OutreachSettings, stop: threading.Event
) -> list[threading.Thread]:
    """Start :func:`loops` in daemon threads; they end once ``stop`` is set."""
    threads = [
        threading.Thread(target=loop, args=(stop,), name=name, daemon=True)
        for name, loop in loops(store, settings).items()
    ]
    for thread in threads:
        thread.start()
    log.info("outreach background loops running: %s", ", ".join(t.name for t in threads))
    return threads


def run(settings: OutreachSettings, stop: threading.Event) -> None:
    """Run the loops in this process until ``stop`` is set (``forewarn outreach background``)."""
    store = TaskStore(settings.database_url)
    try:
        threads = start(store, settings, stop)
        stop.wait()
        for thread in threads:
            thread.join(10)
    finally:
        store.close()
