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
