"""The customer agent's detection step, Kafka-free: what a worker does with a customer's
orders, tickets, values and signals, and what the replay and the tests do with the same events.

Same events, same alerts (issue 14): a customer's alerts depend only on their events in the
order they were applied, never on how the events were batched, how partitions were
interleaved or where a worker restarted. What makes it so:

* A customer's state is read from the store once per batch and written back by the caller
  after the batch; within a batch the step keeps it in ``states``. A state remembers the last
  offset it applied per source (``topic:partition``); events at or below it are replays
  (counted ``replayed``), not new events.
* Both detectors see every event: :class:`CustomerRiskDetector` first (it keeps the windows),
  then :class:`NegativeFeedbackDetector`, which reads them. An event the detectors fail on is
  refused (the caller dead-letters it) and leaves the customer's state as it was before it,
  but for its offset, so its replay is skipped like any other.
* Customers have no lateness bound: their windows are in event time and take events in any
  order, so a late order or ticket is scored, never refused.

A customer's orders and tickets come from different topics, and Kafka does not order one
topic against another: the step gives the alerts of the order it is given.

Examples
--------
>>> from datetime import datetime, timedelta, UTC
>>> from forewarn.events import Ticket
>>> t0 = datetime(2026, 1, 5, tzinfo=UTC)
>>> def complaint(day):
...     return Ticket(event_id=f"T{day}-1", event_time=t0 + timedelta(days=day),
...                   ticket_id=f"T{day}", customer_id="C1", channel="phone",
...                   category="complaint", status="resolved", contact_number=3, csat=1, nps=2)
>>> store = {}
>>> step = CustomerStep(store)
>>> outcome = step.run([("tickets", 0, day, complaint(day)) for day in range(3)])
>>> [a.kind for a in outcome.alerts]
['churn_risk', 'negative_feedback', 'churn_risk', 'negative_feedback', 'negative_feedback']
>>> store.update({k: s.to_dict() for k, s in outcome.states.items()})
>>> again = step.run([("tickets", 0, 2, complaint(2))])  # replayed after a crash
>>> again.alerts, dict(again.counts), again.states
([], {'replayed': 1}, {})
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forewarn.events import Alert, Event
from models.customer_state import CustomerState
from streams.customer_risk.detector import (
    ChurnModel,
    CustomerRiskDetector,
    NegativeFeedbackDetector,
)
from streams.unreadable import Unreadable, reason_of

log = logging.getLogger(__name__)

#: One event and where it was read: ``(topic, partition, offset, event)``.
Sourced = tuple[str, int, int, Event]


@dataclass(frozen=True)
class Refusal:
    """An event the detectors failed on (the caller dead-letters it)."""

    topic: str
    partition: int
    offset: int
    reason: str


@dataclass
class Outcome:
    """What one batch gave: alerts in the order raised, refusals, counters (``processed``,
    ``replayed``), the states to write back (every state an event changed), and stored states
    that could not be read (their customers started over)."""

    alerts: list[Alert] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    states: dict[str, CustomerState] = field(default_factory=dict)
    unreadable: list[Unreadable] = field(default_factory=list)


class CustomerStep:
    """Applies customer events ``(topic, partition, offset, event)`` to states kept in ``store``.

    Parameters
    ----------
    store : Mapping[str, dict]
        Customer states by customer id as ``CustomerState.to_dict()`` documents: the agent's
        table, or a plain dict. Read only; the caller writes ``Outcome.states`` back after
        each batch (after delivering its alerts).
    risk : CustomerRiskDetector, optional
    feedback : NegativeFeedbackDetector, optional
    model : callable, optional
        The churn model in service now, or None (the worker's changes while it runs).
    """

    def __init__(
        self,
        store: Mapping[str, dict[str, Any]],
        *,
        risk: CustomerRiskDetector | None = None,
        feedback: NegativeFeedbackDetector | None = None,
        model: Callable[[], ChurnModel | None] = lambda: None,
    ) -> None:
        self.store = store
        self.risk = risk or CustomerRiskDetector()
        self.feedback = feedback or NegativeFeedbackDetector()
        self.model = model

    def run(self, events: Iterable[Sourced]) -> Outcome:
        """Apply one batch; each source's events must come in offset order."""
        out = Outcome()
        loaded: dict[str, CustomerState] = {}
        for topic, partition, offset, event in events:
            customer_id = str(event.customer_id)  # type: ignore[attr-defined]
            state = out.states.get(customer_id) or loaded.get(customer_id)
            if state is None:
                data = self.store.get(customer_id)
                try:
                    state = CustomerState.from_dict(data)
                except Exception as exc:  # one damaged state must not stop every customer
                    reason = reason_of(f"customer {customer_id}", exc)
                    out.unreadable.append(Unreadable(customer_id, partition, offset, data, reason))
                    state = CustomerState()
                    out.states[customer_id] = state  # written back, the damaged one replaced
                loaded[customer_id] = state
            source = f"{topic}:{partition}"
            if offset <= state.offsets.get(source, -1):
                out.counts["replayed"] += 1  # after a crash: already in the state
                continue
            before = state.to_dict()
            try:
                alerts = [
                    self.risk.update(state, event, self.model()),
                    self.feedback.update(state, event),
                ]
            except Exception as exc:  # one event must not stop every customer's detection
                log.exception("customer detectors failed on %s[%d]@%d", topic, partition, offset)
                reason = f"the customer detectors failed on this event: {exc!r}"
                out.refused.append(Refusal(topic, partition, offset, reason))
                state = CustomerState.from_dict(before)
                alerts = []
            else:
                out.counts["processed"] += 1
            state.offsets[source] = offset
            out.states[customer_id] = state
            out.alerts += [a for a in alerts if a is not None]
        return out
