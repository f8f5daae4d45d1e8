"""Two workers in one group detect what one worker detects, on the same events, and both
detect what the detection step finds offline (the same alert ids, times, faults, severities).

A device's readings stay in one partition, in order, so how many workers share the partitions
must not change a single device alert. It did with Faust's default of one standby replica per
table partition: each worker's table went back to states it had written ~0.6 s before, and
100,000 events raised ~50 false "no reading" alerts (found by bench/stream.py's scale-out;
streams/app.py turns standbys off). Needs ~100,000 events: 40,000 did not show it. Then
(issue 14) one worker's agent crashed on a changelog its producer did not know yet, and each
crash acknowledged a batch unscored: 20 or 25 alerts against 30. The workers' counters count
deliveries, repeats included, so the test compares the alerts each group published.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace

import pytest

from console.stack import DRAIN_TOPICS, wait_balanced, wait_drained, worker_counters
from forewarn.kafka.admin import group_lag
from simulator import world_events
from tests.utils.pipeline import (
    alert_keys,
    offline_device_alerts,
    produce_events,
    published_device_alerts,
    scenario,
    visit_tasks,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_two_workers_raise_the_device_alerts_one_worker_raises(stack, tmp_path):
    settings, start_worker = stack
    one = replace(settings.with_home(tmp_path / "one"), group_id="scale-one")
    two = replace(settings.with_home(tmp_path / "two"), group_id="scale-two")
    for group in (one, two):
        group.home.mkdir()
    # Every worker is in its group before the first event: a worker joining mid-stream
    # replays uncommitted work, which is a different test (test_faults.py).
    alone = start_worker(one)
    pair = [start_worker(two), start_worker(two)]
    wait_balanced([alone])
    wait_balanced(pair)
    events = list(world_events(scenario(customers=150, days=21, seed=5)))
    produced = produce_events(settings, events)
    assert sum(produced.values()) > 90_000
    wait_drained(one, alone, timeout=600, stable_checks=2)
    wait_drained(two, pair[0], timeout=600, stable_checks=2)
    for worker in [alone, *pair]:
        worker.stop()  # writes the final counters

    expected = alert_keys(offline_device_alerts(events))
    assert len(expected) > 10, "the scenario must raise device alerts to compare"
    for group in (one, two):
        published = alert_keys(published_device_alerts(settings, group.group_id))
        assert published == expected, (
            f"{group.group_id}: missing {sorted(expected - published)}, "
            f"extra {sorted(published - expected)}"
        )
        counted = worker_counters(group)
        assert counted.get("alerts.device_fault", 0) >= len(expected)
        assert counted.get("telemetry.processed", 0) == produced["device-telemetry"]
    assert {(t.dedup_key, t.title) for t in visit_tasks(two)} == {
        (t.dedup_key, t.title) for t in visit_tasks(one)
    }


def test_a_worker_joining_mid_stream_loses_no_offset_or_state_and_doubles_nothing(stack):
    # Telemetry comes as runs of a fetch each (streams/transport.py): a rebalance while the
    # first worker has runs in flight must neither commit a run it did not score nor lose the
    # device states it wrote for one, nor score a reading twice.
    from tests.integration.test_faults import _check_nothing_lost_or_doubled
    from tests.utils.pipeline import Producer

    settings, start_worker = stack
    world = scenario(seed=13)
    events = list(world_events(world))
    producer = Producer(settings.kafka_bootstrap, events, rate=len(events) / 20.0)
    first = start_worker()
    wait_balanced([first])
    producer.start()
    time.sleep(6.0)  # runs in flight: the stream is a third through
    lag = asyncio.run(group_lag(settings.kafka_bootstrap, settings.group_id, DRAIN_TOPICS))
    assert sum(lag.values()) > 0 or producer.is_alive(), "the join must land mid-stream"
    second = start_worker()
    wait_balanced([first, second])
    producer.finish()
    wait_drained(settings, first, timeout=300, stable_checks=2)
    assert first.stop() == 0 and second.stop() == 0

    produced = Counter(e.topic for e in events)
    _check_nothing_lost_or_doubled(settings, world, produced)
    counted = worker_counters(settings)
    # Each reading scored once: a run read again after the rebalance is skipped by the
    # device offsets its states remember (counted as replayed, not processed).
    assert counted.get("telemetry.processed", 0) == produced["device-telemetry"], counted
    expected = alert_keys(offline_device_alerts(events))
    published = alert_keys(published_device_alerts(settings, settings.group_id))
    assert published == expected, (
        f"missing {sorted(expected - published)[:5]}, extra {sorted(published - expected)[:5]}"
    )
