"""Outreach rules on both databases: lifecycle, suppression, linking, holdout, escalation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from outreach.rules import OutreachRules, in_holdout
from outreach.store import InvalidTransition, StaleTask, TaskNotFound
from tests.utils import factories
from tests.utils.factories import T0


def _retention(i: int = 0, customer: str = "C00001", **overrides):
    fields = dict(
        kind="churn_risk",
        dedup_key=f"retention:{customer}",
        customer_id=customer,
        device_id=None,
        fault_kind=None,
        severity="high",
        evidence={"reasons": ["3 late orders"], "value_eur": 800.0, "value_tier": "gold"},
    )
    return factories.alert(i, **(fields | overrides))


def _not_held_out(prefix: str = "C") -> str:
    return next(
        f"{prefix}{i:05d}"
        for i in range(1000)
        if not in_holdout(f"{prefix}{i:05d}", OutreachRules())
    )


def test_lifecycle_and_history(any_store):
    task = any_store.upsert_alert(factories.alert())
    any_store.transition(task.task_id, to="assigned", actor="dana", assignee="tom")
    any_store.transition(task.task_id, to="in_progress", actor="tom")
    done = any_store.transition(task.task_id, to="done", actor="tom", outcome="fixed")
    assert done.status == "done" and done.outcome == "fixed" and done.open_key is None
    actions = [h.action for h in any_store.get(task.task_id).history]
    assert actions == ["created", "assigned", "in_progress", "done"]


def test_closing_a_closed_task_is_refused(any_store):
    task = any_store.upsert_alert(factories.alert())
    any_store.transition(task.task_id, to="done", actor="tom", outcome="fixed")
    with pytest.raises(InvalidTransition, match="a done task cannot become done"):
        any_store.transition(task.task_id, to="done", actor="tom", outcome="fixed")


def test_done_needs_an_outcome_that_fits_the_kind(any_store):
    task = any_store.upsert_alert(factories.alert())
    with pytest.raises(InvalidTransition, match="needs an outcome"):
        any_store.transition(task.task_id, to="done", actor="tom", outcome="customer_kept")


def test_unknown_task(any_store):
    with pytest.raises(TaskNotFound):
        any_store.transition("nope", to="done", actor="x", outcome="fixed")


def test_concurrent_edit_is_a_conflict_not_a_lost_update(any_store):
    task = any_store.upsert_alert(factories.alert())
    read_version = any_store.get(task.task_id).version
    any_store.transition(
        task.task_id, to="assigned", actor="dana", assignee="tom", expected_version=read_version
    )
    with pytest.raises(StaleTask, match="reload"):
        any_store.transition(
            task.task_id, to="done", actor="eve", outcome="fixed", expected_version=read_version
        )
    assert any_store.get(task.task_id).assignee == "tom"


def test_new_alert_soon_after_a_fix_is_suppressed(any_store):
    task = any_store.upsert_alert(factories.alert(0))
    any_store.transition(
        task.task_id, to="done", actor="tom", outcome="fixed", now=T0 + timedelta(hours=2)
    )
    assert any_store.upsert_alert(factories.alert(20)) is None  # 18 h after the fix
    later = any_store.upsert_alert(factories.alert(24 * 5))  # beyond the 3-day window
    assert later is not None and later.created


def test_a_replay_of_old_history_measures_the_window_in_event_time(any_store):
    """Closed today (wall clock) on evidence from months ago: a replay's later alert of the
    same cause is judged by its own time since that evidence, not suppressed as "recent"."""
    task = any_store.upsert_alert(factories.alert(0))
    any_store.transition(
        task.task_id, to="done", actor="tom", outcome="fixed", now=T0 + timedelta(days=300)
    )
    assert any_store.upsert_alert(factories.alert(20)) is None, "20 h after its last evidence"
    later = any_store.upsert_alert(factories.alert(24 * 5))
    assert later is not None and later.created, "5 days on: a new fault, a new visit"


def test_visit_and_retention_of_one_customer_are_linked(any_store):
    customer = _not_held_out()
    visit = any_store.upsert_alert(
        factories.alert(customer_id=customer, dedup_key="visit:D00009", device_id="D00009")
    )
    retention = any_store.upsert_alert(_retention(1, customer=customer))
    v, r = any_store.get(visit.task_id), any_store.get(retention.task_id)
    assert v.linked_task_id == r.id and r.linked_task_id == v.id
    assert "One contact covers both" in r.suggestion


def test_holdout_customers_get_no_outreach(any_store):
    held = next(f"H{i:05d}" for i in range(1000) if in_holdout(f"H{i:05d}", OutreachRules()))
    task = any_store.upsert_alert(_retention(customer=held))
    stored = any_store.get(task.task_id)
    assert stored.holdout and stored.status == "cancelled"
    assert stored.id not in {t.id for t in any_store.daily_list("retention")}


def test_later_evidence_of_a_held_out_root_cause_joins_its_task(any_store):
    """The holdout is drawn by customer: a second alert of the same root cause is more
    evidence of the held-out task, not a second one (found by a fault test: two held-out
    retention tasks for one customer)."""
    held = next(f"H{i:05d}" for i in range(1000) if in_holdout(f"H{i:05d}", OutreachRules()))
    first = any_store.upsert_alert(_retention(0, customer=held))
    second = any_store.upsert_alert(_retention(1, customer=held, severity="low"))
    assert second.task_id == first.task_id
    stored = any_store.get(first.task_id)
    assert stored.holdout and stored.status == "cancelled" and stored.alert_count == 2
    assert [t.id for t in any_store.tasks() if t.customer_id == held] == [first.task_id]


def test_holdout_share_is_about_right():
    rules = OutreachRules(holdout_share=0.1)
    share = sum(in_holdout(f"C{i:05d}", rules) for i in range(20_000)) / 20_000
    assert 0.09 < share < 0.11


def test_daily_list_is_cut_to_capacity_best_first(any_store):
    any_store.rules = OutreachRules(capacity={"field-service": 3, "retention": 3, "support": 3})
    for i, severity in enumerate(["low", "critical", "medium", "high", "low"]):
        any_store.upsert_alert(
            factories.alert(i, dedup_key=f"visit:D{i}", device_id=f"D{i}", severity=severity)
        )
    today = any_store.daily_list("visit")
    assert [t.severity for t in today] == ["critical", "high", "medium"]


def test_overdue_tasks_escalate_once(any_store):
    task = any_store.upsert_alert(factories.alert(severity="critical"))  # due in 4 h
    before = any_store.get(task.task_id).priority
    assert any_store.escalate_overdue(now=T0 + timedelta(hours=5)) == [task.task_id]
    assert any_store.escalate_overdue(now=T0 + timedelta(hours=6)) == []
    after = any_store.get(task.task_id)
    assert after.escalated and after.priority == min(100, before + 10)


def test_visits_route_by_territory_and_skill(any_store):
    any_store.import_customers([{"customer_id": "C00001", "territory": "north"}])
    task = any_store.upsert_alert(factories.alert(evidence={"device_type": "heat_pump"}))
    assert any_store.get(task.task_id).queue == "north/hvac"


def test_script_and_sql_in_text_are_stored_verbatim(any_store):
    nasty = "'); DROP TABLE tasks; -- <script>alert(1)</script>"
    task = any_store.upsert_alert(factories.alert(explanation=nasty))
    assert any_store.get(task.task_id).explanation == nasty
    assert len(any_store.tasks()) == 1


def test_tokens_are_stored_hashed_and_role_checked(any_store):
    raw = any_store.create_token("rita", "retention")
    assert any_store.authenticate(raw).role == "retention"
    assert any_store.authenticate(raw + "x") is None
    from outreach.models import ApiToken

    with any_store.sessions() as session:
        (row,) = session.query(ApiToken).all()
    assert raw not in (row.token_hash, row.name) and len(row.token_hash) == 64
    with pytest.raises(ValueError, match="role must be one of"):
        any_store.create_token("x", "root")
