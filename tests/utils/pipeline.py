"""Helpers of the end-to-end and fault tests: scenarios in, tasks, lake rows and metrics out."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pyarrow.parquet as pq

from console.stack import WorkerProcess
from forewarn.lake import read_events
from forewarn.publish import produce
from outreach.migrate import migrate
from outreach.store import TaskStore
from simulator import build_world
from tests.utils.kafka import read_records

START = datetime(2026, 1, 5, tzinfo=UTC)


def scenario(customers: int = 60, days: int = 21, seed: int = 4):
    return build_world(n_customers=customers, days=days, start=START, seed=seed)


class Producer(threading.Thread):
    """Streams ``events`` at ``rate`` events/s in the background with the simulator's own
    producer (it must ride out broker trouble by itself)."""

    def __init__(self, bootstrap: str, events: list, rate: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.events, self.rate = bootstrap, events, rate
        self.acked: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.acked = asyncio.run(
                produce(self.events, self.bootstrap, rate=self.rate, progress=False)
            )
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 300) -> int:
        self.join(timeout)
        assert not self.is_alive(), "the producer did not finish in time"
        assert self.error is None, f"the producer failed: {self.error!r}"
        assert self.acked == len(self.events)
        return self.acked


def produce_events(settings, events) -> Counter:
    events = list(events)
    asyncio.run(produce(events, settings.kafka_bootstrap, progress=False))
    return Counter(e.topic for e in events)


def send_raw(settings, messages: list[tuple[str, bytes]]) -> None:
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


def lake_rows(settings, topic: str) -> tuple[int, int]:
    """(rows in all visible files, distinct event ids) of one topic in the lake. A worker
    killed mid-write leaves a hidden ``.tmp-*`` file behind; readers skip it, and so do we."""
    files = sorted(
        f
        for f in settings.lake_dir.glob(f"topic={topic}/date=*/*.parquet")
        if not f.name.startswith(".")
    )
    raw = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return raw, read_events(settings.lake_dir, topic, columns=["event_id"]).num_rows


def missing_from_lake(settings, topic: str, limit: int = 10) -> list[tuple[int, int, str]]:
    """(partition, offset, event_id) of up to ``limit`` events of ``topic`` that are not in
    the lake: what a failed "nothing lost" assertion shows, to compare with the worker's log."""
    lake = read_events(settings.lake_dir, topic, columns=["event_id"])
    archived = set(lake.column("event_id").to_pylist())
    missing = []
    for record in read_records(settings.kafka_bootstrap, topic):
        event_id = json.loads(record.value).get("event_id")
        if event_id not in archived:
            missing.append((record.partition, record.offset, event_id))
    return sorted(missing)[:limit]


def tasks_per_device(settings) -> Counter:
    return Counter(t.device_id for t in visit_tasks(settings))


def visit_tasks(settings) -> list:
    migrate(settings.database_url)  # no alert may have reached the sink yet
    store = TaskStore(settings.database_url)
    try:
        return store.tasks(kind="visit")
    finally:
        store.close()


def worker_metrics(worker: WorkerProcess) -> dict[str, dict[str, float]]:
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


def worker_status(settings) -> dict:
    files = list((settings.home / "workers").glob("*.json"))
    return json.loads(files[0].read_text()) if files else {}


def wait_for_status(settings, key: str, value, timeout: float = 60) -> bool:
    """Poll the worker's counters file (rewritten every 5 s) until ``key`` is ``value``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker_status(settings).get(key) == value:
            return True
        time.sleep(1)
    return False


def offline_device_alerts(events, partitions: int = 4) -> list:
    """The device alerts of ``events`` from the worker's detection step run offline: each
    reading decoded from its wire form, in its Kafka partition (the producers' partitioner
    on its key), one pass in the order produced."""
    from aiokafka.partitioner import murmur2

    from forewarn.events import decode, encode
    from streams.device_faults.step import DeviceFaultStep

    offsets: Counter = Counter()
    batch = []
    for event in events:
        if event.topic != "device-telemetry":
            continue
        partition = (murmur2(event.key.encode()) & 0x7FFFFFFF) % partitions
        batch.append((partition, offsets[partition], decode(event.topic, encode(event))))
        offsets[partition] += 1
    return DeviceFaultStep({}).run(batch).alerts


def published_device_alerts(settings, group_id: str) -> list:
    """The device alerts on the alerts topic that ``group_id``'s workers sent (the header
    streams.app.SENT_BY tells groups sharing a broker apart), repeats included."""
    from forewarn.events import Alert, decode
    from tests.utils.kafka import read_records

    sent_by = ("forewarn-group", group_id.encode())
    alerts = [
        decode("alerts", r.value)
        for r in read_records(settings.kafka_bootstrap, "alerts")
        if sent_by in (r.headers or ())
    ]
    return [a for a in alerts if isinstance(a, Alert) and a.kind == "device_fault"]


def alert_keys(alerts) -> set[tuple[str, str, str | None, str]]:
    """What makes two alerts the same: id, event time, fault and severity."""
    return {(a.alert_id, a.event_time.isoformat(), a.fault_kind, a.severity) for a in alerts}
