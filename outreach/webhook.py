"""Outbound webhook to a CRM: HMAC-signed, retried with back-off, dead-lettered, never lost.

Every task change writes a row to the ``webhook_deliveries`` outbox in the same transaction as
the change (:mod:`outreach.crud.webhooks`), so a crash between the two is impossible. The deliverer
posts due rows in order; a 2xx answer marks a row delivered, anything else (including a
receiver that is down) schedules a retry after ``base_delay_s * 2**attempts`` (capped), and
after ``max_attempts`` the row is ``dead``: kept, listed for admins, and re-drivable.

Receivers verify ``X-Forewarn-Signature: sha256=<hex>``, an HMAC-SHA256 with the shared
secret over ``<X-Forewarn-Timestamp>.<body>`` (:func:`verify` does it), and should use the
payload's ``version`` to ignore an older state that arrives after a newer one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx

from outreach.crud import webhooks
from outreach.models import WebhookDelivery
from outreach.store import TaskStore

log = logging.getLogger(__name__)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """True if ``signature`` is ours for this body and the timestamp is fresh (no replays)."""
    try:
        age = abs((now or time.time()) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookDeliverer:
    """Delivers the outbox to ``url``.

    Parameters
    ----------
    store : TaskStore
    url : str
        The CRM's endpoint.
    secret : bytes
        Shared HMAC secret; required (an unsigned webhook would let anyone forge tasks).
    max_attempts : int
        Attempts before a delivery is dead-lettered.
    base_delay_s, max_delay_s : float
        Exponential back-off between attempts.
    """

    def __init__(
        self,
        store: TaskStore,
        url: str,
        secret: bytes,
        *,
        max_attempts: int = 8,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        timeout_s: float = 5.0,
    ) -> None:
        if not secret:
            raise ValueError("webhook secret is empty: set FOREWARN_WEBHOOK_SECRET (or _FILE)")
        self.store, self.url, self.secret = store, url, secret
        self.max_attempts, self.base_delay_s, self.max_delay_s = (
            max_attempts,
            base_delay_s,
            max_delay_s,
        )
        self.client = httpx.Client(timeout=timeout_s)

    def deliver_due(self, now: datetime | None = None, limit: int = 200) -> dict[str, int]:
        """One pass over the due deliveries; returns counts by result."""
        now = now or datetime.now(UTC)
        counts = {"delivered": 0, "retry": 0, "dead": 0}
        with self.store.sessions() as session:
            due = webhooks.due_deliveries(session=session, now=now, limit=limit)
        for delivery in due:
            result = self._attempt(delivery, now)
            counts[result] += 1
        return counts

    def _attempt(self, delivery: WebhookDelivery, now: datetime) -> str:
        body = json.dumps(
            {"event": delivery.event, "delivery_id": delivery.id, "task": delivery.payload},
            sort_keys=True,
        ).encode()
        timestamp = str(int(time.time()))
        error = ""
        try:
            response = self.client.post(
                self.url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Forewarn-Event": delivery.event,
                    "X-Forewarn-Delivery": str(delivery.id),
                    "X-Forewarn-Timestamp": timestamp,
                    "X-Forewarn-Signature": sign(self.secret, timestamp, body),
                },
            )
            if 200 <= response.status_code < 300:
                return self._record(delivery.id, status="delivered", now=now)
            error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = delivery.attempts + 1
        if attempts >= self.max_attempts:
            log.error(
                "webhook delivery %d dead after %d attempts: %s", delivery.id, attempts, error
            )
            return self._record(delivery.id, status="dead", now=now, attempts=attempts, error=error)
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempts - 1))
        self._record(
            delivery.id,
            status="pending",
            now=now,
            attempts=attempts,
            error=error,
            next_at=now + timedelta(seconds=delay),
        )
        return "retry"

    def _record(
        self,
        delivery_id: int,
        *,
        status: str,
        now: datetime,
        attempts: int | None = None,
        error: str = "",
        next_at: datetime | None = None,
    ) -> str:
        with self.store.sessions.begin() as session:
            webhooks.record_attempt(
                session=session,
                delivery_id=delivery_id,
                status=status,
                now=now,
                attempts=attempts,
                error=error,
                next_at=next_at,
            )
        return "dead" if status == "dead" else "delivered" if status == "delivered" else "retry"

    def redrive(self, delivery_id: int) -> None:
        """Give a dead delivery a fresh set of attempts."""
        with self.store.sessions.begin() as session:
            webhooks.redrive(session=session, delivery_id=delivery_id)

    def dead(self) -> list[WebhookDelivery]:
        with self.store.sessions() as session:
            return webhooks.dead_deliveries(session=session)

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Deliver until ``stop`` is set (the serve process runs this in a thread)."""
        while not stop.is_set():
            try:
                self.deliver_due()
            except Exception:  # keep delivering after a database hiccup
                log.exception("webhook pass failed; retrying")
            stop.wait(interval_s)
