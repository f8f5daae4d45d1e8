"""Checkpoints of the device agent: what its runs changed is stored in bulk, then the runs are
acknowledged.

Scoring a run (one partition's fetched readings, streams/transport.py) gives alerts, which are
delivered at once (an alert's latency does not wait for a checkpoint), and changes: readings
for the lake and device states. Stored per run, they cost one Parquet file per partition and
fetch (2,388 files for 41,000 readings in tests/integration/test_scale_out.py, where batches
of 0.5 s wrote about a hundred) and a broker round trip per run. A :class:`Checkpoint` keeps
them until it is due (``every_s`` after its first change, or ``max_readings`` held), then
writes the lake, sends the states' changelog records and waits for the broker to hold them,
and only then acknowledges its runs, in the order they came. Until then nothing of theirs is
committed: a crash or a rebalance reads them again from the last checkpoint, where the states
in the changelog recognise each reading as scored or not (docs/reliability.md).

States are put in the table's local store as soon as a run is scored, so the next run reads
them; only their changelog records wait. The worker's timer makes a due checkpoint when no run
follows (a quiet stream, or a rebalance waiting for every run to be acknowledged).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from forewarn.events import Event
from streams.tables import StoredTable


class Checkpoint:
    """Runs scored but not yet stored, and what storing them takes.

    Parameters
    ----------
    table : StoredTable
        The states' table; a state is in its local store at once, in its changelog at the
        checkpoint.
    archive : callable
        Stores events in the lake (retrying until it works).
    before_changelog : callable
        Awaited before the changelog records are sent (the producer's metadata).
    every_s : float
        Seconds from a checkpoint's first change until it is due.
    max_readings : int
        Readings held that make it due at once (memory, and the size of a lake file).
    clock : callable, optional
        Monotonic seconds.
    """

    def __init__(
        self,
        table: StoredTable,
        archive: Callable[[Sequence[Event]], Awaitable[None]],
        before_changelog: Callable[[], Awaitable[None]],
        every_s: float,
        max_readings: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table, self.archive, self.before_changelog = table, archive, before_changelog
        self.every_s, self.max_readings, self.clock = every_s, max_readings, clock
        #: Held by whoever scores a run or makes the checkpoint: never both at once.
        self.lock = asyncio.Lock()
        self.runs: list[Any] = []  # Faust events, acknowledged at the checkpoint
        self.readings: list[Event] = []
        self.dirty: dict[str, int] = {}  # state key -> changelog partition
        self.since: float | None = None

    def add(
        self, run: Any, readings: Sequence[Event], states: Mapping[str, tuple[int, Any]]
    ) -> None:
        """A run scored: its valid readings, and its states by key as ``(partition, value)``."""
        for key, (partition, value) in states.items():
            self.table.data[key] = value  # local store only: no changelog record yet
            self.dirty[key] = partition
        self.readings.extend(readings)
        self.runs.append(run)
        if self.since is None:
            self.since = self.clock()

    def due(self) -> bool:
        """Whether runs are held and ``every_s`` has passed or ``max_readings`` are held."""
        if self.since is None:  # set by the first run added, cleared by store
            return False
        return len(self.readings) >= self.max_readings or self.clock() - self.since >= self.every_s

    async def store(self) -> int:
        """Lake, then the changelog (awaited), then the acknowledgements; returns the readings
        stored. Raises if a changelog record could not be written (nothing acknowledged)."""
        if not self.runs:
            return 0
        readings, runs, dirty = self.readings, self.runs, self.dirty
        if readings:
            await self.archive(readings)
        if dirty:
            await self.before_changelog()
            for key, partition in dirty.items():
                self.table.send_changelog(partition, key, self.table.data[key])
            await self.table.stored()
        for run in runs:
            run.ack()
        self.readings, self.runs, self.dirty, self.since = [], [], {}, None
        return len(readings)
