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
    priority_of,
    queue_of,
    suggestion_of,
    title_of,
)
from tests.utils import factories


@pytest.mark.parametrize(
    ("severity", "confidence", "expected"),
    [("low", 0.0, 25), ("medium", 0.5, 54), ("high", 0.99, 84), ("critical", 1.0, 99)],
)
def test_priority_is_the_severity_band_ordered_by_confidence(severity, confidence, expected):
    assert priority_of(factories.alert(severity=severity, confidence=confidence)) == expected


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


def test_closed_states_are_final_and_every_target_is_a_state():
    for state in ("done", "cancelled", "expired"):
        assert TRANSITIONS[state] == ()
    assert {t for targets in TRANSITIONS.values() for t in targets} <= set(TRANSITIONS)
    assert "in_progress" not in TRANSITIONS["in_progress"]


def test_titles_suggestions_and_queues_name_what_to_do():
    visit = factories.alert(evidence={"device_type": "heat_pump"}, fault_kind="failure")
    assert title_of(visit, "visit") == "Visit heat pump D00001: failure"
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
