"""Backtest the stream detectors on any CSV history, with the same classes the worker runs.

``forewarn replay --detector device|customer ...`` calls :func:`replay_devices` or
:func:`replay_customers`. Rows are processed in event-time order (a stable sort, so rows with
equal times keep the file's order); times without a zone are taken as UTC. Rows that do not
make a valid event are skipped and counted, as the worker would dead-letter them.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from forewarn.events import Alert, DeviceTelemetry, Event, Order, Ticket, visit_key
from streams.customer_risk.detector import CustomerRiskDetector, NegativeFeedbackDetector
from streams.customer_risk.step import CustomerStep
from streams.device_faults.detector import DeviceFaultDetector
from streams.device_faults.step import DeviceFaultStep

#: How ``replay_devices`` counts the readings the detection step refused.
REFUSALS = {"late": "late", "owner": "names another owner", "error": "detector failed"}
ALERT_COLUMNS = (
    "time",
    "entity",
    "customer_id",
    "kind",
    "fault_kind",
    "severity",
    "confidence",
    "score",
    "dedup_key",
    "explanation",
)


@dataclass
class ReplayResult:
    rows: int = 0
    entities: int = 0
    alerts: list[Alert] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    #: Error codes seen, by whether the detector counts them as faults (device replays).
    codes: dict[str, Counter[str]] = field(
        default_factory=lambda: {"recognised": Counter(), "ignored": Counter()}
    )
    #: What was read but is worth knowing: times without a zone (read as UTC), missing values.
    notes: Counter[str] = field(default_factory=Counter)
    #: First and last reading time (epoch seconds) per entity (device replays).
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = {
            "rows": self.rows,
            "entities": self.entities,
            "alerts": len(self.alerts),
            "alerts_by_kind": dict(Counter(a.kind for a in self.alerts)),
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
        }
        if any(self.codes.values()):
            out["error_codes"] = {
                kind: {"total": sum(c.values()), "most_common": dict(c.most_common(10))}
                for kind, c in self.codes.items()
            }
        return out


#: A time written with its zone: ``Z`` or an offset at the end.
_ZONED = r"(?:Z|[+-]\d{2}:?\d{2})$"


def _read(
    path: Path, time_column: str, entity_column: str, notes: Counter[str] | None = None
) -> pd.DataFrame:
    """A CSV or Parquet history sorted by time; times without a zone are read as UTC and
    counted in ``notes``; times that do not parse become missing (their rows are skipped)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
        if entity_column in frame.columns:
            frame[entity_column] = frame[entity_column].astype(str)
    else:
        frame = pd.read_csv(path, dtype={entity_column: str}, keep_default_na=True)
    for column in (time_column, entity_column):
        if column not in frame.columns:
            raise ValueError(
                f"--{'time' if column == time_column else 'entity'}-column "
                f"{column!r} is not in {path} (columns: {', '.join(map(str, frame.columns))}); "
                "name the right one with that option"
            )
    times = frame[time_column]
    if notes is not None and not pd.api.types.is_datetime64_any_dtype(times):
        text = times.astype(str).str.strip()
        naive = int((~text.str.contains(_ZONED, regex=True) & times.notna()).sum())
        if naive:
            notes["times without a zone, read as UTC"] += naive
    if pd.api.types.is_datetime64_any_dtype(times) and times.dt.tz is None and notes is not None:
        notes["times without a zone, read as UTC"] += int(times.notna().sum())
    frame[time_column] = pd.to_datetime(times, utc=True, format="mixed", errors="coerce")
    return frame.sort_values(time_column, kind="stable").reset_index(drop=True)


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _codes(value: Any) -> list[str]:
    value = _cell(value)
    return [c for c in str(value).replace(",", ";").split(";") if c.strip()] if value else []


def replay_devices(
    path: Path,
    *,
    time_column: str,
    entity_column: str,
    value_columns: Sequence[str] = (),
    error_codes_column: str | None = None,
    customer_column: str | None = None,
    mode_column: str | None = None,
    firmware_column: str | None = None,
    detector: DeviceFaultDetector | None = None,
) -> ReplayResult:
    """Run the device-fault detector over a CSV or Parquet file of readings (one row per
    entity and time).

    ``value_columns`` default to every numeric column other than the named ones. Error codes
    are separated by ``;`` or ``,`` in their column.
    """
    detector = detector or DeviceFaultDetector()
    readings, result = read_device_history(
        path,
        time_column=time_column,
        entity_column=entity_column,
        value_columns=value_columns,
        error_codes_column=error_codes_column,
        customer_column=customer_column,
        mode_column=mode_column,
        firmware_column=firmware_column,
        detector=detector,
    )
    return run_devices(readings, result, detector)


