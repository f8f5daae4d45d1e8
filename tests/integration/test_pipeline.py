"""End to end on real parts: Kafka broker, Faust worker process, SQLite store, Parquet lake.

Each test gets its own broker (topics are shared by name, so tests cannot share one) and runs
a small simulated scenario through a real worker process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from datetime import timedelta

import pytest

from console.stack import wait_drained
from forewarn.events import INPUT_TOPICS, encode
from forewarn.kafka.admin import committed_offsets
from outreach.migrate import migrate
from outreach.store import TaskStore
from simulator import world_events
from tests.utils import factories
from tests.utils.kafka import read_topic
from tests.utils.pipeline import (
    START,
    Producer,
    lake_rows,
    missing_from_lake,
    produce_events,
    scenario,
    send_raw,
    tasks_per_device,
    visit_tasks,
    wait_for_status,
    worker_metrics,
    worker_status,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_faults_reach_outreach_tasks_once(stack):
    settings, start_worker = stack
    world = scenario()
    assert len(world.faults) >= 3, "the scenario must inject faults to be a test"
    produced = produce_events(settings, world_events(world))
    worker = start_worker()
    wait_drained(settings, worker, timeout=300)
    metrics = worker_metrics(worker)
    assert worker.stop() == 0

    assert (
        metrics["forewarn_worker_messages_total"]["device-telemetry"]
        == produced["device-telemetry"]
    )
    assert metrics["forewarn_worker_alerts_total"]["device_fault"] >= len(world.faults)
    assert metrics["forewarn_worker_task_sink_seconds_count"][""] >= len(world.faults)
    assert all(n == 0 for n in metrics["forewarn_worker_consumer_lag"].values())
    per_device = tasks_per_device(settings)
    for fault in world.faults:
        assert per_device[fault.device_id] == 1, f"fault on {fault.device_id} has no single task"
    assert max(per_device.values()) == 1
    tasks = {t.device_id: t for t in visit_tasks(settings)}
    early = [f for f in world.faults if tasks[f.device_id].detected_at < f.complaint_time]
    assert len(early) == len(world.faults), "every fault should be caught before the complaint"
    for topic in INPUT_TOPICS:
        assert lake_rows(settings, topic) == (produced[topic], produced[topic]), topic


def test_bad_events_are_dead_lettered_and_the_rest_flows(stack):
    settings, start_worker = stack
    world = scenario(customers=15, days=10)
    good = list(world_events(world))
    bad = [
        ("device-telemetry", b"{not json"),
        (
            "orders",
            json.dumps({**json.loads(encode(factories.order())), "schema_version": 99}).encode(),
        ),
        ("tickets", json.dumps({**json.loads(encode(factories.ticket())), "csat": 42}).encode()),
        ("device-telemetry", b"\x00\xff" * 10),
        # A corrupt lifetime value from the nightly: refused, the customer keeps the old one.
        ("customer-values", b'{"schema_version": 1, "customer_id": "C00001", "clv": "lots"}'),
    ]
    last = next(e for e in reversed(good) if e.topic == "device-telemetry")
    # Valid, but ten hours older than the device's latest reading: past the lateness bound.
    late = last.model_copy(
        update={"event_id": "late-1", "event_time": last.event_time - timedelta(hours=10)}
    )
    half = len(good) // 2
    produced = produce_events(settings, good[:half])
    send_raw(settings, bad)
    produced += produce_events(settings, [*good[half:], late])
    worker = start_worker()
    wait_drained(settings, worker, timeout=300)
    assert worker.alive(), "bad input must not stop the worker"

    letters = [
        json.loads(v)
        for v in read_topic(settings.kafka_bootstrap, "dead-letters", at_least=len(bad) + 1)
    ]
    assert len(letters) == len(bad) + 1
    (late_letter,) = [d for d in letters if "late by" in d["reason"]]
    assert json.loads(base64.b64decode(late_letter["raw"]))["event_id"] == "late-1"
    letters.remove(late_letter)
    assert sorted(base64.b64decode(d["raw"]) for d in letters) == sorted(v for _, v in bad)
    reasons = {d["source_topic"] + ": " + d["reason"] for d in letters}
    assert any("not JSON" in r for r in reasons)
    assert any("unknown schema_version 99" in r for r in reasons)
    assert any("csat" in r for r in reasons)
    assert any(r.startswith("customer-values: invalid CustomerValue") for r in reasons)
    assert all(d["source_offset"] >= 0 for d in letters)
    for topic in INPUT_TOPICS:
        assert lake_rows(settings, topic)[1] == produced[topic], topic


def test_restart_mid_stream_creates_no_duplicates(stack):
    settings, start_worker = stack
    world = scenario(seed=9)
    events = list(world_events(world))
    produced = Counter(e.topic for e in events)
    total = len(events)
    worker = start_worker()
    worker.wait_consuming(90)
    # Streamed over ~10 s, so the kill lands while events arrive: pre-filled, the topics were
    # drained by a fast worker between one commit and the next check of the lag.
    producer = Producer(settings.kafka_bootstrap, events, rate=total / 10.0)
    producer.start()
    deadline = time.monotonic() + 120
    committed: dict[str, int] = {}
    while time.monotonic() < deadline and not sum(committed.values()):
        time.sleep(0.5)
        committed = {
            topic: sum(
                max(0, offset)
                for offset in asyncio.run(
                    committed_offsets(settings.kafka_bootstrap, settings.group_id, topic)
                ).values()
            )
            for topic in INPUT_TOPICS
        }
    worker.kill()  # kill -9 mid-stream: no flush, no commit
    assert 0 < sum(committed.values()) < total, "the kill should land mid-stream"
    for topic in INPUT_TOPICS:
        # Offsets are committed only after the archive write: every committed event is in
        # the lake although the worker died without a chance to flush.
        assert lake_rows(settings, topic)[1] >= committed[topic], topic
    producer.finish()

    worker = start_worker()
    wait_drained(settings, worker, timeout=300)
    worker.stop()

    per_device = tasks_per_device(settings)
    assert max(per_device.values()) == 1, "a restart must not duplicate a task"
    assert {f.device_id for f in world.faults} <= set(per_device)
    migrate(settings.database_url)
    store = TaskStore(settings.database_url)
    assert all(t.alert_count >= 1 for t in store.tasks())
    for topic in INPUT_TOPICS:
        raw, distinct = lake_rows(settings, topic)
        assert distinct == produced[topic], (
            f"{topic}: events lost from the lake: {missing_from_lake(settings, topic)}"
        )
        assert raw >= distinct  # at-least-once files; readers drop the replayed rows


def test_customers_at_risk_and_a_hot_reloaded_churn_model(stack, tmp_path):
    import pickle

    from forewarn.events import ModelUpdated
    from tests.utils.models import publish

    settings, start_worker = stack
    registry = settings.models_dir / "churn"

    def update(version: str, sha256: str) -> ModelUpdated:
        return ModelUpdated(
            event_id=f"m-{version}",
            event_time=START,
            model_name="churn",
            version=version,
            sha256=sha256,
        )

    worker = start_worker()
    produce_events(settings, [update("v7", publish(registry, "v7"))])
    assert wait_for_status(settings, "churn_model", "v7"), "the running worker loads v7"
    world = scenario(customers=80, days=30, seed=5)
    produce_events(settings, [e for e in world_events(world) if e.topic != "device-telemetry"])
    # The registry promotes a v8 whose file does not load: refused, v7 stays.
    produce_events(settings, [update("v8", publish(registry, "v8", b"\x80not a model"))])
    wait_drained(settings, worker, timeout=300)
    assert wait_for_status(settings, "models.rejected", 1), "the broken v8 is refused"
    assert worker_status(settings)["churn_model"] == "v7", "and v7 stays in service"
    # Issue 13: the old contract's path to a pickle is refused and never unpickled.
    marker = tmp_path / "pwned"
    payload = tmp_path / "evil.joblib"
    payload.write_bytes(pickle.dumps(_Exploit(marker)))
    v1 = {**json.loads(encode(update("v7", "0" * 64))), "schema_version": 1}
    del v1["sha256"]
    send_raw(settings, [("model-updates", json.dumps({**v1, "uri": f"file://{payload}"}).encode())])
    assert wait_for_status(settings, "models.rejected", 2), "the path-bearing message is refused"
    assert not marker.exists(), "the payload ran"
    status = worker_status(settings)
    assert status["churn_model"] == "v7" and "model-updates[0]@2" in status["churn_model_refused"]
    letters = [
        json.loads(v)
        for v in read_topic(settings.kafka_bootstrap, "dead-letters", at_least=2)
        if json.loads(v)["source_topic"] == "model-updates"
    ]
    assert sorted(d["source_offset"] for d in letters) == [1, 2]
    migrate(settings.database_url)
    store = TaskStore(settings.database_url)
    retention = store.tasks(kind="retention")
    feedback = store.tasks(kind="feedback")
    assert {t.customer_id for t in retention} & {c.customer_id for c in world.churns}
    assert any("churn model v7" in t.explanation for t in retention)
    assert feedback and all((t.due_at - t.detected_at).total_seconds() == 3600 for t in feedback)


class _Exploit:
    """Unpickling this creates ``marker``: proof that a worker executed a model file."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (self.marker,))
