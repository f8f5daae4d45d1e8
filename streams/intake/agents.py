"""Intake: validate every source event once, dead-letter the bad ones, archive the good ones.

Events are archived in batches (``take_events``), and Faust acks a batch only after the block
below has run, so a source offset is committed only once its event is in the lake (or in the
dead-letter topic). Offsets that never reached the agent are read back from Kafka first
(``streams.continuity``: Faust's offset bookkeeping has holes). Other agents on the
same topics decode again and skip what is invalid; reporting it is this agent's job alone, so
each bad message gets exactly one dead letter.
"""

from __future__ import annotations

import asyncio
import logging

from forewarn.events import Event, InvalidEvent, decode
from forewarn.lake import LakeWriter
from streams.app import app, archived_topics, settings
from streams.continuity import OffsetContinuity, fill_holes
from streams.dead_letters import counters, dead_letter, send_dead_letter

log = logging.getLogger(__name__)

# Below the stream buffer (streams.app.STREAM_BUFFER): a full batch never waits on a full queue.
ARCHIVE_BATCH = 2000
ARCHIVE_WITHIN_S = 1.0
lake = LakeWriter(settings.lake_dir)
continuity = OffsetContinuity(settings.kafka_bootstrap, settings.group_id)


@app.on_partitions_revoked.connect
async def forget_revoked(app, revoked, **kwargs) -> None:  # type: ignore[no-untyped-def]
    continuity.forget((tp.topic, tp.partition) for tp in revoked)


@app.agent(archived_topics)
async def archive_events(stream):  # type: ignore[no-untyped-def]
    async for batch in stream.take_events(ARCHIVE_BATCH, within=ARCHIVE_WITHIN_S):
        records = [(e.message.topic, e.message.partition, e.message.offset, e.value) for e in batch]
        records = await fill_holes(continuity, records, counters, "intake")
        good: list[Event] = []
        for topic, partition, offset, value in records:
            try:
                good.append(decode(topic, value))
            except InvalidEvent as exc:
                letter = dead_letter(topic, partition, offset, value, str(exc))
                log.warning("dead-lettered %s[%d]@%d: %s", topic, partition, offset, letter.reason)
                await send_dead_letter(letter, "invalid")
        if good:
            await write_with_retry(good)
            counters["archived"] += len(good)


async def write_with_retry(events: list[Event]) -> None:
    """Write a batch to the lake, retrying on I/O errors: ``take_events`` acks the batch when
    this block ends, even by an exception, so giving up here would lose the batch."""
    delay = 0.5
    while True:
        try:
            await asyncio.to_thread(lake.write, events)
            return
        except OSError as exc:
            log.error(
                "lake write of %d events failed (%s); retrying in %.1f s", len(events), exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(30.0, delay * 2)
