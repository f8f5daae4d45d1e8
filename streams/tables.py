"""Tables whose changelog writes an agent can wait for before it acknowledges its input.

A Faust table sends each write to its changelog in the background (``send_soon``: a buffer
that a task drains), and Faust commits source offsets without waiting for that buffer. So an
agent's input could be committed while the state it produced was still in the worker's memory:
a worker that left the group (a rebalance) flushed its buffer for 0.1 s at most
(``ProducerBuffer.flush_atmost`` gives up on the first message that takes longer) and went on
sending after the partition's new owner had read the changelog. The new owner then scored the
same readings again from older states (tests/integration/test_scale_out.py: 1,012 of 2,539
readings scored twice when telemetry came as runs of ~15 readings, each run writing its
devices' states). :meth:`StoredTable.stored` waits until the broker has every write so far,
and raises if one failed, so the caller fails instead of acknowledging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any

import faust


class StoredTable(faust.Table):
    """A Faust table that keeps the futures of its changelog writes until
    :meth:`stored` is awaited."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unstored: list[asyncio.Future] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        sent = super().send_changelog(*args, **kwargs)
        self._unstored.append(sent)
        return sent

    async def send_changelog_now(self, partition: int, key: Any, value: Any) -> None:
        """``send_changelog``, handed to the producer now, for a checkpoint's thousands of
        writes. Faust's path queues each write in a buffer that a task drains one a turn of the
        event loop (which a scoring agent seldom yields), makes every other agent's stream wait
        while it holds more than 100 (``ProducerBuffer.wait_until_ebb``), and costs ~200 us a
        write; aiokafka's ``send`` appends to its batches in ~10 us (a checkpoint of 1,800
        states: 0.3-0.85 s against 0.01-0.03 s, docs/benchmarks.md). Same serializers, same
        callback."""
        serializers = self.app.serializers
        producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        sent = await producer.send(  # aiokafka's order is (topic, value, key): named here
            self.changelog_topic.get_topic_name(),
            key=serializers.dumps_key(None, key, serializer=self.key_serializer),
            value=serializers.dumps_value(None, value, serializer=self.value_serializer),
            partition=partition,
        )
        sent.add_done_callback(self._changelog_stored)
        self._unstored.append(sent)

    def _changelog_stored(self, sent: asyncio.Future) -> None:
        if not sent.cancelled() and sent.exception() is None:
            self._on_changelog_sent(sent)  # type: ignore[arg-type]  # a store's offsets

    def stored(self) -> Awaitable[Any]:
        """What resolves once the broker holds every changelog write made so far (Faust's
        futures resolve on the broker's acknowledgement), or raises the first failure. The
        writes are taken now; later ones are not waited for."""
        pending, self._unstored = self._unstored, []
        return asyncio.gather(*pending)


async def acknowledge_when_stored(written: Awaitable[Any], events: Iterable[Any]) -> None:
    """Acknowledge ``events`` (Faust events, in order) once ``written`` resolves
    (:meth:`StoredTable.stored`); raise, acknowledging none, if a write failed."""
    await written
    for event in events:
        event.ack()


def stored_table(app: faust.App, name: str, **kwargs: Any) -> StoredTable:
    """``app.Table(name, **kwargs)`` as a :class:`StoredTable`."""
    table = StoredTable(app, name=name, beacon=app.tables.beacon, **kwargs)
    return app.tables.add(table)  # type: ignore[return-value]
