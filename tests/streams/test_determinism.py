"""Same events, same alerts (issue 14): the detection step gives the alerts of one pass over
the readings whatever the batches, the interleaving of partitions, and the crashes and
restarts in between (replays from the last commit, states written or not)."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.events import DeviceTelemetry
from simulator import build_world, world_events
from streams.device_faults.step import DeviceFaultStep, Outcome
from tests.utils import factories
from tests.utils.pipeline import START

PARTITIONS = 4


def _scenario():
    """A small world's readings, in the order a producer sends them, with what makes
    detection order-sensitive: silent spells, late readings, a reading naming another owner."""
    world = build_world(n_customers=12, days=10, start=START, seed=1)
    readings = [e for e in world_events(world) if e.topic == "device-telemetry"]
    healthy = sorted({e.device_id for e in readings} - {f.device_id for f in world.faults})
    quiet_a, quiet_b, late_one = healthy[:3]

    def silent(e, device, first, last):
        return e.device_id == device and START + timedelta(hours=first) <= e.event_time < (
            START + timedelta(hours=last)
        )

    kept = [
        e
        for e in readings
        if not silent(e, quiet_a, 100, 130) and not silent(e, quiet_b, 150, 10_000)
    ]
    # Readings of one device sent late: 2 h (scored out of order) and 9 h (refused).
    moved = {}
    for shift, hour in ((2, 60), (9, 80)):
        (e,) = [e for e in kept if e.device_id == late_one and e.event_id.endswith(f"-{hour}")]
        moved[e.event_id] = e.event_time + timedelta(hours=shift)
    sent = sorted(kept, key=lambda e: moved.get(e.event_id, e.event_time))
    thief = sent[699].model_copy(update={"customer_id": "C99999", "event_id": "thief"})
    return [*sent[:700], thief, *sent[700:]]


READINGS = _scenario()


def _by_partition(readings):
    parts: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    for e in readings:
        parts[(murmur2(e.key.encode()) & 0x7FFFFFFF) % PARTITIONS].append(e)
    return parts


PARTS = _by_partition(READINGS)


def _key(alert):
    return (alert.alert_id, alert.event_time, alert.fault_kind, alert.severity)


def _one_pass():
    """Every reading in one batch, in the order sent."""
    offsets = {p: {id(e): i for i, e in enumerate(es)} for p, es in PARTS.items()}
    batch = [(p, offsets[p][id(e)], e) for e in READINGS for p in PARTS if id(e) in offsets[p]]
    outcome = DeviceFaultStep({}, clock=lambda: math.inf).run(batch)
    return outcome


def _stream(rnd: random.Random, crash_rate: float, partial_writes: bool):
    """The readings as workers see them: random batches of randomly interleaved partitions;
    after a batch's alerts are delivered the worker may crash before its states are written
    (all of them, none, or some), and restart from the last committed offsets."""
    store: dict = {}
    step = DeviceFaultStep(store, clock=lambda: math.inf)
    position = dict.fromkeys(PARTS, 0)
    committed = dict(position)
    alerts, refused, crashes = [], set(), 0
    while any(position[p] < len(PARTS[p]) for p in PARTS):
        size, batch = rnd.choice([1, 7, 100, 1000, 4000]), []
        while len(batch) < size:
            left = [p for p in PARTS if position[p] < len(PARTS[p])]
            if not left:
                break
            p = rnd.choice(left)
            for _ in range(rnd.randint(1, 50)):  # runs of one partition, as fetches give
                if position[p] < len(PARTS[p]) and len(batch) < size:
                    batch.append((p, position[p], PARTS[p][position[p]]))
                    position[p] += 1
        outcome = step.run(batch)
        alerts += outcome.alerts  # delivered before the states are written
        refused |= {(r.partition, r.offset, r.kind) for r in outcome.refused}
        if rnd.random() < crash_rate:
            crashes += 1
            states = list(outcome.states.items())
            written = rnd.sample(states, rnd.randint(0, len(states))) if partial_writes else []
            store.update({k: s.to_dict() for k, s in written})
            step = DeviceFaultStep(store, clock=lambda: math.inf)
            position = dict(committed)
            continue
        store.update({k: s.to_dict() for k, s in outcome.states.items()})
        if rnd.random() < 0.5:  # Faust commits every few seconds, not after every batch
            committed = dict(position)
        if rnd.random() < 0.1:  # a rebalance revokes partitions and gives them back
            step.forget(rnd.sample(list(PARTS), rnd.randint(1, PARTITIONS)))
    return alerts, refused, crashes


@pytest.fixture(scope="module")
def one_pass():
    outcome = _one_pass()
    kinds = {a.fault_kind for a in outcome.alerts}
    assert "silence" in kinds and len(kinds) > 2, kinds  # the scenario tests something
    assert {r.kind for r in outcome.refused} == {"late", "owner"}
    return outcome


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_batches_and_interleavings_do_not_change_the_alerts(one_pass, seed):
    alerts, refused, _ = _stream(random.Random(seed), crash_rate=0.0, partial_writes=False)
    assert [_key(a) for a in alerts] != [] and sorted(map(_key, alerts)) == sorted(
        map(_key, one_pass.alerts)
    )
    assert refused == {(r.partition, r.offset, r.kind) for r in one_pass.refused}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_crashes_and_restarts_repeat_alerts_but_raise_no_others(one_pass, seed):
    """A crash between delivering alerts and writing states repeats them (same ids; the
    outreach store keeps one), and a restart continues the same silence schedule."""
    alerts, _, _ = _stream(random.Random(seed), crash_rate=0.2, partial_writes=False)
    assert set(map(_key, alerts)) == set(map(_key, one_pass.alerts))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_crashes_that_write_some_states_raise_the_same_alert_ids(one_pass, seed):
    """A kill -9 can land with some of a batch's states in the changelog and others not."""
    alerts, _, _ = _stream(random.Random(seed), crash_rate=0.2, partial_writes=True)
    assert {a.alert_id for a in alerts} == {a.alert_id for a in one_pass.alerts}


