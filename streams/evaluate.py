"""A labelled backtest of the device detector: what a user runs before going live.

``forewarn evaluate`` replays a history of readings through the worker's own detection step
(:mod:`streams.replay`) and scores the alerts against labels: failures (entity, start) or
labelled anomaly windows (entity, start, end). The same history is replayed at several
sensitivities (the detector's ``alert_tail``), which gives the threshold sweep.

Definitions, per label:

* A failure (no end) is caught if its device alerts within its lead window, from
  ``lead_max_hours`` to ``lead_min_hours`` before it: earlier is a guess, later is too late to
  send a technician. A window (with an end) is caught by an alert from ``lead_max_hours``
  before its start to its end.
* A visit is an alert of a device with no other alert of that device in the ``visit_hours``
  before it (one open visit per device: docs/architecture.md).
* A false visit is a visit outside every label's span (``lead_max_hours`` before its start to
  its end, or to ``recovery_hours`` after a failure: the unit is down or being repaired) of its
  device. Visits between the lead window and the end of that span are late, neither caught nor
  false.
* Device-quarters: each device's first to last reading, summed, in 91.25-day quarters.

Examples
--------
>>> from datetime import datetime, UTC
>>> t = lambda h: datetime(2026, 1, 1, tzinfo=UTC).timestamp() + h * 3600
>>> labels = [Label("D1", t(100), None)]
>>> card = score([("D1", t(80)), ("D1", t(81)), ("D1", t(10))], labels,
...              spans={"D1": (t(0), t(2190))}, lead_min_hours=1, lead_max_hours=48)
>>> card.caught, card.visits, card.false_visits, card.leads_hours
(1, 2, 1, [20.0])
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from streams.customer_risk.detector import CustomerRiskDetector
from streams.device_faults.detector import DeviceFaultDetector
from streams.replay import (
    read_customer_history,
    read_device_history,
    run_customers,
    run_devices,
)

QUARTER_S = 91.25 * 86400
#: Sensitivities of the sweep: the detector's ``alert_tail`` (its default is 1e-6); the spike
#: bursts' tail moves with it, 1000 times looser, as in the defaults.
SWEEP = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-10)
#: Risks from which a customer is flagged (``CustomerRiskDetector.enter``; default 0.5), each
#: with the detector's hysteresis below it.
CHURN_SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class Label:
    """A failure (``end`` None) or a labelled anomaly window of ``entity``, epoch seconds."""

    entity: str
    start: float
    end: float | None


@dataclass
class Scorecard:
    """The figures of one replay against the labels."""

    setting: float = 0.0  # the swept setting: the device detector's alert_tail, or churn's enter
    labels: int = 0
    caught: int = 0
    recall: float = 0.0
    visits: int = 0
    false_visits: int = 0
    late_visits: int = 0
    device_quarters: float = 0.0
    false_visits_per_device_quarter: float = 0.0
    alerts_inside: int = 0
    alerts_outside: int = 0
    leads_hours: list[float] = field(default_factory=list)

    def lead_quantiles(self) -> dict[str, float]:
        if not self.leads_hours:
            return {}
        s = pd.Series(self.leads_hours)
        return {
            q: round(float(s.quantile(p)), 1)
            for q, p in (("p10", 0.1), ("median", 0.5), ("p90", 0.9))
        }


def read_labels(
    path: Path,
    *,
    entity_column: str = "entity",
    start_column: str = "start",
    end_column: str = "end",
    notes: Counter[str] | None = None,
) -> list[Label]:
    """Labels from a CSV: one row per failure (entity, start) or window (entity, start, end).

    Times without a zone are read as UTC and counted in ``notes``; rows without an entity or a
    readable start, or ending before they start, are skipped and counted there too.
    """
    notes = notes if notes is not None else Counter()
    frame = pd.read_csv(path, dtype={entity_column: str})
    missing = [c for c in (entity_column, start_column) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"labels {path} have no column {missing[0]!r} (columns: "
            f"{', '.join(map(str, frame.columns))}); name it with --labels-entity-column / "
            "--labels-start-column"
        )
    labels = []
    starts = _times(frame[start_column], notes)
    ends = _times(frame[end_column], notes) if end_column in frame.columns else None
    for i, entity in enumerate(frame[entity_column]):
        start = starts.iloc[i]
        end = ends.iloc[i] if ends is not None else pd.NaT
        if pd.isna(entity) or pd.isna(start):
            notes["labels skipped: no entity or start time"] += 1
            continue
        if not pd.isna(end) and end < start:
            notes["labels skipped: end before start"] += 1
            continue
        labels.append(
            Label(str(entity), start.timestamp(), None if pd.isna(end) else end.timestamp())
        )
    return labels


def _times(column: pd.Series, notes: Counter[str]) -> pd.Series:
    text = column.astype(str).str.strip()
    zoned = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
    if n := int((~zoned & column.notna()).sum()):
        notes["label times without a zone, read as UTC"] += n
    return pd.to_datetime(column, utc=True, format="mixed", errors="coerce")


def score(
    alerts: Iterable[tuple[str, float]],
    labels: Sequence[Label],
    *,
    spans: dict[str, tuple[float, float]],
    lead_min_hours: float = 1.0,
    lead_max_hours: float = 48.0,
    visit_hours: float = 24.0,
    recovery_hours: float = 72.0,
) -> Scorecard:
    """Score alerts ``(entity, epoch seconds)`` against ``labels`` (module docstring)."""
    lead_min, lead_max, gap = lead_min_hours * 3600, lead_max_hours * 3600, visit_hours * 3600
    recovery = recovery_hours * 3600
    by_entity: dict[str, list[Label]] = {}
    for label in labels:
        by_entity.setdefault(label.entity, []).append(label)
    card = Scorecard(labels=len(labels))
    last_alert: dict[str, float] = {}
    first_catch: dict[Label, float] = {}
    for entity, t in sorted(alerts, key=lambda a: (a[1], a[0])):
        own = by_entity.get(entity, [])
        inside = any(
            lb.start - lead_max <= t <= (lb.end if lb.end is not None else lb.start + recovery)
            for lb in own
        )
        card.alerts_inside += inside
        card.alerts_outside += not inside
        # Caught by any alert in the window: a device flagged then (a visit started earlier
        # may still be open); counted as a visit only if it starts one.
        caught = [
            lb
            for lb in own
            if lb.start - lead_max <= t <= (lb.end if lb.end is not None else lb.start - lead_min)
        ]
        for lb in caught:
            first_catch.setdefault(lb, t)
        new_visit = entity not in last_alert or t - last_alert[entity] > gap
        last_alert[entity] = t
        if not new_visit:
            continue
        card.visits += 1
        if not inside:
            card.false_visits += 1
        elif not caught:
            card.late_visits += 1
    card.caught = len(first_catch)
    card.recall = round(card.caught / card.labels, 3) if card.labels else 0.0
    card.leads_hours = sorted(round((lb.start - t) / 3600, 1) for lb, t in first_catch.items())
    card.device_quarters = round(sum(last - first for first, last in spans.values()) / QUARTER_S, 3)
    if card.device_quarters > 0:
        card.false_visits_per_device_quarter = round(card.false_visits / card.device_quarters, 3)
    return card


@dataclass
class Evaluation:
    """The default detector's scorecard, the sweep's, and what the input held."""

    default: Scorecard
    sweep: list[Scorecard]
    summary: dict[str, Any]
    setting_name: str = "alert_tail"
    unit: str = "device"

    def table(self) -> str:
        lines = [
            f"| {self.setting_name} | recall | false visits / {self.unit}-quarter | visits "
            "| caught / labels | median lead (h) |",
            "|---|---|---|---|---|---|",
        ]
        for c in self.sweep:
            mark = " (default)" if c.setting == self.default.setting else ""
            lines.append(
                f"| {c.setting:g}{mark} | {c.recall} | {c.false_visits_per_device_quarter} | "
                f"{c.visits} | {c.caught} / {c.labels} | {c.lead_quantiles().get('median', '-')} |"
            )
        return "\n".join(lines)


def _scored_labels(
    path: Path,
    spans: Mapping[str, Any],
    what: str,
    notes: Counter[str],
    *,
    entity_column: str,
    start_column: str,
    end_column: str,
) -> list:
    """The labels of entities the history has ``what`` of; the others are counted in ``notes``."""
    labels = read_labels(
        path,
        entity_column=entity_column,
        start_column=start_column,
        end_column=end_column,
        notes=notes,
    )
    unknown = [lb for lb in labels if lb.entity not in spans]
    if unknown:
        notes[f"labels of entities without {what} (not scored)"] += len(unknown)
    return [lb for lb in labels if lb.entity in spans]


def evaluate_devices(
    readings_path: Path,
    labels_path: Path,
    *,
    time_column: str,
    entity_column: str,
    value_columns: Sequence[str] = (),
    error_codes_column: str | None = None,
    mode_column: str | None = None,
    firmware_column: str | None = None,
    labels_entity_column: str = "entity",
    labels_start_column: str = "start",
    labels_end_column: str = "end",
    lead_min_hours: float = 1.0,
    lead_max_hours: float = 48.0,
    visit_hours: float = 24.0,
    recovery_hours: float = 72.0,
    detector: DeviceFaultDetector | None = None,
    sweep: Sequence[float] = SWEEP,
) -> Evaluation:
    """Replay the history at the detector's own sensitivity and at each of ``sweep``."""
    if not 0 <= lead_min_hours < lead_max_hours:
        raise ValueError(
            f"--lead-min-hours ({lead_min_hours:g}) must be >= 0 and below --lead-max-hours "
            f"({lead_max_hours:g})"
        )
    detector = detector or DeviceFaultDetector()
    readings, base = read_device_history(
        readings_path,
        time_column=time_column,
        entity_column=entity_column,
        value_columns=value_columns,
        error_codes_column=error_codes_column,
        mode_column=mode_column,
        firmware_column=firmware_column,
        detector=detector,
    )
    if not readings:
        raise ValueError(
            f"no usable reading in {readings_path} (skipped: {dict(base.skipped) or 'none'})"
        )
    notes: Counter[str] = Counter()
    labels = _scored_labels(
        labels_path,
        base.spans,
        "readings",
        notes,
        entity_column=labels_entity_column,
        start_column=labels_start_column,
        end_column=labels_end_column,
    )
    cards = []
    tails = sorted({*sweep, detector.alert_tail}, reverse=True)
    default = None
    for tail in tails:
        variant = replace(detector, alert_tail=tail, spike_tail=min(0.5, tail * 1000))
        if tail == detector.alert_tail:
            variant = detector
        result = run_devices(readings, base, variant)
        card = score(
            ((a.device_id or a.customer_id, a.event_time.timestamp()) for a in result.alerts),
            labels,
            spans=base.spans,
            lead_min_hours=lead_min_hours,
            lead_max_hours=lead_max_hours,
            visit_hours=visit_hours,
            recovery_hours=recovery_hours,
        )
        card.setting = tail
        cards.append(card)
        if variant is detector:
            default, default_result = card, result
    assert default is not None
    summary = {
        **default_result.summary(),
        "labels": {"scored": len(labels), "notes": dict(notes)},
        "lead_window_hours": [lead_min_hours, lead_max_hours],
        "visit_hours": visit_hours,
        "default": {**asdict(default), "lead_quantiles": default.lead_quantiles()},
    }
    return Evaluation(default=default, sweep=cards, summary=summary)


