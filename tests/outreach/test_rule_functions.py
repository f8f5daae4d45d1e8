"""The outreach rules as plain functions: no store, no database (the lifecycle as the store
applies it is in test_rules.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from outreach.rules import (
    KIND_OUTCOMES,
    SLA,
    TRANSITIONS,
    OutreachRules,
    due_of,
    in_holdout,
    may_act,
    priority_of,
    queue_of,
    suggestion_of,
    title_of,
)
from tests.utils import factories


@pytest.mark.parametrize(
    ("severity", "confidence", "tier", "expected"),
    [
        ("low", 0.0, "bronze", 10),
        ("medium", 0.5, "", 45),
        ("high", 0.99, "gold", 80),
        ("critical", 1.0, "platinum", 100),
        ("critical", 0.5, "bronze", 75),
    ],
)
def test_priority_is_severity_likelihood_and_customer_value(severity, confidence, tier, expected):
    alert = factories.alert(severity=severity, confidence=confidence)
    assert priority_of(alert, tier) == expected


def test_a_sure_fault_at_a_valuable_customer_outranks_an_unsure_critical_one():
    sure_gold = factories.alert(severity="high", confidence=0.95)
    unsure_bronze = factories.alert(severity="critical", confidence=0.3)
    assert priority_of(sure_gold, "gold") > priority_of(unsure_bronze, "bronze")


def test_a_failure_probability_from_a_model_wins_over_the_detectors_confidence():
    alert = factories.alert(severity="high", confidence=0.5, evidence={"failure_probability": 1.0})
    assert priority_of(alert, "bronze") == 50 + 20


def test_nobody_acts_on_a_visit_assigned_to_someone_else_but_dispatchers():
    assert may_act("technician", "tom", "visit", "tara", "work") is not None
    assert may_act("technician", "tom", "visit", "tom", "work") is None
    assert may_act("technician", "tom", "visit", None, "claim") is None
    assert may_act("technician", "tom", "visit", None, "assign") is not None
    assert may_act("dispatcher", "dana", "visit", "tara", "assign") is None
    assert may_act("dispatcher", "dana", "visit", "tara", "reopen") is None
    assert may_act("retention", "rita", "retention", None, "reopen") is not None
    assert may_act("support", "sam", "visit", None, "view") is not None


def test_feedback_is_due_within_the_hour_others_by_severity():
    alert = factories.alert(severity="low")
    assert due_of(alert, "feedback") - alert.event_time == timedelta(hours=1)
    for severity, sla in SLA.items():
        alert = factories.alert(severity=severity)
        assert due_of(alert, "visit") - alert.event_time == sla
    assert SLA["critical"] < SLA["high"] < SLA["medium"] < SLA["low"]


def test_holdout_is_stable_and_about_its_share():
    rules = OutreachRules(holdout_share=0.2)
    customers = [f"C{i:05d}" for i in range(5000)]
    held = [c for c in customers if in_holdout(c, rules)]
    assert held == [c for c in customers if in_holdout(c, rules)]  # same answer every time
    assert 0.17 < len(held) / len(customers) < 0.23
    assert not any(in_holdout(c, OutreachRules(holdout_share=0.0)) for c in customers[:100])


def test_closed_states_only_reopen_and_every_target_is_a_state():
    for state in ("done", "cancelled", "expired"):
        assert TRANSITIONS[state] == (), "reopen_task, by dispatchers and admins, only"
    assert {t for targets in TRANSITIONS.values() for t in targets} <= set(TRANSITIONS)
    assert "in_progress" not in TRANSITIONS["in_progress"]


def test_titles_suggestions_and_queues_name_what_to_do():
    visit = factories.alert(evidence={"device_type": "heat_pump"}, fault_kind="failure")
    assert title_of(visit, "visit") == "Heat pump D00001: the unit reported a failure"
    drift = factories.alert(
        evidence={"device_type": "heat_pump"},
        fault_kind="drift:current_a",
        explanation="current_a 0.8 sigma above this unit's baseline (7 seen, 6 expected at "
        "this hour) for 43 h; error E42 x3 in 24 h",
    )
    assert title_of(drift, "visit") == "Heat pump D00170: current rising for 43 h".replace(
        "D00170", "D00001"
    )
    assert "sigma" not in title_of(drift, "visit") and "_" not in title_of(drift, "visit")
    assert "hvac technician" in suggestion_of(visit, "visit")
    retention = factories.alert(
        kind="churn_risk", severity="high", evidence={"reasons": ["3 late orders"]}
    )
    assert "goodwill credit" in suggestion_of(retention, "retention")
    assert "Address first: 3 late orders." in suggestion_of(retention, "retention")
    assert queue_of("visit", "north", "", "water_heater") == "north/plumbing"
    assert queue_of("visit", "", "", "toaster") == "unassigned/general"
    assert queue_of("retention", "", "gold", "") == "gold"
    assert queue_of("feedback", "x", "gold", "y") == "all"
    assert set(KIND_OUTCOMES) == {"visit", "retention", "feedback"}
