"""Device-fault detection: catches degradations, ignores benign surprises, one alert each."""

from __future__ import annotations

import json
import math
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


def test_silence_is_judged_alike_on_a_stored_document_and_on_the_state():
    """The step reads stored documents without decoding them (``silent``); one written before
    the silence fields existed reads as never alerted."""
    detector, state = DeviceFaultDetector(), DeviceState()
    for i in range(48):
        detector.update(state, factories.telemetry(i))
    last = factories.telemetry(47).event_time.timestamp()
    document = json.loads(json.dumps(state.to_dict()))
    for hours in (2, 5):
        assert detector.silent(document, last + hours * 3600) is (hours == 5)
    old = {k: v for k, v in document.items() if k not in ("silence_alerted", "last_mode")}
    assert detector.silent(old, last + 5 * 3600)
    assert not detector.silent(document | {"silence_alerted": True}, last + 5 * 3600)
    assert not detector.silent(DeviceState().to_dict(), last), "never seen: never silent"


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
    # Opt-in per metric since issue 15 (by default a run of equal readings is scored).
    detector, state = DeviceFaultDetector(stuck_metrics=("vibration_*",)), DeviceState()
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


# --- issue 15: the four causes, each reproduced first -----------------------------------------


def _readings(values, metric="vibration_mm_s", every=timedelta(hours=1), codes=None):
    t0 = factories.telemetry(0).event_time
    return [
        factories.telemetry(
            i,
            event_time=t0 + i * every,
            metrics={metric: None if v is None else float(v)},
            error_codes=(codes or {}).get(i, []),
        )
        for i, v in enumerate(values)
    ]


def _alerts(readings, detector=None, state=None):
    detector, state = detector or DeviceFaultDetector(), state or DeviceState()
    return [(i, a) for i, r in enumerate(readings) if (a := detector.update(state, r))], state


