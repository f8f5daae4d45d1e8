"""Score a run against its ground truth: which faults got a task, and how long before the
customer would have complained.

Works on any run that has a truth folder (from ``forewarn simulate``) and an outreach store:
the demo, the integration tests and the benchmarks all report through it.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from forewarn.simulator.truth import read_faults
from forewarn.simulator.world import Fault


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
    task_id: str | None


@dataclass(frozen=True)
class VisitTask:
    """What the report needs of a visit task (read from the outreach store)."""

    task_id: str
    device_id: str
    detected_at: datetime
    fault_kind: str


def score_faults(
    faults: list[Fault], tasks: list[VisitTask]
) -> tuple[list[FaultOutcome], list[VisitTask]]:
    """Match visit tasks to injected faults; return per-fault outcomes and unmatched tasks.

    A task matches a fault when it is for the same device and was detected between the
    fault's onset and the customer's complaint. Tasks detected on a faulty device before the
    onset, or on a device with no fault, are false alarms.
    """
    by_device: dict[str, list[VisitTask]] = {}
    for task in tasks:
        by_device.setdefault(task.device_id, []).append(task)
    outcomes, matched = [], set()
    for f in faults:
        hits = sorted(
            (
                t
                for t in by_device.get(f.device_id, [])
                if f.onset_time <= t.detected_at < f.complaint_time
            ),
            key=lambda t: t.detected_at,
        )
        hit = hits[0] if hits else None
        matched.update(t.task_id for t in hits)
        # A task opened after the complaint still belongs to this fault, but was too late.
        matched.update(
            t.task_id for t in by_device.get(f.device_id, []) if t.detected_at >= f.complaint_time
        )
        outcomes.append(
            FaultOutcome(
                device_id=f.device_id,
                kind=f.kind,
                metric=f.metric,
                onset_time=f.onset_time.isoformat(),
                failure_time=f.failure_time.isoformat(),
                complaint_time=f.complaint_time.isoformat(),
                detected_at=hit.detected_at.isoformat() if hit else None,
                caught_before_complaint=hit is not None,
                caught_before_failure=hit is not None and hit.detected_at < f.failure_time,
                hours_before_complaint=(
                    round((f.complaint_time - hit.detected_at).total_seconds() / 3600, 1)
                    if hit
                    else None
                ),
                task_id=hit.task_id if hit else None,
            )
        )
    false_alarms = [t for t in tasks if t.task_id not in matched]
    return outcomes, false_alarms


def summarize(
    outcomes: list[FaultOutcome], false_alarms: list[VisitTask], n_tasks: int
) -> dict[str, Any]:
    leads = [o.hours_before_complaint for o in outcomes if o.hours_before_complaint is not None]
    caught = sum(o.caught_before_complaint for o in outcomes)
    return {
        "faults": len(outcomes),
        "caught_before_complaint": caught,
        "caught_before_failure": sum(o.caught_before_failure for o in outcomes),
        "recall": round(caught / len(outcomes), 3) if outcomes else None,
        "median_hours_before_complaint": round(statistics.median(leads), 1) if leads else None,
        "visit_tasks": n_tasks,
        "false_alarm_tasks": len(false_alarms),
        "precision": round(1 - len(false_alarms) / n_tasks, 3) if n_tasks else None,
        "by_kind": {
            kind: {
                "faults": sum(o.kind == kind for o in outcomes),
                "caught": sum(o.kind == kind and o.caught_before_complaint for o in outcomes),
            }
            for kind in sorted({o.kind for o in outcomes})
        },
    }


def visit_tasks_from_store(database_url: str) -> list[VisitTask]:
    from outreach.store import TaskStore, aware

    store = TaskStore(database_url)
    try:
        return [
            VisitTask(
                t.id,
                t.device_id or "",
                aware(t.detected_at),
                (t.evidence.get("alerts") or [{}])[0].get("fault_kind") or "",
            )
            for t in store.tasks(kind="visit")
        ]
    finally:
        store.close()


def fault_report(truth_dir: Path, database_url: str) -> dict[str, Any]:
    """The detection part of a run report: summary, per-fault outcomes, false alarms."""
    tasks = visit_tasks_from_store(database_url)
    outcomes, false_alarms = score_faults(read_faults(truth_dir), tasks)
    return {
        "summary": summarize(outcomes, false_alarms, len(tasks)),
        "faults": [asdict(o) for o in outcomes],
        "false_alarms": [
            {
                "task_id": t.task_id,
                "device_id": t.device_id,
                "detected_at": t.detected_at.isoformat(),
                "fault_kind": t.fault_kind,
            }
            for t in false_alarms
        ],
    }


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
