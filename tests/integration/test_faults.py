"""Faults against the real parts while a scenario streams: worker kill -9s, a broker restart,
a database outage, hostile messages. Each test is bounded (the producer has a fixed number of
events, every wait has a deadline) and checks the same two promises: nothing lost (every event
in the lake, every alert's task in the store) and nothing doubled (one task per root cause).

Figures of the last run go to ``var/reliability/<test>.json`` (docs/reliability.md quotes them).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from console.stack import DRAIN_TOPICS, wait_drained, worker_counters
from forewarn.events import INPUT_TOPICS, Alert, DeadLetter, decode
from forewarn.kafka.admin import committed_offsets, group_lag
from forewarn.publish import produce
from outreach.migrate import migrate
from outreach.models import CustomerProfile, TaskHistory
from outreach.rules import TASK_KIND, task_key
from outreach.store import TaskStore
from simulator import world_events
from streams.app import STOP_TIMEOUT_STATUS
from tests.utils.hostile import sample
from tests.utils.kafka import read_records, read_topic
from tests.utils.pipeline import (
    Producer,
    lake_rows,
    missing_from_lake,
    produce_events,
    scenario,
    send_raw,
)
from tests.utils.postgres import PostgresServer

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPORTS = Path(__file__).resolve().parents[2] / "var" / "reliability"
# `make soak` raises it; each kill cycle takes about 7 s (start, join, work, kill).
KILLS = int(os.environ.get("FOREWARN_SOAK_KILLS", "10"))
TELEMETRY = "device-telemetry"


def _alerts(settings) -> list[Alert]:
    values = read_topic(settings.kafka_bootstrap, "alerts", timeout=30)
    return [decode("alerts", v) for v in values]  # type: ignore[misc]


def _check_nothing_lost_or_doubled(settings, world, produced: Counter) -> dict:
    """Every event in the lake once (as readers see it), every alert's root cause one task."""
    figures: dict = {"events": sum(produced.values())}
    for topic in INPUT_TOPICS:
        raw, distinct = lake_rows(settings, topic)
        assert distinct == produced[topic], (
            f"{topic}: {produced[topic] - distinct} lost: {missing_from_lake(settings, topic)}"
        )
        figures[f"lake_rows_{topic}"] = raw
    migrate(settings.database_url)
    store = TaskStore(settings.database_url)
    try:
        tasks = store.tasks()
        with store.sessions() as session:
            left = dict(
                session.execute(select(CustomerProfile.customer_id, CustomerProfile.left_at)).all()
            )
    finally:
        store.close()
    per_key = Counter(t.dedup_key for t in tasks)
    assert max(per_key.values()) == 1, [k for k, n in per_key.items() if n > 1]
    # A task stands for its alert's root cause (one reply task per customer, whatever the
    # number of tickets): compare by the key outreach files each alert under. The one alert
    # that opens nothing is evidence dated after the customer cancelled (nobody to keep).
    alerts = _alerts(settings)
    gone = {
        task_key(a, TASK_KIND[a.kind])
        for a in alerts
        if a.kind != "negative_feedback"
        and left.get(a.customer_id) is not None
        and a.event_time >= left[a.customer_id]
    }
    alert_keys = {task_key(a, TASK_KIND[a.kind]) for a in alerts} - (gone - set(per_key))
    assert alert_keys == set(per_key), {
        "alerts without a task": sorted(alert_keys - set(per_key))[:5],
        "tasks without an alert": sorted(set(per_key) - alert_keys)[:5],
    }
    visits = Counter(t.device_id for t in tasks if t.kind == "visit")
    for fault in world.faults:
        assert visits[fault.device_id] == 1, f"fault on {fault.device_id}"
    lost_events = sum(produced.values()) - sum(lake_rows(settings, t)[1] for t in INPUT_TOPICS)
    figures.update(
        tasks=len(tasks),
        alerts=len(alert_keys),
        faults=len(world.faults),
        duplicates=0,
        lost_events=lost_events,
        lost_tasks=len(alert_keys - set(per_key)),
    )
    return figures


def _report(name: str, figures: dict) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{name}.json").write_text(json.dumps(figures, indent=1, default=str))
    print(name, json.dumps(figures, default=str))