def evaluate_customers(
    events_path: Path,
    labels_path: Path,
    *,
    time_column: str,
    entity_column: str,
    kind_column: str = "event",
    labels_entity_column: str = "entity",
    labels_start_column: str = "start",
    labels_end_column: str = "end",
    lead_min_hours: float = 7 * 24,
    lead_max_hours: float = 90 * 24,
    visit_hours: float = 30 * 24,
    recovery_hours: float = 0.0,
    risk: CustomerRiskDetector | None = None,
    sweep: Sequence[float] = CHURN_SWEEP,
) -> Evaluation:
    """The same for customers: churn-risk flags against churn dates (labels without an end),
    at the risk detector's own threshold and at each of ``sweep``. A "visit" is a retention
    task: flags of a customer within ``visit_hours`` of each other are one."""
    if not 0 <= lead_min_hours < lead_max_hours:
        raise ValueError(
            f"--lead-min-hours ({lead_min_hours:g}) must be >= 0 and below --lead-max-hours "
            f"({lead_max_hours:g})"
        )
    risk = risk or CustomerRiskDetector()
    events, base = read_customer_history(
        events_path, time_column=time_column, entity_column=entity_column, kind_column=kind_column
    )
    if not events:
        raise ValueError(
            f"no usable event in {events_path} (skipped: {dict(base.skipped) or 'none'})"
        )
    notes: Counter[str] = Counter()
    labels = _scored_labels(
        labels_path,
        base.spans,
        "events",
        notes,
        entity_column=labels_entity_column,
        start_column=labels_start_column,
        end_column=labels_end_column,
    )
    cards, default, default_result = [], None, None
    gap = risk.enter - risk.exit
    for enter in sorted({*sweep, risk.enter}):
        variant = risk
        if enter != risk.enter:
            variant = replace(risk, enter=enter, exit=max(0.0, enter - gap))
        result = run_customers(events, base, risk=variant)
        churn_flags = (
            (a.customer_id, a.event_time.timestamp())
            for a in result.alerts
            if a.kind == "churn_risk"
        )
        card = score(
            churn_flags,
            labels,
            spans=base.spans,
            lead_min_hours=lead_min_hours,
            lead_max_hours=lead_max_hours,
            visit_hours=visit_hours,
            recovery_hours=recovery_hours,
        )
        card.setting = enter
        cards.append(card)
        if variant is risk:
            default, default_result = card, result
    assert default is not None and default_result is not None
    summary = {
        **default_result.summary(),
        "labels": {"scored": len(labels), "notes": dict(notes)},
        "lead_window_hours": [lead_min_hours, lead_max_hours],
        "visit_hours": visit_hours,
        "default": {**asdict(default), "lead_quantiles": default.lead_quantiles()},
    }
    return Evaluation(default, cards, summary, setting_name="enter", unit="customer")


