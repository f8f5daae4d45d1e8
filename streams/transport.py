"""Faust's delivery, repaired in two places and batched for telemetry.

**Offsets acknowledged twice.**

Faust commits a partition up to the first run of consecutive acknowledged offsets
(``Consumer._new_offset``). After a restart its table recovery starts the fetcher before it
seeks the stream partitions to their committed offsets, so the first few dozen messages of
each partition are fetched twice; both copies are acknowledged, and when a commit falls
between the two, the second copies re-enter the list of acknowledged offsets (the index that
guards it forgets committed offsets). From then on every run of consecutive numbers ends at a
duplicate, each commit moves the partition by one offset, and the group's lag stops falling:
a restarted worker that had processed everything showed 5,000 offsets of lag per partition
ten minutes later (CI, ``tests/integration/test_pipeline.py`` and
``tests/integration/test_restart_alerts.py``, faust-streaming 0.15.3).

:class:`Consumer` drops duplicates and offsets below the committed one before Faust computes
the next commit; everything else is Faust's.

**Events cleared on resume.** Each agent's stream buffers its events in a queue that Faust
clears whenever flow resumes (``FlowControlEvent.resume``; the queues are made with
``clear_on_resume=True``). Table recovery resumes the stream partitions and the fetcher, seeks
them to the committed offsets, and only then resumes flow: events fetched in between were
handed to the agents' queues, their offsets recorded as read, and then cleared, never to be
delivered again. On a partition never committed the seek does not even rewind. The agents never
acknowledge what they never saw, so the commit stops below them for good (CI after restarts,
gdb and a traced worker: offsets 1-4 of an ``alerts`` partition put in the sink's queue 60 ms
before the seek, never acknowledged, lag 9 for ten minutes; on telemetry the continuity check
read back the first offsets after the committed one). :class:`FlowControl` resumes without
clearing; the explicit clear Faust makes when partitions are revoked stays, and seeks after it
deliver the revoked partitions afresh. An event delivered twice is harmless here: every agent
is idempotent by offset or key (docs/reliability.md).

**Runs for batched topics** (issue 19). Faust hands each message to its agents on its own:
a drain loop with four tasks and an ``asyncio.wait`` per message, a queue, flow checks and an
acknowledgement per event, about 88 us per message and ~11,500 messages/s for an agent that
only counts (bench/faust_floor.py; no setting removes it). For the topics named in
:func:`install` (telemetry), :class:`Consumer` hands each partition's fetched records to the
agents as **one** message, a :class:`RunMessage` whose offset is the run's last and whose
``records`` are the run's records. The run's earlier offsets are registered with Faust's own gap
mechanism (``Consumer._add_gap``), so they are committed only when the run is acknowledged,
and a seek forgets the gaps at and after the offset it seeks to (a run fetched before it may
never be delivered; its offsets must not be committed on the strength of a later run). Every
other topic (orders, tickets, alerts, changelogs in recovery) stays per message. The agent of
a batched topic runs one actor (concurrency 1) so runs are acknowledged in order.

**Fetch wait.** Faust hard-codes aiokafka's ``fetch_max_wait_ms=1500``: after any ~100 ms block
of the event loop a fetch waited the full 1.5 s (part of the 634/700 ms p95/p99 at 2,000
readings/s, docs/benchmarks.md). :func:`install` sets it (``FOREWARN_FETCH_WAIT_MS``, 100).

**Held acknowledgements before a wait for all of them.** A rebalance and a stop wait until
every message delivered is acknowledged (``Consumer.wait_empty``), but the device agent
acknowledges its runs only at a checkpoint, which its timer makes, and an app's timers end as
soon as it stops: a graceful stop with a checkpoint pending waited for acknowledgements that
never came, until it was killed (``tests/integration/test_faults.py``). :class:`Consumer` first
awaits what :func:`before_waiting_for_acks` registered (the device agent stores its checkpoint
now), so a stop stores and commits what was scored and a rebalance does not wait for the timer.

The private Faust methods overridden here are listed in :data:`OVERRIDDEN`, with the signatures
they had in the pinned faust-streaming; tests/streams/test_transport.py fails if an upgrade
changes one of them.

:func:`install` puts all of it in an app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import aiokafka
import faust
from faust.sensors.monitor import Monitor as FaustMonitor
from faust.tables.base import Collection as FaustTable
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.consumer import ThreadDelegateConsumer, ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage, Message
from mode.utils.queues import FlowControlEvent

#: Faust's (and mode's) methods overridden or called here, with their signatures in the pinned
#: faust-streaming 0.15.3 (requirements/streams.in); tests/streams/test_transport.py checks them.
OVERRIDDEN: dict[tuple[type, str], str] = {
    (FaustConsumer, "_new_offset"): "(self, tp: faust.types.tuples.TP) -> Optional[int]",
    (FaustConsumer, "_add_gap"): (
        "(self, tp: faust.types.tuples.TP, offset_from: int, offset_to: int) -> None"
    ),
    (FaustConsumer, "seek"): "(self, partition: faust.types.tuples.TP, offset: int) -> None",
    (FaustConsumer, "wait_empty"): "(self) -> None",
    (ThreadDelegateConsumer, "_getmany"): (
        "(self, active_partitions: Optional[Set[faust.types.tuples.TP]], timeout: float)"
        " -> Mapping[faust.types.tuples.TP, List[Any]]"
    ),
    (faust_aiokafka.Consumer, "_to_message"): (
        "(self, tp: faust.types.tuples.TP, record: Any) -> faust.types.tuples.ConsumerMessage"
    ),
    (faust_aiokafka.Consumer, "_new_consumer_thread"): "(self) -> 'AIOKafkaConsumerThread'",
    (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer"): (
        "(self, transport: 'Transport') -> aiokafka.consumer.consumer.AIOKafkaConsumer"
    ),
    (FlowControlEvent, "resume"): "(self) -> None",
    # Called by streams/tables.py (a checkpoint's changelog writes) and streams/app.py.
    (faust_aiokafka.Producer, "_ensure_producer"): (
        "(self) -> aiokafka.producer.producer.AIOKafkaProducer"
    ),
    (FaustTable, "_on_changelog_sent"): "(self, fut: faust.types.tuples.FutureMessage) -> None",
    (FaustMonitor, "on_message_in"): (
        "(self, tp: faust.types.tuples.TP, offset: int, message: faust.types.tuples.Message)"
        " -> None"
    ),
}
#: aiokafka's default wait of a fetch for data, in ms; Faust's 1500 is replaced by this.
FETCH_WAIT_MS = 100
#: Awaited before the consumer waits for every delivered message to be acknowledged.
_BEFORE_WAITING_FOR_ACKS: list[Callable[[], Awaitable[None]]] = []


def before_waiting_for_acks(
    store: Callable[[], Awaitable[None]],
) -> Callable[[], Awaitable[None]]:
    """Register ``store``, which stores and then acknowledges what its agent holds, to run
    whenever a rebalance or a stop waits for every message to be acknowledged (a decorator)."""
    _BEFORE_WAITING_FOR_ACKS.append(store)
    return store


def settle_acked(acked: list[int], committed: int | None) -> list[int]:
    """The acknowledged offsets of a partition that can still move its commit, sorted, once:
    offsets at or after ``committed`` (the next offset the group has to read).

    Examples
    --------
    >>> settle_acked([5674, 5672, 5673, 5673, 5674, 5675], committed=5673)
    [5673, 5674, 5675]
    >>> settle_acked([3, 1, 2], committed=None)
    [1, 2, 3]
    """
    return sorted({offset for offset in acked if committed is None or offset >= committed})


class Run:
    """The records one fetch gave for one partition of a batched topic, in offset order."""

    __slots__ = ("records",)

    def __init__(self, records: Sequence[Any]) -> None:
        self.records = records


class RunMessage(ConsumerMessage):
    """One message standing for a run of records of one partition: its offset is the run's
    last (acknowledging it acknowledges the run), ``records`` are aiokafka's
    ``ConsumerRecord`` of the run, ``value`` is empty."""

    __slots__ = ("records",)

    def __init__(self, tp: TP, records: Sequence[Any], generation_id: int | None) -> None:
        last = records[-1]
        super().__init__(
            last.topic,
            last.partition,
            last.offset,
            (last.timestamp or 0) / 1000.0,
            last.timestamp_type,
            None,
            None,
            b"",
            None,
            0,
            sum(r.serialized_value_size or 0 for r in records),
            tp,
            generation_id=generation_id,
        )
        self.records = records


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose commits follow every acknowledged run of offsets, and
    which delivers the topics in ``batched_topics`` as runs."""

    #: Topics delivered as runs (set by :func:`install`).
    batched_topics: frozenset[str] = frozenset()
    #: aiokafka's fetch wait, ms (set by :func:`install`).
    fetch_wait_ms: int = FETCH_WAIT_MS

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        records = await super()._getmany(active_partitions, timeout)
        if not self.batched_topics or not records:
            return records
        for tp, run in list(records.items()):
            if tp.topic in self.batched_topics and run:
                # Earlier offsets commit with the run (the drain loop registers only those
                # after its read offset, and none on a partition's first run).
                await self._add_gap(tp, run[0].offset, run[-1].offset - 1)
                records[tp] = [Run(run)]
        return records

    def _to_message(self, tp: TP, record: Any) -> ConsumerMessage:
        if isinstance(record, Run):
            return RunMessage(tp, record.records, self.app.consumer_generation_id)
        return super()._to_message(tp, record)

    async def seek(self, partition: TP, offset: int) -> None:
        # Runs fetched before the seek may never be delivered: their offsets are read again.
        tp = ensure_TP(partition)
        if offset is not None and tp in self._gap:
            self._gap[tp].chop(offset, float("inf"))
        await super().seek(partition, offset)

    async def wait_empty(self) -> None:
        for store in _BEFORE_WAITING_FOR_ACKS:
            await store()
        await super().wait_empty()

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if acked:
            committed = self._committed_offset[tp]
            acked[:] = settle_acked(acked, committed)
            if committed is not None:
                index = self._acked_index[tp]
                index.difference_update([offset for offset in index if offset < committed])
        return super()._new_offset(tp)


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the fetch wait of :attr:`Consumer.fetch_wait_ms`."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by aiokafka when it starts its fetcher; Faust passes a constant 1500.
        consumer._fetch_max_wait_ms = self.consumer.fetch_wait_ms
        return consumer


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`Consumer`."""

    Consumer = Consumer


class FlowControl(FlowControlEvent):
    """Faust's flow control of stream queues, whose ``resume`` keeps what the queues hold
    (``clear`` still empties them: Faust calls it when partitions are revoked)."""

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()


class Monitor(FaustMonitor):
    """Faust's monitor, counting a run's records as the messages they are
    (``forewarn_worker_messages_total``, streams/metrics.py)."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        super().on_message_in(tp, offset, message)
        if isinstance(message, RunMessage):
            extra = len(message.records) - 1
            self.messages_received_total += extra
            self.messages_received_by_topic[tp.topic] += extra


