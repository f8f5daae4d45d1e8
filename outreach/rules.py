"""Outreach rules as plain functions: priority, due time, routing, holdout, lifecycle.

Nothing here touches the database; :mod:`outreach.store` applies the rules in transactions.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from forewarn.events import Alert

TASK_KIND = {"device_fault": "visit", "churn_risk": "retention", "negative_feedback": "feedback"}
TEAM = {"visit": "field-service", "retention": "retention", "feedback": "support"}
#: Priority 0-100 = severity (10-65) + how likely the failure or the loss is (0-20) + what the
#: customer is worth (0-15). Severity alone made 40 of 41 visits "100 critical" (issue 17), so
#: the bands leave room: a sure fault at a platinum customer outranks an unsure one at bronze.
SEVERITY_PRIORITY = {"low": 10, "medium": 30, "high": 50, "critical": 65}
LIKELIHOOD_POINTS = 20
TIER_POINTS = {"platinum": 15, "gold": 10, "silver": 5, "bronze": 0}
#: A customer whose tier is not known yet is ranked like a silver one, not like the least
#: valuable: missing data must not push a customer down the list.
UNKNOWN_TIER_POINTS = 5
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
#: An open task expires this long after its due time: by then the evidence is stale and the
#: list must not send anyone (issue 17). Rescheduling moves the due time, and so the expiry.
EXPIRE_AFTER_DUE = {
    "visit": timedelta(days=7),
    "retention": timedelta(days=14),
    "feedback": timedelta(days=2),
}
#: Why a proactive task closed or was flagged without anyone working it: each counts as a miss.
LEFT_BEFORE_CONTACT = "customer left before contact"
COMPLAINED_BEFORE_VISIT = "complained before the visit"
COMPLAINED_BEFORE_CALL = "complained before the call"
#: Ticket categories that are a complaint about a device or the service.
COMPLAINT_CATEGORIES = ("fault", "complaint")

#: Allowed status changes; anything else is an InvalidTransition.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("assigned", "in_progress", "done", "cancelled", "expired"),
    "assigned": ("open", "assigned", "in_progress", "done", "cancelled", "expired"),
    "in_progress": ("assigned", "done", "cancelled", "expired"),
    # Closed tasks only reopen, by a dispatcher or an admin (reopen_task), never by a transition.
    "done": (),
    "cancelled": (),
    "expired": (),
}
#: Roles that may reopen a closed task (a mistake must not be permanent, issue 17).
REOPEN_ROLES = ("dispatcher", "admin")
#: Outcomes that record a real conversation with the customer (the uplift counts only these).
CONTACT_OUTCOMES = ("fixed", "no_fault_found", "customer_kept", "customer_left", "replied")
#: Outcomes that make sense for each kind of task.
KIND_OUTCOMES = {
    "visit": ("fixed", "no_fault_found", "no_answer"),
    "retention": ("customer_kept", "customer_left", "no_answer"),
    "feedback": ("replied", "customer_kept", "customer_left", "no_answer"),
}
#: Which task kinds each role works on (and so may read and change).
ROLE_KINDS: dict[str, frozenset[str]] = {
    "technician": frozenset({"visit"}),
    "dispatcher": frozenset({"visit"}),
    "retention": frozenset({"retention"}),
    "support": frozenset({"feedback"}),
    "admin": frozenset({"visit", "retention", "feedback"}),
}
#: Who can be given a task of each kind (a known staff member is a live token of these roles).
ASSIGNABLE_ROLES = {
    "visit": ("technician", "dispatcher"),
    "retention": ("retention",),
    "feedback": ("support",),
}
#: What people do to a task, beyond reading it.
ACTIONS = ("work", "claim", "assign", "reschedule", "snooze", "reopen")
#: Skills a technician needs, by device type (what to bring).
SKILLS = {"heat_pump": "hvac", "water_heater": "plumbing", "alarm_panel": "security"}


def may_act(role: str, name: str, kind: str, assignee: str | None, action: str) -> str | None:
    """Why ``name`` (``role``) may not do ``action`` to a ``kind`` task assigned to
    ``assignee``, in plain words; None if they may.

    A technician works only on their own visits (or unassigned ones, which they may claim);
    dispatchers and admins assign, reschedule, snooze and reopen; retention and support staff
    manage their own queues but do not reopen.

    Examples
    --------
    >>> may_act("technician", "tom", "visit", "tara", "work")
    'this visit is assigned to tara: only tara or a dispatcher can act on it'
    >>> may_act("technician", "tom", "visit", None, "claim") is None
    True
    >>> may_act("retention", "rita", "retention", None, "reopen")
    'only dispatchers and admins reopen tasks'
    """
    if kind not in ROLE_KINDS.get(role, frozenset()):
        return f"role {role} does not work on {kind} tasks"
    if action == "reopen":
        return None if role in REOPEN_ROLES else "only dispatchers and admins reopen tasks"
    if role != "technician" or action == "view":
        return None
    if action in ("assign", "reschedule", "snooze"):
        return "only dispatchers assign, reschedule or snooze visits"
    if assignee not in (None, "", name):
        return (
            f"this visit is assigned to {assignee}: only {assignee} or a dispatcher can act on it"
        )
    return None


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


def likelihood_of(alert: Alert) -> float:
    """How likely the failure (or the loss) is: the model's ``failure_probability`` when the
    alert carries one, else the detector's confidence."""
    p = alert.evidence.get("failure_probability")
    return float(p) if isinstance(p, int | float) and 0 <= p <= 1 else alert.confidence


