"""Point-in-time churn features and labels from the event lake.

The features are the stream's own (:data:`streams.customer_risk.detector.FEATURES`, computed by
the same :class:`CustomerState`), so a model trained here scores the stream's features without
skew. For each cut-off, a customer's features use only events before the cut-off; the label is
whether they cancel within ``horizon_days`` after it. Customers who cancelled before a cut-off
are not rows of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from forewarn.events import SCHEMAS, Alert, Event, Order, Ticket
from streams.customer_risk.detector import FEATURES, CustomerState

LABEL = "churned"
CUSTOMER_TOPICS = ("orders", "tickets", "alerts")


def read_customer_events(
    lake_dir: Path, start: date | None = None, end: date | None = None
) -> list[Event]:
    """Orders, tickets and device-fault alerts from the lake, in event-time order."""
    from forewarn.lake import read_events

    events: list[Event] = []
    for topic in CUSTOMER_TOPICS:
        contract = SCHEMAS[topic][1]
        for row in read_events(lake_dir, topic, start=start, end=end).to_pylist():
            if topic == "alerts":
                if row["kind"] != "device_fault":
                    continue
                row["evidence"] = {}
            events.append(contract.model_construct(**row))
    events.sort(key=lambda e: e.event_time)
    return events


def _is_cancellation(event: Event) -> bool:
    return isinstance(event, Ticket) and event.category == "cancellation"


def build_features(
    events: Iterable[Event], cutoffs: Sequence[datetime], horizon_days: int = 30
) -> pd.DataFrame:
    """One row per (customer, cut-off): ``FEATURES`` as of the cut-off and the label.

    ``events`` must be in event-time order. Returns columns customer_id, cutoff, the
    features, ``churned`` (bool) and ``label_complete`` (the label window lies inside the
    data, so the row can be used for training).
    """
    by_customer: dict[str, list[Event]] = defaultdict(list)
    last_time = None
    for e in events:
        if isinstance(e, Order | Ticket | Alert):
            by_customer[e.customer_id].append(e)
            last_time = e.event_time
    horizon = timedelta(days=horizon_days)
    cutoffs = sorted(cutoffs)
    rows = []
    for customer_id, history in by_customer.items():
        cancelled = [e.event_time for e in history if _is_cancellation(e)]
        state, i = CustomerState(), 0
        for cutoff in cutoffs:
            while i < len(history) and history[i].event_time < cutoff:
                state.observe(history[i])
                i += 1
            if i == 0 or any(t < cutoff for t in cancelled):
                continue  # not a customer yet, or already gone
            features = state.features(at=cutoff.timestamp())
            churned = any(cutoff <= t < cutoff + horizon for t in cancelled)
            rows.append(
                {
                    "customer_id": customer_id,
                    "cutoff": cutoff,
                    **features,
                    LABEL: churned,
                    "label_complete": last_time is not None and cutoff + horizon <= last_time,
                }
            )
    columns = ["customer_id", "cutoff", *FEATURES, LABEL, "label_complete"]
    return pd.DataFrame(rows, columns=columns)


def weekly_cutoffs(first: datetime, last: datetime, every_days: int = 7) -> list[datetime]:
    """Cut-offs at midnight UTC every ``every_days`` from a week after ``first``."""
    start = first.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=7)
    out = []
    while start <= last:
        out.append(start)
        start += timedelta(days=every_days)
    return out
