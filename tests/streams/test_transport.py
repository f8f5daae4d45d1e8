"""The worker's Kafka transport (streams/transport.py): telemetry comes as one run per
partition and fetch, committed only once acknowledged; commits follow every acknowledged run
of offsets, even when a partition's first messages were fetched and acknowledged twice; and
events handed to an agent's queue stay there when flow resumes. The Faust methods it relies on
keep the signatures it was written against."""

from __future__ import annotations

import asyncio
import inspect
from unittest import mock

import faust
import pytest
from aiokafka import ConsumerRecord
from faust.types import TP

from streams.app import app, settings, telemetry_topic
from streams.transport import OVERRIDDEN, Consumer, FlowControl, Monitor, RunMessage, runs_of

TELEMETRY_3 = TP("device-telemetry", 3)
ORDERS_0 = TP("orders", 0)


@pytest.fixture
def consumer() -> Consumer:
    """A consumer of the app's transport, never started (its bookkeeping is plain Python)."""

    async def nothing(*args: object) -> None:
        return None

    made = app.transport.create_consumer(
        callback=nothing, on_partitions_revoked=nothing, on_partitions_assigned=nothing
    )
    assert isinstance(made, Consumer), "the app must use the repaired consumer"
    return made


def test_offsets_acknowledged_twice_do_not_hold_the_commit_back(consumer):
    # What a restarted worker held in CI: the recovery's re-fetched messages acknowledged a
    # second time after a commit. Faust alone returns 5674 here, one offset per commit.
    consumer._committed_offset[TELEMETRY_3] = 5673
    consumer._acked[TELEMETRY_3].extend([5672, 5673, 5673, 5674, 5674, 5675, 5675, 5676])
    consumer._acked_index[TELEMETRY_3].update([5674, 5675, 5676])
    assert consumer._new_offset(TELEMETRY_3) == 5677
    assert consumer._acked[TELEMETRY_3] == []


def test_a_run_after_a_hole_still_waits_for_the_hole(consumer):
    # Faust's own rule is kept: offsets after an unacknowledged one are not committed.
    consumer._committed_offset[TELEMETRY_3] = 100
    consumer._acked[TELEMETRY_3].extend([100, 101, 101, 104, 105])
    assert consumer._new_offset(TELEMETRY_3) == 102
    assert consumer._new_offset(TELEMETRY_3) is None


def test_resuming_flow_keeps_the_events_an_agent_has_not_read_yet():
    # Table recovery resumes flow after its seek; Faust's resume emptied every agent's queue,
    # and the events fetched just before (offsets already recorded as read) were never
    # delivered again. The queue is the telemetry topic's, made through the app.
    assert isinstance(app.flow_control, FlowControl)
    queue = telemetry_topic.clone(is_iterator=True).queue
    assert queue._flow_control is app.flow_control, "queues must register with ours"
    for offset in (5840, 5841):
        queue.put_nowait(offset)
    app.flow_control.suspend()
    assert not app.flow_control.is_active()
    app.flow_control.resume()
    assert app.flow_control.is_active()
    assert [queue.get_nowait() for _ in range(queue.qsize())] == [5840, 5841]
    # Revoked partitions: Faust clears explicitly, and that still empties the queues.
    queue.put_nowait(5842)
    app.flow_control.clear()
    assert queue.empty()


def test_the_faust_methods_the_transport_overrides_keep_their_signatures():
    # An upgrade of faust-streaming that changes one of them must be read before it is taken.
    assert faust.__version__ == "0.15.3", "faust-streaming is pinned; re-check OVERRIDDEN"
    changed = {
        f"{cls.__qualname__}.{name}": str(inspect.signature(getattr(cls, name)))
        for (cls, name), signature in OVERRIDDEN.items()
        if str(inspect.signature(getattr(cls, name))) != signature
    }
    assert not changed, f"Faust changed what streams/transport.py overrides: {changed}"


def _records(tp: TP, offsets: range) -> list[ConsumerRecord]:
    return [
        ConsumerRecord(
            tp.topic, tp.partition, o, 1_700_000_000_000 + o, 0, b"k", b"v%d" % o, None, 1, 2, ()
        )
        for o in offsets
    ]


