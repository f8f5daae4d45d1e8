"""Intake: validate every source event once, dead-letter the bad ones, archive the good ones.

:func:`take_in` is the one way a batch comes in: decoded once, bad messages dead-lettered
(exactly one dead letter each), good events archived, and only then handed on. The intake agent
runs it on orders, tickets and alerts; the device agent runs it on readings, which it scores
too (one decode and one Faust stream per reading instead of two: docs/benchmarks.md).

Batches come from ``take_events``, and Faust acks a batch only after its block has run, so a
source offset is committed only once its event is in the lake (or in the dead-letter topic).
Offsets that never reached the agent are read back from Kafka first (``streams.continuity``:
Faust's offset bookkeeping has holes).
"""

from __future__ import annotations

import asyncio
import logging

from forewarn.events import Event, InvalidEvent, decode
from forewarn.lake import LakeWriter
from streams.app import app, intake_topics, settings
from streams.continuity import Record, continuity_of, fill_holes, records_of
from streams.dead_letters import counters, dead_letter, send_dead_letter

log = logging.getLogger(__name__)

# Below the stream buffer (streams.app.STREAM_BUFFER): a full batch never waits on a full queue.
ARCHIVE_BATCH = 2000
ARCHIVE_WITHIN_S = 1.0
lake = LakeWriter(settings.lake_dir)
continuity = continuity_of(app, settings.kafka_bootstrap, settings.group_id)


@app.agent(intake_topics)
async def archive_events(stream):  # type: ignore[no-untyped-def]
    async for batch in stream.take_events(ARCHIVE_BATCH, within=ARCHIVE_WITHIN_S):
        await take_in(await fill_holes(continuity, records_of(batch), counters, "intake"))


async def take_in(records: list[Record]) -> list[tuple[Record, Event]]:
    """Decode ``records``, dead-letter the invalid ones, archive the rest; return the valid
    events with their records, in order, once they are in the lake."""
    good: list[tuple[Record, Event]] = []
    for record in records:
        topic, partition, offset, value = record
        try:
            good.append((record, decode(topic, value)))
        except InvalidEvent as exc:
            letter = dead_letter(topic, partition, offset, value, str(exc))
            log.warning("dead-lettered %s[%d]@%d: %s", topic, partition, offset, letter.reason)
            await send_dead_letter(letter, "invalid")
    if good:
        await write_with_retry([event for _, event in good])
        counters["archived"] += len(good)
    return good


async def write_with_retry(events: list[Event]) -> None:
    """Write a batch to the lake, retrying on I/O errors: ``take_events`` acks the batch when
    this block ends, even by an exception, so giving up here would lose the batch.

    The write runs on the event loop, not in a thread: in a thread it waited for the GIL behind
    Faust's message handling, 110 us per reading against 23 us here (20 ms of parquet per
    batch of 4,000 blocks the loop less than that convoy did; docs/benchmarks.md)."""
    delay = 0.5
    while True:
        try:
            lake.write(events)
            return
        except OSError as exc:
            log.error(
                "lake write of %d events failed (%s); retrying in %.1f s", len(events), exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(30.0, delay * 2)
