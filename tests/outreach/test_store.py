"""The task store: one open task per root cause, replays change nothing, races lose nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update

from outreach.models import Task, TaskHistory
from tests.utils import factories


@pytest.fixture
def store(any_store):
    return any_store


def test_first_alert_creates_a_visit_task(store):
    task = store.upsert_alert(factories.alert())
    assert task.created and task.kind == "visit" and task.status == "open"
    (stored,) = store.tasks()
    assert stored.team == "field-service"
    assert stored.explanation == "vibration 3.2 sigma above baseline"
    assert stored.evidence["alerts"][0]["alert_id"] == "alert-0"


def test_replayed_alert_changes_nothing(store):
    store.upsert_alert(factories.alert())
    again = store.upsert_alert(factories.alert())
    assert not again.created
    (stored,) = store.tasks()
    assert stored.alert_count == 1


def test_new_evidence_refreshes_the_open_task(store):
    first = store.upsert_alert(factories.alert(0))
    second = store.upsert_alert(
        factories.alert(
            5, severity="critical", confidence=0.95, explanation="unit reported failure F01"
        )
    )
    assert second.task_id == first.task_id and not second.created
    (stored,) = store.tasks()
    assert stored.alert_count == 2
    assert stored.severity == "critical"
    assert stored.priority > first.priority
    assert second.due_time < first.due_time, "a worse fault must be due sooner"
    assert stored.explanation == "unit reported failure F01"


def test_a_closed_task_does_not_absorb_a_new_fault(store):
    first = store.upsert_alert(factories.alert(0))
    with store.sessions.begin() as session:
        session.execute(update(Task).values(status="done", open_key=None))
    second = store.upsert_alert(factories.alert(100))
    assert second.created and second.task_id != first.task_id
    assert len(store.tasks()) == 2 and len(store.tasks(open_only=True)) == 1


def test_concurrent_writers_make_one_task(store):
    alerts = [factories.alert(i) for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(store.upsert_alert, alerts))
    assert len({r.task_id for r in results}) == 1
    (stored,) = store.tasks()
    assert stored.alert_count == 16


def test_history_records_every_change(store):
    store.upsert_alert(factories.alert(0))
    store.upsert_alert(factories.alert(1))
    with store.sessions() as session:
        actions = [h.action for h in session.query(TaskHistory).order_by(TaskHistory.id)]
    assert actions == ["created", "refreshed"]


def test_negative_feedback_is_due_within_one_hour(store):
    task = store.upsert_alert(
        factories.alert(
            kind="negative_feedback",
            dedup_key="feedback:C00001:C00001-T0001",
            device_id=None,
            severity="low",
        )
    )
    assert task.kind == "feedback"
    assert (task.due_time - factories.T0).total_seconds() == 3600
