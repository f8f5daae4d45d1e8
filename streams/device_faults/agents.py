"""Device faults: readings taken in (archived, the invalid dead-lettered) and scored in one
pass; per-device detector state in a table, alerts out to the alerts topic."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import faust

from forewarn.events import PARTITIONS, Alert, CustomerSignal, encode
from streams.app import (
    alerts_topic,
    app,
    customer_signals_topic,
    deliver,
    fail_stop,
    partitions_known,
    settings,
    telemetry_topic,
)
from streams.continuity import continuity_of, fill_holes, records_of
from streams.dead_letters import counters, dead_letter, reject
from streams.device_faults.detector import DeviceFaultDetector
from streams.device_faults.step import DeviceFaultStep
from streams.intake.agents import take_in
from streams.retry import with_retry
from streams.tables import stored_table

log = logging.getLogger(__name__)

detector = DeviceFaultDetector()
# Readings the stream skipped are read back and scored (streams/continuity.py).
continuity = continuity_of(app, settings.kafka_bootstrap, settings.group_id)


# Keyed by device_id; keys and values go to the changelog as JSON. A state goes to the
# changelog partition of the run being scored (Faust's default for a table: the current
# event's partition), which is its device's telemetry partition: a run is one partition, and
# a worker given a partition recovers that changelog partition only. Until issue 19 the
# changelog partition came from the key (use_partitioner), hashed as JSON text ('"D00013"')
# where producers hash the bare id: three devices in four had their state in another
# partition, and a worker taking a partition over started them cold or scored their
# uncommitted readings again (tests/integration/test_scale_out.py; docs/operations.md has
# the one-off migration).
device_to_fault_state = stored_table(
    app, "device-to-fault-state", default=dict, partitions=PARTITIONS
)


# Readings are scored by a Kafka-free step (the replay and the tests run the same one); its
# partition clocks are rebuilt from the table when a partition comes back.
step = DeviceFaultStep(device_to_fault_state, detector=detector)


async def forget_revoked(sender: faust.App, revoked: Iterable[Any], **kwargs: Any) -> None:
    step.forget(tp.partition for tp in revoked if tp.topic == telemetry_topic.get_topic_name())


app.on_partitions_revoked.connect(forget_revoked)  # held strongly, as in continuity_of


@app.agent(telemetry_topic, concurrency=1)
async def track_device_faults(stream):  # type: ignore[no-untyped-def]
    """Readings in runs: each event is what one fetch gave for one partition
    (streams/transport.py), acknowledged as one once the block has run. Each device's state is
    read once per run, its alerts are delivered, then its state is written once (one changelog
    message per device and run, not per reading: the changelog was the worker's largest cost,
    bench/stream.py). One actor, so runs are acknowledged in offset order."""
    async for event in stream.events():
        with fail_stop("scoring a run of readings"):
            await score([event])


async def score(batch: list[Any]) -> None:
    """Take in, score and dead-letter one batch; deliver its alerts, then write its states."""
    records = await fill_holes(continuity, records_of(batch), counters, "telemetry")
    # Archived (and the invalid dead-lettered) before any is scored or the batch acked.
    taken = await take_in(records)
    sources = {(p, o): (t, value) for (t, p, o, value), _ in taken}
    outcome = step.run((p, o, reading) for (_, p, o, _), reading in taken)
    counters["telemetry.processed"] += outcome.counts["processed"]
    counters["telemetry.replayed"] += outcome.counts["replayed"]
    letters = []
    for refusal in outcome.refused:
        if refusal.kind != "error":
            counters[f"telemetry.refused.{refusal.kind}"] += 1
        topic, value = sources[(refusal.partition, refusal.offset)]
        letters.append(dead_letter(topic, refusal.partition, refusal.offset, value, refusal.reason))
    await reject(letters, "refused")
    for alert in outcome.alerts:
        await publish(alert)  # delivered before the states that remember them
    # A write that raises would end the agent and acknowledge the batch unscored.
    await with_retry(
        lambda: partitions_known(device_to_fault_state),
        "changelog metadata",
        (Exception,),
        log,
    )
    for device_id, state in outcome.states.items():
        device_to_fault_state[device_id] = state.to_dict()
    # The run is acknowledged when this returns: its states must be in the changelog by then
    # (a write that failed raises, and fail_stop stops the worker unacknowledged).
    await device_to_fault_state.stored()


async def publish(alert: Alert) -> None:
    log.info(
        "alert %s %s %s %s at %s",
        alert.alert_id,
        alert.dedup_key,
        alert.severity,
        alert.fault_kind,
        alert.event_time.isoformat(),
    )
    counters[f"alerts.{alert.kind}"] += 1
    await deliver(alerts_topic, alert.dedup_key.encode(), encode(alert))
    # The customer's risk takes faults on their devices into account.
    signal = CustomerSignal(**alert.model_dump())
    await deliver(customer_signals_topic, signal.key.encode(), encode(signal))
