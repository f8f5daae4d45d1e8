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
from datetime import UTC, datetime

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


def test_faults_reach_outreach_tasks_once(stack):
    settings, start_worker = stack
    world = _world()
    assert len(world.faults) >= 3, "the scenario must inject faults to be a test"
    produced = _produce(settings, world_events(world))
    worker = start_worker()
    wait_drained(settings, worker, timeout=300)
    assert worker.stop() == 0

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
    half = len(good) // 2
    produced = _produce(settings, good[:half])
    _send_raw(settings, bad)
    produced += _produce(settings, good[half:])
    worker = start_worker()
    wait_drained(settings, worker, timeout=300)
    assert worker.alive(), "bad input must not stop the worker"

    letters = asyncio.run(_read_topic(settings.kafka_bootstrap, "dead-letters", len(bad)))
    assert sorted(base64.b64decode(d["raw"]) for d in letters) == sorted(v for _, v in bad)
    reasons = {d["source_topic"] + ": " + d["reason"] for d in letters}
    assert any("not JSON" in r for r in reasons)
    assert any("unknown schema_version 99" in r for r in reasons)
    assert any("csat" in r for r in reasons)
    assert all(d["source_offset"] >= 0 for d in letters)
    for topic in INPUT_TOPICS:
        assert _lake_rows(settings, topic)[1] == produced[topic], topic


async def _read_topic(bootstrap: str, topic: str, expected: int) -> list[dict]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        found: list[dict] = []
        deadline = time.monotonic() + 30
        while len(found) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            found += [json.loads(m.value) for msgs in batch.values() for m in msgs]
        await asyncio.sleep(1)  # and nothing more than expected arrives
        batch = await consumer.getmany(timeout_ms=1000)
        found += [json.loads(m.value) for msgs in batch.values() for m in msgs]
        return found
    finally:
        await consumer.stop()


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
