"""Two workers in one group detect what one worker detects, on the same events.

A device's readings stay in one partition, in order, so how many workers share the partitions
must not change a single device alert. It did with Faust's default of one standby replica per
table partition: each worker's table went back to states it had written ~0.6 s before, and
100,000 events raised ~50 false "no reading" alerts (found by bench/stream.py's scale-out;
streams/app.py turns standbys off). Needs ~100,000 events: 40,000 did not show it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from console.stack import wait_balanced, wait_drained, worker_counters
from simulator import world_events
from tests.utils.pipeline import produce_events, scenario, visit_tasks

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
    produced = produce_events(settings, world_events(scenario(customers=150, days=21, seed=5)))
    assert sum(produced.values()) > 90_000
    wait_drained(one, alone, timeout=600, stable_checks=2)
    wait_drained(two, pair[0], timeout=600, stable_checks=2)
    for worker in [alone, *pair]:
        worker.stop()  # writes the final counters

    alerts_one = worker_counters(one).get("alerts.device_fault", 0)
    alerts_two = worker_counters(two).get("alerts.device_fault", 0)
    assert alerts_one > 10, "the scenario must raise device alerts to compare"
    assert alerts_two == alerts_one, f"two workers raised {alerts_two} alerts, one {alerts_one}"
    assert {(t.dedup_key, t.title) for t in visit_tasks(two)} == {
        (t.dedup_key, t.title) for t in visit_tasks(one)
    }