def run_devices(
    readings: list[tuple[int, int, DeviceTelemetry]],
    result: ReplayResult,
    detector: DeviceFaultDetector,
) -> ReplayResult:
    """The worker's own step over readings from :func:`read_device_history`, as one
    partition: silence is checked as of each whole event-time hour the readings reach, as a
    worker does per partition (docs/detection.md). Returns a copy of ``result`` with the
    alerts and the refusals."""
    result = replace(result, alerts=[], skipped=Counter(result.skipped))
    outcome = DeviceFaultStep({}, detector=detector).run(readings)
    result.alerts = outcome.alerts
    for refusal in outcome.refused:
        result.skipped[REFUSALS[refusal.kind]] += 1
    result.entities = len(outcome.states)
    return result


def read_device_history(
    path: Path,
    *,
    time_column: str,
    entity_column: str,
    value_columns: Sequence[str] = (),
    error_codes_column: str | None = None,
    customer_column: str | None = None,
    mode_column: str | None = None,
    firmware_column: str | None = None,
    detector: DeviceFaultDetector | None = None,
) -> tuple[list[tuple[int, int, DeviceTelemetry]], ReplayResult]:
    """The readings of a history as the step takes them (partition 0, row number as the
    offset), and a result holding what was skipped and noted while reading them."""
    detector = detector or DeviceFaultDetector()
    notes: Counter[str] = Counter()
    frame = _read(path, time_column, entity_column, notes)
    named = {
        time_column,
        entity_column,
        error_codes_column,
        customer_column,
        mode_column,
        firmware_column,
    }
    values = list(value_columns) or [
        c for c in frame.columns if c not in named and pd.api.types.is_numeric_dtype(frame[c])
    ]
    missing = [c for c in values if c not in frame.columns]
    if missing:
        raise ValueError(
            f"--value-columns {missing} are not in {path} "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    if not values:
        raise ValueError(
            f"no numeric metric column in {path}: name them with --value-columns "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    result = ReplayResult(rows=len(frame), notes=notes)
    for c in values:
        if (n := int(frame[c].isna().sum())) > 0:
            result.notes[f"missing values in {c}"] += n
    readings: list[tuple[int, int, DeviceTelemetry]] = []
    for i, row in enumerate(frame.to_dict("records")):
        if _cell(row[entity_column]) is None or pd.isna(row[time_column]):
            result.skipped["missing entity or time"] += 1
            continue
        entity = str(row[entity_column])
        t = row[time_column].to_pydatetime()
        try:
            reading = DeviceTelemetry(
                event_id=f"{entity}-{i}",
                event_time=t,
                device_id=entity,
                customer_id=str(row[customer_column]) if customer_column else entity,
                device_type="replay",
                metrics={c: _cell(row[c]) for c in values},
                error_codes=_codes(row[error_codes_column]) if error_codes_column else [],
                mode=_cell(row[mode_column]) or "normal" if mode_column else "normal",
                firmware=str(_cell(row[firmware_column]) or "1.0.0")
                if firmware_column
                else "1.0.0",
            )
        except ValidationError as exc:
            result.skipped[f"invalid: {exc.errors()[0]['loc'][0]}"] += 1
            continue
        for code in reading.error_codes:
            kind = "recognised" if detector.is_fault_code(code) else "ignored"
            result.codes[kind][code] += 1
        readings.append((0, i, reading))
        t_s = reading.event_time.timestamp()
        first, last = result.spans.get(entity, (t_s, t_s))
        result.spans[entity] = (min(first, t_s), max(last, t_s))
    result.entities = len(result.spans)
    return readings, result


def _customer_events(
    frame: pd.DataFrame, time_column: str, entity_column: str, kind_column: str
) -> Iterator[tuple[int, Event | Exception]]:
    defaults = {"channel": "phone", "currency": "EUR"}
    for i, row in enumerate(frame.to_dict("records")):
        fields = {k: v for k, raw in row.items() if (v := _cell(raw)) is not None}
        if entity_column not in fields or pd.isna(row[time_column]):
            yield i, ValueError("missing entity or time")
            continue
        kind = str(fields.pop(kind_column, "")).lower()
        customer = str(fields.pop(entity_column))
        t = fields.pop(time_column).to_pydatetime()
        common = {"event_time": t, "customer_id": customer}
        try:
            if kind == "order":
                order_id = str(fields.get("order_id", f"{customer}-O{i}"))
                yield (
                    i,
                    Order(
                        event_id=f"{order_id}-{i}",
                        order_id=order_id,
                        channel=fields.get("channel", defaults["channel"]),
                        status=fields.get("status", "placed"),
                        amount=float(fields.get("amount", 0.0)),
                        **common,
                    ),
                )
            elif kind == "ticket":
                ticket_id = str(fields.get("ticket_id", f"{customer}-T{i}"))
                optional = {
                    k: fields[k]
                    for k in ("csat", "nps", "ces_agree", "device_id", "first_contact_resolution")
                    if k in fields
                }
                for k in ("csat", "nps"):
                    if k in optional:
                        optional[k] = int(optional[k])
                yield (
                    i,
                    Ticket(
                        event_id=f"{ticket_id}-{i}",
                        ticket_id=ticket_id,
                        channel=fields.get("channel", defaults["channel"]),
                        category=fields.get("category", "question"),
                        status=fields.get("status", "resolved"),
                        contact_number=int(fields.get("contact_number", 1)),
                        text=str(fields.get("text", "")),
                        **optional,
                        **common,
                    ),
                )
            elif kind == "device_fault":
                yield (
                    i,
                    Alert(
                        event_id=f"fault-{i}",
                        alert_id=f"fault-{i}",
                        dedup_key=visit_key(str(fields.get("device_id", customer))),
                        kind="device_fault",
                        severity="high",
                        confidence=1.0,
                        score=0.0,
                        explanation="from replay input",
                        detector="replay",
                        **common,
                    ),
                )
            else:
                yield i, ValueError(f"unknown {kind_column} {kind!r}")
        except (ValidationError, ValueError) as exc:
            yield i, exc


def replay_customers(
    path: Path,
    *,
    time_column: str,
    entity_column: str,
    kind_column: str = "event",
    risk: CustomerRiskDetector | None = None,
    feedback: NegativeFeedbackDetector | None = None,
) -> ReplayResult:
    """Run the customer-risk and negative-feedback detectors over a CSV of customer events.

    One row per event; ``kind_column`` says ``order``, ``ticket`` or ``device_fault``, and
    columns named like the contract fields (``status``, ``amount``, ``ticket_id``,
    ``category``, ``csat``, ``nps``, ``contact_number``, ``channel``...) fill them.
    """
    events, result = read_customer_history(
        path, time_column=time_column, entity_column=entity_column, kind_column=kind_column
    )
    return run_customers(events, result, risk=risk, feedback=feedback)


def read_customer_history(
    path: Path, *, time_column: str, entity_column: str, kind_column: str = "event"
) -> tuple[list[tuple[str, int, int, Event]], ReplayResult]:
    """The events of a customer history as the customer step takes them, and a result holding
    what was skipped and noted while reading them (``spans``: first and last event time)."""
    notes: Counter[str] = Counter()
    frame = _read(path, time_column, entity_column, notes)
    result = ReplayResult(rows=len(frame), notes=notes)
    events: list[tuple[str, int, int, Event]] = []
    for i, event in _customer_events(frame, time_column, entity_column, kind_column):
        if isinstance(event, Exception):
            result.skipped[f"invalid: {type(event).__name__}"] += 1
            continue
        events.append(("replay", 0, i, event))
        t = event.event_time.timestamp()
        first, last = result.spans.get(event.customer_id, (t, t))
        result.spans[event.customer_id] = (min(first, t), max(last, t))
    result.entities = len(result.spans)
    return events, result


def run_customers(
    events: list[tuple[str, int, int, Event]],
    result: ReplayResult,
    *,
    risk: CustomerRiskDetector | None = None,
    feedback: NegativeFeedbackDetector | None = None,
) -> ReplayResult:
    """The worker's own customer step over events from :func:`read_customer_history`, as one
    source read in event-time order; a copy of ``result`` with the alerts."""
    result = replace(result, alerts=[], skipped=Counter(result.skipped))
    outcome = CustomerStep({}, risk=risk, feedback=feedback).run(events)
    result.alerts = outcome.alerts
    if outcome.refused:
        result.skipped[REFUSALS["error"]] += len(outcome.refused)
    result.entities = len(outcome.states)
    return result


def write_alerts(alerts: Sequence[Alert], path: Path) -> None:
    """Alerts as CSV: time, entity, kind, severity, confidence, score and the explanation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ALERT_COLUMNS)
        for a in alerts:
            writer.writerow(
                [
                    a.event_time.isoformat(),
                    a.device_id or a.customer_id,
                    a.customer_id,
                    a.kind,
                    a.fault_kind or "",
                    a.severity,
                    a.confidence,
                    a.score,
                    a.dedup_key,
                    a.explanation,
                ]
            )
