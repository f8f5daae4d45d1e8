"""The worker's Kafka transport (streams/transport.py): commits follow every acknowledged run
of offsets, even when a partition's first messages were fetched and acknowledged twice; and
events handed to an agent's queue stay there when flow resumes."""

from __future__ import annotations

import pytest
from faust.types import TP

from streams.app import app, telemetry_topic
from streams.transport import Consumer, FlowControl

TELEMETRY_3 = TP("device-telemetry", 3)


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