def test_repeated_kill_9s_while_streaming_lose_and_double_nothing(stack):
    settings, start_worker = stack
    world = scenario(seed=9)
    events = list(world_events(world))
    # The stream lasts about as long as the kills, so they land while events arrive.
    producer = Producer(settings.kafka_bootstrap, events, rate=len(events) / (KILLS * 6.0))
    producer.start()
    rng = random.Random(7)
    kills, mid_stream = 0, 0
    started = time.monotonic()
    while kills < KILLS:
        worker = start_worker()
        worker.wait_consuming(90)
        time.sleep(rng.uniform(0.5, 3.0))  # let it process (and commit) some of the stream
        worker.kill()  # kill -9: no flush, no commit, no goodbye to the group
        kills += 1
        lag = asyncio.run(group_lag(settings.kafka_bootstrap, settings.group_id, DRAIN_TOPICS))
        mid_stream += sum(lag.values()) > 0
    assert mid_stream >= 0.8 * KILLS, "the kills should land while there is work in flight"
    producer.finish()
    worker = start_worker()
    # Consuming before the drain is judged: the last killed worker may have committed
    # everything, and a worker stopped while it starts dies of the signal (-15) before Faust
    # handles it (a CI run found this).
    worker.wait_consuming(90)
    wait_drained(settings, worker, timeout=300)
    assert worker.stop() == 0
    figures = _check_nothing_lost_or_doubled(settings, world, Counter(e.topic for e in events))
    _report(
        "kill9",
        {
            **figures,
            "kills": kills,
            "kills_mid_stream": mid_stream,
            "seconds": round(time.monotonic() - started),
        },
    )


def test_broker_restart_mid_stream_recovers_on_its_own(stack, broker):
    settings, start_worker = stack
    world = scenario(customers=40, days=21, seed=11)
    events = list(world_events(world))
    producer = Producer(settings.kafka_bootstrap, events, rate=1000)
    producer.start()
    worker = start_worker()
    worker.wait_consuming(90)
    time.sleep(5)
    stopped = time.monotonic()
    broker.stop()  # SIGTERM: a rolling restart of the only broker
    time.sleep(5)
    broker.start()
    down_s = time.monotonic() - stopped
    producer.finish()
    wait_drained(settings, worker, timeout=300)
    assert worker.alive(), "the worker must ride out the restart without being restarted"
    assert worker.stop() == 0
    figures = _check_nothing_lost_or_doubled(settings, world, Counter(e.topic for e in events))
    _report("broker_restart", {**figures, "broker_down_s": round(down_s, 1)})


def test_database_outage_commits_nothing_unstored_and_loses_nothing(stack):
    settings, start_worker = stack
    pg = PostgresServer().start()
    try:
        on_pg = replace(settings, database_url=pg.url)
        migrate(on_pg.database_url)  # schema first, as a deployment's migration does
        world = scenario(customers=60, days=21, seed=4)
        events = list(world_events(world))
        producer = Producer(settings.kafka_bootstrap, events, rate=1500)
        producer.start()
        worker = start_worker(on_pg)
        worker.wait_consuming(90)
        deadline = time.monotonic() + 120
        while _stored(on_pg) == 0:  # wait for the sink to be busy
            assert time.monotonic() < deadline, "no task was stored"
            time.sleep(0.5)

        down_at = datetime.now(UTC)
        pg.stop()
        bootstrap, group = settings.kafka_bootstrap, settings.group_id
        samples = []
        for _ in range(10):  # 30 s down, the committed offsets sampled every 3 s
            time.sleep(3)
            samples.append(asyncio.run(committed_offsets(bootstrap, group, "alerts")))
            assert worker.alive(), "the worker must wait for the database, not die"
        waiting = asyncio.run(group_lag(bootstrap, group, ["alerts"]))["alerts"]
        pg.start()

        assert waiting > 0, "alerts should pile up during the outage (else: no load)"
        producer.finish()
        wait_drained(on_pg, worker, timeout=300)
        assert worker.stop() == 0
        figures = _check_nothing_lost_or_doubled(on_pg, world, Counter(e.topic for e in events))
        # No offset committed during the outage lies past an alert that was stored only after
        # it: every alert below a committed offset was stored before the database went down.
        stored_at = _stored_at(on_pg)
        records = read_records(bootstrap, "alerts", timeout=30)
        for committed in samples:
            for r in records:
                alert_id = json.loads(r.value)["alert_id"]
                assert alert_id in stored_at, f"alert {alert_id} never reached the store"
                if r.offset < committed.get(r.partition, -1):
                    assert stored_at[alert_id] < down_at, (
                        f"offset {r.offset} of alerts[{r.partition}] was committed while its "
                        f"task was not stored"
                    )
        retries = worker.log_path.read_text().count("outreach store unavailable")
        assert retries > 0
        _report(
            "database_outage",
            {
                **figures,
                "outage_s": 30,
                "alerts_waiting_at_recovery": waiting,
                "store_retries_logged": retries,
            },
        )
    finally:
        pg.remove()


def _stored_at(settings) -> dict[str, datetime]:
    """When each alert was first stored (the task history the store writes per alert)."""
    store = TaskStore(settings.database_url)
    try:
        with store.sessions() as session:
            rows = session.scalars(
                select(TaskHistory).where(TaskHistory.action.in_(["created", "refreshed"]))
            )
            firsts: dict[str, datetime] = {}
            for row in rows:
                alert_id = row.detail.get("alert_id")
                if alert_id:
                    at = row.at
                    firsts[alert_id] = min(firsts.get(alert_id, at), at)
            return firsts
    finally:
        store.close()


