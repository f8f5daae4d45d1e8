"""At-risk customers and negative feedback, as plain classes: no Faust, no Kafka.

One :class:`CustomerState` per customer holds sliding event-time windows of what happened to
them (tickets, surveys, order problems, faults on their devices, their order rhythm, their
value). Two detectors read it:

* :class:`CustomerRiskDetector` turns the windows into features, a risk in [0, 1] (a
  transparent points model, blended with the nightly churn model when one is published), and
  alerts with hysteresis and the top reasons when the risk crosses ``enter``.
* :class:`NegativeFeedbackDetector` opens a one-hour response task for a low rating or a
  complaint, with a severity from the customer's value.

Examples
--------
>>> from datetime import datetime, timedelta, UTC
>>> from forewarn.events import Ticket
>>> state, risk = CustomerState(), CustomerRiskDetector()
>>> t0 = datetime(2026, 1, 5, tzinfo=UTC)
>>> def bad_contact(i):
...     return Ticket(event_id=f"T{i}-1", event_time=t0 + timedelta(days=i), ticket_id=f"T{i}",
...                   customer_id="C1", channel="phone", category="complaint", status="resolved",
...                   contact_number=3, csat=1, nps=2)
>>> alerts = [risk.update(state, bad_contact(i)) for i in range(4)]
>>> alert = next(a for a in alerts if a)
>>> alert.dedup_key, alert.kind
('retention:C1', 'churn_risk')
>>> "low CSAT" in alert.explanation
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from forewarn.events import (
    Alert,
    CustomerValue,
    Event,
    Ticket,
    feedback_key,
    retention_key,
)
from models.customer_state import (
    TIER_SEVERITY,
    CustomerState,
    heuristic_risk,
    top_reasons,
)


class ChurnModel(Protocol):
    """What the detector needs of a published churn model."""

    version: str

    def score(self, features: dict[str, float]) -> float:
        """P(churn) in [0, 1] for one customer's features."""
        ...


@dataclass(frozen=True)
class CustomerRiskDetector:
    """Flags customers likely to leave, early and with reasons, once per episode.

    Works from the first event (no model needed); when a churn model is given, its P(churn)
    is blended in with weight ``model_weight``. Hysteresis: a customer enters the at-risk
    state at ``risk >= enter`` (one alert), stays until ``risk < exit``, and alerts again
    within an episode only if the risk rose by ``escalate`` since the last alert.

    Parameters
    ----------
    enter, exit : float
        Risk thresholds of the hysteresis (``exit < enter``).
    escalate : float
        Rise in risk that refreshes an open retention task.
    model_weight : float
        Share of the churn model's score in the blended risk.
    """

    enter: float = 0.5
    exit: float = 0.3
    escalate: float = 0.2
    model_weight: float = 0.5

    def update(
        self, state: CustomerState, event: Event, model: ChurnModel | None = None
    ) -> Alert | None:
        """Observe ``event`` and return a retention alert if the customer became at risk."""
        state.observe(event)
        if isinstance(event, CustomerValue):
            return None
        features = state.features()
        risk, points = heuristic_risk(features)
        model_note, p = "", None
        if model is not None:
            p = model.score(features)
            risk = (1 - self.model_weight) * risk + self.model_weight * p
            model_note = f"churn model {model.version}: P(churn) {p:.2f}"
        state.risk = round(risk, 4)
        if state.at_risk and risk < self.exit:
            state.at_risk, state.alerted_risk = False, 0.0
            return None
        rising = state.at_risk and risk >= state.alerted_risk + self.escalate
        if not (rising or (not state.at_risk and risk >= self.enter)):
            return None
        state.at_risk, state.alerted_risk = True, risk
        reasons = top_reasons(features, points)
        if model_note:
            reasons.append(model_note)
        value = state.value_eur()
        tier = state.value_tier()
        customer_id = _customer_of(event)
        return Alert(
            event_id=f"risk-{event.event_id}",
            event_time=event.event_time,
            alert_id=f"risk-{event.event_id}",
            dedup_key=retention_key(customer_id),
            kind="churn_risk",
            customer_id=customer_id,
            severity=TIER_SEVERITY[tier],
            confidence=round(min(risk, 0.99), 3),
            score=round(risk * value, 2),
            explanation=f"churn risk {risk:.2f} ({tier}, 365-day value about {value:,.0f} EUR): "
            + "; ".join(reasons),
            evidence={
                "risk": round(risk, 3),
                # The model's own probability, the only figure money at risk is computed from
                # (``forewarn.value.churn_probability``); the blended risk is not one.
                **({"p_churn": round(p, 4)} if p is not None else {}),
                "features": features,
                "value_eur": round(value, 2),
                "value_tier": tier,
                "reasons": reasons,
            },
            detector="customer_risk.v1",
        )


@dataclass(frozen=True)
class NegativeFeedbackDetector:
    """A low rating or a complaint opens a response task due within one hour.

    Negative means CSAT <= ``max_csat``, NPS <= ``max_nps``, or a new complaint ticket. One
    alert per ticket; severity follows the customer's value tier so the support queue is
    ordered by who matters most (MISSION.md: answer the most important within one hour).
    Reads the state :class:`CustomerRiskDetector` keeps; call it after that detector.
    """

    max_csat: int = 2
    max_nps: int = 4
    remember: int = 50  # tickets remembered as answered, per customer

    def update(self, state: CustomerState, event: Event) -> Alert | None:
        if not isinstance(event, Ticket) or event.ticket_id in state.negative_tickets:
            return None
        why = []
        if event.csat is not None and event.csat <= self.max_csat:
            why.append(f"CSAT {event.csat}/5")
        if event.nps is not None and event.nps <= self.max_nps:
            why.append(f"NPS {event.nps}/10")
        if event.category == "complaint" and event.status == "opened":
            why.append("complaint")
        if not why:
            return None
        state.negative_tickets = [*state.negative_tickets, event.ticket_id][-self.remember :]
        tier = state.value_tier()
        value = state.value_eur()
        text = event.text[:200]
        return Alert(
            event_id=f"feedback-{event.event_id}",
            event_time=event.event_time,
            alert_id=f"feedback-{event.event_id}",
            dedup_key=feedback_key(event.ticket_id),
            kind="negative_feedback",
            customer_id=event.customer_id,
            device_id=event.device_id,
            severity=TIER_SEVERITY[tier],
            confidence=0.9,
            score=round(value, 2),
            explanation=f"{' and '.join(why)} via {event.channel} from a {tier} customer "
            f'(about {value:,.0f} EUR): "{text}"',
            evidence={
                "ticket_id": event.ticket_id,
                "channel": str(event.channel),
                "category": event.category,
                "csat": event.csat,
                "nps": event.nps,
                "value_eur": round(value, 2),
                "value_tier": tier,
            },
            detector="negative_feedback.v1",
        )


def _customer_of(event: Event) -> str:
    return str(event.customer_id)  # type: ignore[attr-defined]