def priority(severity: str, likelihood: float, value_tier: str = "") -> int:
    """0-100 from severity, likelihood (0-1) and the customer's value tier.

    Examples
    --------
    >>> priority("critical", 0.9, "platinum")
    98
    >>> priority("critical", 0.5, "bronze")
    75
    >>> priority("high", 0.9, "")
    73
    """
    tier = TIER_POINTS.get(value_tier, UNKNOWN_TIER_POINTS)
    return min(100, SEVERITY_PRIORITY[severity] + round(LIKELIHOOD_POINTS * likelihood) + tier)


def priority_of(alert: Alert, value_tier: str = "") -> int:
    """:func:`priority` of an alert for a customer of ``value_tier``."""
    return priority(alert.severity, likelihood_of(alert), value_tier)


def due_of(alert: Alert, kind: str) -> datetime:
    return alert.event_time + (FEEDBACK_SLA if kind == "feedback" else SLA[alert.severity])


def in_holdout(customer_id: str, rules: OutreachRules) -> bool:
    """Stable assignment: the same customer is always in the same group."""
    digest = hashlib.sha256(f"{rules.holdout_salt}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rules.holdout_share


def expires_at(kind: str, due_at: datetime) -> datetime:
    """When an open task of ``kind`` due at ``due_at`` expires (:data:`EXPIRE_AFTER_DUE`)."""
    return due_at + EXPIRE_AFTER_DUE[kind]


#: Sensor names as people say them.
METRIC_WORDS = {
    "vibration_mm_s": "vibration",
    "outlet_temp_c": "outlet temperature",
    "current_a": "current",
    "battery_v": "battery voltage",
    "signal_dbm": "signal strength",
    "sensor_noise_mv": "sensor noise",
    "tank_temp_c": "tank temperature",
    "pressure_bar": "pressure",
}
_UNIT_SUFFIX = re.compile(r"_(mm_s|c|a|v|dbm|mv|bar|pct|hz)$")


def metric_words(name: str) -> str:
    """``current_a`` -> ``current``: a sensor's name in plain words."""
    return METRIC_WORDS.get(name) or _UNIT_SUFFIX.sub("", name).replace("_", " ")


def problem_of(fault_kind: str | None, explanation: str) -> str:
    """What is wrong, in plain words, from the detector's fault kind and explanation.

    Examples
    --------
    >>> why = "current_a 3.1 sigma above this unit's baseline (7.5 seen, 6 expected) for 43 h"
    >>> problem_of("drift:current_a", why)
    'current rising for 43 h'
    >>> problem_of("spikes:vibration_mm_s", "vibration_mm_s spiked beyond 4 sigma 5 times in 24 h")
    'vibration spiking (5 times in 24 h)'
    >>> problem_of("silence", "no reading for 9 h (usually every 60 min)")
    'silent for 9 h'
    """
    kind, _, metric = (fault_kind or "").partition(":")
    first = explanation.split(";", maxsplit=1)[0]
    if kind == "drift":
        direction = "falling" if " below " in first else "rising"
        hours = re.search(r"for (\d+) h", first)
        return f"{metric_words(metric)} {direction}" + (f" for {hours.group(1)} h" if hours else "")
    if kind == "spikes":
        times = re.search(r"(\d+) times in ([\d.]+) h", first)
        return f"{metric_words(metric)} spiking" + (
            f" ({times.group(1)} times in {times.group(2)} h)" if times else ""
        )
    if kind == "failure":
        return "the unit reported a failure"
    if kind == "error_codes":
        return "repeated error codes"
    if kind == "silence":
        hours = re.search(r"no reading for (\d+) h", first)
        return f"silent for {hours.group(1)} h" if hours else "not reporting"
    return "a fault"


def title_of(alert: Alert, kind: str) -> str:
    """A task's title in plain words ("Heat pump D00170: current rising for 43 h")."""
    if kind == "visit":
        device_type = str(alert.evidence.get("device_type") or "device").replace("_", " ")
        problem = problem_of(alert.fault_kind, alert.explanation)
        return f"{device_type.capitalize()} {alert.device_id}: {problem}"
    if kind == "retention":
        return f"Keep {alert.customer_id}: at risk of leaving"
    return f"Reply to {alert.customer_id} within one hour"


def task_key(alert: Alert, kind: str) -> str:
    """The root cause a task stands for: the alert's dedup key, except that a customer has
    one open reply task, whatever the number of tickets (new tickets attach to it)."""
    return f"feedback:{alert.customer_id}" if kind == "feedback" else alert.dedup_key


def suggestion_of(alert: Alert, kind: str) -> str:
    """A suggested next step, so nobody starts from a blank page."""
    if kind == "visit":
        skill = SKILLS.get(str(alert.evidence.get("device_type", "")), "general")
        problem = problem_of(alert.fault_kind, alert.explanation)
        return (
            f"Call the customer to book a visit; send a {skill} technician with the spare "
            f"parts for what the unit shows ({problem}); check and tune after the fix."
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
