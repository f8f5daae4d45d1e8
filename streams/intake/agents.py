"""Intake: validate every source event once, dead-letter the bad ones, archive the good ones.

Events are archived in batches (``take_events``), and Faust acks a batch only after the block
below has run, so a source offset is committed only once its event is in the lake (or in the
dead-letter topic). Other agents on the same topics decode again and skip what is invalid;
reporting it is this agent's job alone, so each bad message gets exactly one dead letter.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime

from forewarn.events import DeadLetter, Event, InvalidEvent, decode, encode
from forewarn.lake import LakeWriter
from streams.app import app, dead_letters_topic, settings, source_topics

log = logging.getLogger(__name__)

ARCHIVE_BATCH = 5000
ARCHIVE_WITHIN_S = 2.0
lake = LakeWriter(settings.lake_dir)
counters = {"archived": 0, "dead_letters": 0}


def dead_letter(
    topic: str, partition: int, offset: int, raw: bytes | None, reason: str
) -> DeadLetter:
    """The dead-letter record of one bad message: raw bytes kept, reason stated."""
    return DeadLetter(
        event_id=f"dlq-{topic}-{partition}-{offset}",
        event_time=datetime.now(UTC),
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        reason=reason[:2000],
        raw=base64.b64encode(raw or b"").decode(),
    )


@app.agent(source_topics)
async def archive_events(stream):  # type: ignore[no-untyped-def]
    async for batch in stream.take_events(ARCHIVE_BATCH, within=ARCHIVE_WITHIN_S):
        good: list[Event] = []
        for event in batch:
            msg = event.message
            try:
                good.append(decode(msg.topic, event.value))
            except InvalidEvent as exc:
                letter = dead_letter(msg.topic, msg.partition, msg.offset, event.value, str(exc))
                log.warning(
                    "dead-lettered %s[%d]@%d: %s",
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    letter.reason,
                )
                await dead_letters_topic.send(key=msg.topic.encode(), value=encode(letter))
                counters["dead_letters"] += 1
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
