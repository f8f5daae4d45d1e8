"""Device faults: per-device detector state in a table, alerts out to the alerts topic."""

from __future__ import annotations

import logging

from forewarn.events import CustomerSignal, DeviceTelemetry, InvalidEvent, decode, encode
from streams.app import alerts_topic, app, customer_signals_topic, telemetry_topic
from streams.device_faults.detector import DeviceFaultDetector, DeviceState

log = logging.getLogger(__name__)

detector = DeviceFaultDetector()
# Keyed by device_id like its source topic, so a device's state lives in its partition;
# keys and values go to the changelog as JSON.
device_to_fault_state = app.Table("device-to-fault-state", default=dict, partitions=4)


@app.agent(telemetry_topic)
async def track_device_faults(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        try:
            reading = decode(telemetry_topic.get_topic_name(), event.value)
        except InvalidEvent:
            continue  # dead-lettered by streams.intake
        assert isinstance(reading, DeviceTelemetry)
        state = DeviceState.from_dict(device_to_fault_state[reading.device_id])
        alert = detector.update(state, reading)
        device_to_fault_state[reading.device_id] = state.to_dict()
        if alert is not None:
            log.info("alert %s %s: %s", alert.dedup_key, alert.severity, alert.explanation)
            await alerts_topic.send(key=alert.dedup_key.encode(), value=encode(alert))
            # The customer's risk takes faults on their devices into account.
            signal = CustomerSignal(**alert.model_dump())
            await customer_signals_topic.send(key=signal.key.encode(), value=encode(signal))
