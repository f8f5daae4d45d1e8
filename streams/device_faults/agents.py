"""Device faults: readings taken in (archived, the invalid dead-lettered) and scored in one
pass; per-device detector state in a table, alerts out to the alerts topic."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from forewarn.events import Alert, CustomerSignal, DeadLetter, DeviceTelemetry, encode
from streams.app import (
    alerts_topic,
    app,
    customer_signals_topic,
    deliver,
    partitions_known,
    settings,
    telemetry_topic,
)
from streams.continuity import continuity_of, fill_holes, records_of, with_retry
from streams.dead_letters import counters, dead_letter, reject
from streams.device_faults.detector import DeviceFaultDetector, DeviceState
from streams.intake.agents import take_in

SILENCE_CHECK_EVERY_S = 3600.0  # event-time seconds between two silence scans of a partition
# Readings per batch, below the stream buffer (streams.app.STREAM_BUFFER).
BATCH = 4000
# How long a batch waits to fill: the floor of an alert's latency at a steady input rate.
# 0.05 s cost 30% of the throughput (batches then wait on Faust's message delivery), see
# docs/benchmarks.md.
BATCH_WITHIN_S = 0.5

log = logging.getLogger(__name__)

detector = DeviceFaultDetector()
# Readings the stream skipped are read back and scored (streams/continuity.py).
continuity = continuity_of(app, settings.kafka_bootstrap, settings.group_id)


# Keyed by device_id like its source topic, so a device's state lives in its partition;
# keys and values go to the changelog as JSON. use_partitioner: the changelog partition comes
# from the key (the same partitioner as the source topic's producers), not from the event
# being processed, so a batch can write the states of devices from several partitions.
device_to_fault_state = app.Table(
    "device-to-fault-state", default=dict, partitions=4, use_partitioner=True
)


# Event-time watermark per partition (derived, rebuilt from the stream after a restart).
partition_watermark: dict[int, float] = {}
partition_next_scan: dict[int, float] = {}


@app.agent(telemetry_topic)
async def track_device_faults(stream):  # type: ignore[no-untyped-def]
    """Readings in batches: each device's state is read once per batch, its alerts are
    delivered, then its state is written once (one changelog message per device and batch,
    not per reading: the changelog was the worker's largest cost, bench/stream.py)."""
    async for batch in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        states: dict[str, DeviceState] = {}
        alerts: list[Alert] = []
        letters: list[DeadLetter] = []
        records = await fill_holes(continuity, records_of(batch), counters, "telemetry")
        # Archived (and the invalid dead-lettered) before any is scored or the batch acked.
        for (topic, partition, offset, value), reading in await take_in(records):
            assert isinstance(reading, DeviceTelemetry)
            state = states.get(reading.device_id)
            if state is None:
                state = DeviceState.from_dict(device_to_fault_state[reading.device_id])
                states[reading.device_id] = state
            if state.partition == partition and offset <= state.last_offset:
                # Replayed after a crash: the changelog already holds its effect. Not late.
                counters["telemetry.replayed"] += 1
                continue
            late = detector.lateness_hours(state, reading)
            state.partition, state.last_offset = partition, offset
            refused = detector.owner_conflict(state, reading)
            if late > detector.lateness_hours_max:
                refused = (
                    f"late by {late:.1f} h, beyond the {detector.lateness_hours_max:g} h "
                    f"bound of device-fault detection (archived, not scored)"
                )
            if refused is not None:
                kind = "late" if late > detector.lateness_hours_max else "owner"
                letters.append(dead_letter(topic, partition, offset, value, refused))
                counters[f"telemetry.refused.{kind}"] += 1
                continue
            try:
                alert = detector.update(state, reading)
            except Exception as exc:  # one reading must not stop detection for the others
                log.exception("device detector failed on %s[%d]@%d", topic, partition, offset)
                reason = f"the device detector failed on this reading (archived): {exc!r}"
                letters.append(dead_letter(topic, partition, offset, value, reason))
                continue
            if alert is not None:
                alerts.append(alert)
            counters["telemetry.processed"] += 1
            alerts += scan_for_silence(partition, reading.event_time.timestamp(), states)
        await reject(letters, "refused")
        for alert in alerts:
            await publish(alert)  # delivered before the states that remember them
        # A write that raises would end the agent and acknowledge the batch unscored.
        await with_retry(lambda: partitions_known(device_to_fault_state), "changelog metadata")
        for device_id, state in states.items():
            device_to_fault_state[device_id] = state.to_dict()


def scan_for_silence(
    partition: int, event_time: float, states: dict[str, DeviceState]
) -> list[Alert]:
    """Once per event-time hour of a partition, check its devices for silence. States the
    batch already holds are checked (and updated) in ``states``; others are loaded into it."""
    # The watermark follows event time but never passes this worker's clock: one device whose
    # clock runs ahead (a time-zone bug: hours; anything beyond MAX_AHEAD is refused at
    # decoding) cannot make every other device of its partition look silent. Replays of
    # history are far behind the clock and unaffected.
    watermark = max(min(event_time, time.time()), partition_watermark.get(partition, 0.0))
    partition_watermark[partition] = watermark
    if watermark < partition_next_scan.get(partition, 0.0):
        return []
    partition_next_scan[partition] = watermark + SILENCE_CHECK_EVERY_S
    now = datetime.fromtimestamp(watermark, UTC)
    alerts = []
    for device_id, data in list(device_to_fault_state.items()):
        state = states.get(device_id)
        if state is None:
            if data.get("partition") != partition:
                continue
            state = DeviceState.from_dict(data)
        elif state.partition != partition:
            continue
        alert = detector.check_silence(state, now)
        if alert is not None:
            states[device_id] = state
            alerts.append(alert)
    return alerts


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
