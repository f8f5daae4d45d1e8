"""Dead letters and the worker's counters, shared by every agent.

A dead letter is stored twice before the batch that held the bad message is acknowledged:
whole in the lake (``topic=dead-letters``, the original bytes however large) and on the
``dead-letters`` topic with at most ``DEAD_LETTER_RAW_MAX`` of them, its size and its hash (a
letter carrying a whole 1 MB message in base64 is more than the broker takes: the probe lost
the good events of such a batch). Both are retried while the disk or the broker is away: an
exception would end the agent's ``take_events`` block, which acks the batch.

Counters are written every few seconds (and at shutdown) to
``<home>/workers/<host>-<pid>.json``, so operators, the demo and tests can read what a worker
refused and why without attaching to it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import socket
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError

from forewarn.events import DEAD_LETTER_RAW_MAX, DeadLetter, Event, encode
from forewarn.lake import ArrowEvents, LakeWriter
from streams.app import app, dead_letters_topic, deliver, settings
from streams.retry import with_retry
from streams.unreadable import Unreadable

log = logging.getLogger(__name__)

counters: Counter[str] = Counter()
#: Non-numeric facts about the worker, written beside the counters (e.g. the churn model).
status: dict[str, str] = {}
COUNTERS_FILE = settings.home / "workers" / f"{socket.gethostname()}-{os.getpid()}.json"
lake = LakeWriter(settings.lake_dir)


def dead_letter(
    topic: str, partition: int, offset: int, raw: bytes | None, reason: str
) -> DeadLetter:
    """The dead-letter record of one bad message: all its bytes kept, reason stated."""
    raw = raw or b""
    return DeadLetter(
        event_id=f"dlq-{topic}-{partition}-{offset}",
        event_time=datetime.now(UTC),
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        reason=reason[:2000],
        raw=base64.b64encode(raw).decode(),
        raw_size=len(raw),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
    )


def for_the_topic(letter: DeadLetter, limit: int = DEAD_LETTER_RAW_MAX) -> DeadLetter:
    """``letter`` with at most ``limit`` bytes of the original message (marked truncated)."""
    if letter.raw_size <= limit:
        return letter
    head = base64.b64decode(letter.raw)[:limit]
    return letter.model_copy(update={"raw": base64.b64encode(head).decode(), "raw_truncated": True})


async def archive(events: Sequence[Event] | ArrowEvents) -> None:
    """Write ``events`` to the lake, retrying until it works: a full disk or an unmounted
    volume, and equally an error we did not foresee, leaves the batch waiting, unacknowledged
    and logged, rather than acknowledged and lost.

    Events are converted to Arrow on the event loop (``ArrowEvents``; the device agent's come
    converted); Parquet's encoding and the file are written in a thread, where pyarrow lets go
    of the GIL. The whole write in a thread waited for the GIL behind Faust's message handling
    (110 us per reading against 23 us on the loop); on the loop the Parquet part held every
    agent for ~10 ms a checkpoint at 5,000 readings/s (docs/benchmarks.md)."""
    arrow = events if isinstance(events, ArrowEvents) else None

    async def write() -> None:
        nonlocal arrow
        if arrow is None:
            arrow = ArrowEvents(events)  # type: ignore[arg-type]
        await asyncio.to_thread(lake.write, arrow)

    await with_retry(write, f"lake write of {len(events)} events", (Exception,), log)


def unreadable_letters(unreadable: Sequence[Unreadable], table: Any) -> list[DeadLetter]:
    """Stored states of ``table`` a step could not read (their keys started over), logged,
    as dead letters of the table's changelog to :func:`reject`, each document whole.

    Each letter's id is its own (one batch can find several) and within an id's 64 characters
    whatever the group's name; partition and offset are those of the event that needed it."""
    changelog = table.changelog_topic.get_topic_name()
    letters = []
    for bad in unreadable:
        log.error("%s (needed by %d@%d)", bad.reason, bad.partition, bad.offset)
        raw = json.dumps(bad.document, default=repr).encode()
        made = dead_letter("state", bad.partition, bad.offset, raw, bad.reason)
        digest = hashlib.sha256(f"{changelog}/{bad.key}/{made.event_id}".encode()).hexdigest()
        update = {"event_id": f"dlq-state-{digest[:24]}", "source_topic": changelog}
        letters.append(made.model_copy(update=update))
    return letters


async def reject(letters: Sequence[DeadLetter], kind: str) -> None:
    """Store ``letters`` (lake, whole; then the topic, truncated) and count them under
    ``dead_letters.<kind>``. Returns once both hold every letter."""
    if not letters:
        return
    await archive(letters)
    for letter in letters:
        log.warning(
            "dead-lettered %s[%d]@%d: %s",
            letter.source_topic,
            letter.source_partition,
            letter.source_offset,
            letter.reason,
        )
        await with_retry(
            lambda x=letter: _send(x), f"sending dead letter {letter.event_id}", (Exception,), log
        )
        counters[f"dead_letters.{kind}"] += 1


async def _send(letter: DeadLetter) -> None:
    wire = for_the_topic(letter)
    try:
        await deliver(dead_letters_topic, wire.source_topic.encode(), encode(wire))
    except MessageSizeTooLargeError:
        # The broker takes less than our limit: send the letter without the message, which the
        # lake holds whole.
        counters["dead_letters.raw_dropped"] += 1
        log.error(
            "dead letter %s too large for the broker; raw bytes in the lake only", wire.event_id
        )
        bare = wire.model_copy(update={"raw": "", "raw_truncated": True})
        await deliver(dead_letters_topic, wire.source_topic.encode(), encode(bare))


def write_counters(path: Path = COUNTERS_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    body = {"at": datetime.now(UTC).isoformat(), **counters, **status}
    tmp.write_text(json.dumps(body, indent=1))
    os.replace(tmp, path)


@app.timer(interval=5.0)
async def publish_counters() -> None:
    write_counters()


@app.on_before_shutdown.connect
async def final_counters(sender, **kwargs) -> None:  # type: ignore[no-untyped-def]
    write_counters()
