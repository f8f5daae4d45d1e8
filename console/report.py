"""Score a run against its ground truth, side by side with naive baselines.

For every alert kind: recall, precision and the lead-time distribution (median and 10th
percentile before the complaint or the churn); for device faults also false visits per 1,000
devices per month. The demo reports the tasks its Faust worker stored; the quality test scores
the detectors replayed in-process; both go through the functions here.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from simulator.truth import read_churns, read_faults
from simulator.world import Churn, Fault

CHURN_MIN_LEAD = timedelta(days=7)


@dataclass(frozen=True)
class FaultOutcome:
    device_id: str
    kind: str
    metric: str
    onset_time: str
    failure_time: str
    complaint_time: str
    detected_at: str | None
    caught_before_complaint: bool
    caught_before_failure: bool
    hours_before_complaint: float | None


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p10": None}
    ordered = sorted(values)
    p10 = ordered[0] if len(ordered) < 10 else statistics.quantiles(ordered, n=10)[0]
    return {"median": round(statistics.median(ordered), 1), "p10": round(p10, 1)}


def score_devices(
    faults: list[Fault], first_task: dict[str, datetime], *, n_devices: int, days: float
) -> tuple[dict[str, Any], list[FaultOutcome]]:
    """Score one visit task per device (the time it was opened) against injected faults.

    A task counts for a fault when it was opened between the fault's onset and the customer's
    complaint; a task on a device without a fault, or long before the onset, is a false visit.
    """
    by_device = {f.device_id: f for f in faults}
    outcomes = []
    for f in faults:
        at = first_task.get(f.device_id)
        hit = at is not None and f.onset_time <= at < f.complaint_time
        outcomes.append(
            FaultOutcome(
                device_id=f.device_id,
                kind=f.kind,
                metric=f.metric,
                onset_time=f.onset_time.isoformat(),
                failure_time=f.failure_time.isoformat(),
                complaint_time=f.complaint_time.isoformat(),
                detected_at=at.isoformat() if hit and at else None,
                caught_before_complaint=hit,
                caught_before_failure=hit and at < f.failure_time,
                hours_before_complaint=round((f.complaint_time - at).total_seconds() / 3600, 1)
                if hit and at
                else None,
            )
        )
    false_visits = [
        d for d, at in first_task.items() if d not in by_device or at < by_device[d].onset_time
    ]
    caught = sum(o.caught_before_complaint for o in outcomes)
    leads = [o.hours_before_complaint for o in outcomes if o.hours_before_complaint is not None]
    summary = {
        "faults": len(faults),
        "caught_before_complaint": caught,
        "caught_before_failure": sum(o.caught_before_failure for o in outcomes),
        "recall": round(caught / len(faults), 3) if faults else None,
        "tasks": len(first_task),
        "false_visits": len(false_visits),
        "precision": round(1 - len(false_visits) / len(first_task), 3) if first_task else None,
        "lead_hours": _quantiles(leads),
        "false_visits_per_1000_devices_month": round(
            len(false_visits) / max(1, n_devices) * 1000 * 30 / days, 1
        ),
        "by_kind": {
            kind: f"{sum(o.kind == kind and o.caught_before_complaint for o in outcomes)}"
            f"/{sum(o.kind == kind for o in outcomes)}"
            for kind in sorted({o.kind for o in outcomes})
        },
    }
    return summary, outcomes


def score_churn(churns: list[Churn], flags: dict[str, datetime]) -> dict[str, Any]:
    """Churners flagged at least 7 days before they left, and how many flags were right."""
    by_customer = {c.customer_id: c for c in churns}
    leads = [
        (c.churn_time - flags[c.customer_id]).total_seconds() / 86400
        for c in churns
        if c.customer_id in flags
    ]
    early = sum(lead >= CHURN_MIN_LEAD.total_seconds() / 86400 for lead in leads)
    right = sum(1 for cid in flags if cid in by_customer)
    return {
        "churners": len(churns),
        "flagged": len(flags),
        "flagged_7d_before": early,
        "recall_7d": round(early / len(churns), 3) if churns else None,
        "precision": round(right / len(flags), 3) if flags else None,
        "lead_days": _quantiles(leads),
    }


def first_tasks(database_url: str, kind: str) -> dict[str, datetime]:
    """Entity (device for visits, customer otherwise) -> when its first task was detected."""
    from outreach.migrate import migrate
    from outreach.store import TaskStore

    migrate(database_url)
    store = TaskStore(database_url)
    try:
        first: dict[str, datetime] = {}
        for t in sorted(store.tasks(kind=kind), key=lambda t: t.detected_at):
            entity = t.device_id if kind == "visit" else t.customer_id
            first.setdefault(entity or "", t.detected_at)
        return first
    finally:
        store.close()


def quality_report(
    truth_dir: Path, database_url: str, lake_dir: Path, since: datetime | None = None
) -> dict[str, Any]:
    """Forewarn's stored tasks and the naive baselines, scored against the ground truth.

    ``since``: the first streamed moment when the history before it was backfilled (the
    demo): only faults that began and churns that happened after it are scored, and the
    baselines see the same streamed events.
    """
    import json

    from forewarn.lake import read_events
    from streams.baselines import StaticThreshold, naive_churn_flags

    summary = json.loads((truth_dir / "summary.json").read_text())
    start = since or datetime.fromisoformat(summary["start"])
    days = (datetime.fromisoformat(summary["end"]) - start).total_seconds() / 86400
    faults = [f for f in read_faults(truth_dir) if f.onset_time >= start]
    churns = [c for c in read_churns(truth_dir) if c.churn_time >= start]
    readings = _lake_events(read_events, lake_dir, "device-telemetry", since)
    naive = StaticThreshold().fit(readings)
    device_ours, outcomes = score_devices(
        faults, first_tasks(database_url, "visit"), n_devices=summary["devices"], days=days
    )
    device_naive, _ = score_devices(
        faults, naive.first_alerts(readings), n_devices=summary["devices"], days=days
    )
    customer_events = sorted(
        _lake_events(read_events, lake_dir, "orders", since)
        + _lake_events(read_events, lake_dir, "tickets", since),
        key=lambda e: e.event_time,
    )
    feedback = first_tasks(database_url, "feedback")
    negative = {
        e.customer_id
        for e in customer_events
        if getattr(e, "csat", None) is not None and e.csat <= 2
    }
    return {
        "device_faults": {"forewarn": device_ours, "naive_static_threshold": device_naive},
        "churn": {
            "forewarn": score_churn(churns, first_tasks(database_url, "retention")),
            "naive_first_complaint": score_churn(churns, naive_churn_flags(customer_events)),
        },
        "negative_feedback": {
            "customers_with_a_reply_task": len(feedback),
            "customers_with_low_csat": len(negative),
            "covered": len(negative & set(feedback)),
        },
        "faults": [asdict(o) for o in outcomes],
    }


def _lake_events(
    read_events: Any, lake_dir: Path, topic: str, since: datetime | None = None
) -> list[Any]:
    from forewarn.events import SCHEMAS

    contract = SCHEMAS[topic][1]
    rows = read_events(lake_dir, topic, start=since.date() if since else None).to_pylist()
    for row in rows:
        if isinstance(row.get("metrics"), list):
            row["metrics"] = dict(row["metrics"])
    return [contract.model_construct(**row) for row in rows]


def plot_lead_times(outcomes: list[dict[str, Any]], path: Path) -> Path:
    """One row per injected fault: onset, our task, failure, complaint (hours after onset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(outcomes, key=lambda o: o["onset_time"])
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.6))
    for y, o in enumerate(rows):
        onset = datetime.fromisoformat(o["onset_time"])

        def h(key: str, _onset: datetime = onset, _o: dict = o) -> float:
            return (datetime.fromisoformat(_o[key]) - _onset).total_seconds() / 3600

        ax.plot([0, h("complaint_time")], [y, y], color="#bbbbbb", lw=1, zorder=1)
        ax.scatter(
            h("failure_time"),
            y,
            marker="x",
            color="#d62728",
            zorder=2,
            label="failure" if y == 0 else None,
        )
        ax.scatter(
            h("complaint_time"),
            y,
            marker="s",
            color="#7f7f7f",
            zorder=2,
            label="complaint" if y == 0 else None,
        )
        if o["detected_at"]:
            ax.scatter(
                h("detected_at"),
                y,
                marker="o",
                color="#2ca02c",
                zorder=3,
                label="task opened" if y == 0 else None,
            )
    ax.set_yticks(range(len(rows)), [f"{o['device_id']} {o['kind']}" for o in rows], fontsize=7)
    ax.set_xlabel("hours after fault onset")
    ax.set_title("Injected faults: when Forewarn opened a visit task")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
