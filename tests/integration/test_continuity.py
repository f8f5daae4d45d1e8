"""The batch agents' offset continuity against a real broker: holes are found relative to the
group's committed offset and read back whole (streams/continuity.py)."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from forewarn.kafka.admin import committed_offsets
from streams.continuity import Hole, OffsetContinuity, continuity_of, fill_holes

TOPIC = "tickets"
GROUP = "continuity-test"


async def fill(bootstrap: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(TOPIC, f"m{i}".encode(), partition=0)
    finally:
        await producer.stop()


async def commit(bootstrap: str, offset: int) -> None:
    """Commit ``offset`` for the group and wait until the broker reports it: a fresh broker
    creates its offsets topic on the first group, and a commit sent before that can vanish."""
    tp = TopicPartition(TOPIC, 0)
    for _ in range(30):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP)
        await consumer.start()
        consumer.assign([tp])
        try:
            await consumer.commit({tp: OffsetAndMetadata(offset, "")})
        except Exception:  # coordinator not there yet: commit again below
            pass
        finally:
            await consumer.stop()
        for _ in range(4):
            if (await committed_offsets(bootstrap, GROUP, TOPIC)).get(0) == offset:
                return
            await asyncio.sleep(0.5)
    raise AssertionError(f"offset {offset} never showed as committed")


def test_holes_follow_the_committed_offset_and_are_read_back(broker):
    async def run() -> None:
        await fill(broker.bootstrap, 60)
        await commit(broker.bootstrap, 10)
        continuity = OffsetContinuity(broker.bootstrap, GROUP)
        try:
            # The first batch must start at the committed offset 10; 10-11 and 14-19 are missing.
            holes = await continuity.holes([(TOPIC, 0, 12), (TOPIC, 0, 13), (TOPIC, 0, 20)])
            assert holes == [Hole(TOPIC, 0, 10, 12), Hole(TOPIC, 0, 14, 20)]
            records = await continuity.read(holes[1])
            assert [r.offset for r in records] == list(range(14, 20))
            assert [r.value for r in records] == [f"m{i}".encode() for i in range(14, 20)]
            # Replays below the expectation are no holes; the next batch follows on from 21.
            assert await continuity.holes([(TOPIC, 0, 15), (TOPIC, 0, 21)]) == []
            assert await continuity.holes([(TOPIC, 0, 23)]) == [Hole(TOPIC, 0, 22, 23)]
            # A partition the group never committed starts at the topic's beginning.
            assert await continuity.holes([(TOPIC, 1, 0)]) == []
            # Revoked partitions start afresh from the committed offset when they come back.
            continuity.forget([(TOPIC, 0)])
            await commit(broker.bootstrap, 40)
            assert await continuity.holes([(TOPIC, 0, 40)]) == []
            assert await continuity.holes([(TOPIC, 0, 42)]) == [Hole(TOPIC, 0, 41, 42)]
            assert [r.offset for r in await continuity.read(Hole(TOPIC, 0, 41, 42))] == [41]
        finally:
            await continuity.close()

    asyncio.run(run())


def test_fill_holes_puts_read_back_events_in_partition_order(broker):
    async def run() -> None:
        await fill(broker.bootstrap, 10)
        await commit(broker.bootstrap, 3)
        continuity, counters = OffsetContinuity(broker.bootstrap, GROUP), Counter()
        try:
            batch = [(TOPIC, 1, 0, b"x"), (TOPIC, 0, 5, b"m5"), (TOPIC, 0, 6, b"m6")]
            records = await fill_holes(continuity, batch, counters, "intake")
            assert records == [
                (TOPIC, 0, 3, b"m3"),
                (TOPIC, 0, 4, b"m4"),
                (TOPIC, 0, 5, b"m5"),
                (TOPIC, 0, 6, b"m6"),
                (TOPIC, 1, 0, b"x"),
            ]
            assert counters == Counter({"intake.holes": 1, "intake.read_back": 2})
            # No hole: the batch comes back as it was, in its own order.
            batch = [(TOPIC, 1, 1, b"y"), (TOPIC, 0, 7, b"m7")]
            assert await fill_holes(continuity, batch, counters, "intake") == batch
        finally:
            await continuity.close()

    asyncio.run(run())


def test_an_apps_revocations_reach_its_continuity():
    """``continuity_of`` forgets the partitions a rebalance takes away, through the app's own
    signal, as Faust sends it (no broker needed: nothing is read)."""
    app = faust.App("continuity-wiring", broker="kafka://localhost:1")
    continuity = continuity_of(app, "localhost:1", GROUP)
    continuity._next.update({(TOPIC, 0): 10, (TOPIC, 1): 20})
    gc.collect()  # the receiver must outlive its maker's frame
    asyncio.run(app.on_partitions_revoked.send({faust.types.TP(TOPIC, 0)}))
    assert continuity._next == {(TOPIC, 1): 20}