def test_a_device_clock_ahead_of_the_worker_does_not_make_others_silent():
    """The silence clock never passes the worker's clock (kept from the wall-clock cap)."""
    now = (factories.T0 + timedelta(hours=48)).timestamp()
    store: dict = {}
    step = DeviceFaultStep(store, clock=lambda: now)
    honest = [factories.telemetry(i, device_id="D1", event_id=f"D1-{i}") for i in range(48)]
    ahead = factories.telemetry(60, device_id="D2", customer_id="C2", event_id="D2-60")
    outcome = step.run([(0, i, e) for i, e in enumerate([*honest, ahead])])
    assert outcome.alerts == []
    store.update({k: s.to_dict() for k, s in outcome.states.items()})
    # Rebuilt after a restart, the partition's clock is still the worker's, not the device's.
    rebuilt = DeviceFaultStep(store, clock=lambda: now)
    assert rebuilt._partition_clock(0, {}, (Outcome(), 0, 0)) == now


def test_a_stored_state_that_cannot_be_read_is_reported_and_the_rest_score_as_before():
    """One damaged document (found by a reading, or by the partition's clock and silence
    scan) starts its device over and is reported; every other device's states and alerts are
    exactly what they are without it."""
    readings = [
        (0, offset, reading)
        for offset, reading in enumerate(
            e
            for e in world_events(build_world(n_customers=6, days=5, start=START, seed=2))
            if isinstance(e, DeviceTelemetry)
        )
    ]
    devices = sorted({r.device_id for _, _, r in readings})
    first, rest = readings[: len(readings) // 2], readings[len(readings) // 2 :]
    clean: dict = {}
    outcome = DeviceFaultStep(clean, clock=lambda: math.inf).run(first)
    clean.update({k: s.to_dict() for k, s in outcome.states.items()})
    damaged = {**clean, devices[0]: {"metrics": "garbage", "partition": 0}, "D-GONE": [1, 2]}
    want = DeviceFaultStep(dict(clean), clock=lambda: math.inf).run(rest)
    got = DeviceFaultStep(damaged, clock=lambda: math.inf).run(rest)
    assert [u.key for u in got.unreadable] == [devices[0]]
    assert "could not be read" in got.unreadable[0].reason
    assert got.states[devices[0]].counters["state_unreadable"] == 1
    others = [d for d in devices[1:] if d in want.states]
    assert others and all(got.states[d].to_dict() == want.states[d].to_dict() for d in others)
    keep = {
        (a.device_id, a.fault_kind, a.event_time) for a in want.alerts if a.device_id != devices[0]
    }
    assert keep <= {(a.device_id, a.fault_kind, a.event_time) for a in got.alerts}
