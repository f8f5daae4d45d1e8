"""The lake-scale feature build (shards and chunks of customers, forked processes) gives exactly
the rows of the one-pass replay, so the nightly can grow without a second implementation."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from forewarn.lake import LakeWriter
from models.features import (
    FeatureShard,
    build_features,
    cutoffs_until,
    features_from_lake,
    features_of_shard,
    join_shards,
    plan_shards,
    read_customer_events,
)
from simulator import build_world
from simulator.render import customer_events
from tests.utils import factories

START = datetime(2026, 1, 5, tzinfo=UTC)
END = START + timedelta(days=70)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    world = build_world(n_customers=300, days=75, start=START, seed=11)
    events = [e for c in world.customers for e in customer_events(c, world)]
    rng = random.Random(3)
    customers = sorted({e.customer_id for e in events})
    # Device faults count as customer events; some fall after the end and must not count.
    events += [
        factories.alert(
            i,
            event_id=f"fault-{i}",
            alert_id=f"fault-{i}",
            customer_id=rng.choice(customers),
            device_id=f"D{rng.randrange(40):05d}",
            event_time=START + timedelta(hours=rng.randrange(75 * 24)),
        )
        for i in range(250)
    ]
    events.append(factories.alert(999, kind="churn_risk", customer_id=customers[0], device_id=None))
    root = tmp_path_factory.mktemp("lake")
    writer = LakeWriter(root)
    rng.shuffle(events)
    for i in range(0, len(events), 700):  # several files, as the stream writes them
        writer.write(events[i : i + 700])
    return root


def one_pass(lake) -> pd.DataFrame:
    events = [e for e in read_customer_events(lake) if e.event_time < END]
    table = build_features(events, cutoffs_until(events[0].event_time, END))
    return table.sort_values(["customer_id", "cutoff"], ignore_index=True)


@pytest.fixture(scope="module")
def expected(lake) -> pd.DataFrame:
    """The one-pass replay's rows, computed once (no test changes them)."""
    return one_pass(lake)


@pytest.mark.parametrize("chunk_customers, processes", [(1000, 1), (37, 1), (37, 2)])
def test_chunked_build_equals_the_one_pass_replay(lake, expected, chunk_customers, processes):
    assert len(expected) > 1000 and expected["device_faults_30d"].sum() > 0
    assert expected["label_complete"].any() and not expected["label_complete"].all()
    got = features_from_lake(lake, END, chunk_customers=chunk_customers, processes=processes)
    pd.testing.assert_frame_equal(got, expected)


def test_no_events_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="nothing to learn from"):
        features_from_lake(tmp_path, END)


@pytest.mark.parametrize("shard_customers", [300, 64])
def test_shards_joined_equal_the_one_pass_replay(lake, expected, shard_customers):
    shards = plan_shards(lake, END, shard_customers=shard_customers)
    customers = expected["customer_id"].nunique()
    assert len(shards) == -(-customers // shard_customers)
    assert sum(s.customers for s in shards) == customers
    # Each shard goes through JSON, as an Airflow XCom does, and reads only its customers.
    shards = [FeatureShard.from_dict(json.loads(json.dumps(s.as_dict()))) for s in shards]
    frames = [features_of_shard(lake, END, s, chunk_customers=40, processes=1) for s in shards]
    assert all(f["customer_id"].nunique() <= shard_customers for f in frames)
    pd.testing.assert_frame_equal(join_shards(frames, lake, END), expected)


def test_a_customer_new_since_the_plan_lands_in_exactly_one_shard(lake, tmp_path):
    shards = plan_shards(lake, END, shard_customers=100)
    # Ids that sort after every planned one and before every planned one.
    arrivals = [
        factories.order(
            event_id=f"{c}-placed", order_id=f"{c}-O1", customer_id=c, event_time=END - timedelta(3)
        )
        for c in ("Z-after-the-plan", "A-before-all")
    ]
    LakeWriter(lake_copy := tmp_path / "lake").write([*read_customer_events(lake), *arrivals])
    owners = [
        s.index
        for s in shards
        for c in ("Z-after-the-plan", "A-before-all")
        if c in set(features_of_shard(lake_copy, END, s, processes=1)["customer_id"])
    ]
    assert sorted(owners) == [0, len(shards) - 1]


def test_a_shard_label_names_its_place_and_customers():
    shard = FeatureShard(1, 4, "C0250000", "C0500000", 250_000, (END,), END)
    assert shard.label == "shard 2 of 4: 250,000 customers from C0250000 before C0500000"
    assert FeatureShard(0, 1, None, None, 3, (END,), END).label == "shard 1 of 1: 3 customers"


def test_the_lake_replay_equals_the_event_replay_on_ties_and_bursts(tmp_path):
    """The chunks replay the lake's columns without event objects (``histories_of``); on
    events at one instant across and within topics, and a burst past a window's size bound,
    they give the rows ``build_features`` gives the same events as objects."""
    from models.customer_state import WINDOW_ENTRIES_MAX

    t0 = START + timedelta(days=8, hours=9)
    events = []
    for c in ("C1", "C2", "C3"):
        at = t0
        events += [
            factories.order(event_id=f"{c}-o1", order_id=f"{c}-O1", customer_id=c, event_time=at),
            # Opened and resolved at the same instant: which comes first decides if it is open.
            factories.ticket(
                event_id=f"{c}-t1-1",
                ticket_id=f"{c}-T1",
                customer_id=c,
                status="opened",
                event_time=at,
                csat=None,
                nps=None,
            ),
            factories.ticket(
                event_id=f"{c}-t1-2",
                ticket_id=f"{c}-T1",
                customer_id=c,
                status="resolved",
                event_time=at,
                contact_number=2,
                csat=1,
                nps=2,
            ),
            factories.alert(
                0, event_id=f"{c}-a1", alert_id=f"{c}-a1", customer_id=c, event_time=at
            ),
            factories.order(
                event_id=f"{c}-o1-late",
                order_id=f"{c}-O1",
                customer_id=c,
                status="late",
                event_time=at + timedelta(days=9),
            ),
        ]
    # A burst of complaints on one day: more entries than a window keeps.
    events += [
        factories.ticket(
            event_id=f"C2-b{i}",
            ticket_id=f"C2-B{i}",
            customer_id="C2",
            category="complaint",
            status="opened",
            event_time=t0 + timedelta(days=10, seconds=i),
            csat=None,
            nps=None,
        )
        for i in range(WINDOW_ENTRIES_MAX + 50)
    ]
    events.append(
        factories.ticket(
            event_id="C3-cancel",
            ticket_id="C3-X",
            customer_id="C3",
            category="cancellation",
            status="opened",
            event_time=t0 + timedelta(days=20),
            csat=None,
            nps=None,
        )
    )
    LakeWriter(tmp_path).write(events)
    end = t0 + timedelta(days=40)
    ordered = [e for e in read_customer_events(tmp_path) if e.event_time < end]
    cutoffs = cutoffs_until(ordered[0].event_time, end, every_days=3)
    expected = build_features(ordered, cutoffs).sort_values(["customer_id", "cutoff"])
    got = features_from_lake(tmp_path, end, every_days=3, processes=1)
    assert expected["tickets_30d"].max() > WINDOW_ENTRIES_MAX / 2 and expected["churned"].any()
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))
