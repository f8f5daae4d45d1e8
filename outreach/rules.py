"""Outreach rules as plain functions: priority, due time, routing, holdout, lifecycle.

Nothing here touches the database; :mod:`outreach.store` applies the rules in transactions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from forewarn.events import Alert

TASK_KIND = {"device_fault": "visit", "churn_risk": "retention", "negative_feedback": "feedback"}
TEAM = {"visit": "field-service", "retention": "retention", "feedback": "support"}
SEVERITY_PRIORITY = {"low": 25, "medium": 50, "high": 75, "critical": 90}
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
# How long a team has to act, by severity. Negative feedback is answered within one hour
# whatever its severity (MISSION.md, "Answer negative feedback fast").
SLA = {
    "low": timedelta(days=7),
    "medium": timedelta(days=3),
    "high": timedelta(hours=24),
    "critical": timedelta(hours=4),
}
FEEDBACK_SLA = timedelta(hours=1)

#: Allowed status changes; anything else is an InvalidTransition.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("assigned", "in_progress", "done", "cancelled", "expired"),
    "assigned": ("open", "in_progress", "done", "cancelled", "expired"),
    "in_progress": ("assigned", "done", "cancelled"),
    "done": (),
    "cancelled": (),
    "expired": (),
}
#: Outcomes that make sense for each kind of task.
KIND_OUTCOMES = {
    "visit": ("fixed", "no_fault_found", "no_answer"),
    "retention": ("customer_kept", "customer_left", "no_answer"),
    "feedback": ("replied", "customer_kept", "customer_left", "no_answer"),
}
#: Skills a technician needs, by device type (what to bring).
SKILLS = {"heat_pump": "hvac", "water_heater": "plumbing", "alarm_panel": "security"}


@dataclass(frozen=True)
class OutreachRules:
    """Settings of the rules; constructor arguments are the only configuration.

    Parameters
    ----------
    suppress_after_done : dict
        After a task of a kind is done, new alerts for the same root cause open no new task
        for this long (the fix needs time to show).
    holdout_share : float
        Share of at-risk customers who get no retention outreach, chosen by a stable hash of
        the customer id, so the team can measure whether outreach keeps customers.
    capacity : dict
        Tasks each team can finish in a day: the daily lists are cut to it, best first.
    """

    suppress_after_done: dict[str, timedelta] = field(
        default_factory=lambda: {
            "visit": timedelta(days=3),
            "retention": timedelta(days=14),
            "feedback": timedelta(hours=12),
        }
    )
    holdout_share: float = 0.1
    holdout_salt: str = "forewarn-holdout-v1"
    capacity: dict[str, int] = field(
        default_factory=lambda: {"field-service": 20, "retention": 25, "support": 40}
    )
    escalation_bump: int = 10


def priority_of(alert: Alert) -> int:
    """0-100: severity sets the band, confidence orders within it."""
    return min(100, SEVERITY_PRIORITY[alert.severity] + round(alert.confidence * 9))


def due_of(alert: Alert, kind: str) -> datetime:
    return alert.event_time + (FEEDBACK_SLA if kind == "feedback" else SLA[alert.severity])


def in_holdout(customer_id: str, rules: OutreachRules) -> bool:
    """Stable assignment: the same customer is always in the same group."""
    digest = hashlib.sha256(f"{rules.holdout_salt}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rules.holdout_share


def title_of(alert: Alert, kind: str) -> str:
    if kind == "visit":
        device_type = str(alert.evidence.get("device_type", "device")).replace("_", " ")
        return f"Visit {device_type} {alert.device_id}: {alert.fault_kind or 'fault'}"
    if kind == "retention":
        return f"Retention call to {alert.customer_id}"
    return f"Reply to {alert.customer_id} within one hour"


def suggestion_of(alert: Alert, kind: str) -> str:
    """A suggested next step, so nobody starts from a blank page."""
    if kind == "visit":
        skill = SKILLS.get(str(alert.evidence.get("device_type", "")), "general")
        return (
            f"Call the customer to book a visit; send a {skill} technician with spare "
            f"parts for {alert.fault_kind or 'the fault'}; check and tune after the fix."
        )
    if kind == "retention":
        reasons = alert.evidence.get("reasons") or []
        offer = (
            "a goodwill credit and a priority service contact"
            if alert.severity in ("high", "critical")
            else "a check-in call"
        )
        lead = f" Address first: {reasons[0]}." if reasons else ""
        return f"Call, acknowledge what went wrong and offer {offer}.{lead}"
    return (
        "Reply personally on the customer's channel within the hour, apologise, and "
        "say what will happen next; hand over to retention if they mention leaving."
    )


def queue_of(kind: str, territory: str, value_tier: str, device_type: str) -> str:
    """Visits route by territory and skill, retention by value tier, support is one queue."""
    if kind == "visit":
        return f"{territory or 'unassigned'}/{SKILLS.get(device_type, 'general')}"
    if kind == "retention":
        return value_tier or "unknown"
    return "all"
