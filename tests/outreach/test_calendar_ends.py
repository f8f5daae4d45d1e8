"""Tasks from alerts at both ends of event time, on both databases: a complaint dated
9999-12-31T23:30Z overflowed the due-time calculation and stopped task creation for everyone.
The contract now keeps times inside [EVENT_TIME_FLOOR, EVENT_TIME_CEILING); here every date
computed from such an alert (due time, suppression window, the outbox) must work."""

from __future__ import annotations

from datetime import timedelta

import pytest

from forewarn.events import EVENT_TIME_CEILING, EVENT_TIME_FLOOR
from outreach.rules import due_of
from tests.utils import factories

LAST = EVENT_TIME_CEILING - timedelta(microseconds=1)


@pytest.mark.parametrize("when", [EVENT_TIME_FLOOR, LAST], ids=["floor", "ceiling"])
@pytest.mark.parametrize(
    ("kind", "dedup_key"),
    [
        ("device_fault", "visit:D00001"),
        ("negative_feedback", "feedback:T1"),
        ("churn_risk", "retention:C00001"),
    ],
)
def test_tasks_at_the_ends_of_event_time(any_store, when, kind, dedup_key):
    alert = factories.alert(
        event_time=when, kind=kind, dedup_key=dedup_key, severity="low", alert_id=f"a-{kind}"
    )
    task = any_store.upsert_alert(alert, now=when)
    assert task is not None
    assert task.due_time - when in (timedelta(hours=1), timedelta(days=7))
    (stored,) = any_store.tasks(customer_id=alert.customer_id)
    assert stored.due_at == task.due_time
    assert due_of(alert, "feedback") > when
