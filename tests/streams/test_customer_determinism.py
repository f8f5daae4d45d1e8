"""Same events, same alerts for customers (issue 14): the customer step gives the alerts of one
pass over each customer's events whatever the batches, the interleaving of partitions, and the
crashes and restarts in between (replays from the last commit, states written or not).

A customer's events are kept in one source here: Kafka does not order a customer's orders
against their tickets (two topics), and the step gives the alerts of the order it is given.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.events import CustomerSignal, CustomerValue
from simulator import build_world, world_events
from streams.customer_risk.detector import CustomerRiskDetector
from streams.customer_risk.step import CustomerStep
from tests.utils import factories
from tests.utils.pipeline import START

PARTITIONS = 4
TOPIC = "customer-events"


@dataclass(frozen=True)
class _Flaky(CustomerRiskDetector):
    """Fails on one event, after changing the state: the step must undo the change."""

    fails_on: str = ""

    def update(self, state, event, model=None):
        alert = super().update(state, event, model)
        if event.event_id == self.fails_on:
            raise RuntimeError("boom")
        return alert


def _scenario():
    """A small world's orders and tickets in the order sent, with customer values and fault
    signals mixed in, and one event the detectors fail on."""
    world = build_world(n_customers=40, days=30, start=START, seed=1)
    events = [e for e in world_events(world) if e.topic in ("orders", "tickets")]
    customers = sorted({e.customer_id for e in events})
    for n, customer in enumerate(customers[:8]):
        at = START + timedelta(days=3 + n)
        events.append(
            CustomerValue(
                event_id=f"value-{customer}",
                event_time=at,
                customer_id=customer,
                p_alive=0.8,
                expected_purchases_90d=2,
                clv_90d=100.0 * n,
                clv_365d=400.0 * n,
                value_tier=("bronze", "silver", "gold", "platinum")[n % 4],
            )
        )
        for k in range(n % 3):
            fault = factories.alert(
                k, customer_id=customer, event_id=f"fault-{customer}-{k}", event_time=at
            )
            events.append(CustomerSignal(**fault.model_dump()))
    return sorted(events, key=lambda e: e.event_time)


EVENTS = _scenario()
FAILS_ON = next(e.event_id for e in EVENTS if e.topic == "tickets")


def _by_partition(events):
    parts: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    for e in events:
        parts[(murmur2(e.customer_id.encode()) & 0x7FFFFFFF) % PARTITIONS].append(e)
    return parts


PARTS = _by_partition(EVENTS)


def _step(store):
    return CustomerStep(store, risk=_Flaky(fails_on=FAILS_ON))


def _key(alert):
    return (alert.alert_id, alert.event_time, alert.kind, alert.severity, alert.explanation)


def _stream(rnd: random.Random, crash_rate: float, partial_writes: bool):
    """The events as a worker sees them: random batches of randomly interleaved partitions;
    after a batch's alerts are delivered the worker may crash before its states are written
    (all of them, none, or some), and restart from the last committed offsets."""
    store: dict = {}
    position = dict.fromkeys(PARTS, 0)
    committed = dict(position)
    alerts, refused = [], set()
    while any(position[p] < len(PARTS[p]) for p in PARTS):
        size, batch = rnd.choice([1, 3, 20, 100, 1000]), []
        while len(batch) < size:
            left = [p for p in PARTS if position[p] < len(PARTS[p])]
            if not left:
                break
            p = rnd.choice(left)
            for _ in range(rnd.randint(1, 20)):  # runs of one partition, as fetches give
                if position[p] < len(PARTS[p]) and len(batch) < size:
                    batch.append((TOPIC, p, position[p], PARTS[p][position[p]]))
                    position[p] += 1
        outcome = _step(store).run(batch)
        alerts += outcome.alerts  # delivered before the states are written
        refused |= {(r.partition, r.offset) for r in outcome.refused}
        if rnd.random() < crash_rate:
            states = list(outcome.states.items())
            written = rnd.sample(states, rnd.randint(0, len(states))) if partial_writes else []
            store.update({k: s.to_dict() for k, s in written})
            position = dict(committed)
            continue
        store.update({k: s.to_dict() for k, s in outcome.states.items()})
        if rnd.random() < 0.5:  # Faust commits every few seconds, not after every batch
            committed = dict(position)
    return alerts, refused, store


@pytest.fixture(scope="module")
def one_pass():
    offsets = {p: {id(e): i for i, e in enumerate(es)} for p, es in PARTS.items()}
    batch = [(TOPIC, p, offsets[p][id(e)], e) for e in EVENTS for p in PARTS if id(e) in offsets[p]]
    outcome = _step({}).run(batch)
    kinds = {a.kind for a in outcome.alerts}
    assert kinds == {"churn_risk", "negative_feedback"}, kinds  # the scenario tests something
    assert len(outcome.refused) == 1
    return outcome


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_batches_and_interleavings_do_not_change_the_alerts(one_pass, seed):
    alerts, refused, store = _stream(random.Random(seed), crash_rate=0.0, partial_writes=False)
    assert sorted(map(_key, alerts)) == sorted(map(_key, one_pass.alerts))
    assert refused == {(r.partition, r.offset) for r in one_pass.refused}
    assert store == {k: s.to_dict() for k, s in one_pass.states.items()}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_crashes_and_restarts_repeat_alerts_but_raise_no_others(one_pass, seed):
    """A crash between delivering alerts and writing states repeats them (same ids; the
    outreach store keeps one); the states end as one pass leaves them."""
    alerts, _, store = _stream(random.Random(seed), crash_rate=0.2, partial_writes=False)
    assert set(map(_key, alerts)) == set(map(_key, one_pass.alerts))
    assert store == {k: s.to_dict() for k, s in one_pass.states.items()}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_crashes_that_write_some_states_raise_the_same_alerts(one_pass, seed):
    """A kill -9 can land with some of a batch's states in the changelog and others not."""
    alerts, _, store = _stream(random.Random(seed), crash_rate=0.2, partial_writes=True)
    assert set(map(_key, alerts)) == set(map(_key, one_pass.alerts))
    assert store == {k: s.to_dict() for k, s in one_pass.states.items()}


