"""Did the outreach work? Compare contacted at-risk customers with the random holdout.

Both groups are judged the same way, from the event lake rather than from what staff record:
a customer counts as lost if a cancellation ticket follows their retention task. The uplift
is the difference in retention rates with a 95% confidence interval (normal approximation,
Newcombe's caveats apply below about 30 customers a group, which the report says).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from outreach.models import Task


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
    outcomes: dict[str, int] = {}
    for task in retention_tasks:
        group = groups["holdout" if task.holdout else "contacted"]
        group["customers"] += 1
        left = churned.get(task.customer_id)
        group["lost"] += int(left is not None and left >= task.detected_at)
        if task.outcome:
            outcomes[task.outcome] = outcomes.get(task.outcome, 0) + 1
    rates = {}
    for name, g in groups.items():
        n = g["customers"]
        rates[name] = (n - g["lost"]) / n if n else None
    report: dict[str, Any] = {
        "groups": groups,
        "retention_rate": rates,
        "recorded_outcomes": outcomes,
    }
    a, b = groups["contacted"], groups["holdout"]
    if rates["contacted"] is not None and rates["holdout"] is not None:
        diff = rates["contacted"] - rates["holdout"]
        se = math.sqrt(
            rates["contacted"] * (1 - rates["contacted"]) / a["customers"]
            + rates["holdout"] * (1 - rates["holdout"]) / b["customers"]
        )
        report["uplift"] = round(diff, 4)
        report["ci95"] = [round(diff - 1.96 * se, 4), round(diff + 1.96 * se, 4)]
        report["note"] = (
            "small groups: treat the interval as rough"
            if min(a["customers"], b["customers"]) < 30
            else ""
        )
    return report
