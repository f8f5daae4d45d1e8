"""Topic set-up and consumer-lag checks against any Kafka cluster (local or not)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError

from forewarn.events import INPUT_TOPICS, PARTITIONS
from forewarn.settings import Settings

#: Every topic Forewarn uses, with its cleanup policy. customer-values and customers are
#: tables (the latest record per customer): compacted.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    **{t: {} for t in INPUT_TOPICS},
    "alerts": {},
    "customer-signals": {},
    "outreach-tasks": {},
    "dead-letters": {},
    "model-updates": {"cleanup.policy": "compact"},
    "customer-values": {"cleanup.policy": "compact"},
    "customers": {"cleanup.policy": "compact"},
    "maintenance": {},
}


async def ensure_topics(
    bootstrap: str, partitions: int = PARTITIONS, replication: int = 1
) -> list[str]:
    """Create missing Forewarn topics; return the names created (existing ones are left as is).

    Partition counts matter: Faust tables are co-partitioned with their source topics, so
    create topics before the first worker starts rather than letting them auto-create.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **Settings().kafka_client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in TOPIC_CONFIGS if name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        partitions if name != "model-updates" else 1,
                        replication,
                        topic_configs=TOPIC_CONFIGS[name],
                    )
                    for name in missing
                ]
            )
        return missing
    finally:
        await admin.close()


async def ensure_changelogs(
    bootstrap: str, partitions: dict[str, int], replication: int = 1, timeout: float = 60.0
) -> list[str]:
    """Create missing table changelog topics (compacted; ``partitions`` by name) and wait
    until the broker's metadata lists them; return the names created.

    Faust creates them itself at startup, moments before its consumer subscribes, and Kafka's
    metadata can lag the creation: the assignor then ignored the changelog ("Ignoring missing
    topic"), the table's partitioner and partition check found no partitions, and the agents
    crashed (issue 14). Created before the worker starts, they are there from its first request.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **Settings().kafka_client_options())
    await admin.start()
    try:
        missing = [name for name in partitions if name not in set(await admin.list_topics())]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        partitions[name],
                        replication,
                        topic_configs={"cleanup.policy": "compact"},
                    )
                    for name in missing
                ]
            )
        deadline = asyncio.get_running_loop().time() + timeout
        while set(partitions) - set(await admin.list_topics()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"changelog topics {missing} not listed after {timeout:g} s")
            await asyncio.sleep(0.2)
        return missing
    finally:
        await admin.close()


async def group_lag(bootstrap: str, group_id: str, topics: list[str]) -> dict[str, int]:
    """Messages not yet committed by ``group_id``, per topic (a never-committed partition
    counts from its beginning offset)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **Settings().kafka_client_options())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **Settings().kafka_client_options()
    )
    await admin.start()
    await consumer.start()
    try:
        committed = await _committed(admin, group_id)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(
                consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            )
        ]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        lag = dict.fromkeys(topics, 0)
        for tp in partitions:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            lag[tp.topic] += max(0, ends[tp] - done)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """The offsets ``group_id`` has committed on ``topic``, by partition (-1: none yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **Settings().kafka_client_options())
    await admin.start()
    try:
        committed = await _committed(admin, group_id)
        return {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic}
    finally:
        await admin.close()


async def _committed(admin: AIOKafkaAdminClient, group_id: str, tries: int = 20) -> dict:
    # The group coordinator (and __consumer_offsets) appears only after a first group exists.
    for attempt in range(tries):
        try:
            return await admin.list_consumer_group_offsets(group_id)
        except GroupCoordinatorNotAvailableError:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(0.5)
    return {}


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # partitions_for_topic reads cached metadata
    return consumer.partitions_for_topic(topic) or set()
