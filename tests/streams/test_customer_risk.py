"""At-risk customers and negative feedback: windows, hysteresis, reasons, value, models."""

from __future__ import annotations

import json
from datetime import timedelta

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from forewarn.events import CustomerValue
from streams.customer_risk.detector import (
    FEATURES,
    CustomerRiskDetector,
    CustomerState,
    NegativeFeedbackDetector,
)
from streams.customer_risk.model import ModelHolder, ModelRejected, load_model
from tests.utils import factories
from tests.utils.factories import T0


def _ticket(day: float, n: int = 1, **overrides):
    fields = dict(
        event_id=f"T{day}-{n}",
        event_time=T0 + timedelta(days=day),
        ticket_id=f"T{day}",
        category="question",
        status="resolved",
        contact_number=n,
        csat=None,
        nps=None,
        ces_agree=None,
        first_contact_resolution=None,
        text="hi",
    )
    return factories.ticket(**(fields | overrides))


def _order(day: float, status: str = "placed", amount: float = 80.0, n: int = 0):
    return factories.order(
        event_id=f"O{day}-{n}-{status}",
        order_id=f"O{day}-{n}",
        event_time=T0 + timedelta(days=day),
        status=status,
        amount=amount,
    )


def _run(events, detector=None, model=None):
    detector = detector or CustomerRiskDetector()
    state = CustomerState()
    alerts = [a for e in events if (a := detector.update(state, e, model))]
    return state, alerts


def test_a_content_customer_is_not_flagged():
    events = [_order(d, n=i) for i, d in enumerate(range(0, 60, 12))]
    events += [_ticket(20, csat=5, nps=9)]
    _, alerts = _run(sorted(events, key=lambda e: e.event_time))
    assert alerts == []


def test_a_worsening_customer_is_flagged_once_with_reasons():
    events = [_order(0, n=0), _order(0.5, "late", n=0), _order(5, n=1), _order(6, "cancelled", n=1)]
    events += [_ticket(6 + i, n=2, category="complaint", csat=1, nps=2) for i in range(3)]
    state, alerts = _run(sorted(events, key=lambda e: e.event_time))
    assert len(alerts) == 1, "hysteresis: one alert while the customer stays at risk"
    (alert,) = alerts
    assert alert.kind == "churn_risk" and alert.dedup_key == "retention:C00001"
    assert "low CSAT" in alert.explanation or "cancelled" in alert.explanation
    assert alert.evidence["features"]["cancelled_orders_30d"] == 1
    assert state.at_risk


def test_windows_forget_what_is_older_than_30_days():
    state = CustomerState()
    detector = CustomerRiskDetector()
    detector.update(state, _ticket(0, csat=1))
    detector.update(state, _ticket(40, csat=5))
    assert state.features()["low_csat_30d"] == 0
    assert state.features()["tickets_30d"] == 1


def test_unresolved_ticket_age_and_repeat_contacts():
    state = CustomerState()
    detector = CustomerRiskDetector()
    detector.update(state, _ticket(0, status="opened", ticket_id="X", event_id="X-1"))
    detector.update(state, _ticket(2, n=2, status="updated", ticket_id="X", event_id="X-2"))
    features = state.features()
    assert features["unresolved_age_h"] == 48
    assert features["repeat_contacts_30d"] == 1


def test_order_gap_against_the_customers_own_rhythm():
    state = CustomerState()
    detector = CustomerRiskDetector()
    for i, day in enumerate((0, 10, 20, 30)):
        detector.update(state, _order(day, n=i))
    detector.update(state, _ticket(60))
    assert state.features()["order_gap_ratio"] == pytest.approx(3.0)


def test_risk_leaves_the_at_risk_state_only_below_exit():
    detector = CustomerRiskDetector(enter=0.5, exit=0.3, escalate=1.0)
    events = [_ticket(i, n=3, category="complaint", csat=1, nps=1) for i in range(3)]
    state, alerts = _run(events, detector)
    assert state.at_risk and len(alerts) == 1
    detector.update(state, _ticket(45, csat=5))  # a month later, all is well
    assert not state.at_risk


def test_state_round_trips_through_json():
    events = [_order(0), _ticket(1, csat=2, status="opened")]
    state, _ = _run(events)
    again = CustomerState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state


