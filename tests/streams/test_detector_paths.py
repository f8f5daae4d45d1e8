"""The device detector's common path (issue 19, item 2) gives what its full path gives: the
same alerts and the same state, to the last bit, after every reading.

``DeviceFaultDetector.update`` takes a common reading in one pass and any other through
``_update_full``; here one detector state is driven through ``update`` and a twin through
``_update_full`` alone, on generated histories with what leaves the common path (spikes, level
shifts, slow drifts, error codes, maintenance, firmware changes, missing values, late readings, unit
changes, infinite values) and on a simulator world.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.events import DeviceTelemetry
from simulator import build_world, world_events
from streams.device_faults.detector import DeviceFaultDetector, DeviceState
from tests.utils import factories
from tests.utils.pipeline import START

T0 = datetime(2026, 3, 2, tzinfo=UTC)
METRICS = ("outlet_temp_c", "pressure_bar", "flow_l_min")
KINDS = ("spike", "shift", "drift", "code", "failure", "warning", "maintenance", "firmware")
KINDS += ("missing", "late", "very_late", "fahrenheit", "infinite", "new_metric", "same_time")

taken: Counter[bool] = Counter()


class CountingDetector(DeviceFaultDetector):
    """Counts how often the common path took a reading (the test must exercise it)."""

    def _update_common(self, state: DeviceState, event: DeviceTelemetry) -> bool:
        common = super()._update_common(state, event)
        taken[common] += 1
        return common


def _history(seed: int, n: int, minutes: int, names: tuple[str, ...], changes: dict[int, str]):
    """``n`` readings every ``minutes`` of one device: a level, a daily cycle and noise per
    metric, with ``changes`` (reading index -> kind) applied."""
    rng = random.Random(seed)
    level = {name: rng.uniform(-50, 500) for name in names}
    noise = {name: rng.uniform(0.01, 5) for name in names}
    shift = dict.fromkeys(names, 0.0)
    slope = 0.0  # a slow drift of the last metric, in its noise per reading
    fahrenheit = False
    firmware = "1.0"
    extra: dict[str, float] = {}
    for i in range(n):
        at = T0 + timedelta(minutes=minutes * i)
        kind = changes.get(i)
        if kind == "shift":
            shift[names[0]] += 12 * noise[names[0]]
        elif kind == "drift":
            slope = rng.uniform(0.02, 0.2)
        elif kind == "firmware":
            firmware = "2.0"
        elif kind == "fahrenheit":
            fahrenheit = True
        elif kind == "new_metric":
            extra = {"vibration_mm_s": 1.0}
        elif kind == "late":
            at -= timedelta(minutes=3 * minutes)
        elif kind == "very_late":
            at -= timedelta(hours=8)
        elif kind == "same_time":
            at -= timedelta(minutes=minutes)
        cycle = 2 * ((at.hour - 12) / 12) ** 2
        shift[names[-1]] += slope * noise[names[-1]]
        values: dict[str, float | None] = {
            name: level[name] + shift[name] + cycle + rng.gauss(0, noise[name]) for name in names
        }
        if fahrenheit and "outlet_temp_c" in values:
            values["outlet_temp_c"] = 1.8 * values["outlet_temp_c"] + 32
        if kind == "spike":
            values[names[-1]] = values[names[-1]] + 40 * noise[names[-1]]
        elif kind == "missing":
            values[names[0]] = None
        elif kind == "infinite":
            values[names[0]] = 1e308 if level[names[0]] < 0 else -1e308
        codes = {"code": ["E03"], "failure": ["F01"], "warning": ["W7"]}.get(kind, [])
        yield factories.telemetry(
            i,
            event_time=at,
            firmware=firmware,
            mode="maintenance" if kind == "maintenance" else "normal",
            error_codes=codes,
            metrics={**values, **extra},
        )


def _assert_same(detector: DeviceFaultDetector, readings) -> None:
    common, full = DeviceState(), DeviceState()
    for reading in readings:
        a = detector.update(common, reading)
        b = detector._update_full(full, reading)
        assert (a and a.model_dump()) == (b and b.model_dump()), reading.event_id
        assert common.to_dict() == full.to_dict(), reading.event_id


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(60, 400),
    minutes=st.sampled_from([1, 15, 60]),
    names=st.lists(st.sampled_from(METRICS), min_size=1, max_size=3, unique=True).map(tuple),
    changes=st.dictionaries(st.integers(0, 399), st.sampled_from(KINDS), max_size=12),
    warmup_readings=st.sampled_from([40, 1440]),
    unit_changes=st.booleans(),
)
def test_the_common_path_gives_the_full_paths_states_and_alerts(
    seed, n, minutes, names, changes, warmup_readings, unit_changes
):
    detector = CountingDetector(warmup_readings=warmup_readings, unit_changes=unit_changes)
    _assert_same(detector, list(_history(seed, n, minutes, names, changes)))


def test_the_common_path_takes_most_of_a_simulated_fleet_and_agrees():
    world = build_world(n_customers=12, days=10, start=START, seed=3)
    readings = [e for e in world_events(world) if e.topic == "device-telemetry"]
    taken.clear()
    detector = CountingDetector()
    by_device: dict[str, list] = {}
    for reading in readings:
        by_device.setdefault(reading.device_id, []).append(reading)
    alerts = 0
    for device_readings in by_device.values():
        _assert_same(detector, device_readings)
        state = DeviceState()
        alerts += sum(detector._update_full(state, r) is not None for r in device_readings)
    share = taken[True] / sum(taken.values())
    # Ten days, and the first two are warm-up: the common path's share grows with the history.
    assert share > 0.6, f"the common path took {share:.0%} of the readings"
    assert alerts, "the world's faults alert (the full path had work)"
