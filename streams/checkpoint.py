"""Checkpoints of the device agent: what its runs changed is stored in bulk, then the runs are
acknowledged.

Scoring a run (one partition's fetched readings, streams/transport.py) gives alerts, which are
sent at once (an alert's latency does not wait for a checkpoint) and waited for at the
checkpoint, before the states that remember them are written, and changes: readings for the
lake and device states. Stored per run, they cost one Parquet file per partition and
fetch (2,388 files for 41,000 readings in tests/integration/test_scale_out.py, where batches
of 0.5 s wrote about a hundred) and a broker round trip per run. A :class:`Checkpoint` keeps
them until it is due (``every_s`` after its first change, or ``max_readings`` held), then
starts the lake write (in a thread), sends the states' changelog records, and acknowledges its
runs, in the order they came, once the lake file is written and the broker holds those
records. Those waits are the disk's and the broker's; the runs after the checkpoint are scored
meanwhile (the broker's was a quarter of the agent's time, the disk's held every reading that
came during it), and the next checkpoint is stored only once this one is acknowledged. Until
then nothing of theirs is committed: a crash or a rebalance reads them again from the last
checkpoint, where the states in the changelog recognise each reading as scored or not
(docs/reliability.md). A crash between the changelog and the lake file loses no reading: the
runs read again are archived again (a replayed reading is archived, not scored).

States are held as they are (objects) from the run that changed them to the checkpoint, where
each is encoded once, put in the table's local store and sent to its changelog: a run reads
the held ones first (``held``), so a device's state is decoded and encoded once per
checkpoint, not once per run (a run of 100 ms meets most of its partition's devices once).
The worker's timer makes a due checkpoint when no run follows (a quiet stream, or a rebalance
waiting for every run to be acknowledged).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from streams.tables import StoredTable, acknowledge_when_stored


class Checkpoint:
    """Runs scored but not yet stored, and what storing them takes.

    Parameters
    ----------
    table : StoredTable
        The states' table; a state goes to its local store and its changelog at the
        checkpoint, and is in ``held`` until then.
    archive : callable
        Stores events in the lake (retrying until it works).
    before_changelog : callable
        Awaited before the changelog records are sent (the producer's metadata).
    every_s : float
        Seconds from a checkpoint's first change until it is due.
    max_readings : int
        Readings held that make it due at once (memory, and the size of a lake file).
    encode : callable, optional
        A held state's table value (``DeviceState.to_dict``); the value itself by default.
    clock : callable, optional
        Monotonic seconds.
    collect : callable, optional
        Makes the container a checkpoint's readings are collected in (``extend`` and
        ``len``): a list by default; the agent's (``lake.ArrowEvents``) converts each run's
        readings for the lake as they are added, not all of them at the checkpoint.
    """

    def __init__(
        self,
        table: StoredTable,
        archive: Callable[[Any], Awaitable[None]],
        before_changelog: Callable[[], Awaitable[None]],
        every_s: float,
        max_readings: int,
        clock: Callable[[], float] = time.monotonic,
        encode: Callable[[Any], Any] = lambda value: value,
        collect: Callable[[], Any] = list,
    ) -> None:
        self.table, self.archive, self.before_changelog = table, archive, before_changelog
        self.every_s, self.max_readings, self.clock = every_s, max_readings, clock
        self.encode, self.collect = encode, collect
        #: Held by whoever scores a run or makes the checkpoint: never both at once.
        self.lock = asyncio.Lock()
        self.runs: list[Any] = []  # Faust events, acknowledged at the checkpoint
        self.readings = collect()
        self.sent: list[Awaitable[Any]] = []  # the runs' messages, awaited before the changelog
        self.dirty: dict[str, int] = {}  # state key -> changelog partition
        #: States changed since the last checkpoint, by key, not yet in the table.
        self.held: dict[str, Any] = {}
        self._acking: asyncio.Future[None] | None = None  # the last checkpoint's acks
        self.since: float | None = None

    def add(
        self,
        run: Any,
        readings: Iterable[Any],
        states: Mapping[str, tuple[int, Any]],
        sent: Iterable[Awaitable[Any]] = (),
    ) -> None:
        """A run scored: its valid readings, its states by key as ``(partition, state)``, and
        the messages it sent (alerts), which the broker must hold before the states that
        remember them are written."""
        self.sent.extend(sent)
        for key, (partition, state) in states.items():
            self.held[key] = state
            self.dirty[key] = partition
        self.readings.extend(readings)
        self.runs.append(run)
        if self.since is None:
            self.since = self.clock()

    def settle(self, which: Callable[[Any], bool]) -> None:
        """Put the held states ``which`` picks in the table's local store now; their changelog
        records still wait for the checkpoint. The worker does it for partitions revoked in a
        rebalance: the table's recovery may then bring a newer owner's state, and what the
        checkpoint sends must be what the table holds, never a state this worker held on."""
        for key in [key for key, state in self.held.items() if which(state)]:
            self.table.data[key] = self.encode(self.held.pop(key))

    def due(self) -> bool:
        """Whether runs are held and ``every_s`` has passed or ``max_readings`` are held."""
        if self.since is None:  # set by the first run added, cleared by store
            return False
        return len(self.readings) >= self.max_readings or self.clock() - self.since >= self.every_s

    async def store(self) -> int:
        """The lake write started, the runs' alerts waited for, then the changelog; the runs
        are acknowledged once the lake file is written and the broker holds the changelog
        records (``acknowledged``). Returns the readings stored. Raises if the last
        checkpoint's changelog records could not be written (its runs and these stay
        unacknowledged)."""
        if not self.runs:
            return 0
        await self.acknowledged()
        readings, runs, dirty, sent = self.readings, self.runs, self.dirty, self.sent
        # The lake is written while the next runs are scored: awaited here, it held the agent
        # ~28 ms a checkpoint at 5,000 readings/s (up to 65), and every reading that came
        # meanwhile waited for it (docs/benchmarks.md). The runs wait for it instead.
        lake = asyncio.ensure_future(self.archive(readings)) if readings else None
        if sent:
            # Sent as they were raised, waited for together: one round trip per checkpoint,
            # where waiting for each alert held the scoring for one (docs/benchmarks.md).
            await asyncio.gather(*sent)
        if dirty:
            await self.before_changelog()
            for key, partition in dirty.items():
                if key in self.held:
                    self.table.data[key] = self.encode(self.held[key])
                await self.table.send_changelog_now(partition, key, self.table.data[key])
        stored = self.table.stored()
        written = stored if lake is None else asyncio.gather(lake, stored)
        self._acking = asyncio.ensure_future(acknowledge_when_stored(written, runs))
        self.readings, self.runs, self.dirty, self.sent = self.collect(), [], {}, []
        self.since = None
        self.held.clear()  # in place: the step reads this very dict
        return len(readings)

    async def acknowledged(self) -> None:
        """Wait until the last checkpoint's runs are acknowledged; raise why they cannot be."""
        acking, self._acking = self._acking, None
        if acking is not None:
            await acking

    def raise_failure(self) -> None:
        """Raise now if the last checkpoint's changelog records could not be written: a
        quiet stream makes no next checkpoint that would find out."""
        if self._acking is not None and self._acking.done():
            acking, self._acking = self._acking, None
            acking.result()
