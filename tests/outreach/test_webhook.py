"""The CRM webhook against a real local HTTP receiver: signed, retried, dead-lettered, and
nothing lost while the receiver is down."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from outreach.models import WebhookDelivery
from outreach.webhook import WebhookDeliverer, sign, verify
from tests.conftest import free_port_pair
from tests.utils import factories

SECRET = b"a-shared-secret-for-tests"


class Receiver:
    """A CRM stand-in on localhost that checks signatures; it can be stopped and restarted."""

    def __init__(self) -> None:
        self.port = free_port_pair()
        self.received: list[dict] = []
        self.bad_signatures = 0
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(
                    SECRET,
                    self.headers["X-Forewarn-Timestamp"],
                    body,
                    self.headers["X-Forewarn-Signature"],
                )
                if ok:
                    receiver.received.append(json.loads(body))
                else:
                    receiver.bad_signatures += 1
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/forewarn"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _statuses(store) -> list[str]:
    with store.sessions() as session:
        return [
            d.status for d in session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
        ]


def test_changes_are_delivered_signed(any_store, receiver):
    receiver.start()
    task = any_store.upsert_alert(factories.alert())
    any_store.transition(task.task_id, to="done", actor="tom", outcome="fixed")
    counts = WebhookDeliverer(any_store, receiver.url, SECRET).deliver_due()
    assert counts == {"delivered": 2, "retry": 0, "dead": 0}
    assert [r["event"] for r in receiver.received] == ["task.created", "task.done"]
    assert receiver.received[1]["task"]["outcome"] == "fixed"
    assert receiver.bad_signatures == 0


def test_receiver_down_for_a_while_loses_nothing(any_store, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    deliverer = WebhookDeliverer(any_store, receiver.url, SECRET, base_delay_s=1.0)
    for i in range(5):
        any_store.upsert_alert(factories.alert(i, dedup_key=f"visit:D{i}", device_id=f"D{i}"))
    now = datetime.now(UTC)
    assert deliverer.deliver_due(now=now)["retry"] == 5  # nobody listening
    assert deliverer.deliver_due(now=now)["retry"] == 0, "back-off: not due again at once"
    assert deliverer.deliver_due(now=now + timedelta(seconds=1.5))["retry"] == 5
    with any_store.sessions() as session:
        attempts = {d.attempts for d in session.scalars(select(WebhookDelivery))}
    assert attempts == {2}
    # The rest of the pipeline does not wait for the CRM: tasks keep being stored.
    assert any_store.upsert_alert(factories.alert(9, dedup_key="visit:D9", device_id="D9"))
    assert SECRET.decode() not in caplog.text, "the webhook secret must never be logged"
    receiver.start()
    counts = deliverer.deliver_due(now=now + timedelta(seconds=10))
    assert counts["delivered"] == 6
    assert len(receiver.received) == 6 and set(_statuses(any_store)) == {"delivered"}


def test_dead_after_the_last_attempt_and_redrive(any_store, receiver):
    deliverer = WebhookDeliverer(any_store, receiver.url, SECRET, max_attempts=3, base_delay_s=0.01)
    any_store.upsert_alert(factories.alert())
    now = datetime.now(UTC)
    for step in range(3):
        deliverer.deliver_due(now=now + timedelta(seconds=step))
    (dead,) = deliverer.dead()
    assert dead.attempts == 3 and "ConnectError" in dead.last_error
    receiver.start()
    deliverer.redrive(dead.id)
    assert deliverer.deliver_due()["delivered"] == 1
    assert deliverer.dead() == []


def test_signature_rejects_tampering_and_replays():
    body, ts = b'{"a": 1}', str(int(time.time()))
    signature = sign(SECRET, ts, body)
    assert verify(SECRET, ts, body, signature)
    assert not verify(SECRET, ts, b'{"a": 2}', signature)
    assert not verify(b"other-secret", ts, body, signature)
    assert not verify(SECRET, ts, body, signature, now=time.time() + 3600)


def test_a_webhook_without_secret_is_refused(any_store):
    with pytest.raises(ValueError, match="secret is empty"):
        WebhookDeliverer(any_store, "http://127.0.0.1:1/x", b"")
