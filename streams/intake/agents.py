"""Intake: validate every source event once, dead-letter the bad ones, archive the good ones.

:func:`validate` is the one way a batch is decoded (exactly one dead letter for each bad
message) and :func:`take_in` the one way it comes in: validated, good events archived, bad ones
dead-lettered, and only then handed on. The intake agent runs it on orders, tickets and alerts;
the device agent validates readings itself, dead-letters the bad ones at once and archives the
good ones at its checkpoints (streams/checkpoint.py), with the same decode and one Faust stream
per reading.

Batches come from ``take_events``, and Faust acks a batch only after its block has run, so a
source offset is committed only once its event is in the lake (or in the dead-letter topic).
Offsets that never reached the agent are read back from Kafka first (``streams.continuity``:
Faust's offset bookkeeping has holes).
"""

from __future__ import annotations

from datetime import UTC, datetime

from forewarn.events import DeadLetter, Event, InvalidEvent, decode
from streams.app import app, fail_stop, intake_topics, settings
from streams.continuity import Record, continuity_of, fill_holes, records_of
from streams.dead_letters import archive, counters, dead_letter, reject

# Below the stream buffer (streams.app.STREAM_BUFFER): a full batch never waits on a full queue.
ARCHIVE_BATCH = 2000
ARCHIVE_WITHIN_S = 1.0
continuity = continuity_of(app, settings.kafka_bootstrap, settings.group_id)


@app.agent(intake_topics)
async def archive_events(stream):  # type: ignore[no-untyped-def]
    async for batch in stream.take_events(ARCHIVE_BATCH, within=ARCHIVE_WITHIN_S):
        with fail_stop("archiving a batch"):
            await take_in(await fill_holes(continuity, records_of(batch), counters, "intake"))


async def take_in(records: list[Record]) -> list[tuple[Record, Event]]:
    """Decode ``records``, archive the valid events, then dead-letter the invalid ones; return
    the valid events with their records, in order, once all of it is stored.

    Good events go to the lake first, whatever is wrong with their neighbours: one bad
    message never costs the batch (docs/reliability.md)."""
    good, letters = validate(records)
    if good:
        await archive([event for _, event in good])
        counters["archived"] += len(good)
    await reject(letters, "invalid")
    return good


def validate(records: list[Record]) -> tuple[list[tuple[Record, Event]], list[DeadLetter]]:
    """The valid events of ``records`` with their records, in order, and a dead letter for
    each invalid one. Stores nothing: :func:`take_in` does, and the device agent, which
    archives at its checkpoints (streams/checkpoint.py)."""
    good: list[tuple[Record, Event]] = []
    letters = []
    # The receiver's clock, once per batch: per event it was 11% of validation.
    now = datetime.now(UTC)
    for record in records:
        topic, partition, offset, value = record
        try:
            good.append((record, decode(topic, value, now)))
        except InvalidEvent as exc:
            letters.append(dead_letter(topic, partition, offset, value, str(exc)))
    return good, letters
