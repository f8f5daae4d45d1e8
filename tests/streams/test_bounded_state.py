"""Every per-device and per-customer state has a size bound (docs/detection.md): a burst of
valid events cannot grow a state past what one changelog message holds (Kafka's 1 MB; the
probe's 700 readings with 64 codes each for one device did, and the worker exited)."""

from __future__ import annotations

import json
from datetime import timedelta

from forewarn.events import SCORE_MAX, CustomerValue
from models.customer_state import CustomerState
from streams.customer_risk.detector import CustomerRiskDetector, NegativeFeedbackDetector
from streams.device_faults.detector import (
    CODE_TIMES_MAX,
    CODES_MAX,
    METRICS_MAX,
    DeviceFaultDetector,
    DeviceState,
)
from tests.utils import factories
from tests.utils.factories import T0

#: The documented bound of one device's or one customer's state, as changelog JSON.
STATE_BYTES_MAX = 80_000


def _size(state) -> int:
    return len(json.dumps(state.to_dict()))


def test_a_burst_of_readings_with_many_codes_keeps_the_device_state_bounded():
    detector, state = DeviceFaultDetector(), DeviceState()
    sizes, alerts = [], []
    for i in range(10_000):
        reading = factories.telemetry(
            i,
            event_time=T0 + timedelta(seconds=i),
            # 64 distinct fault codes per reading, 200 distinct over the burst, and metric names
            # that keep changing: everything that used to be listed or grow.
            error_codes=[f"E{(i + k) % 200:03d}" for k in range(64)],
            metrics={f"m{(i + k) % 150}": float(k) for k in range(64)},
        )
        if (alert := detector.update(state, reading)) is not None:
            alerts.append(alert)
        if i % 500 == 0 or i == 9_999:
            sizes.append(_size(state))
    assert max(sizes) < STATE_BYTES_MAX, sizes
    assert len(state.codes) <= CODES_MAX
    assert all(len(times) <= CODE_TIMES_MAX for times in state.codes.values())
    assert len(state.metrics) <= METRICS_MAX
    assert state.counters["metrics_ignored"] > 0
    # Still a detector: the code burst raised its alert, and the state still round-trips.
    assert [a.fault_kind for a in alerts][:1] == ["error_codes"]
    assert (
        DeviceState.from_dict(json.loads(json.dumps(state.to_dict()))).to_dict() == state.to_dict()
    )


def test_codes_are_counted_per_code_within_the_window():
    detector, state = DeviceFaultDetector(), DeviceState()
    detector.update(state, factories.telemetry(0, error_codes=["E07", "E07", "W01"]))
    detector.update(state, factories.telemetry(1, error_codes=["E07", "E09"]))
    assert {c: len(t) for c, t in state.codes.items()} == {"E07": 3, "E09": 1}
    assert state.fault_codes() == ["E07", "E07", "E07", "E09"]
    detector.update(state, factories.telemetry(30))  # 29 h later: all out of the 24 h window
    assert state.codes == {}


def test_states_written_before_codes_were_counted_still_load():
    old = DeviceState().to_dict()
    del old["codes"]
    old["recent_codes"] = [[1.0, "E01"], [2.0, "E01"], [3.0, "F02"]]
    assert DeviceState.from_dict(old).codes == {"E01": [1.0, 2.0], "F02": [3.0]}


def test_the_first_owner_keeps_the_device():
    detector, state = DeviceFaultDetector(), DeviceState()
    detector.update(state, factories.telemetry(0, customer_id="C00001"))
    other = factories.telemetry(1, customer_id="C99999", error_codes=["F01"])
    why = detector.owner_conflict(state, other)
    assert why is not None and "C00001" in why and "C99999" in why
    assert detector.owner_conflict(state, factories.telemetry(2)) is None
    assert state.customer_id == "C00001"


def test_a_burst_of_tickets_keeps_the_customer_state_bounded():
    risk, feedback, state = CustomerRiskDetector(), NegativeFeedbackDetector(), CustomerState()
    sizes = []
    for i in range(10_000):
        event = factories.ticket(
            event_id=f"T{i}-1",
            ticket_id=f"T{i}",
            event_time=T0 + timedelta(seconds=i),
            status="opened",
            category="complaint",
            text="x" * 4000,
        )
        risk.update(state, event)
        feedback.update(state, event)
        order = factories.order(
            event_id=f"O{i}", order_id=f"O{i}", event_time=T0 + timedelta(seconds=i)
        )
        risk.update(state, order)
        if i % 500 == 0:
            sizes.append(_size(state))
    assert max(sizes) < STATE_BYTES_MAX, sizes
    assert state.features()["tickets_30d"] > 0


def test_a_customer_with_a_billion_in_spend_gets_their_tasks():
    """Over 250,000 in 90-day spend (or a published value over 1e6) crashed the customer agent
    on every event: big spenders never got feedback or retention tasks."""
    risk, feedback, state = CustomerRiskDetector(), NegativeFeedbackDetector(), CustomerState()
    for i in range(100):  # 100 orders of the contract's maximum, 1e7 each
        order = factories.order(
            event_id=f"O{i}", order_id=f"O{i}", amount=1e7, event_time=T0 + timedelta(hours=i)
        )
        risk.update(state, order)
    assert state.value_eur() == 4e9
    complaint = factories.ticket(
        event_time=T0 + timedelta(days=5), category="complaint", status="opened", csat=1
    )
    alert = feedback.update(state, complaint)
    assert alert is not None and alert.severity == "critical" and alert.score == 4e9
    value = CustomerValue(
        event_id="v1",
        event_time=T0 + timedelta(days=5),
        customer_id="C00001",
        p_alive=0.5,
        expected_purchases_90d=3.0,
        clv_90d=2.5e11,
        clv_365d=1e12,
        value_tier="platinum",
    )
    risk.update(state, value)
    retention = []
    for i in range(6):
        bad = factories.ticket(
            event_id=f"B{i}-3",
            ticket_id=f"B{i}",
            event_time=T0 + timedelta(days=5, hours=i),
            category="complaint",
            contact_number=3,
            csat=1,
            nps=0,
        )
        retention += [a for a in [risk.update(state, bad)] if a is not None]
    assert [a.kind for a in retention][:1] == ["churn_risk"]
    assert 1e11 < retention[0].score <= SCORE_MAX
