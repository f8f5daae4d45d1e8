"""Device-fault detection: catches degradations, ignores benign surprises, one alert each."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from simulator import build_world, world_events
from streams.device_faults.detector import DeviceFaultDetector, DeviceState, MetricBaseline
from tests.utils import factories

RNG_SEED = 0


def _normal_day(n: int, seed: int = RNG_SEED, level: float = 2.0, sigma: float = 0.1):
    rng = np.random.default_rng(seed)
    hours = np.arange(n)
    return level + 0.15 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, sigma, n)


def _run(values, codes=None, modes=None, firmware=None, detector=None):
    detector = detector or DeviceFaultDetector()
    state = DeviceState()
    alerts = []
    for i, v in enumerate(values):
        event = factories.telemetry(
            i,
            metrics={"vibration_mm_s": float(v)},
            error_codes=(codes or {}).get(i, []),
            mode=(modes or {}).get(i, "normal"),
            # firmware maps the first reading of a version to the version
            firmware=next(
                (f for k, f in sorted((firmware or {}).items(), reverse=True) if i >= k), "1.0.0"
            ),
        )
        alert = detector.update(state, event)
        if alert is not None:
            alerts.append((i, alert))
    return alerts


def test_baseline_scores_neutral_while_warming_up():
    baseline = MetricBaseline(warmup=10)
    for x in range(5):
        baseline.learn_one(2.0 + 0.01 * x, hour=x)
    assert baseline.score_one(100.0, hour=6) == 0.0


def test_baseline_scores_outliers_high_and_normal_readings_low():
    baseline = MetricBaseline()
    values = _normal_day(24 * 7)
    for i, v in enumerate(values):
        baseline.learn_one(float(v), hour=i % 24)
    assert abs(baseline.score_one(float(values[-1]), hour=(len(values) - 1) % 24)) < 3
    assert baseline.score_one(3.5, hour=0) > 8


def test_quiet_device_raises_no_alert():
    assert _run(_normal_day(24 * 14)) == []


def test_gradual_drift_is_caught_with_an_explanation():
    values = _normal_day(24 * 10)
    values[24 * 5 :] += np.linspace(0, 1.5, 24 * 5)  # up to 15 sigma over five days
    alerts = _run(values)
    assert alerts, "drift was not detected"
    first_at, alert = alerts[0]
    assert 24 * 5 < first_at < 24 * 8
    assert alert.fault_kind == "drift:vibration_mm_s"
    assert "sigma above this unit's baseline" in alert.explanation
    assert alert.dedup_key == "visit:D00001"


def test_single_glitch_is_ignored():
    values = _normal_day(24 * 10)
    values[24 * 6] += 2.0  # 20 sigma, once
    assert _run(values) == []


def test_burst_of_spikes_is_caught():
    values = _normal_day(24 * 10)
    for i in (24 * 6, 24 * 6 + 5, 24 * 6 + 9):
        values[i] += 1.0
    alerts = _run(values)
    assert [a.fault_kind for _, a in alerts][:1] == ["spikes:vibration_mm_s"]


def test_maintenance_readings_are_ignored():
    values = _normal_day(24 * 10)
    values[24 * 6 : 24 * 6 + 4] += 3.0
    modes = {i: "maintenance" for i in range(24 * 6, 24 * 6 + 4)}
    assert _run(values, modes=modes) == []


def test_firmware_update_that_shifts_the_baseline_is_not_a_fault():
    values = _normal_day(24 * 12)
    values[24 * 6 :] += 0.5  # five sigma, for good
    assert _run(values, firmware={24 * 6: "1.1.0"}) == []
    assert _run(values), "without the firmware change the same shift is a real alert"


def test_error_code_burst_alerts_and_benign_codes_do_not():
    values = _normal_day(24 * 5)
    assert _run(values, codes={i: ["W10"] for i in range(50, 60)}) == []
    alerts = _run(values, codes={50: ["E42"], 55: ["E42"], 58: ["E42"]})
    assert [(i, a.fault_kind) for i, a in alerts] == [(58, "error_codes")]
    assert "E42 x3" in alerts[0][1].explanation


def test_one_alert_per_episode_and_escalation_on_failure():
    values = _normal_day(24 * 10)
    values[24 * 5 :] += np.linspace(0, 1.5, 24 * 5)
    alerts = _run(values, codes={24 * 9 + 5: ["F01"]})
    severities = [a.severity for _, a in alerts]
    assert len(alerts) <= 3, "an ongoing episode must not alert on every reading"
    assert severities[-1] == "critical"
    assert severities == sorted(severities, key=["low", "medium", "high", "critical"].index)


def test_state_survives_a_json_round_trip_mid_stream():
    values = _normal_day(24 * 10)
    values[24 * 5 :] += np.linspace(0, 1.5, 24 * 5)
    detector = DeviceFaultDetector()
    straight = [a.alert_id for _, a in _run(values, detector=detector)]
    state, resumed = DeviceState(), []
    for i, v in enumerate(values):
        # What the Faust table does: the state goes to JSON and back on every reading.
        state = DeviceState.from_dict(json.loads(json.dumps(state.to_dict())))
        alert = detector.update(state, factories.telemetry(i, metrics={"vibration_mm_s": float(v)}))
        if alert is not None:
            resumed.append(alert.alert_id)
    assert resumed == straight


@pytest.mark.slow
def test_beats_a_naive_threshold_on_the_simulator():
    """The simulator's benign surprises (unit variation, firmware shifts, glitches,
    maintenance) make a fixed population threshold cry wolf; the detector must not."""
    world = build_world(n_customers=200, days=30, start=datetime(2026, 1, 5, tzinfo=UTC), seed=21)
    faults = {f.device_id: f for f in world.faults}
    readings = [e for e in world_events(world) if e.topic == "device-telemetry"]
    # Naive: mean +- 4 standard deviations of each metric over the whole fleet's first 3 days.
    first = world.start.timestamp() + 3 * 86400
    by_metric = defaultdict(list)
    for e in readings:
        if e.event_time.timestamp() < first:
            for name, v in e.metrics.items():
                by_metric[(e.device_type, name)].append(v)
    limits = {
        k: (np.mean(v) - 4 * np.std(v), np.mean(v) + 4 * np.std(v)) for k, v in by_metric.items()
    }
    naive, ours = set(), set()
    detector, states = DeviceFaultDetector(), defaultdict(DeviceState)
    for e in readings:
        if any(
            not lo <= v <= hi
            for n, v in e.metrics.items()
            for lo, hi in [limits[(e.device_type, n)]]
        ):
            naive.add((e.device_id, e.event_time))
        if detector.update(states[e.device_id], e) is not None:
            ours.add((e.device_id, e.event_time))

    def score(alerts):
        first_alert = {}
        for device, t in sorted(alerts, key=lambda a: a[1]):
            first_alert.setdefault(device, t)
        true = {
            d
            for d, t in first_alert.items()
            if d in faults and faults[d].onset_time <= t < faults[d].complaint_time
        }
        precision = len(true) / max(1, len(first_alert))
        return precision, len(true) / len(faults)

    naive_precision, _ = score(naive)
    precision, recall = score(ours)
    assert naive_precision < 0.5
    assert precision > 0.85
    assert recall > 0.9


def test_silent_device_is_flagged_once():
    detector, state = DeviceFaultDetector(), DeviceState()
    for i in range(48):
        detector.update(state, factories.telemetry(i))
    last = factories.telemetry(47).event_time
    assert detector.check_silence(state, last + timedelta(hours=2)) is None
    alert = detector.check_silence(state, last + timedelta(hours=5))
    assert alert is not None and alert.fault_kind == "silence"
    assert "no reading for 5 h" in alert.explanation
    assert detector.check_silence(state, last + timedelta(hours=9)) is None, "one per spell"


def test_device_that_went_quiet_in_maintenance_is_not_silent():
    detector, state = DeviceFaultDetector(), DeviceState()
    for i in range(48):
        detector.update(state, factories.telemetry(i, mode="maintenance" if i == 47 else "normal"))
    last = factories.telemetry(47).event_time
    assert detector.check_silence(state, last + timedelta(hours=12)) is None


def test_late_readings_beyond_the_bound_are_not_processed():
    detector, state = DeviceFaultDetector(), DeviceState()
    for i in range(40):
        detector.update(state, factories.telemetry(i))
    in_bound, too_late = factories.telemetry(36), factories.telemetry(20)
    assert detector.lateness_hours(state, in_bound) == 3
    assert detector.lateness_hours(state, too_late) == 19
    n_before = state.metrics["vibration_mm_s"].baseline.n
    assert detector.update(state, too_late) is None
    assert state.metrics["vibration_mm_s"].baseline.n == n_before
    assert state.counters["late"] == 1


def test_missing_and_nan_values_are_skipped():
    values = _normal_day(24 * 6)
    detector, state = DeviceFaultDetector(), DeviceState()
    for i, v in enumerate(values):
        metrics = {"vibration_mm_s": None if i % 5 == 0 else float(v)}
        assert detector.update(state, factories.telemetry(i, metrics=metrics)) is None
    nan_event = factories.telemetry(200, metrics={"vibration_mm_s": float("nan")})
    assert nan_event.metrics == {"vibration_mm_s": None}
    assert state.counters["missing"] > 0


def test_frozen_sensor_is_not_a_fault():
    values = _normal_day(24 * 10)
    values[24 * 5 : 24 * 7] = 2.9  # stuck on one (odd) value for two days
    detector, state = DeviceFaultDetector(), DeviceState()
    alerts = [
        detector.update(state, factories.telemetry(i, metrics={"vibration_mm_s": float(v)}))
        for i, v in enumerate(values)
    ]
    assert not any(alerts)
    assert state.counters["frozen"] == 1


def test_unit_change_is_converted_not_alerted():
    rng = np.random.default_rng(3)
    celsius = 45 + rng.normal(0, 0.3, 24 * 10)
    readings = np.where(np.arange(24 * 10) < 24 * 5, celsius, celsius * 1.8 + 32)
    detector, state = DeviceFaultDetector(), DeviceState()
    alerts = [
        detector.update(state, factories.telemetry(i, metrics={"outlet_temp_c": float(v)}))
        for i, v in enumerate(readings)
    ]
    assert not any(alerts)
    assert state.counters["unit_change"] == 1
    baseline = state.metrics["outlet_temp_c"].baseline
    assert abs(baseline.level - (45 * 1.8 + 32)) < 2


def test_state_read_from_a_document_shares_nothing_with_it():
    """A Faust table hands out the object it stores: learning must not change it in place."""
    detector, state = DeviceFaultDetector(), DeviceState()
    for i in range(40):
        detector.update(state, factories.telemetry(i, metrics={"vibration_mm_s": 2.0 + i % 3}))
    document = state.to_dict()
    before = json.dumps(document, sort_keys=True)
    again = DeviceState.from_dict(document)
    for i in range(40, 80):  # a profile changes in place; a missing value is counted
        value = None if i % 10 == 0 else 2.0 + i % 3
        detector.update(again, factories.telemetry(i, metrics={"vibration_mm_s": value}))
    assert json.dumps(document, sort_keys=True) == before