def test_each_source_of_a_customer_skips_its_own_replays():
    """A customer's orders and tickets are two topics: each has its own offsets."""
    order, ticket = factories.order(), factories.ticket()
    store: dict = {}
    first = CustomerStep(store).run([("orders", 1, 7, order), ("tickets", 1, 7, ticket)])
    assert first.counts["processed"] == 2 and first.states["C00001"].offsets == {
        "orders:1": 7,
        "tickets:1": 7,
    }
    store.update({k: s.to_dict() for k, s in first.states.items()})
    again = CustomerStep(store).run([("tickets", 1, 7, ticket), ("orders", 1, 8, order)])
    assert again.counts == {"replayed": 1, "processed": 1}


def test_a_failing_event_leaves_the_state_as_it_was_but_for_its_offset():
    ticket = factories.ticket()
    step = CustomerStep({}, risk=_Flaky(fails_on=ticket.event_id))
    outcome = step.run([("tickets", 0, 3, ticket)])
    (refusal,) = outcome.refused
    assert (refusal.topic, refusal.offset) == ("tickets", 3) and "boom" in refusal.reason
    assert outcome.alerts == [] and outcome.counts["processed"] == 0
    state = outcome.states["C00001"]
    assert state.contacts == [] and state.offsets == {"tickets:0": 3}


def test_a_loaded_state_does_not_change_the_store_behind_its_back():
    """A Faust table hands out the object it stores: the step must not change it in place."""
    store: dict = {}
    first = CustomerStep(store).run([("orders", 0, 0, factories.order())])
    store.update({k: s.to_dict() for k, s in first.states.items()})
    before = copy.deepcopy(store["C00001"])
    CustomerStep(store).run([("tickets", 0, 0, factories.ticket())])
    assert store["C00001"] == before