def test_negative_feedback_opens_one_task_per_ticket_ordered_by_value():
    state, detector = CustomerState(), NegativeFeedbackDetector()
    CustomerRiskDetector().update(
        state,
        CustomerValue(
            event_id="v",
            event_time=T0,
            customer_id="C00001",
            p_alive=0.9,
            expected_purchases_90d=2,
            clv_90d=300,
            clv_365d=1200,
            value_tier="platinum",
        ),
    )
    first = detector.update(state, _ticket(1, csat=1, ticket_id="T9", event_id="T9-1"))
    again = detector.update(state, _ticket(1.1, n=2, csat=1, ticket_id="T9", event_id="T9-2"))
    assert first is not None and again is None
    assert first.kind == "negative_feedback" and first.dedup_key == "feedback:T9"
    assert first.severity == "critical" and first.score == 1200
    assert "CSAT 1/5" in first.explanation
    assert detector.update(state, _ticket(2, csat=4, nps=8)) is None


def test_feedback_from_a_customer_without_published_value_uses_spend():
    state, risk = CustomerState(), CustomerRiskDetector()
    for i in range(4):
        risk.update(state, _order(i * 7, amount=80, n=i))
    alert = NegativeFeedbackDetector().update(state, _ticket(25, nps=2))
    assert alert.evidence["value_tier"] == "gold" and alert.severity == "high"


class TestChurnModel:
    @pytest.fixture
    def model_file(self, tmp_path):
        rng = np.random.default_rng(0)
        x = rng.poisson(1.0, size=(200, len(FEATURES))).astype(float)
        y = (x[:, FEATURES.index("low_csat_30d")] > 1).astype(int)
        path = tmp_path / "churn.joblib"
        joblib.dump(
            {
                "estimator": LogisticRegression().fit(x, y),
                "features": list(FEATURES),
                "version": "v1",
            },
            path,
        )
        return path

    def test_a_published_model_is_blended_in(self, model_file):
        model = load_model(f"file://{model_file}", "v1")
        events = [_ticket(i, csat=1) for i in range(3)]
        _, with_model = _run(events, model=model)
        assert with_model and "churn model v1" in with_model[0].explanation

    def test_a_broken_file_keeps_the_model_in_service(self, model_file, tmp_path):
        holder = ModelHolder()
        assert holder.offer(str(model_file), "v1")
        broken = tmp_path / "broken.joblib"
        broken.write_bytes(b"not a pickle")
        assert not holder.offer(str(broken), "v2")
        assert holder.model.version == "v1"
        assert "cannot load churn model v2" in holder.rejected[0]

    def test_a_model_on_other_features_is_refused(self, tmp_path):
        path = tmp_path / "old.joblib"
        x = np.zeros((4, 2))
        joblib.dump(
            {"estimator": LogisticRegression().fit(x, [0, 1, 0, 1]), "features": ["a", "b"]}, path
        )
        with pytest.raises(ModelRejected, match="retrain it on the current feature set"):
            load_model(str(path), "old")


def test_a_sharp_rise_in_risk_refreshes_the_alert():
    events = [_ticket(i, n=3, category="complaint", csat=1, nps=1) for i in range(3)]
    _, alerts = _run(events, CustomerRiskDetector(escalate=0.2))
    assert len(alerts) == 2
    assert alerts[1].evidence["risk"] >= alerts[0].evidence["risk"] + 0.2
    assert {a.dedup_key for a in alerts} == {"retention:C00001"}, "same task, refreshed"


def test_a_worker_reading_history_keeps_the_newest_model_that_loads(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.poisson(1.0, size=(50, len(FEATURES))).astype(float)
    good = tmp_path / "v1.joblib"
    joblib.dump(
        {
            "estimator": LogisticRegression().fit(x, (x[:, 0] > 1).astype(int)),
            "features": list(FEATURES),
        },
        good,
    )
    broken = tmp_path / "v2.joblib"
    broken.write_bytes(b"\x80garbage")
    holder = ModelHolder()
    holder.offer_newest([(str(good), "v1"), (str(broken), "v2")])
    assert holder.model.version == "v1"
    assert len(holder.rejected) == 1
