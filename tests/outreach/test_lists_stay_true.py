"""Lists that stay true (issue 17, item 1): what happens to the customer closes or flags their
proactive tasks, with the reason, as misses; tasks expire; replays change nothing. On both
databases."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from forewarn.events import CustomerValue
from outreach.models import Base
from outreach.rules import (
    COMPLAINED_BEFORE_VISIT,
    EXPIRE_AFTER_DUE,
    LEFT_BEFORE_CONTACT,
    OutreachRules,
    in_holdout,
)
from tests.utils import factories
from tests.utils.factories import T0

CUSTOMER = next(f"C{i:05d}" for i in range(1000) if not in_holdout(f"C{i:05d}", OutreachRules()))


def _visit(i: int = 0, device: str = "D00001", **overrides):
    fields = dict(
        customer_id=CUSTOMER,
        device_id=device,
        dedup_key=f"visit:{device}",
        evidence={"device_type": "heat_pump"},
    )
    return factories.alert(i, **(fields | overrides))


def _retention(i: int = 0, **overrides):
    fields = dict(
        kind="churn_risk",
        dedup_key=f"retention:{CUSTOMER}",
        customer_id=CUSTOMER,
        device_id=None,
        fault_kind=None,
        severity="high",
        evidence={"reasons": ["3 late orders"], "value_eur": 800.0, "value_tier": "gold"},
    )
    return factories.alert(i, **(fields | overrides))


def _ticket(category: str, hours: int, **overrides):
    fields = dict(
        customer_id=CUSTOMER,
        event_id=f"{CUSTOMER}-{category}-{hours}",
        ticket_id=f"{CUSTOMER}-T{hours}",
        category=category,
        status="opened",
        event_time=T0 + timedelta(hours=hours),
    )
    return factories.ticket(**(fields | overrides))


def test_a_cancellation_closes_open_proactive_tasks_as_misses(any_store):
    visit = any_store.upsert_alert(_visit())
    retention = any_store.upsert_alert(_retention(1))
    changed = any_store.apply_ticket(_ticket("cancellation", 5))
    assert set(changed) == {visit.task_id, retention.task_id}
    for task_id in changed:
        task = any_store.get(task_id)
        assert (task.status, task.close_reason, task.missed) == (
            "cancelled",
            LEFT_BEFORE_CONTACT,
            True,
        )
        assert task.history[-1].action == "cancelled"
        assert task.history[-1].detail["ticket_id"] == f"{CUSTOMER}-T5"
    assert any_store.daily_list("visit") == [] and any_store.daily_list("retention") == []
    kpis = any_store.proactive_kpis("visit")
    assert kpis["missed"] == 1 and kpis["missed_by_reason"] == {LEFT_BEFORE_CONTACT: 1}
    assert any_store.counts()["misses"] == {
        ("visit", LEFT_BEFORE_CONTACT): 1,
        ("retention", LEFT_BEFORE_CONTACT): 1,
    }


def test_no_new_proactive_task_opens_for_a_customer_who_left(any_store):
    any_store.apply_ticket(_ticket("cancellation", 5))
    assert any_store.upsert_alert(_visit(9)) is None, "evidence after the cancellation"
    assert any_store.upsert_alert(_retention(10)) is None
    assert any_store.daily_list("visit") == [] and any_store.daily_list("retention") == []


def test_late_evidence_from_before_a_cancellation_ends_as_if_it_had_come_first(any_store):
    """Tickets and alerts are separate topics: either order ends with the same task."""
    any_store.apply_ticket(_ticket("cancellation", 5))
    late = any_store.upsert_alert(_visit(2))
    task = any_store.get(late.task_id)
    assert (task.status, task.close_reason, task.missed) == (
        "cancelled",
        LEFT_BEFORE_CONTACT,
        True,
    )
    assert any_store.daily_list("visit") == []


def test_evidence_of_one_root_cause_gives_one_task_whichever_side_of_the_cancellation_it_lands(
    any_store,
):
    """Two alerts before the cancellation, the second read after it (a restarted worker
    reorders topics): one task holding both, as when both came first. CI found two."""
    first = any_store.upsert_alert(_retention(1))
    any_store.apply_ticket(_ticket("cancellation", 5))
    second = any_store.upsert_alert(_retention(2))
    assert second is not None and second.task_id == first.task_id
    tasks = [t for t in any_store.tasks(kind="retention") if t.customer_id == CUSTOMER]
    assert len(tasks) == 1
    task = any_store.get(first.task_id)
    assert task.status == "cancelled" and task.close_reason == LEFT_BEFORE_CONTACT
    assert [a["alert_id"] for a in task.evidence["alerts"]] == [
        _retention(1).alert_id,
        _retention(2).alert_id,
    ]
    assert any_store.upsert_alert(_retention(2)).task_id == first.task_id, "a replay"


def _visit_record(outcome: str | None, hours: int = 3, visit_id: str = "V1"):
    from forewarn.events import MaintenanceVisit

    return MaintenanceVisit(
        event_id=f"fsm-{visit_id}",
        event_time=T0 + timedelta(hours=hours),
        visit_id=visit_id,
        device_id="D00001",
        customer_id=CUSTOMER,
        outcome=outcome,
        technician="tom",
    )


def test_a_visit_recorded_in_the_field_service_system_closes_the_task_it_answers(any_store):
    visit = any_store.upsert_alert(_visit())
    other = any_store.upsert_alert(_visit(1, device="D00002"))
    assert any_store.apply_maintenance(_visit_record("fixed")) == [visit.task_id]
    task = any_store.get(visit.task_id)
    assert (task.status, task.outcome) == ("done", "fixed")
    assert task.history[-1].actor == "field-service system"
    assert "visit V1" in task.history[-1].detail["note"]
    assert any_store.get(other.task_id).status == "open", "another device's visit"
    assert any_store.apply_maintenance(_visit_record("fixed")) == [], "a replay changes nothing"
    assert any_store.upsert_alert(_visit(20)) is None, "suppressed: fixed 17 h before"


def test_an_unfinished_visit_leaves_a_note_and_an_earlier_one_answers_nothing(any_store):
    visit = any_store.upsert_alert(_visit(5))
    assert any_store.apply_maintenance(_visit_record("fixed", hours=2, visit_id="V0")) == []
    assert any_store.apply_maintenance(_visit_record("not_fixed", hours=8)) == [visit.task_id]
    assert any_store.apply_maintenance(_visit_record("not_fixed", hours=8)) == []
    task = any_store.get(visit.task_id)
    assert task.status == "open" and task.history[-1].action == "noted"


def test_a_replayed_cancellation_changes_nothing(any_store):
    visit = any_store.upsert_alert(_visit())
    any_store.apply_ticket(_ticket("cancellation", 5))
    version = any_store.get(visit.task_id).version
    assert any_store.apply_ticket(_ticket("cancellation", 5)) == []
    assert any_store.get(visit.task_id).version == version


def test_a_complaint_about_the_device_flags_the_open_visit(any_store):
    visit = any_store.upsert_alert(_visit())
    other = any_store.upsert_alert(_visit(1, device="D00002"))
    assert any_store.apply_ticket(_ticket("fault", 3, device_id="D00001")) == [visit.task_id]
    flagged = any_store.get(visit.task_id)
    assert flagged.status == "open", "the unit still needs fixing"
    assert (flagged.flag, flagged.missed) == (COMPLAINED_BEFORE_VISIT, True)
    assert not any_store.get(other.task_id).missed, "another device's visit is untouched"
    assert any_store.apply_ticket(_ticket("fault", 4, device_id="D00001")) == [], "once"
    assert any_store.proactive_kpis("visit")["missed_by_reason"] == {COMPLAINED_BEFORE_VISIT: 1}


def test_billing_questions_change_nothing(any_store):
    any_store.upsert_alert(_visit())
    assert any_store.apply_ticket(_ticket("billing", 3)) == []
    assert any_store.apply_ticket(_ticket("question", 3)) == []


def test_open_tasks_expire_a_documented_time_after_they_were_due(any_store):
    visit = any_store.upsert_alert(_visit(severity="critical"))
    due = any_store.get(visit.task_id).due_at
    assert any_store.expire_stale(now=due + EXPIRE_AFTER_DUE["visit"] - timedelta(minutes=1)) == []
    assert any_store.expire_stale(now=due + EXPIRE_AFTER_DUE["visit"] + timedelta(minutes=1)) == [
        visit.task_id
    ]
    task = any_store.get(visit.task_id)
    assert task.status == "expired" and task.missed and task.close_reason.startswith("expired")
    assert any_store.proactive_kpis("visit")["missed_by_reason"] == {"expired": 1}


def test_a_device_alert_carries_the_owners_value_tier(any_store):
    any_store.apply_customer_value(
        CustomerValue(
            event_id="v1",
            event_time=T0,
            customer_id=CUSTOMER,
            p_alive=0.9,
            expected_purchases_90d=2.0,
            clv_90d=300.0,
            clv_365d=1200.0,
            value_tier="platinum",
        )
    )
    visit = any_store.get(any_store.upsert_alert(_visit()).task_id)
    assert visit.value_tier == "platinum" and visit.value_at_stake == 1200.0
    assert visit.title == "Heat pump D00001: vibration rising"


def test_one_open_reply_task_per_customer_new_tickets_attach(any_store):
    def feedback(i: int, ticket: str):
        return factories.alert(
            i,
            kind="negative_feedback",
            dedup_key=f"feedback:{ticket}",
            customer_id=CUSTOMER,
            device_id=None,
            fault_kind=None,
            severity="high",
        )

    first = any_store.upsert_alert(feedback(0, "T1"))
    second = any_store.upsert_alert(feedback(1, "T2"))
    assert second.task_id == first.task_id and not second.created
    assert len(any_store.daily_list("feedback")) == 1
    any_store.record_outcome(first.task_id, outcome="replied", actor="sam", now=T0)
    assert any_store.upsert_alert(feedback(2, "T2")) is None, "news of an answered ticket"
    third = any_store.upsert_alert(feedback(3, "T3"))
    assert third is not None and third.created, "a new ticket after the reply"


def test_no_answer_keeps_the_task_open_and_counts_attempts(any_store):
    visit = any_store.upsert_alert(_visit())
    for _ in range(2):
        any_store.record_outcome(visit.task_id, outcome="no_answer", actor="tom")
    task = any_store.get(visit.task_id)
    assert task.status == "open" and task.attempts == 2 and task.outcome is None
    assert [h.action for h in task.history[-2:]] == ["no_answer", "no_answer"]


def test_one_contact_covers_both_linked_tasks(any_store):
    visit = any_store.upsert_alert(_visit())
    retention = any_store.upsert_alert(_retention(1))
    any_store.record_outcome(
        visit.task_id, outcome="fixed", actor="tom", linked_outcome="customer_kept"
    )
    linked = any_store.get(retention.task_id)
    assert (linked.status, linked.outcome) == ("done", "customer_kept")
    assert linked.history[-1].detail["via_task"] == visit.task_id
    assert linked.history[-1].actor == "tom"


def test_a_contact_that_did_not_settle_the_linked_task_is_noted_on_it(any_store):
    visit = any_store.upsert_alert(_visit())
    retention = any_store.upsert_alert(_retention(1))
    any_store.record_outcome(visit.task_id, outcome="fixed", actor="tom", note="talked")
    linked = any_store.get(retention.task_id)
    assert linked.status == "open" and linked.history[-1].action == "contacted"


def test_a_closed_task_reopens_with_a_reason(any_store):
    visit = any_store.upsert_alert(_visit())
    any_store.record_outcome(visit.task_id, outcome="fixed", actor="tom")
    any_store.reopen(visit.task_id, reason="closed the wrong visit", actor="dana")
    task = any_store.get(visit.task_id)
    assert task.status == "open" and task.outcome is None and task.closed_at is None
    assert any_store.daily_list("visit")[0].id == visit.task_id
    assert task.history[-1].detail["reason"] == "closed the wrong visit"


def test_the_migrations_build_the_schema_the_models_describe(any_store):
    with any_store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # Index and type nuances aside, no table or column may be missing on either side.
    missing = [
        d for d in diff if d[0] in ("add_table", "remove_table", "add_column", "remove_column")
    ]
    assert missing == []
    assert sa.inspect(any_store.engine).has_table("tasks")