def write(evaluation: Evaluation, folder: Path) -> dict[str, Path]:
    """``summary.json``, ``sweep.csv`` and ``sweep.png`` (recall against false visits)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / n for k, n in (("summary", "summary.json"), ("sweep", "sweep.csv"))}
    paths["plot"] = folder / "sweep.png"
    sweep = [{**asdict(c), "lead_quantiles": c.lead_quantiles()} for c in evaluation.sweep]
    paths["summary"].write_text(
        json.dumps({**evaluation.summary, "sweep": sweep}, indent=2, default=_json)
    )
    frame = pd.DataFrame(
        [
            {k: v for k, v in asdict(c).items() if k != "leads_hours"} | c.lead_quantiles()
            for c in evaluation.sweep
        ]
    )
    frame.to_csv(paths["sweep"], index=False)
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [c.false_visits_per_device_quarter for c in evaluation.sweep]
    ys = [c.recall for c in evaluation.sweep]
    ax.plot(xs, ys, marker="o")
    for c, x, y in zip(evaluation.sweep, xs, ys, strict=True):
        ax.annotate(f"{c.setting:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    d = evaluation.default
    ax.plot(
        [d.false_visits_per_device_quarter],
        [d.recall],
        marker="*",
        ms=14,
        color="C3",
        label="default",
    )
    ax.set_xlabel(f"false visits per {evaluation.unit}-quarter")
    ax.set_ylabel("recall within the lead window")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths["plot"], dpi=100)
    plt.close(fig)
    return paths


def _json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
