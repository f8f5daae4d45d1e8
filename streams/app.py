"""The Faust application: one app, agents organised by domain, tables with changelogs.

Run a worker with ``python -m streams worker`` (or ``forewarn worker``). Configuration comes from
:class:`forewarn.settings.Settings` (``FOREWARN_*`` variables). Source topics are consumed as raw
bytes and validated by ``forewarn.events.decode``: Faust's own decoding would crash the agent on
the first malformed message, and we want a dead-letter record instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Iterator
from typing import Any

import faust

from forewarn.events import (
    PARTITIONS,
    Alert,
    CustomerSignal,
    CustomerValue,
    DeadLetter,
    DeviceTelemetry,
    Order,
    OutreachTask,
    Ticket,
)
from forewarn.logs import logging_config
from forewarn.settings import Settings
from streams.transport import install as install_transport

settings = Settings()
# Not this module's name: Faust gives the module that defines an App subclass's logger a
# NullHandler, and a worker stopping itself before logging is configured then said nothing.
log = logging.getLogger("forewarn.worker")
#: Events each agent's stream may hold: Faust's default ``stream_buffer_maxsize``, pinned here.
#: Raising it with larger fetches gave 10% more throughput and coincided with one event lost
#: under repeated kill -9 in CI (docs/reliability.md). Agents keep their batches below it.
STREAM_BUFFER = 4096
#: Header naming the consumer group (deployment) that sent a message: groups sharing a broker
#: share its topics, and which group raised an alert must still be told (issue 14).
SENT_BY = "forewarn-group"

#: Exit status of a worker that stopped itself rather than acknowledge work it did not finish.
FAIL_STOP_STATUS = 70
#: Exit status of a worker whose stop did not finish in time (sysexits' EX_TEMPFAIL).
STOP_TIMEOUT_STATUS = 75


def exit_now(status: int) -> None:
    """End the process at once, as a ``kill -9`` would but with the logs flushed: nothing
    after the last commit is acknowledged, and the next worker reads it again (tested to lose
    and double nothing, docs/reliability.md)."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(status)


def stop_deadline(seconds: float) -> threading.Timer:
    """Exit with :data:`STOP_TIMEOUT_STATUS` unless the process has ended ``seconds`` from now.

    A stop stores what was scored, commits and leaves the group; with the broker away the
    changelog writes and the commit are retried without end (aiokafka), and a worker told to
    stop never did (tests/integration/test_faults.py). Past the deadline what it has not
    stored is left unacknowledged, as after a crash."""

    def expire() -> None:
        log.critical(
            "the worker's stop did not finish within %g s (FOREWARN_STOP_TIMEOUT_S): is the "
            "broker at %s reachable? Exiting now; what was not stored is not acknowledged, "
            "and the next worker reads it again",
            seconds,
            settings.kafka_bootstrap,
        )
        exit_now(STOP_TIMEOUT_STATUS)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True  # a stop that finishes in time ends the process, and the timer with it
    timer.start()
    return timer


class App(faust.App):
    """Faust's app whose stop has a deadline (:func:`stop_deadline`) in a worker process."""

    #: Seconds a stop may take; set by the worker's entry point (streams/__main__.py) only: an
    #: app stopped inside another process (a test, a benchmark) must not end that process.
    stop_timeout_s: float | None = None

    async def on_stop(self) -> None:
        if self.stop_timeout_s is not None:
            stop_deadline(self.stop_timeout_s)
        await super().on_stop()


app = App(
    settings.group_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    # SASL/SCRAM user on a secured broker (docker-compose.yml); None on the local open one.
    broker_credentials=settings.faust_credentials(),
    # Tables are rebuilt from their changelog topics on start; a local RocksDB store would only
    # make restarts faster.
    store="memory://",
    key_serializer="raw",
    value_serializer="raw",
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    # /metrics and /healthz (streams/metrics.py) on Faust's web server; port 0 turns it off.
    web_enabled=settings.worker_port > 0,
    web_bind=settings.worker_host,
    web_host=settings.worker_host,
    web_port=settings.worker_port or 6066,
    logging_config=logging_config(),
    # Faust keeps table stores and worker data here, not in the current directory.
    datadir=str(settings.home / "faust"),
    # A crashed worker's partitions move to the others after this long (Faust: 60 s).
    broker_session_timeout=15.0,
    stream_buffer_maxsize=STREAM_BUFFER,
    # No standby replicas: with Faust's default (1), two workers' tables went back to states
    # they had written ~0.6 s before (53 regressions and 50 false "no reading" alerts in
    # 100,000 events, none with one worker or with 0 standbys; docs/reliability.md). A worker
    # taking over partitions rebuilds them from the changelog instead.
    table_standby_replicas=0,
    # A checkpoint sends thousands of ~3 KB states at once (streams/checkpoint.py); with
    # aiokafka's 16 KiB batches each partition's sends waited for a broker round trip every
    # five states. Under the broker's 1 MiB message limit (message.max.bytes).
    producer_max_batch_size=512 * 1024,
    # A fetch brings up to 4 MiB a partition (~13,000 readings, one run) instead of 1 MiB:
    # under a backlog the device agent waited for runs 15% of its time with 1 MiB, 6% with
    # 4 MiB (300,000 events, docs/benchmarks.md). A quiet stream's runs are as small as before.
    consumer_max_fetch_size=4 * 1024 * 1024,
    autodiscover=[
        "streams.intake",
        "streams.device_faults",
        "streams.customer_risk",
        "streams.outreach_sink",
        "streams.metrics",
    ],
    origin="streams",
)
# Topic names come from the contracts (forewarn/events.py), the one place they are defined.
TELEMETRY, ORDERS, TICKETS, ALERTS = (c.topic for c in (DeviceTelemetry, Order, Ticket, Alert))
# Before any topic is declared: the conductor takes the app's transport when first built.
# Readings reach their agent as one run per partition and fetch (streams/transport.py).
install_transport(app, batched_topics={TELEMETRY}, fetch_wait_ms=settings.fetch_wait_ms)

