"""Hostile and careless input through a real worker (issue 13): every category the probe of the
running stack found, replayed against the real broker, worker, lake and store.

Good events (a simulated scenario, a burst of valid readings, a big spender's orders, canaries)
are interleaved with bad ones (malformed, loose types, no schema version, a message just under
the broker's limit, times at the ends of the calendar and from the future, readings that name
another owner). The promises: nothing good lost, one dead letter per bad message with its
reason, every canary alert raised, the worker alive, no personal data in its log. Figures go to
``var/reliability/hostile-input.json`` (docs/reliability.md quotes them).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from console.stack import wait_drained
from forewarn.events import (
    INPUT_TOPICS,
    Alert,
    DeadLetter,
    DeviceTelemetry,
    Order,
    Ticket,
    decode,
    encode,
)
from forewarn.lake import read_events
from outreach.migrate import migrate
from outreach.store import TaskStore
from simulator import world_events
from tests.utils.hostile import sample
from tests.utils.kafka import read_records
from tests.utils.pipeline import scenario

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPORTS = Path(__file__).resolve().parents[2] / "var" / "reliability"
BROKER_LIMIT = 1_048_576  # Kafka's default message.max.bytes
#: Personal data seeded into ticket texts: none of it may reach the worker's log.
PERSONAL = ["Jolene Quartermaine", "jolene.q@example.org", "DE44500105175407324931"]
CARD = "4111 1111 1111 1111"


def _raw(event, **changes) -> bytes:
    data = json.loads(encode(event))
    data.update(changes)
    return json.dumps(data).encode()


def _send(bootstrap: str, messages: list[tuple[str, bytes, bytes]]) -> None:
    """(topic, key, value) in order, each acknowledged; keys put a device's or customer's
    messages in its partition, as a real producer would."""

    async def send() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, max_request_size=2 * BROKER_LIMIT, linger_ms=5
        )
        await producer.start()
        try:
            for topic, key, value in messages:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_hostile_input_loses_nothing_and_stops_nothing(stack):
    settings, start_worker = stack
    world = scenario(customers=15, days=10, seed=3)
    good = list(world_events(world))
    end = world.end
    faulty = {f.device_id for f in world.faults}
    healthy = sorted(
        (d for d in world.devices if d.device_id not in faulty), key=lambda d: d.device_id
    )
    canaries, owned = healthy[:5], healthy[5]
    other_customer = next(
        c.customer_id for c in world.customers if c.customer_id != owned.customer_id
    )
    burst_device = healthy[6]

    bad: list[tuple[str, bytes, bytes, str]] = []  # topic, key, value, category
    later_good: list = []  # valid events sent among the bad ones

    def reading(device, i: int, at, **fields) -> DeviceTelemetry:
        return DeviceTelemetry(
            event_id=f"hostile-{device.device_id}-{i}",
            event_time=at,
            device_id=device.device_id,
            customer_id=fields.pop("customer_id", device.customer_id),
            device_type=device.device_type,
            metrics=fields.pop("metrics", {}),
            **fields,
        )

    # 1. Malformed: the fuzzer's seeded sample (bad bytes, wrong types, huge numbers, ...).
    bad += [(t, b"bad", v, "malformed") for t, v in sample(300, seed=1)]
    # 2. Loose types and a missing schema version.
    base = reading(canaries[0], 0, end - timedelta(hours=1))
    for changes in (
        {"schema_version": True},
        {"metrics": {"vibration_mm_s": "2.5"}},
        {"event_time": 1767571200},
    ):
        bad.append(("device-telemetry", b"D", _raw(base, **changes), "loose types"))
    no_version = json.loads(encode(base))
    del no_version["schema_version"]
    bad.append(("device-telemetry", b"D", json.dumps(no_version).encode(), "no schema_version"))
    # 3. Just under the broker's limit: the probe lost the good events of its batch.
    huge = factories_ticket(world, text="x" * (BROKER_LIMIT - 2_000))
    assert len(huge) < BROKER_LIMIT
    bad.append(("tickets", b"huge", huge, "oversized"))
    # ... and among readings, which the device agent takes in (the probe's 900 KB case).
    huge_reading = _raw(base, firmware="x" * (BROKER_LIMIT - 2_000))
    bad.append(("device-telemetry", canaries[1].device_id.encode(), huge_reading, "oversized"))
    # 4. Ends of the calendar and the future, on the canaries (which must still alert after).
    for i, when in enumerate(
        [
            "2100-01-01T00:00:00Z",
            "3000-01-01T00:00:00Z",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "1970-01-01T00:00:00Z",
        ]
    ):
        for device in canaries:
            value = _raw(
                reading(device, 100 + i, end, metrics={"vibration_mm_s": 2.0}), event_time=when
            )
            bad.append(("device-telemetry", device.device_id.encode(), value, "calendar"))
    soon = end + timedelta(days=400)  # far ahead of the scenario, and of today's clock
    for device in canaries:
        value = encode(reading(device, 110, soon, metrics={"vibration_mm_s": 2.0}))
        bad.append(("device-telemetry", device.device_id.encode(), value, "calendar"))
    for i in range(50):  # complaint tickets at the end of time stopped all task creation
        ticket = factories_ticket(world, i=i, event_time="9999-12-31T23:30:00Z")
        bad.append(("tickets", b"C", ticket, "calendar"))
    # 5. Another owner named by a reading of a healthy device (with a failure code).
    thief = reading(owned, 200, end, customer_id=other_customer, error_codes=["F01"])
    bad.append(("device-telemetry", owned.device_id.encode(), encode(thief), "owner"))

    # Valid but extreme: a burst of 10,000 readings with 64 fault codes each for one device.
    for i in range(10_000):
        codes = [f"E{(i + k) % 100:03d}" for k in range(64)]
        later_good.append(
            reading(burst_device, 1000 + i, end + timedelta(seconds=i), error_codes=codes)
        )
    # A customer with a billion in spend, then a complaint with personal data in its text.
    big = "C90001"
    for i in range(100):
        later_good.append(
            Order(
                event_id=f"{big}-O{i}-placed",
                event_time=end - timedelta(days=5, hours=-i),
                order_id=f"{big}-O{i}",
                customer_id=big,
                channel="web",
                status="placed",
                amount=1e7,
            )
        )
    text = f"{PERSONAL[0]} ({PERSONAL[1]}), IBAN {PERSONAL[2]}, card {CARD}: broken again"
    complaint = Ticket(
        event_id=f"{big}-T1-1",
        event_time=end,
        ticket_id=f"{big}-T1",
        customer_id=big,
        channel="email",
        category="complaint",
        status="opened",
        text=text,
        csat=1,
    )
    later_good.append(complaint)
    # Canaries: each healthy device reports its own failure after all of the above.
    canary_readings = [
        reading(d, 300, end + timedelta(minutes=30), error_codes=["F01"]) for d in canaries
    ]

    worker = start_worker()
    asyncio.run(_produce(good[: len(good) // 2], settings))
    _send(settings.kafka_bootstrap, [(t, k, v) for t, k, v, _ in bad[: len(bad) // 2]])
    asyncio.run(_produce(good[len(good) // 2 :], settings))
    _send(settings.kafka_bootstrap, [(t, k, v) for t, k, v, _ in bad[len(bad) // 2 :]])
    asyncio.run(_produce(later_good, settings))
    asyncio.run(_produce(canary_readings, settings))
    wait_drained(settings, worker, timeout=600)
    assert worker.alive(), worker.tail()

    # Nothing good lost: every good event's id is in the lake.
    everything_good = good + later_good + canary_readings
    lost = {}
    for topic in INPUT_TOPICS:
        wanted = {e.event_id for e in everything_good if e.topic == topic}
        have = set(
            read_events(settings.lake_dir, topic, columns=["event_id"])["event_id"].to_pylist()
        )
        lost[topic] = len(wanted - have)
    assert lost == dict.fromkeys(INPUT_TOPICS, 0), lost

    # One dead letter per bad message, with a reason; the huge one truncated, whole in the lake.
    records = read_records(settings.kafka_bootstrap, "dead-letters", at_least=len(bad), timeout=60)
    letters = [decode("dead-letters", r.value) for r in records]
    assert all(isinstance(x, DeadLetter) and x.reason for x in letters)
    assert max(len(r.value) for r in records) < BROKER_LIMIT
    per_source = Counter((x.source_topic, x.source_partition, x.source_offset) for x in letters)
    assert len(letters) == len(bad), Counter(_reason_class(x.reason) for x in letters)
    assert max(per_source.values()) == 1
    stored = read_events(settings.lake_dir, "dead-letters").to_pylist()
    for message in (huge, huge_reading):
        (big_letter,) = [x for x in letters if x.raw_size == len(message)]
        assert big_letter.raw_truncated
        assert big_letter.raw_sha256 == hashlib.sha256(message).hexdigest()
        whole = [r for r in stored if r["raw_sha256"] == big_letter.raw_sha256]
        assert whole and base64.b64decode(whole[0]["raw"]) == message
    reasons = Counter(_reason_class(x.reason) for x in letters)
    assert reasons["from the future"] >= 3 * len(canaries) + 50
    assert reasons["too old"] >= 2 * len(canaries)
    assert reasons["another owner"] == 1
    assert reasons["exceeds"] == 2

    # Every canary raised: failure visits on the canaries, feedback for the big spender.
    alerts = [decode("alerts", r.value) for r in read_records(settings.kafka_bootstrap, "alerts")]
    failures = {a.device_id for a in alerts if isinstance(a, Alert) and a.fault_kind == "failure"}
    assert {d.device_id for d in canaries} <= failures
    assert not any(a.alert_id == f"alert-{thief.event_id}" for a in alerts), "owner moved"
    silence = [a for a in alerts if a.fault_kind == "silence"]
    assert all(a.score < 24 * 30 for a in silence), [a.explanation for a in silence]
    migrate(settings.database_url)
    store = TaskStore(settings.database_url)
    try:
        big_tasks = store.tasks(customer_id=big)
        owned_visits = [t for t in store.tasks(kind="visit") if t.device_id == owned.device_id]
    finally:
        store.close()
    assert "feedback" in {t.kind for t in big_tasks}
    assert all(t.customer_id == owned.customer_id for t in owned_visits)

    # The burst's device state stayed small (its changelog messages), the worker up.
    changelog = f"{settings.group_id}-device-to-fault-state-changelog"
    sizes = [
        len(r.value)
        for r in read_records(settings.kafka_bootstrap, changelog)
        if r.key is not None and burst_device.device_id.encode() in r.key
    ]
    assert sizes and max(sizes) < 80_000, max(sizes, default=0)

    # No personal data in the worker's log.
    log = worker.log_path.read_text(errors="replace")
    leaked = [p for p in [*PERSONAL, CARD] if p in log]
    assert not leaked, leaked
    assert not re.search(r"\b\d{4} \d{4} \d{4} \d{4}\b", log)
    assert worker.stop() == 0

    figures = {
        "good_events": len(everything_good),
        "bad_messages": len(bad),
        "bad_by_category": dict(Counter(c for *_, c in bad)),
        "dead_letters": len(letters),
        "dead_letters_by_reason": dict(reasons),
        "good_lost": sum(lost.values()),
        "canaries": len(canaries) + 1,
        "canaries_raised": len({d.device_id for d in canaries} & failures) + 1,
        "burst_state_bytes_max": max(sizes),
        "largest_dead_letter_on_topic_bytes": max(len(r.value) for r in records),
        "worker_alive": True,
    }
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "hostile-input.json").write_text(json.dumps(figures, indent=1))


def factories_ticket(world, i: int = 0, **changes) -> bytes:
    """A valid complaint ticket of the scenario's first customer, as bytes, with ``changes``."""
    customer = world.customers[0].customer_id
    ticket = Ticket(
        event_id=f"hostile-T{i}-1",
        event_time=world.end,
        ticket_id=f"hostile-T{i}",
        customer_id=customer,
        channel="phone",
        category="complaint",
        status="opened",
        text="it broke",
    )
    return _raw(ticket, **changes)


def _reason_class(reason: str) -> str:
    for name in ("from the future", "too old", "another owner", "exceeds", "schema_version"):
        if name in reason or (name == "another owner" and "belongs to customer" in reason):
            return name
    return "invalid"


async def _produce(events, settings) -> None:
    from forewarn.publish import produce

    await produce(events, settings.kafka_bootstrap, progress=False)
