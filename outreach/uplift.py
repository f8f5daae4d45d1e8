"""Did the outreach work? Compare contacted at-risk customers with the random holdout.

Only customers with a *recorded contact* count as contacted: a retention task closed with an
outcome that says someone spoke to the customer (:data:`outreach.rules.CONTACT_OUTCOMES`).
Open tasks, "no answer" attempts and tasks that closed by themselves (the customer left first,
expired) are counted apart, never as contacted: treating every non-holdout task as contacted
showed "+36.2 points" before a single outcome was recorded (issue 17).

Both groups are judged the same way, from the event lake rather than from what staff record: a
customer counts as lost if a cancellation ticket follows their retention task. The difference
in retention rates gets a 95% interval by Newcombe's hybrid score method (method 10: Wilson
intervals of each rate, combined), which keeps its coverage for small groups where the normal
approximation does not. Below :data:`MIN_OUTCOMES` customers in either group the report says
"not enough outcomes yet" and gives no difference at all.

References
----------
Newcombe, R. G. (1998). Interval estimation for the difference between independent
proportions: comparison of eleven methods. Statistics in Medicine 17, 873-890.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from outreach.models import Task
from outreach.rules import CONTACT_OUTCOMES

#: Customers each group needs before a difference is shown. With 20 a group, a Newcombe
#: interval is still about +-0.3 wide: enough to see a large effect, not to rank offers.
MIN_OUTCOMES = 20
Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    Examples
    --------
    >>> [round(x, 4) for x in wilson(15, 20)]
    [0.5313, 0.8881]
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(kept1: int, n1: int, kept2: int, n2: int) -> tuple[float, float]:
    """95% interval of ``kept1/n1 - kept2/n2`` (Newcombe's hybrid score, method 10).

    Examples
    --------
    >>> [round(x, 4) for x in newcombe(56, 70, 48, 80)]
    [0.0524, 0.3339]
    """
    p1, p2 = kept1 / n1, kept2 / n2
    l1, u1 = wilson(kept1, n1)
    l2, u2 = wilson(kept2, n2)
    d = p1 - p2
    return (
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def churn_times(lake_dir: Path) -> dict[str, datetime]:
    """Customer -> time of their first cancellation ticket, from the lake."""
    from forewarn.lake import read_events

    table = read_events(lake_dir, "tickets", columns=["customer_id", "event_time", "category"])
    first: dict[str, datetime] = {}
    for row in table.to_pylist():
        if row["category"] == "cancellation":
            first.setdefault(row["customer_id"], row["event_time"])
    return first


def uplift_report(retention_tasks: Iterable[Task], churned: dict[str, datetime]) -> dict[str, Any]:
    """Contacted versus held-out customers among ``retention_tasks``, judged by ``churned``
    (customer -> first cancellation, :func:`churn_times`)."""
    groups: dict[str, dict[str, int]] = {
        "contacted": {"customers": 0, "lost": 0},
        "holdout": {"customers": 0, "lost": 0},
    }
    not_contacted = 0
    outcomes: dict[str, int] = {}
    for task in retention_tasks:
        if task.outcome:
            outcomes[task.outcome] = outcomes.get(task.outcome, 0) + 1
        if task.holdout:
            group = groups["holdout"]
        elif task.outcome in CONTACT_OUTCOMES:
            group = groups["contacted"]
        else:
            not_contacted += 1
            continue
        group["customers"] += 1
        left = churned.get(task.customer_id)
        group["lost"] += int(left is not None and left >= task.detected_at)
    rates = {
        name: (g["customers"] - g["lost"]) / g["customers"] if g["customers"] else None
        for name, g in groups.items()
    }
    report: dict[str, Any] = {
        "groups": groups,
        "not_contacted_yet": not_contacted,
        "retention_rate": rates,
        "recorded_outcomes": outcomes,
        "min_outcomes": MIN_OUTCOMES,
        "method": "Newcombe hybrid score (Wilson), 95%",
    }
    a, b = groups["contacted"], groups["holdout"]
    if min(a["customers"], b["customers"]) < MIN_OUTCOMES:
        report["note"] = (
            f"not enough outcomes yet: {a['customers']} contacted and {b['customers']} held-out "
            f"customers; the comparison needs {MIN_OUTCOMES} in each"
        )
        return report
    kept_a, kept_b = a["customers"] - a["lost"], b["customers"] - b["lost"]
    low, high = newcombe(kept_a, a["customers"], kept_b, b["customers"])
    report["uplift"] = round(kept_a / a["customers"] - kept_b / b["customers"], 4)
    report["ci95"] = [round(low, 4), round(high, 4)]
    report["note"] = ""
    return report
