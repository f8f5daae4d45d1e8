"""Device faults: readings taken in (archived, the invalid dead-lettered) and scored in one
pass; per-device detector state in a table, alerts out to the alerts topic."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from typing import Any

import faust

from forewarn.events import PARTITIONS, Alert, CustomerSignal, encode
from forewarn.lake import ArrowEvents
from streams.app import (
    alerts_topic,
    app,
    customer_signals_topic,
    fail_stop,
    partitions_known,
    send,
    settings,
    telemetry_topic,
)
from streams.checkpoint import Checkpoint
from streams.continuity import continuity_of, fill_holes, records_of
from streams.dead_letters import archive, counters, dead_letter, reject, unreadable_letters
from streams.device_faults.detector import DeviceFaultDetector, DeviceState
from streams.device_faults.step import DeviceFaultStep
from streams.intake.agents import validate
from streams.retry import with_retry
from streams.tables import stored_table
from streams.transport import before_waiting_for_acks

log = logging.getLogger(__name__)

detector = DeviceFaultDetector()
# Readings the stream skipped are read back and scored (streams/continuity.py).
continuity = continuity_of(app, settings.kafka_bootstrap, settings.group_id)


# Keyed by device_id; keys and values go to the changelog as JSON, each state to its device's
# telemetry partition (``DeviceState.partition``, written by the checkpoint): a worker given a
# partition recovers that changelog partition only. Until issue 19 the changelog partition came
# from the key (use_partitioner), hashed as JSON text ('"D00013"') where producers hash the
# bare id: three devices in four had their state in another partition, and a worker taking a
# partition over started them cold or scored their uncommitted readings again
# (tests/integration/test_scale_out.py; docs/operations.md has the one-off migration).
device_to_fault_state = stored_table(
    app, "device-to-fault-state", default=dict, partitions=PARTITIONS
)


async def _changelog_known() -> None:
    # A write that raises would stop the worker; broker trouble waits instead (retry.py).
    await with_retry(
        lambda: partitions_known(device_to_fault_state), "changelog metadata", (Exception,), log
    )


#: Seconds a scored run waits for its checkpoint at most, from the checkpoint's first run: what
#: a crash or a rebalance reads again, never what an alert waits for (streams/checkpoint.py).
CHECKPOINT_S = settings.checkpoint_s
#: Readings that make a checkpoint due at once (memory; a lake file's size).
CHECKPOINT_READINGS = 20_000
checkpoint = Checkpoint(
    device_to_fault_state,
    archive,
    _changelog_known,
    CHECKPOINT_S,
    CHECKPOINT_READINGS,
    encode=DeviceState.to_dict,
    collect=ArrowEvents,
)

# Readings are scored by a Kafka-free step (the replay and the tests run the same one); its
# partition clocks are rebuilt from the table when a partition comes back. It reads the states
# the checkpoint holds before the table's.
step = DeviceFaultStep(device_to_fault_state, detector=detector, held=checkpoint.held)


async def forget_revoked(sender: faust.App, revoked: Iterable[Any], **kwargs: Any) -> None:
    partitions = {tp.partition for tp in revoked if tp.topic == telemetry_topic.get_topic_name()}
    step.forget(partitions)
    checkpoint.settle(lambda state: state.partition in partitions)


app.on_partitions_revoked.connect(forget_revoked)  # held strongly, as in continuity_of


@app.agent(telemetry_topic, concurrency=1)
async def track_device_faults(stream):  # type: ignore[no-untyped-def]
    """Readings in runs: each event is what one fetch gave for one partition
    (streams/transport.py). A run is scored at once and its alerts sent; its readings and
    states are stored at the next checkpoint, which acknowledges it (streams/checkpoint.py).
    One actor, so runs are acknowledged in offset order."""
    async for run in stream.noack().events():
        async with checkpoint.lock:
            with fail_stop("scoring a run of readings"):
                await score(run)
                await store_if_due()


@app.timer(CHECKPOINT_S / 4)
async def checkpoint_when_quiet() -> None:
    """A checkpoint due while no run follows (a quiet stream, or a rebalance that waits for
    every run to be acknowledged) is made here."""
    async with checkpoint.lock:
        with fail_stop("storing a checkpoint of the device agent"):
            await store_if_due()


@before_waiting_for_acks
async def store_now() -> None:
    """A rebalance or a stop waits for every run to be acknowledged, and the timer ends when
    the app stops: the pending checkpoint is stored now (streams/transport.py)."""
    async with checkpoint.lock:
        with fail_stop("storing a checkpoint of the device agent"):
            await store_if_due(now=True)


async def store_if_due(now: bool = False) -> None:
    """Make the checkpoint if it is due, or ``now`` (the caller holds its lock); raise if the
    last one failed."""
    checkpoint.raise_failure()
    if now or checkpoint.due():
        counters["archived"] += await checkpoint.store()


async def score(run: Any) -> None:
    """Validate and score one run: dead letters and alerts go out now, its readings and
    states to the checkpoint. Each device's state is read once per run; the checkpoint waits
    until the broker has the run's alerts before it stores the states remembering them."""
    records = await fill_holes(continuity, records_of([run]), counters, "telemetry")
    taken, invalid = validate(records)
    await reject(invalid, "invalid")
    outcome = step.run((p, o, reading) for (_, p, o, _), reading in taken)
    counters["telemetry.processed"] += outcome.counts["processed"]
    counters["telemetry.replayed"] += outcome.counts["replayed"]
    letters = []
    # Built only when needed: for every run it was 3% of the agent's time.
    sources = {(p, o): (t, value) for (t, p, o, value), _ in taken} if outcome.refused else {}
    for refusal in outcome.refused:
        if refusal.kind != "error":
            counters[f"telemetry.refused.{refusal.kind}"] += 1
        topic, value = sources[(refusal.partition, refusal.offset)]
        letters.append(dead_letter(topic, refusal.partition, refusal.offset, value, refusal.reason))
    await reject(letters, "refused")
    if outcome.unreadable:
        await reject(
            unreadable_letters(outcome.unreadable, device_to_fault_state), "state_unreadable"
        )
    # Sent now; the checkpoint waits for them before it writes the states that remember them.
    sent = [pending for alert in outcome.alerts for pending in await publish(alert)]
    states = {key: (state.partition, state) for key, state in outcome.states.items()}
    checkpoint.add(run, [reading for _, reading in taken], states, sent)


async def publish(alert: Alert) -> list[Awaitable[Any]]:
    """Send ``alert`` and its customer signal; returns what resolves once the broker has
    them."""
    log.info(
        "alert %s %s %s %s at %s",
        alert.alert_id,
        alert.dedup_key,
        alert.severity,
        alert.fault_kind,
        alert.event_time.isoformat(),
    )
    counters[f"alerts.{alert.kind}"] += 1
    # The customer's risk takes faults on their devices into account.
    signal = CustomerSignal(**alert.model_dump())
    return [
        await send(alerts_topic, alert.dedup_key.encode(), encode(alert)),
        await send(customer_signals_topic, signal.key.encode(), encode(signal)),
    ]
