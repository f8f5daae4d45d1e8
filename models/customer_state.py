"""One customer's history as features: the definition the stream scores and the nightly trains on.

:class:`CustomerState` keeps sliding event-time windows of what happened to a customer (tickets,
surveys, order problems, faults on their devices, their order rhythm, their value) and turns
them into ``FEATURES``; :func:`heuristic_risk` is the transparent points model over them. The
Faust customer agent (``streams/customer_risk``) and the nightly (``models/features.py``,
``models/nightly.py``) both import this module, so training and serving share one feature
definition. Plain Python: no Faust, no Kafka, no Airflow.

Examples
--------
>>> from datetime import datetime, UTC
>>> from forewarn.events import Ticket
>>> state = CustomerState()
>>> state.observe(Ticket(event_id="T1-1", event_time=datetime(2026, 1, 5, tzinfo=UTC),
...                      ticket_id="T1", customer_id="C1", channel="phone",
...                      category="complaint", status="opened", csat=1))
>>> features = state.features()
>>> features["complaints_30d"], features["low_csat_30d"], features["unresolved_age_h"]
(1.0, 1.0, 0.0)
>>> round(heuristic_risk(features)[0], 2)
0.51
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from forewarn.events import Alert, CustomerValue, Event, Order, Ticket

DAY = 86400.0
WINDOW_S = 30 * DAY
SPEND_WINDOW_S = 90 * DAY
ORDER_HISTORY = 12
#: Size bounds of a customer's state (docs/detection.md): each window keeps at most this many
#: entries (the newest), and at most OPEN_TICKETS_MAX open tickets, so a burst of valid events
#: cannot grow a state past what a changelog message holds. Features saturate long before:
#: every feature's points are capped at a handful of events.
WINDOW_ENTRIES_MAX = 200
OPEN_TICKETS_MAX = 100

#: Features, in the order the churn model sees them. Units in the names; windows in days.
FEATURES: tuple[str, ...] = (
    "tickets_7d",
    "tickets_30d",
    "repeat_contacts_30d",
    "low_csat_30d",
    "detractors_30d",
    "complaints_30d",
    "unresolved_age_h",
    "late_orders_30d",
    "cancelled_orders_30d",
    "returned_orders_30d",
    "order_gap_ratio",
    "device_faults_30d",
)

#: Points per unit of each feature, and a cap per feature so no single one decides alone.
#: Hand-set from the simulator's worsening customers (docs/detection.md) until the nightly
#: churn model takes over the ranking.
POINTS: dict[str, tuple[float, float]] = {
    "tickets_7d": (0.4, 1.2),
    "tickets_30d": (0.15, 0.9),
    "repeat_contacts_30d": (0.35, 1.4),
    "low_csat_30d": (0.9, 2.7),
    "detractors_30d": (0.6, 1.8),
    "complaints_30d": (0.6, 1.8),
    "unresolved_age_h": (0.01, 0.7),
    "late_orders_30d": (0.5, 1.5),
    "cancelled_orders_30d": (0.8, 1.6),
    "returned_orders_30d": (0.6, 1.2),
    "order_gap_ratio": (0.5, 1.0),
    "device_faults_30d": (0.6, 1.2),
}
#: What is normal and earns no points: a customer's own order rhythm varies by half again.
ALLOWANCE: dict[str, float] = {"order_gap_ratio": 1.5}
REASONS: dict[str, str] = {
    "tickets_7d": "{v:.0f} tickets in 7 days",
    "tickets_30d": "{v:.0f} tickets in 30 days",
    "repeat_contacts_30d": "{v:.0f} repeat contacts without resolution",
    "low_csat_30d": "{v:.0f} low CSAT answers (1-2)",
    "detractors_30d": "{v:.0f} NPS detractor answers (0-6)",
    "complaints_30d": "{v:.0f} complaints",
    "unresolved_age_h": "a ticket open for {v:.0f} h",
    "late_orders_30d": "{v:.0f} late orders",
    "cancelled_orders_30d": "{v:.0f} cancelled orders",
    "returned_orders_30d": "{v:.0f} returned orders",
    "order_gap_ratio": "no order for {v:.1f}x their usual interval",
    "device_faults_30d": "{v:.0f} faults on their devices",
}
MIDPOINT = 2.0  # points at which the heuristic risk is 0.5

VALUE_TIERS = ("bronze", "silver", "gold", "platinum")
#: Spend in the last 90 days that makes a tier, until the nightly lifetime value is published.
SPEND_TIERS_EUR = {"platinum": 500.0, "gold": 250.0, "silver": 100.0}
TIER_SEVERITY = {"platinum": "critical", "gold": "high", "silver": "medium", "bronze": "low"}


@dataclass
class CustomerState:
    """Sliding windows of one customer's history (JSON-serializable via ``to_dict``)."""

    contacts: list[list[Any]] = field(default_factory=list)  # [t, ticket_id, n, category]
    surveys: list[list[Any]] = field(default_factory=list)  # [t, csat, nps]
    open_tickets: dict[str, float] = field(default_factory=dict)  # ticket_id -> opened at
    placed: list[float] = field(default_factory=list)  # order placement times, last 12
    problems: list[list[Any]] = field(default_factory=list)  # [t, late|cancelled|returned]
    faults: list[list[Any]] = field(default_factory=list)  # [t, device_id] of fault alerts
    spend: list[list[float]] = field(default_factory=list)  # [t, amount]
    value: dict[str, Any] | None = None  # latest published CustomerValue
    negative_tickets: list[str] = field(default_factory=list)  # already answered, recent
    risk: float = 0.0
    at_risk: bool = False
    alerted_risk: float = 0.0
    now: float = 0.0  # latest event time seen for this customer
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> last applied

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
            for k, v in vars(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CustomerState:
        if not data:
            return cls()
        # Copies of the document's lists and dicts, never the document's own: a Faust table
        # hands out the very object it stores, and a state sharing it changed the table behind
        # the changelog's back (as DeviceState.from_dict explains). Entries are never changed
        # in place, so copying the containers is enough.
        return cls(**cls(**data).to_dict())

    # -- windows ---------------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Add ``event`` to the windows and drop what fell out of them."""
        t = event.event_time.timestamp()
        if isinstance(event, Ticket):
            self.observe_ticket(
                t,
                event.ticket_id,
                event.contact_number,
                event.category,
                event.csat,
                event.nps,
                event.status,
            )
        elif isinstance(event, Order):
            self.observe_order(t, event.status, event.amount)
        elif isinstance(event, Alert) and event.kind == "device_fault":
            self.observe_fault(t, event.device_id)
        else:
            self.now = max(self.now, t)
            if isinstance(event, CustomerValue):
                self.value = event.model_dump(mode="json")
            self._trim()

    # The nightly's replay calls these three with a lake's columns, without building an event
    # object per row (``models.features``: building them was half of the feature build).

    def observe_ticket(
        self,
        t: float,
        ticket_id: str,
        contact_number: int,
        category: str,
        csat: int | None,
        nps: int | None,
        status: str,
    ) -> None:
        """A ticket event at ``t`` (epoch seconds): :meth:`observe` of a ``Ticket``."""
        self.now = max(self.now, t)
        self.contacts.append([t, ticket_id, contact_number, category])
        if csat is not None or nps is not None:
            self.surveys.append([t, csat, nps])
        if status == "resolved":
            self.open_tickets.pop(ticket_id, None)
        else:
            self.open_tickets.setdefault(ticket_id, t)
        self._trim()

    def observe_order(self, t: float, status: str, amount: float) -> None:
        """An order event at ``t`` (epoch seconds): :meth:`observe` of an ``Order``."""
        self.now = max(self.now, t)
        if status == "placed":
            self.placed = [*self.placed, t][-ORDER_HISTORY:]
            self.spend.append([t, amount])
        elif status in ("late", "cancelled", "returned"):
            self.problems.append([t, status])
        self._trim()

    def observe_fault(self, t: float, device_id: str | None) -> None:
        """A device-fault alert at ``t`` (epoch seconds) on one of the customer's devices."""
        self.now = max(self.now, t)
        self.faults.append([t, device_id])
        self._trim()

    def _trim(self) -> None:
        horizon = self.now - WINDOW_S
        cap = -WINDOW_ENTRIES_MAX
        self.contacts = [c for c in self.contacts if c[0] >= horizon][cap:]
        self.surveys = [s for s in self.surveys if s[0] >= horizon][cap:]
        self.problems = [p for p in self.problems if p[0] >= horizon][cap:]
        self.faults = [f for f in self.faults if f[0] >= horizon][cap:]
        self.spend = [s for s in self.spend if s[0] >= self.now - SPEND_WINDOW_S][cap:]
        # Tickets silent for 30 days are abandoned, not open forever.
        open_tickets = [(k, v) for k, v in self.open_tickets.items() if v >= horizon]
        self.open_tickets = dict(open_tickets[-OPEN_TICKETS_MAX:])

    def features(self, at: float | None = None) -> dict[str, float]:
        """The customer's features at event time ``at`` (epoch seconds; default: their latest
        event), from what was observed before it (see ``FEATURES``). The nightly churn model
        is trained on exactly these, computed as of each cut-off, so stream and batch agree."""
        now = self.now if at is None else at
        horizon, week = now - WINDOW_S, now - 7 * DAY
        contacts = [c for c in self.contacts if horizon <= c[0] <= now]
        surveys = [v for v in self.surveys if horizon <= v[0] <= now]
        problems = [p for p in self.problems if horizon <= p[0] <= now]
        placed = [t for t in self.placed if t <= now]
        gaps = [b - a for a, b in itertools.pairwise(placed)]
        gap_ratio = 0.0
        if len(gaps) >= 2:
            gap_ratio = (now - placed[-1]) / max(sum(gaps) / len(gaps), DAY)
        return {
            "tickets_7d": float(len({c[1] for c in contacts if c[0] >= week})),
            "tickets_30d": float(len({c[1] for c in contacts})),
            "repeat_contacts_30d": float(sum(1 for c in contacts if c[2] >= 2)),
            "low_csat_30d": float(sum(1 for v in surveys if v[1] is not None and v[1] <= 2)),
            "detractors_30d": float(sum(1 for v in surveys if v[2] is not None and v[2] <= 6)),
            "complaints_30d": float(
                len({c[1] for c in contacts if c[3] in ("complaint", "cancellation")})
            ),
            "unresolved_age_h": max(
                ((now - t) / 3600 for t in self.open_tickets.values() if horizon <= t <= now),
                default=0.0,
            ),
            "late_orders_30d": float(sum(1 for p in problems if p[1] == "late")),
            "cancelled_orders_30d": float(sum(1 for p in problems if p[1] == "cancelled")),
            "returned_orders_30d": float(sum(1 for p in problems if p[1] == "returned")),
            "order_gap_ratio": round(gap_ratio, 3),
            # Devices, not alerts: an escalating episode is still one faulty device.
            "device_faults_30d": float(len({f[1] for f in self.faults if horizon <= f[0] <= now})),
        }

    def value_eur(self) -> float:
        """Value at stake: the published 365-day CLV, else the last 90 days' spend x 4."""
        if self.value is not None:
            return float(self.value["clv_365d"])
        return 4.0 * sum(a for _, a in self.spend)

    def value_tier(self) -> str:
        if self.value is not None:
            return str(self.value["value_tier"])
        spend = sum(a for _, a in self.spend)
        return next((tier for tier, floor in SPEND_TIERS_EUR.items() if spend >= floor), "bronze")


def heuristic_risk(features: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Risk in [0, 1] from capped points per feature, and each feature's points."""
    points = {
        name: min(cap, per_unit * max(0.0, features[name] - ALLOWANCE.get(name, 0.0)))
        for name, (per_unit, cap) in POINTS.items()
    }
    return 1 / (1 + math.exp(-(sum(points.values()) - MIDPOINT))), points


def top_reasons(features: dict[str, float], points: dict[str, float], n: int = 3) -> list[str]:
    """The ``n`` features that add most to the risk, in words a retention agent can use."""
    top = sorted(((p, name) for name, p in points.items() if p > 0), reverse=True)[:n]
    return [REASONS[name].format(v=features[name]) for _, name in top]
