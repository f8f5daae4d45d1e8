"""Naive baselines the detectors must beat, run on the same events for the quality report.

* :class:`StaticThreshold` is what many teams start with: one alarm band per device type and
  metric (fleet mean +- ``k`` standard deviations over the first days), alert on a crossing.
* :class:`NaiveChurnRule`: flag a customer at their first low CSAT answer or cancelled order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from forewarn.events import DeviceTelemetry, Event, Order, Ticket


@dataclass
class StaticThreshold:
    """Fleet-wide alarm bands, learned on the first ``learn_days`` of readings."""

    k: float = 4.0
    learn_days: float = 3.0
    bands_: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def fit(self, readings: Iterable[DeviceTelemetry]) -> StaticThreshold:
        values: dict[tuple[str, str], list[float]] = defaultdict(list)
        start: datetime | None = None
        for r in readings:
            start = start or r.event_time
            if r.event_time - start > timedelta(days=self.learn_days):
                break
            for name, v in r.metrics.items():
                if v is not None:
                    values[(r.device_type, name)].append(v)
        self.bands_ = {
            key: (float(np.mean(v) - self.k * np.std(v)), float(np.mean(v) + self.k * np.std(v)))
            for key, v in values.items()
        }
        return self

    def first_alerts(self, readings: Iterable[DeviceTelemetry]) -> dict[str, datetime]:
        """Device -> time of its first reading outside a band (one task per device)."""
        first: dict[str, datetime] = {}
        for r in readings:
            if r.device_id in first:
                continue
            for name, v in r.metrics.items():
                band = self.bands_.get((r.device_type, name))
                if v is not None and band and not band[0] <= v <= band[1]:
                    first[r.device_id] = r.event_time
                    break
        return first


def naive_churn_flags(events: Iterable[Event]) -> dict[str, datetime]:
    """Customer -> time of their first low CSAT (1-2) answer or cancelled order."""
    first: dict[str, datetime] = {}
    for e in events:
        bad = (isinstance(e, Ticket) and e.csat is not None and e.csat <= 2) or (
            isinstance(e, Order) and e.status == "cancelled"
        )
        if bad:
            first.setdefault(e.customer_id, e.event_time)
    return first
