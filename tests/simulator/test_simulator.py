"""The simulator: deterministic, plausible, and with ground truth that matches its events."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from datetime import UTC, datetime

import pytest

from forewarn.events import decode, encode
from simulator import build_world, read_faults, world_events, write_truth

START = datetime(2026, 1, 5, tzinfo=UTC)


def _world(seed: int = 3, customers: int = 80, days: int = 21):
    return build_world(n_customers=customers, days=days, start=START, seed=seed)


def _digest(world) -> str:
    h = hashlib.sha256()
    for event in world_events(world):
        h.update(encode(event))
    return h.hexdigest()


@pytest.fixture(scope="module")
def world():
    return _world()


@pytest.fixture(scope="module")
def events(world):
    return list(world_events(world))


def test_same_seed_same_events():
    assert _digest(_world(seed=11, customers=20, days=10)) == _digest(
        _world(seed=11, customers=20, days=10)
    )


def test_other_seed_other_events():
    assert _digest(_world(seed=11, customers=20, days=10)) != _digest(
        _world(seed=12, customers=20, days=10)
    )


def test_adding_customers_leaves_existing_ones_alone():
    small, large = _world(seed=5, customers=10), _world(seed=5, customers=30)
    assert [d.fault for d in small.devices] == [
        d.fault for d in large.devices[: len(small.devices)]
    ]


def test_events_are_in_event_time_order_and_valid(events):
    assert all(a.event_time <= b.event_time for a, b in itertools.pairwise(events))
    for event in events[::101]:
        assert decode(event.topic, encode(event)) == event
    assert len({e.event_id for e in events}) == len(events)


def test_all_three_sources_and_every_channel_appear(events):
    topics = Counter(e.topic for e in events)
    assert topics["device-telemetry"] > 10 * topics["orders"] > 0
    assert topics["tickets"] > 0
    channels = {e.channel for e in events if e.topic == "tickets"}
    assert {"phone", "email", "chat"} <= {str(c) for c in channels}
    surveys = [e for e in events if e.topic == "tickets" and e.csat is not None]
    assert surveys and all(1 <= e.csat <= 5 for e in surveys)


def test_faults_follow_onset_failure_complaint_order(world):
    faults = world.faults
    assert {f.kind for f in faults} >= {"drift", "spikes"}
    for f in faults:
        assert f.onset_time < f.failure_time < f.complaint_time < f.repair_time


def test_failed_device_is_silent_until_repaired_and_complains(world, events):
    fault = next(f for f in world.faults if f.repair_time < world.end)
    readings = [
        e.event_time
        for e in events
        if e.topic == "device-telemetry" and e.device_id == fault.device_id
    ]
    assert not [
        t
        for t in readings
        if fault.failure_time + (readings[1] - readings[0]) < t < fault.repair_time
    ]
    complaints = [e for e in events if e.topic == "tickets" and e.device_id == fault.device_id]
    assert complaints and complaints[0].event_time >= fault.complaint_time
    assert complaints[0].category == "fault"


def test_churned_customers_stop_ordering(world, events):
    for churn in world.churns:
        late_orders = [
            e
            for e in events
            if e.topic == "orders"
            and e.status == "placed"
            and e.customer_id == churn.customer_id
            and e.event_time >= churn.churn_time
        ]
        assert late_orders == []


def test_worsening_customers_have_worse_experiences(world, events):
    service = {c.customer_id: c for c in world.churns if c.cause == "service"}
    assert service

    def low_csat_share(ids: set[str]) -> float:
        answers = [
            e.csat
            for e in events
            if e.topic == "tickets" and e.csat is not None and e.customer_id in ids
        ]
        return sum(a <= 2 for a in answers) / max(1, len(answers))

    others = {c.customer_id for c in world.customers} - set(service)
    assert low_csat_share(set(service)) > low_csat_share(others) + 0.2


def test_benign_surprises_are_there(world, events):
    kinds = Counter(b.kind for b in world.benign)
    assert kinds["maintenance"] and kinds["firmware_update"] and kinds["glitch"]
    maintenance = [e for e in events if e.topic == "device-telemetry" and e.mode == "maintenance"]
    assert maintenance


def test_truth_files_round_trip(world, tmp_path):
    summary = write_truth(world, tmp_path, {"seed": 3})
    assert summary["faults"] == len(world.faults)
    assert read_faults(tmp_path) == world.faults
    assert (tmp_path / "churns.csv").read_text().count("\n") == len(world.churns) + 1


def test_a_hard_world_has_what_real_fleets_have_and_the_default_does_not():
    start = datetime(2026, 1, 5, tzinfo=UTC)
    hard = build_world(n_customers=120, days=20, start=start, seed=3, hard=True)
    easy = build_world(n_customers=120, days=20, start=start, seed=3)
    assert [f.device_id for f in hard.faults] == [f.device_id for f in easy.faults]
    assert any(not f.precursor_codes for f in hard.faults)
    assert all(f.precursor_codes for f in easy.faults)
    kinds = {b.kind for b in hard.benign}
    assert {"excursion", "maintenance_unmarked"} <= kinds
    assert len({d.every for d in hard.devices}) >= 3
    counting = next(d for d in hard.devices if d.counts)
    readings = [
        e
        for e in world_events(hard)
        if e.topic == "device-telemetry" and e.device_id == counting.device_id
    ]
    zeros = sum(e.metrics["starts_count"] == 0 for e in readings)
    assert zeros / len(readings) > 0.5
    silent = next(f for f in hard.faults if not f.precursor_codes)
    codes = {
        c
        for e in world_events(hard)
        if e.topic == "device-telemetry" and e.device_id == silent.device_id
        for c in e.error_codes
    }
    assert not codes & {"E42", "E17", "E99"}


def test_a_hard_world_s_truth_reads_back(tmp_path):
    hard = build_world(
        n_customers=60, days=20, start=datetime(2026, 1, 5, tzinfo=UTC), seed=3, hard=True
    )
    summary = write_truth(hard, tmp_path, {"hard": True})
    assert read_faults(tmp_path) == hard.faults
    assert summary["benign"]["excursion"] == sum(b.kind == "excursion" for b in hard.benign)
