"""Detection quality against the simulator's ground truth, with floors below the targets.

Targets on the demo scenario (issue 3): >= 90% of device faults flagged before the complaint,
median lead >= 24 h, precision >= 0.85; >= 70% of churners flagged >= 7 days ahead with
precision >= 0.5. These floors sit a little lower so noise does not fail the suite while a
regression does. The scenario uses another seed than the demo, so nothing is tuned to it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pytest

from console.report import score_churn, score_devices
from forewarn.events import CustomerSignal
from simulator import build_world, world_events
from streams.baselines import StaticThreshold, naive_churn_flags
from streams.customer_risk.step import CustomerStep
from streams.device_faults.detector import DeviceFaultDetector, DeviceState

pytestmark = pytest.mark.slow
DAYS = 30


@pytest.fixture(scope="module")
def run():
    world = build_world(
        n_customers=300, days=DAYS, start=datetime(2026, 2, 2, tzinfo=UTC), seed=1234
    )
    events = list(world_events(world))
    readings = [e for e in events if e.topic == "device-telemetry"]
    customer_events = [e for e in events if e.topic != "device-telemetry"]
    devices, device_states = DeviceFaultDetector(), defaultdict(DeviceState)
    visits: dict[str, datetime] = {}
    signals = []
    for e in readings:
        if (alert := devices.update(device_states[e.device_id], e)) is not None:
            visits.setdefault(e.device_id, alert.event_time)
            signals.append(CustomerSignal(**alert.model_dump()))  # as the worker re-keys them
    # The customer agent's step, as one source read in event-time order.
    history = sorted(customer_events + signals, key=lambda e: e.event_time)
    outcome = CustomerStep({}).run(("history", 0, i, e) for i, e in enumerate(history))
    flags: dict[str, datetime] = {}
    for alert in outcome.alerts:
        if alert.kind == "churn_risk":
            flags.setdefault(alert.customer_id, alert.event_time)
    naive_visits = StaticThreshold().fit(readings).first_alerts(readings)
    return world, visits, flags, naive_visits, naive_churn_flags(customer_events)


def test_device_faults_are_caught_early_and_precisely(run):
    world, visits, _, naive_visits, _ = run
    ours, _ = score_devices(world.faults, visits, n_devices=len(world.devices), days=DAYS)
    naive, _ = score_devices(world.faults, naive_visits, n_devices=len(world.devices), days=DAYS)
    assert ours["recall"] >= 0.85
    assert ours["precision"] >= 0.8
    assert ours["lead_hours"]["median"] >= 24
    assert ours["precision"] > naive["precision"] + 0.3
    assert (
        ours["false_visits_per_1000_devices_month"]
        < naive["false_visits_per_1000_devices_month"] / 5
    )


def test_churners_are_flagged_a_week_ahead(run):
    world, _, flags, _, naive_flags = run
    ours = score_churn(world.churns, flags)
    naive = score_churn(world.churns, naive_flags)
    assert ours["recall_7d"] >= 0.6
    assert ours["precision"] >= 0.45
    assert ours["recall_7d"] + ours["precision"] > naive["recall_7d"] + naive["precision"]


def test_a_hard_world_is_harder_and_the_detector_still_beats_the_naive_baseline():
    """Issue 15, item 5: half the faults without precursor codes, excursions that recover
    by themselves, unmarked maintenance, mixed sampling, count metrics. Floors below what
    seeds 1234, 7, 99 and 5 gave (recall 0.89-1.00, precision 0.32-0.39; the naive static
    threshold 0.14-0.26 and 0.02-0.03), on another seed."""
    world = build_world(
        n_customers=300, days=DAYS, start=datetime(2026, 2, 2, tzinfo=UTC), seed=42, hard=True
    )
    readings = [e for e in world_events(world) if e.topic == "device-telemetry"]
    devices, states, visits = DeviceFaultDetector(), defaultdict(DeviceState), {}
    for e in readings:
        if (alert := devices.update(states[e.device_id], e)) is not None:
            visits.setdefault(e.device_id, alert.event_time)
    naive_visits = StaticThreshold().fit(readings).first_alerts(readings)
    ours, _ = score_devices(world.faults, visits, n_devices=len(world.devices), days=DAYS)
    naive, _ = score_devices(world.faults, naive_visits, n_devices=len(world.devices), days=DAYS)
    assert ours["recall"] >= 0.8
    assert ours["precision"] >= 0.25
    assert ours["recall"] > naive["recall"] + 0.4
    assert ours["precision"] > naive["precision"] + 0.15
