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
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from forewarn.events import INPUT_TOPICS, encode
from forewarn.kafka.admin import ensure_topics, group_lag
from forewarn.kafka.local import LocalKafka
from forewarn.lake import read_events
from forewarn.settings import Settings
from forewarn.simulator import build_world, world_events
from forewarn.simulator.produce import produce
from forewarn.stack import DRAIN_TOPICS, WorkerProcess, wait_drained
from outreach.store import TaskStore, aware
from tests.conftest import free_port_pair
from tests.utils import factories
from tests.utils.kafka import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

START = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture
def stack(tmp_path):
    broker = LocalKafka(
        home=tmp_path / "kafka", cache_dir=Settings().cache_dir, port=free_port_pair()
    )
    broker.start()
    asyncio.run(ensure_topics(broker.bootstrap))
    settings = replace(
        Settings().with_home(tmp_path), kafka_bootstrap=broker.bootstrap, group_id="forewarn-test"
    )
    workers: list[WorkerProcess] = []

    def start_worker() -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield settings, start_worker
    for worker in workers:
        worker.kill()
    broker.stop()


def _world(customers: int = 60, days: int = 21, seed: int = 4):
    return build_world(n_customers=customers, days=days, start=START, seed=seed)


def _produce(settings, events) -> Counter:
    events = list(events)
    asyncio.run(produce(events, settings.kafka_bootstrap, progress=False))
    return Counter(e.topic for e in events)