@pytest.fixture(autouse=True)
def loop():
    """One event loop per test, current (the consumer's thread takes it when made)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


def _fetch(consumer: Consumer, records: dict[TP, list[ConsumerRecord]]) -> dict:
    """What ``_getmany`` gives when aiokafka fetched ``records`` (the thread is a stand-in:
    no broker here; tests/integration run the real one)."""
    thread = mock.Mock(getmany=mock.AsyncMock(return_value=dict(records)))
    with mock.patch.object(consumer, "_thread", thread):
        return asyncio.get_event_loop().run_until_complete(
            consumer._getmany({*records}, timeout=1.0)
        )


def test_telemetry_comes_as_one_run_per_partition_and_other_topics_per_message(consumer):
    fetched = _fetch(
        consumer,
        {
            TELEMETRY_3: _records(TELEMETRY_3, range(40, 50)),
            ORDERS_0: _records(ORDERS_0, range(7, 10)),
        },
    )
    assert len(fetched[ORDERS_0]) == 3
    [run] = fetched[TELEMETRY_3]
    message = consumer._to_message(TELEMETRY_3, run)
    assert isinstance(message, RunMessage)
    assert (message.topic, message.partition, message.offset) == ("device-telemetry", 3, 49)
    assert [r.offset for r in runs_of([message])] == list(range(40, 50))
    order = consumer._to_message(ORDERS_0, fetched[ORDERS_0][0])
    assert not isinstance(order, RunMessage) and order.offset == 7
    assert list(runs_of([order])) == [order]


@pytest.fixture
def acking():
    """The conductor acknowledges only topics an agent subscribed to, which needs a started
    app; here every topic's acknowledgements count."""
    with mock.patch.object(app.topics, "acks_enabled_for", lambda topic: True):
        yield


def test_a_run_commits_its_offsets_only_once_acknowledged(consumer, acking):
    consumer._committed_offset[TELEMETRY_3] = 40
    first = consumer._to_message(
        TELEMETRY_3,
        _fetch(consumer, {TELEMETRY_3: _records(TELEMETRY_3, range(40, 50))})[TELEMETRY_3][0],
    )
    second = consumer._to_message(
        TELEMETRY_3,
        _fetch(consumer, {TELEMETRY_3: _records(TELEMETRY_3, range(50, 60))})[TELEMETRY_3][0],
    )
    assert consumer._new_offset(TELEMETRY_3) is None, "nothing acknowledged, nothing to commit"
    # Runs are acknowledged in order: the device agent has one actor (Faust's gap of a run is
    # taken in by any later offset acknowledged, so two actors could commit an unscored run).
    assert consumer.ack(first)
    assert consumer._new_offset(TELEMETRY_3) == 50, "the second run is still being scored"
    consumer._committed_offset[TELEMETRY_3] = 50
    assert consumer.ack(second)
    assert consumer._new_offset(TELEMETRY_3) == 60


def test_the_device_agent_acknowledges_runs_in_order():
    import streams.device_faults.agents as devices

    assert devices.track_device_faults.concurrency == 1
    assert telemetry_topic.maxsize is not None, "runs are large: the agent's queue is bounded"


def test_a_seek_forgets_the_runs_fetched_before_it(consumer, acking):
    # A run fetched, then the partition sought back (recovery): the run may never reach the
    # agent, and a later, shorter run must not commit its offsets.
    consumer._committed_offset[TELEMETRY_3] = 40
    _fetch(consumer, {TELEMETRY_3: _records(TELEMETRY_3, range(40, 80))})
    with mock.patch.object(consumer, "_seek", mock.AsyncMock()):
        asyncio.get_event_loop().run_until_complete(consumer.seek(TELEMETRY_3, 40))
    again = consumer._to_message(
        TELEMETRY_3,
        _fetch(consumer, {TELEMETRY_3: _records(TELEMETRY_3, range(40, 60))})[TELEMETRY_3][0],
    )
    assert consumer.ack(again)
    assert consumer._new_offset(TELEMETRY_3) == 60


def test_the_fetch_wait_is_the_setting_not_fausts_fifteen_hundred_ms(consumer):
    async def made():  # aiokafka's consumer takes the running loop
        return consumer._new_consumer_thread()._create_worker_consumer(app.transport)

    made = asyncio.get_event_loop().run_until_complete(made())
    assert made._fetch_max_wait_ms == settings.fetch_wait_ms == 100


def test_the_monitor_counts_a_runs_records_as_messages(consumer):
    # forewarn_worker_messages_total{topic} is what operators read as events/s.
    monitor = app.monitor
    assert isinstance(monitor, Monitor)
    before = monitor.messages_received_by_topic["device-telemetry"]
    run = _fetch(consumer, {TELEMETRY_3: _records(TELEMETRY_3, range(0, 25))})[TELEMETRY_3][0]
    monitor.on_message_in(TELEMETRY_3, 24, consumer._to_message(TELEMETRY_3, run))
    assert monitor.messages_received_by_topic["device-telemetry"] - before == 25