#: Runs of readings the device agent's queue holds (each up to a fetch of one partition, 4 MiB):
#: Faust pauses the partition's fetching when it is full.
TELEMETRY_RUNS_BUFFERED = 16
telemetry_topic = app.topic(TELEMETRY, internal=False)
# app.topic takes maxsize but does not pass it on (faust-streaming 0.15.3); agents' queues are
# made from the topic's.
telemetry_topic.maxsize = TELEMETRY_RUNS_BUFFERED
orders_topic = app.topic(ORDERS, internal=False)
tickets_topic = app.topic(TICKETS, internal=False)
# The lake also keeps the alerts, so nightly features see device faults as the stream did.
archived_topics = app.topic(TELEMETRY, ORDERS, TICKETS, ALERTS, internal=False)
# The intake agent archives these; readings are archived by the device agent, which decodes
# them anyway: one Faust stream and one decode per reading (docs/benchmarks.md).
intake_topics = app.topic(ORDERS, TICKETS, ALERTS, internal=False)
alerts_topic = app.topic(ALERTS, internal=False)
# Everything keyed by customer_id, co-partitioned, for the customer-state agent.
customer_topics = app.topic(
    ORDERS, TICKETS, CustomerValue.topic, CustomerSignal.topic, internal=False
)
customer_signals_topic = app.topic(CustomerSignal.topic, internal=False)
outreach_tasks_topic = app.topic(OutreachTask.topic, internal=False)
dead_letters_topic = app.topic(DeadLetter.topic, internal=False)


async def send(topic: faust.types.TopicT, key: bytes, value: bytes) -> Awaitable[Any]:
    """Hand a message to the producer; returns what resolves once the broker has it. Each
    message says which group sent it (``SENT_BY``)."""
    return await topic.send(key=key, value=value, headers={SENT_BY: settings.group_id.encode()})


async def deliver(topic: faust.types.TopicT, key: bytes, value: bytes) -> None:
    """Send and wait until the broker has it. Detectors deliver an alert *before* writing the
    state that remembers raising it: a worker killed in between then raises it again after
    the restart (the outreach store ignores the repeat), instead of remembering an alert that
    never left (found by tests/integration/test_faults.py). The device agent sends instead,
    and its checkpoint waits for the alerts before it writes the states (streams/checkpoint.py)."""
    await (await send(topic, key, value))


async def partitions_known(table: faust.types.TableT) -> None:
    """Wait until the producer knows the partitions of ``table``'s changelog topic.

    A changelog topic created at startup can be missing from the producer's metadata (Kafka's
    metadata lags the topic's creation). When the device table asked the producer's
    partitioner for each write's partition (``use_partitioner=True``, until issue 19), the
    write then raised ``TypeError: 'NoneType' object is not iterable`` in aiokafka's
    ``_partition``, which crashed the device agent five times in one CI run (issue 14). Its
    checkpoints now give each write's partition, but still call this first, under retry: a
    broker that cannot tell the topic's partitions is waited for there, instead of failing
    the checkpoint's sends. aiokafka's ``partitions_for`` fetches the topic's metadata and
    keeps it from then on; a no-op once known.
    """
    # Faust's producer has no public way to reach aiokafka's metadata wait.
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
    await producer.partitions_for(table.changelog_topic.get_topic_name())


@contextlib.contextmanager
def fail_stop(what: str) -> Iterator[None]:
    """Run an agent's handling of one batch (or event); on an error nobody foresaw, stop the
    worker at once instead of letting the exception end the agent.

    An exception leaving a ``take_events`` block acknowledges the batch, so its events were
    lost unscored (or unarchived): a crash in the device agent lost 7,704 readings of the
    hostile-input test. Stopping without acknowledging is what a ``kill -9`` does, and that
    is tested to lose and double nothing (docs/reliability.md): the batch is read again after
    the restart (compose restarts the worker; by hand, run it again). Foreseen failures (bad
    input, a broker or database away) are handled where they happen and never get here.
    """
    try:
        yield
    except Exception:
        log.critical(
            "%s failed; stopping this worker without acknowledging the batch, which is read "
            "again when it restarts",
            what,
            exc_info=True,
        )
        exit_now(FAIL_STOP_STATUS)