def install(
    app: faust.App, batched_topics: Iterable[str] = (), fetch_wait_ms: int = FETCH_WAIT_MS
) -> None:
    """Make :class:`Transport` the consumer transport of ``app`` (Faust's ``app.transport``
    setter; its URL stays the broker's), delivering ``batched_topics`` as runs and waiting at
    most ``fetch_wait_ms`` for a fetch, and :class:`FlowControl` its flow control. Call it
    before any agent's stream exists: each queue registers with the flow control it is made
    with."""
    consumer = type(
        "Consumer",
        (Consumer,),
        {"batched_topics": frozenset(batched_topics), "fetch_wait_ms": int(fetch_wait_ms)},
    )
    transport = type("Transport", (Transport,), {"Consumer": consumer})
    app.transport = transport(app.conf.broker_consumer, app)
    app.conf.Monitor = Monitor
    # No loop yet: mode's events take the running loop when first awaited.
    app.flow_control = FlowControl()


def runs_of(messages: Iterable[Any]) -> Iterable[Any]:
    """The records behind Faust messages: a :class:`RunMessage`'s records, or the message."""
    for message in messages:
        if isinstance(message, RunMessage):
            yield from message.records
        else:
            yield message


__all__ = [
    "OVERRIDDEN",
    "Consumer",
    "FlowControl",
    "Monitor",
    "Run",
    "RunMessage",
    "Transport",
    "before_waiting_for_acks",
    "install",
    "runs_of",
    "settle_acked",
]