def _send_raw(settings, messages: list[tuple[str, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            for topic, value in messages:
                await producer.send_and_wait(topic, value, key=b"bad")
        finally:
            await producer.stop()

    asyncio.run(send())


def _lake_rows(settings, topic: str) -> tuple[int, int]:
    """(rows in all files, distinct event ids) of one topic in the lake."""
    files = sorted(settings.lake_dir.glob(f"topic={topic}/date=*/*.parquet"))
    raw = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return raw, read_events(settings.lake_dir, topic, columns=["event_id"]).num_rows


def _tasks_per_device(settings) -> Counter:
    return Counter(t.device_id for t in _visit_tasks(settings))


def _visit_tasks(settings) -> list:
    store = TaskStore(settings.database_url)
    try:
        return store.tasks(kind="visit")
    finally:
        store.close()


def _worker_metrics(worker: WorkerProcess) -> dict[str, dict[str, float]]:
    """The worker's /metrics (after /healthz says ok), as {metric: {first label value: value}}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    health = httpx.get(f"{worker.web_url}/healthz", timeout=10)
    assert health.status_code == 200, health.text
    assert health.json()["assigned_partitions"] > 0
    text = httpx.get(f"{worker.web_url}/metrics", timeout=10).text
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = next(iter(sample.labels.values()), "") if sample.labels else ""
            if sample.name.endswith("_bucket"):
                continue
            out.setdefault(sample.name, {})[label] = sample.value
    return out


def test_faults_reach_outreach_tasks_once(stack):
    settings, start_worker = stack
    world = _world()
    assert len(world.faults) >= 3, "the scenario must inject faults to be a test"
    produced = _produce(settings, world_events(world))
    worker = start_worker()
    wait_drained(settings, worker, timeout=300)
    metrics = _worker_metrics(worker)
    assert worker.stop() == 0

    assert (
        metrics["forewarn_worker_messages_total"]["device-telemetry"]
        == produced["device-telemetry"]
    )
    assert metrics["forewarn_worker_alerts_total"]["device_fault"] >= len(world.faults)
    assert metrics["forewarn_worker_task_sink_seconds_count"][""] >= len(world.faults)
    assert all(n == 0 for n in metrics["forewarn_worker_consumer_lag"].values())
    per_device = _tasks_per_device(settings)
    for fault in world.faults:
        assert per_device[fault.device_id] == 1, f"fault on {fault.device_id} has no single task"
    assert max(per_device.values()) == 1
    tasks = {t.device_id: t for t in _visit_tasks(settings)}
    early = [f for f in world.faults if aware(tasks[f.device_id].detected_at) < f.complaint_time]
    assert len(early) == len(world.faults), "every fault should be caught before the complaint"
    for topic in INPUT_TOPICS:
        assert _lake_rows(settings, topic) == (produced[topic], produced[topic]), topic


def test_bad_events_are_dead_lettered_and_the_rest_flows(stack):
    settings, start_worker = stack
    world = _world(customers=15, days=10)
    good = list(world_events(world))
    bad = [
        ("device-telemetry", b"{not json"),
        (
            "orders",
            json.dumps({**json.loads(encode(factories.order())), "schema_version": 99}).encode(),
        ),
        ("tickets", json.dumps({**json.loads(encode(factories.ticket())), "csat": 42}).encode()),
        ("device-telemetry", b"\x00\xff" * 10),
    ]
    last = next(e for e in reversed(good) if e.topic == "device-telemetry")
    # Valid, but ten hours older than the device's latest reading: past the lateness bound.
    late = last.model_copy(
        update={"event_id": "late-1", "event_time": last.event_time - timedelta(hours=10)}
    )
    half = len(good) // 2
    produced = _produce(settings, good[:half])
    _send_raw(settings, bad)
    produced += _produce(settings, [*good[half:], late])
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
    assert all(d["source_offset"] >= 0 for d in letters)
    for topic in INPUT_TOPICS:
        assert _lake_rows(settings, topic)[1] == produced[topic], topic


def test_restart_mid_stream_creates_no_duplicates(stack):
    settings, start_worker = stack
    world = _world(seed=9)
    produced = _produce(settings, world_events(world))
    total = sum(produced.values())
    worker = start_worker()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        lag = asyncio.run(group_lag(settings.kafka_bootstrap, settings.group_id, DRAIN_TOPICS))
        if sum(lag.values()) < 0.6 * total:
            break
        time.sleep(0.5)
    worker.kill()  # kill -9 mid-stream: no flush, no commit
    lag = asyncio.run(group_lag(settings.kafka_bootstrap, settings.group_id, DRAIN_TOPICS))
    assert 0 < sum(lag.values()) < total, "the kill should land mid-stream"
    for topic in INPUT_TOPICS:
        # Offsets are committed only after the archive write: every committed event is in
        # the lake although the worker died without a chance to flush.
        committed = produced[topic] - lag[topic]
        assert _lake_rows(settings, topic)[1] >= committed, topic

    worker = start_worker()
    wait_drained(settings, worker, timeout=300)
    worker.stop()

    per_device = _tasks_per_device(settings)
    assert max(per_device.values()) == 1, "a restart must not duplicate a task"
    assert {f.device_id for f in world.faults} <= set(per_device)
    store = TaskStore(settings.database_url)
    assert all(t.alert_count >= 1 for t in store.tasks())
    for topic in INPUT_TOPICS:
        raw, distinct = _lake_rows(settings, topic)
        assert distinct == produced[topic], f"{topic}: events lost from the lake"
        assert raw >= distinct  # at-least-once files; readers drop the replayed rows


def test_customers_at_risk_and_a_hot_reloaded_churn_model(stack, tmp_path):
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from forewarn.events import ModelUpdated
    from streams.customer_risk.detector import FEATURES

    settings, start_worker = stack
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, size=(200, len(FEATURES))).astype(float)
    y = (x[:, FEATURES.index("low_csat_30d")] > 1).astype(int)
    model_path = tmp_path / "churn-v7.joblib"
    joblib.dump(
        {"estimator": LogisticRegression().fit(x, y), "features": list(FEATURES)}, model_path
    )
    broken = tmp_path / "churn-v8.joblib"
    broken.write_bytes(b"\x80not a model")
    worker = start_worker()
    _produce(
        settings,
        [
            ModelUpdated(
                event_id="m7",
                event_time=START,
                model_name="churn",
                version="v7",
                uri=f"file://{model_path}",
            )
        ],
    )
    assert _wait_for_status(settings, "churn_model", "v7"), "the running worker loads v7"
    world = _world(customers=80, days=30, seed=5)
    _produce(settings, [e for e in world_events(world) if e.topic != "device-telemetry"])
    _produce(
        settings,
        [
            ModelUpdated(
                event_id="m8",
                event_time=START,
                model_name="churn",
                version="v8",
                uri=f"file://{broken}",
            )
        ],
    )
    wait_drained(settings, worker, timeout=300)
    assert _wait_for_status(settings, "models.rejected", 1), "the broken v8 is refused"
    assert _worker_status(settings)["churn_model"] == "v7", "and v7 stays in service"
    store = TaskStore(settings.database_url)
    retention = store.tasks(kind="retention")
    feedback = store.tasks(kind="feedback")
    assert {t.customer_id for t in retention} & {c.customer_id for c in world.churns}
    assert any("churn model v7" in t.explanation for t in retention)
    assert feedback and all(
        (aware(t.due_at) - aware(t.detected_at)).total_seconds() == 3600 for t in feedback
    )


def _worker_status(settings) -> dict:
    files = list((settings.home / "workers").glob("*.json"))
    return json.loads(files[0].read_text()) if files else {}


def _wait_for_status(settings, key: str, value, timeout: float = 60) -> bool:
    """Poll the worker's counters file (rewritten every 5 s) until ``key`` is ``value``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _worker_status(settings).get(key) == value:
            return True
        time.sleep(1)
    return False
