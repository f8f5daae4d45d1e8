"""A worker killed mid-stream and restarted raises the alerts the detection step finds
offline on the same events (issue 14): the replay from the last commit repeats some (same
ids) and raises no others, and the silence checks continue on the same schedule."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace

import pytest

from console.stack import wait_balanced, wait_drained
from forewarn.kafka.admin import group_lag
from simulator import world_events
from tests.utils.pipeline import (
    Producer,
    alert_keys,
    offline_device_alerts,
    published_device_alerts,
    scenario,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_worker_killed_and_restarted_mid_stream_raises_the_same_alerts(stack, tmp_path):
    """kill -9 mid-stream, then a new worker: replays from the last commit repeat alerts
    (the same ids; the outreach store keeps one) but raise no others, and the silence checks
    continue on the same schedule."""
    settings, start_worker = stack
    group = replace(settings.with_home(tmp_path / "restart"), group_id="scale-restart")
    group.home.mkdir()
    worker = start_worker(group)
    wait_balanced([worker])
    events = list(world_events(scenario(customers=60, days=21, seed=5)))
    # Streamed over ~10 s, so the kill lands while events arrive whatever the worker's speed
    # (pre-filled, a worker at ~30,000 readings/s could drain and commit them all first).
    producer = Producer(settings.kafka_bootstrap, events, rate=len(events) / 10.0)
    producer.start()
    time.sleep(random.Random(14).uniform(3.0, 6.0))  # some batches scored, some committed
    worker.kill()  # no flush, no commit
    lag = asyncio.run(group_lag(settings.kafka_bootstrap, group.group_id, ["device-telemetry"]))
    assert sum(lag.values()) > 0, "the kill should land while there is work in flight"
    producer.finish()
    again = start_worker(group)
    wait_drained(group, again, timeout=600, stable_checks=2)
    again.stop()

    expected = alert_keys(offline_device_alerts(events))
    published = alert_keys(published_device_alerts(settings, group.group_id))
    assert expected, "the scenario must raise device alerts to compare"
    assert published == expected, (
        f"missing {sorted(expected - published)}, extra {sorted(published - expected)}"
    )