def test_a_lasting_harmless_shift_does_not_swallow_a_later_fault():
    """Cause 1: the CUSUM grew without bound, learning stayed frozen and the first episode
    never ended, so a real fault days later raised nothing."""
    values = _normal_day(24 * 16)
    values[24 * 3 :] += 0.6  # a lasting, harmless move to a new normal (6 sigma)
    values[24 * 12 :] += np.linspace(0, 1.5, 24 * 4)  # the real fault, days later
    alerts, state = _alerts(_readings(values))
    assert [i // 24 for i, _ in alerts][:1] == [3]
    assert any(i >= 24 * 12 for i, _ in alerts), "the later fault must alert again"
    assert state.counters["settled"] >= 1, "the held shift became the new normal"


def test_drift_evidence_is_bounded_and_resets_when_the_unit_is_calm_again():
    values = _normal_day(24 * 12)
    values[24 * 4 : 24 * 4 + 12] += 30.0  # a huge excursion for half a day, then back
    detector = DeviceFaultDetector()
    alerts, state = _alerts(_readings(values, metric="vibration"), detector)
    m = state.metrics["vibration"]
    assert abs(m.ewma) <= detector.z_cap
    assert [i // 24 for i, _ in alerts] == [4]
    assert not detector.in_episode(state), "the episode ended once the unit was calm"
    assert state.counters["episodes_ended"] == 1


def test_a_distinct_deterioration_after_an_episode_alerts_again():
    values = _normal_day(24 * 12)
    values[24 * 4 : 24 * 4 + 6] += 1.0
    values[24 * 9 : 24 * 9 + 6] += 1.0
    alerts, _ = _alerts(_readings(values))
    assert [i // 24 for i, _ in alerts] == [4, 9]


def test_warm_up_waits_for_a_whole_day_on_five_minute_data():
    """Cause 2: warm-up counted 36 readings (3 h of 5-minute data); the first daily cycle
    then read as drift."""
    n = 12 * 24 * 4
    rng = np.random.default_rng(5)
    minutes = np.arange(n) * 5
    values = 20 + 3 * np.sin(2 * np.pi * minutes / 1440) + rng.normal(0, 0.3, n)
    readings = _readings(values, metric="outlet_temp_c", every=timedelta(minutes=5))
    detector, state = DeviceFaultDetector(), DeviceState()
    for r in readings[: 12 * 6]:
        detector.update(state, r)
    assert not state.metrics["outlet_temp_c"].warm, "6 h of 5-minute data is not a day"
    alerts, _ = _alerts(readings[12 * 6 :], detector, state)
    assert alerts == []
    assert state.metrics["outlet_temp_c"].baseline.profile_ready


def test_sparse_data_warms_up_by_the_fall_back():
    values = _normal_day(10, level=5.0)  # one reading a day at the same hour
    readings = _readings(list(values) * 4, every=timedelta(days=1))
    detector, state = DeviceFaultDetector(), DeviceState()
    for r in readings:
        detector.update(state, r)
    m = state.metrics["vibration_mm_s"]
    assert not m.baseline.profile_ready
    assert m.warm, "after warmup_hours_max the hours never seen no longer hold scoring back"


def test_count_data_with_repeated_zeros_keeps_every_reading_and_its_excursion():
    """Cause 3: three equal readings were a stuck sensor; count data lost 94% of a series."""
    rng = np.random.default_rng(7)
    counts = rng.poisson(0.3, 24 * 20).astype(float)  # mostly zeros
    counts[24 * 14 : 24 * 16] = rng.poisson(6, 48)  # a real excursion
    alerts, state = _alerts(_readings(counts, metric="door_openings"))
    assert "frozen" not in state.counters, "by default no reading is dropped as stuck"
    assert [i // 24 for i, _ in alerts][:1] == [14]
    # Opted in, runs of zeros are judged against this metric's own rate of repeats.
    opted = DeviceFaultDetector(stuck_metrics=("door_*",))
    alerts, state = _alerts(_readings(counts, metric="door_openings"), opted)
    assert state.counters.get("frozen", 0) <= 1
    assert [i // 24 for i, _ in alerts][:1] == [14]


def test_unit_change_rule_leaves_metrics_without_a_unit_in_their_name_alone():
    """Cause 3: the unit-change rule explained real excursions away on series that had no
    unit change (a real excursion to 1.8 x the level looks like Celsius to Fahrenheit)."""
    rng = np.random.default_rng(3)
    values = 45 + rng.normal(0, 0.3, 24 * 10)
    values[24 * 6 :] = values[24 * 6 :] * 1.8 + 32  # a real excursion, not a unit change
    alerts, state = _alerts(_readings(values, metric="pressure"))
    assert "unit_change" not in state.counters
    assert [i // 24 for i, _ in alerts][:1] == [6]


def test_readings_of_any_finite_magnitude_are_scored():
    """Cause 3: the contract refused readings beyond +-1e6, silently for a replay."""
    big = factories.telemetry(0, metrics={"energy_wh": 3.5e9})
    assert big.metrics == {"energy_wh": 3.5e9}
    values = _normal_day(24 * 6, level=2e12, sigma=1e9)
    values[24 * 4 :] += 3e10
    alerts, _ = _alerts(_readings(values, metric="energy_wh"))
    assert alerts and alerts[0][0] // 24 == 4
    _, state = _alerts(_readings([1e300, -1e300, 1e300] * 20, metric="x"))
    assert math.isfinite(state.metrics["x"].baseline.level)


def test_fault_codes_match_case_insensitively_and_are_counted():
    """Cause 3: `error3` was ignored (codes matched case-sensitively) and nothing said so."""
    values = _normal_day(24 * 4)
    codes = {50: ["error3"], 52: ["e3"], 55: ["Error3", "w10"]}
    alerts, state = _alerts(_readings(values, codes=codes))
    assert [(i, a.fault_kind) for i, a in alerts] == [(55, "error_codes")]
    assert state.counters["codes_recognised"] == 3
    assert state.counters["codes_ignored"] == 1
    custom = DeviceFaultDetector(fault_code_patterns=("ALM-*",), failure_codes=("ALM-99",))
    alerts, state = _alerts(_readings(values, codes={60: ["alm-99"]}), custom)
    assert [(i, a.fault_kind) for i, a in alerts] == [(60, "failure")]


def test_modest_moves_of_several_metrics_at_once_alert_with_each_named():
    """Cause 4 and item 2: 1.5 sigma on three metrics for a day; none alone is much."""
    rng = np.random.default_rng(11)
    n, names = 24 * 12, ("a", "b", "c")
    data = {k: 10 + rng.normal(0, 1, n) for k in names}
    for k in names:
        data[k][24 * 8 :] += 1.5
    t0 = factories.telemetry(0).event_time
    readings = [
        factories.telemetry(
            i,
            event_time=t0 + timedelta(hours=i),
            metrics={k: float(data[k][i]) for k in names},
        )
        for i in range(n)
    ]
    alerts, _ = _alerts(readings)
    assert alerts, "a modest shift on three metrics at once was missed"
    first_at, alert = alerts[0]
    assert 24 * 8 <= first_at < 24 * 9
    assert alert.fault_kind.startswith("drift:")
    assert sum(f"{k} " in alert.explanation for k in names) >= 2
    assert "together" in alert.explanation


def test_visit_outcome_ends_the_episode():
    values = _normal_day(24 * 8)
    values[24 * 4 :] += 0.6
    detector = DeviceFaultDetector()
    alerts, state = _alerts(_readings(values[: 24 * 5]), detector)
    assert alerts and detector.in_episode(state)
    detector.visit_outcome(state, "no_fault_found")
    assert not detector.in_episode(state)
    more, _ = _alerts(_readings(values)[24 * 5 :], detector, state)
    assert more == [], "the unit's new level is its normal now"
    with pytest.raises(ValueError, match="outcome must be one of"):
        detector.visit_outcome(state, "kicked")


def test_a_document_written_before_issue_15_still_loads():
    old = DeviceState().to_dict()
    old["metrics"] = {
        "v": {
            "baseline": {"warmup": 36, "n": 40, "level": 2.0, "scale": 0.1, "profile": [0.0] * 24},
            "cusum_up": 13000.0,
            "cusum_down": 0.0,
            "rising_since": 1.0,
            "recent_spikes": [],
            "last_z": 0.0,
            "last_value": 2.0,
            "same_count": 0,
            "pending_unit": -1,
        }
    }
    old["quiet_since"] = None
    state = DeviceState.from_dict(old)
    assert state.metrics["v"].baseline.level == 2.0


def test_a_state_written_by_a_newer_version_is_read_with_its_new_fields_left_behind():
    """A worker rolled back to this version reads states a newer one wrote: fields it does
    not know are left behind, everything it knows is kept to the bit (it crash-looped on
    ``MetricState(**document)`` before)."""
    detector, state = DeviceFaultDetector(), DeviceState()
    for i in range(80):
        detector.update(state, factories.telemetry(i, metrics={"vibration_mm_s": 2.0 + i % 3}))
    document = json.loads(json.dumps(state.to_dict()))
    newer = json.loads(json.dumps(document))
    newer["shard"] = 3
    newer["metrics"]["vibration_mm_s"]["seasonality"] = [0.0] * 7
    newer["metrics"]["vibration_mm_s"]["baseline"]["weekly"] = [1.0] * 7
    assert DeviceState.from_dict(newer).to_dict() == document
