"""The intake agent's offset continuity against a real broker: holes are found relative to the
group's committed offset and read back whole (streams/intake/continuity.py)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streams.intake.continuity import Hole, OffsetContinuity

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
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP)
    await consumer.start()
    consumer.assign([TopicPartition(TOPIC, 0)])
    try:
        await consumer.commit({TopicPartition(TOPIC, 0): OffsetAndMetadata(offset, "")})
    finally:
        await consumer.stop()


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
