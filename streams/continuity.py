"""Offset continuity for batch agents: find offsets that never reached them, read them back.

Faust commits a partition up to its highest run of acknowledged offsets, and its bookkeeping
has known holes (faust-streaming issue #606 on gaps; in 0.15.3 the head-of-queue check in
``Consumer._new_offset`` lets exactly one unacknowledged offset through). CI saw one telemetry
event out of ~40,000 committed without reaching the lake after a kill -9, twice in about thirty
restarts. With this check in place a CI run showed the cause: after a restart, Faust's table
recovery resumes the fetcher before it seeks the stream partitions to their committed offsets,
and the event at the committed offset of one partition never reached the agents (the
mechanism, found later: Faust empties the agents' queues when flow resumes, after events were
put in them and recorded as read; ``streams/transport.py`` now keeps them).

So the agents do not trust that every offset reached them (the intake agent, which archives;
the device agent, which archives readings and scores them; the customer agent, whose state
follows orders and tickets): per partition they expect the offsets of their batches to follow
on from each other and from the group's committed offset, and read any hole straight from
Kafka before the batch is acknowledged. An event is then committed only once it is archived
and scored, whatever the cause of the hole; each hole is logged and counted (``<agent>.holes``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from forewarn.kafka.admin import committed_offsets
from forewarn.settings import Settings
from streams.retry import with_retry
from streams.transport import RunMessage

log = logging.getLogger(__name__)

#: What an agent needs of a message: topic, partition, offset, value.
Record = tuple[str, int, int, bytes | None]


def records_of(batch: Iterable[Any]) -> list[Record]:
    """The records of a batch of Faust events (``stream.take_events``), a run's
    (``streams.transport.RunMessage``) expanded into its records."""
    records: list[Record] = []
    for event in batch:
        message = event.message
        if isinstance(message, RunMessage):
            records += [(r.topic, r.partition, r.offset, r.value) for r in message.records]
        else:
            records.append((message.topic, message.partition, message.offset, event.value))
    return records


@dataclass(frozen=True)
class Hole:
    """Offsets ``[start, end)`` of one partition that the agent was never given."""

    topic: str
    partition: int
    start: int
    end: int


class OffsetContinuity:
    """The next offset expected per partition of the agent's stream.

    Parameters
    ----------
    bootstrap : str
        Kafka bootstrap servers.
    group_id : str
        The consumer group whose committed offsets a partition's first batch must follow on.
    """

    def __init__(self, bootstrap: str, group_id: str) -> None:
        self.bootstrap, self.group_id = bootstrap, group_id
        self._next: dict[tuple[str, int], int] = {}
        self._reader: AIOKafkaConsumer | None = None

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions revoked from this worker: whoever gets them next starts afresh from the
        committed offset."""
        for key in partitions:
            self._next.pop(key, None)

    async def holes(self, offsets: Iterable[tuple[str, int, int]]) -> list[Hole]:
        """The holes before the ``(topic, partition, offset)`` of a batch, in stream order;
        afterwards each partition expects the offset after the highest one seen."""
        offsets = list(offsets)
        unknown = {(t, p) for t, p, _ in offsets if (t, p) not in self._next}
        if unknown:
            await self._start_from_committed(unknown)
        found = []
        for topic, partition, offset in offsets:
            expected = self._next.get((topic, partition))
            if expected is not None and offset > expected:
                found.append(Hole(topic, partition, expected, offset))
            if expected is None or offset >= expected:
                self._next[(topic, partition)] = offset + 1
        return found

    async def read(self, hole: Hole, timeout: float = 60.0) -> list[ConsumerRecord]:
        """The records of ``hole`` straight from Kafka (no group, nothing committed).
        Raises ``TimeoutError`` if they cannot all be read within ``timeout`` seconds."""
        reader = await self._ensure_reader()
        tp = TopicPartition(hole.topic, hole.partition)
        reader.assign([tp])
        reader.seek(tp, hole.start)
        records: list[ConsumerRecord] = []
        position = hole.start
        deadline = time.monotonic() + timeout
        while position < hole.end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {position - hole.start} of {hole} in {timeout:g} s")
            batch = await reader.getmany(tp, timeout_ms=1000, max_records=hole.end - position)
            for record in batch.get(tp, []):
                if hole.start <= record.offset < hole.end:
                    records.append(record)
                position = max(position, record.offset + 1)
            if not batch:
                # Offsets a topic never had (deleted by retention): nothing there to lose.
                first = (await reader.beginning_offsets([tp]))[tp]
                position = max(position, min(first, hole.end))
        return records

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    async def _start_from_committed(self, partitions: set[tuple[str, int]]) -> None:
        fresh = []
        for topic in {t for t, _ in partitions}:
            committed = await committed_offsets(self.bootstrap, self.group_id, topic)
            for t, partition in partitions:
                if t != topic:
                    continue
                offset = committed.get(partition, -1)
                if offset >= 0:
                    self._next[(t, partition)] = offset
                else:
                    fresh.append(TopicPartition(t, partition))
        if fresh:
            # Never committed: the group starts where the topic begins (auto_offset_reset).
            reader = await self._ensure_reader()
            for tp, offset in (await reader.beginning_offsets(fresh)).items():
                self._next[(tp.topic, tp.partition)] = offset

    async def _ensure_reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                **Settings().kafka_client_options(),
            )
            await self._reader.start()
        return self._reader


def continuity_of(app: faust.App, bootstrap: str, group_id: str) -> OffsetContinuity:
    """An :class:`OffsetContinuity` for an agent of ``app`` that forgets partitions as the
    app's rebalances revoke them (whoever gets them next starts from the committed offset)."""
    continuity = OffsetContinuity(bootstrap, group_id)

    async def forget_revoked(sender: faust.App, revoked: Iterable[Any], **kwargs: Any) -> None:
        continuity.forget((tp.topic, tp.partition) for tp in revoked)

    # mode's signals hold their receivers strongly (weak=False), so the closure lives on.
    app.on_partitions_revoked.connect(forget_revoked)
    return continuity


async def fill_holes(
    continuity: OffsetContinuity, records: list[Record], counters: Counter[str], agent: str
) -> list[Record]:
    """``records`` of a batch, plus those of any hole before them read back from Kafka, in
    (topic, partition, offset) order when there were holes (each partition stays in order)."""
    offsets = [(t, p, o) for t, p, o, _ in records]
    # Broker trouble of any kind: the batch waits, unacknowledged (streams/retry.py).
    holes = await with_retry(
        lambda: continuity.holes(offsets), "checking offsets", (Exception,), log
    )
    for hole in holes:
        found = await with_retry(
            lambda h=hole: continuity.read(h), f"reading back {hole}", (Exception,), log
        )
        log.warning("%s read back %d events of %s, skipped by the stream", agent, len(found), hole)
        counters[f"{agent}.holes"] += 1
        counters[f"{agent}.read_back"] += len(found)
        records = [*records, *((r.topic, r.partition, r.offset, r.value) for r in found)]
    return sorted(records, key=lambda r: r[:3]) if holes else records
