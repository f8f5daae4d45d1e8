"""Two repairs to Faust's delivery: offsets acknowledged twice, and events cleared on resume.

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

:func:`install` puts both in an app.
"""

from __future__ import annotations

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.queues import FlowControlEvent


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


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose commits follow every acknowledged run of offsets."""

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if acked:
            committed = self._committed_offset[tp]
            acked[:] = settle_acked(acked, committed)
            if committed is not None:
                index = self._acked_index[tp]
                index.difference_update([offset for offset in index if offset < committed])
        return super()._new_offset(tp)


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`Consumer`."""

    Consumer = Consumer


class FlowControl(FlowControlEvent):
    """Faust's flow control of stream queues, whose ``resume`` keeps what the queues hold
    (``clear`` still empties them: Faust calls it when partitions are revoked)."""

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()


def install(app: faust.App) -> None:
    """Make :class:`Transport` the consumer transport of ``app`` (Faust's ``app.transport``
    setter; its URL stays the broker's) and :class:`FlowControl` its flow control. Call it
    before any agent's stream exists: each queue registers with the flow control it is made
    with."""
    app.transport = Transport(app.conf.broker_consumer, app)
    # No loop yet: mode's events take the running loop when first awaited.
    app.flow_control = FlowControl()


__all__ = ["Consumer", "FlowControl", "Transport", "install", "settle_acked"]
