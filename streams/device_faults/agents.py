"""Device faults: per-device detector state in a table, alerts out to the alerts topic."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from forewarn.events import Alert, CustomerSignal, DeviceTelemetry, InvalidEvent, decode, encode
from streams.app import alerts_topic, app, customer_signals_topic, deliver, telemetry_topic
from streams.dead_letters import counters, dead_letter, send_dead_letter
from streams.device_faults.detector import DeviceFaultDetector, DeviceState

SILENCE_CHECK_EVERY_S = 3600.0  # event-time seconds between two silence scans of a partition

log = logging.getLogger(__name__)

detector = DeviceFaultDetector()
# Keyed by device_id like its source topic, so a device's state lives in its partition;
# keys and values go to the changelog as JSON.
device_to_fault_state = app.Table("device-to-fault-state", default=dict, partitions=4)


# Event-time watermark per partition (derived, rebuilt from the stream after a restart).
partition_watermark: dict[int, float] = {}
partition_next_scan: dict[int, float] = {}


@app.agent(telemetry_topic)
async def track_device_faults(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        msg = event.message
        try:
            reading = decode(msg.topic, event.value)
        except InvalidEvent:
            continue  # dead-lettered by streams.intake
        assert isinstance(reading, DeviceTelemetry)
        state = DeviceState.from_dict(device_to_fault_state[reading.device_id])
        if state.partition == msg.partition and msg.offset <= state.last_offset:
            # Replayed after a crash: the changelog already holds its effect. Not late.
            counters["telemetry.replayed"] += 1
            continue
        late = detector.lateness_hours(state, reading)
        if late > detector.lateness_hours_max:
            reason = (
                f"late by {late:.1f} h, beyond the {detector.lateness_hours_max:g} h "
                f"bound of device-fault detection (archived, not scored)"
            )
            await send_dead_letter(
                dead_letter(msg.topic, msg.partition, msg.offset, event.value, reason), "late"
            )
            state.partition, state.last_offset = msg.partition, msg.offset
            device_to_fault_state[reading.device_id] = state.to_dict()
            continue
        state.partition, state.last_offset = msg.partition, msg.offset
        alert = detector.update(state, reading)
        if alert is not None:
            await publish(alert)  # delivered before the state that remembers it
        device_to_fault_state[reading.device_id] = state.to_dict()
        counters["telemetry.processed"] += 1
        for device_id, silent_state, silent in scan_for_silence(
            msg.partition, reading.event_time.timestamp()
        ):
            await publish(silent)
            device_to_fault_state[device_id] = silent_state.to_dict()


def scan_for_silence(partition: int, event_time: float) -> list[tuple[str, DeviceState, Alert]]:
    """Once per event-time hour of a partition, check its devices for silence: the alerts
    with the device states to write once each alert is delivered.

    Runs inside the agent, for the partition of the current event, so the table writes go to
    the right changelog partition.
    """
    watermark = max(event_time, partition_watermark.get(partition, 0.0))
    partition_watermark[partition] = watermark
    if watermark < partition_next_scan.get(partition, 0.0):
        return []
    partition_next_scan[partition] = watermark + SILENCE_CHECK_EVERY_S
    now = datetime.fromtimestamp(watermark, UTC)
    alerts = []
    for device_id, data in list(device_to_fault_state.items()):
        if data.get("partition") != partition:
            continue
        state = DeviceState.from_dict(data)
        alert = detector.check_silence(state, now)
        if alert is not None:
            alerts.append((device_id, state, alert))
    return alerts


async def publish(alert: Alert) -> None:
    log.info("alert %s %s: %s", alert.dedup_key, alert.severity, alert.explanation)
    counters[f"alerts.{alert.kind}"] += 1
    await deliver(alerts_topic, alert.dedup_key.encode(), encode(alert))
    # The customer's risk takes faults on their devices into account.
    signal = CustomerSignal(**alert.model_dump())
    await deliver(customer_signals_topic, signal.key.encode(), encode(signal))