def _stored(settings) -> int:
    store = TaskStore(settings.database_url)
    try:
        return len(store.tasks())
    finally:
        store.close()


def test_hostile_messages_are_dead_lettered_and_good_ones_flow(stack):
    settings, start_worker = stack
    world = scenario(customers=15, days=10, seed=3)
    good = list(world_events(world))
    bad = sample(300, seed=1)
    worker = start_worker()
    send_raw(settings, bad[:150])
    asyncio.run(produce(good, settings.kafka_bootstrap, progress=False))
    send_raw(settings, bad[150:])
    wait_drained(settings, worker, timeout=300)
    assert worker.alive()
    letters = [
        decode("dead-letters", v)
        for v in read_topic(settings.kafka_bootstrap, "dead-letters", at_least=len(bad))
    ]
    assert all(isinstance(x, DeadLetter) and x.reason for x in letters)
    assert len(letters) == len(bad), "one dead letter per bad message, no more"
    assert Counter(x.source_topic for x in letters) == Counter(t for t, _ in bad)
    produced = Counter(e.topic for e in good)
    for topic in INPUT_TOPICS:
        assert lake_rows(settings, topic)[1] == produced[topic], topic
    assert worker.stop() == 0
    _report("hostile", {"bad": len(bad), "dead_letters": len(letters), "good": len(good)})


def test_a_graceful_stop_stores_the_pending_checkpoint(stack, monkeypatch):
    """SIGTERM while a checkpoint holds scored readings: the worker stores it before it
    leaves (lake, states, then the commit), at once, so a restart reads nothing again."""
    monkeypatch.setenv("FOREWARN_CHECKPOINT_S", "600")  # only the stop can store it
    settings, start_worker = stack
    readings = [
        e
        for e in world_events(scenario(customers=20, days=4, seed=5))
        if e.topic == "device-telemetry"
    ]
    worker = start_worker()
    worker.wait_consuming(90)
    produce_events(settings, readings)
    deadline = time.monotonic() + 120
    while worker_counters(settings).get("telemetry.processed", 0) < len(readings):
        assert time.monotonic() < deadline, worker_counters(settings)
        time.sleep(0.5)
    assert lake_rows(settings, "device-telemetry") == (0, 0), "the checkpoint must be pending"
    stopped = time.monotonic()
    assert worker.stop(timeout=60) == 0
    stop_s = time.monotonic() - stopped
    assert lake_rows(settings, "device-telemetry") == (len(readings), len(readings))
    lag = asyncio.run(group_lag(settings.kafka_bootstrap, settings.group_id, [TELEMETRY]))
    assert lag == {TELEMETRY: 0}, lag
    assert stop_s < 30, f"the stop took {stop_s:.0f} s"
    _report("graceful_stop", {"readings": len(readings), "stop_s": round(stop_s, 1)})


def test_a_stop_while_the_broker_is_away_ends_and_loses_nothing(stack, broker, monkeypatch):
    """SIGTERM to a worker whose only broker has gone, holding scored readings it has not
    stored: their states cannot reach the changelog and the final commit cannot reach the
    group's coordinator (aiokafka retries both without end). The worker must still stop within
    its stop deadline, say why, and acknowledge nothing it did not store; a worker started once
    the broker is back reads on from the last commit: nothing lost, nothing doubled."""
    monkeypatch.setenv("FOREWARN_STOP_TIMEOUT_S", "10")
    monkeypatch.setenv("FOREWARN_CHECKPOINT_S", "600")  # only the stop can store them
    settings, start_worker = stack
    world = scenario(customers=20, days=7, seed=8)
    events = list(world_events(world))
    produced = produce_events(settings, events)
    worker = start_worker()
    worker.wait_consuming(90)
    deadline = time.monotonic() + 120
    while worker_counters(settings).get("telemetry.processed", 0) < produced[TELEMETRY]:
        assert time.monotonic() < deadline, worker_counters(settings)
        time.sleep(0.5)
    broker.stop()
    time.sleep(3)
    stopped = time.monotonic()
    code = worker.stop(timeout=60)
    stop_s = time.monotonic() - stopped
    assert stop_s < 30, f"the stop took {stop_s:.0f} s (exit {code}):\n{worker.tail()}"
    assert code == STOP_TIMEOUT_STATUS, (code, worker.tail())
    assert "did not finish within 10 s" in worker.log_path.read_text(), worker.tail()
    broker.start()
    monkeypatch.setenv("FOREWARN_CHECKPOINT_S", "1")
    second = start_worker()
    second.wait_consuming(90)  # a worker stopped while it starts dies of the signal (-15)
    wait_drained(settings, second, timeout=300)
    assert second.stop() == 0
    figures = _check_nothing_lost_or_doubled(settings, world, produced)
    _report("stop_broker_away", {**figures, "stop_s": round(stop_s, 1)})
