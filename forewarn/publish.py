"""Publish events: to Kafka with one plain producer (the simulator, the nightly's model and
lifetime-value announcements), or straight into the lake (a backfill, no broker involved)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from forewarn.events import Event, encode
from forewarn.lake import LakeWriter
from forewarn.progress import progress_bar
from forewarn.settings import Settings

LAKE_CHUNK = 50_000


async def produce(
    events: Iterable[Event],
    bootstrap: str,
    *,
    rate: float = 0.0,
    total: int | None = None,
    progress: bool = True,
) -> int:
    """Produce ``events`` keyed by entity; ``rate`` events/s (0 = as fast as possible).

    Events of one key keep their order (one partition, one producer, in-order sends). Returns
    the number of events acknowledged by the broker.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=512 * 1024,
        acks="all",
        enable_idempotence=True,
        max_request_size=4 * 1024 * 1024,
        **Settings().kafka_client_options(),
    )
    await producer.start()
    sent = 0
    pending: list[asyncio.Future] = []
    started = time.monotonic()
    bar = progress_bar(
        total=total, unit="ev", disable=not progress, desc="producing", smoothing=0.1
    )
    try:
        for event in events:
            pending.append(await producer.send(event.topic, encode(event), key=event.key.encode()))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                bar.update(len(pending))
                pending.clear()
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0.005:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
        bar.update(len(pending))
        await producer.flush()
        _settle(bar, sent)
    finally:
        bar.close()
        await producer.stop()
    return sent


def write_lake(
    events: Iterable[Event], root: Path, *, total: int | None = None, progress: bool = True
) -> int:
    """Backfill: write events straight to the lake in chunks (no broker involved)."""
    writer = LakeWriter(root)
    written = 0
    it: Iterator[Event] = iter(events)
    with progress_bar(total=total, unit="ev", disable=not progress, desc="writing lake") as bar:
        while chunk := list(islice(it, LAKE_CHUNK)):
            writer.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
        _settle(bar, written)
    return written


def _settle(bar, count: int) -> None:  # type: ignore[no-untyped-def]
    """A bar's total is an estimate until the events run out: end it at the real count, so
    the last line reads n/n (it read 294,480 of 295,268 events, issue 18)."""
    bar.total = count
    bar.refresh()
