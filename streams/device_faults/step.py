"""The device agent's detection step, Kafka-free: what a worker does with the readings of a
batch, and what the replay and the tests do with the same readings.

Same events, same alerts (issue 14): the alerts depend only on each partition's readings in
offset order, never on how they were batched, how partitions were interleaved, how many
workers shared them or where a worker restarted. What makes it so:

* A device's state is read from the store once per batch and written back by the caller after
  the batch; within a batch the step keeps it in ``states``. Readings at or below the offset a
  state last applied are replays (``replayed``), not new readings.
* Silence needs a clock. A partition's clock is the highest event time of its scored readings,
  each capped at the worker's clock when its batch was scored (a device whose clock runs hours ahead
  cannot make its neighbours look silent; histories are far behind the clock and unaffected).
  Every device state keeps its own share of that clock (``clock_mark``), so the partition's
  clock is rebuilt exactly from the store after a restart or a rebalance: it was kept in the
  worker's memory before, and a restarted worker started a new schedule.
* Silence is checked when a partition's clock reaches a whole event-time hour, as of that hour
  (the scan instants were one hour after whatever reading a worker happened to start on).
  The devices checked are all of the partition's, those of the batch included (a device first
  written in the same batch was skipped before).

Examples
--------
>>> from datetime import datetime, timedelta, UTC
>>> from forewarn.events import DeviceTelemetry
>>> t0 = datetime(2026, 1, 5, tzinfo=UTC)
>>> def reading(device, hour):
...     return DeviceTelemetry(event_id=f"{device}-{hour}", event_time=t0 + timedelta(hours=hour),
...                            device_id=device, customer_id="C1", device_type="heat_pump",
...                            metrics={"vibration_mm_s": 2.0 + 0.01 * (hour % 5)})
>>> store = {}
>>> step = DeviceFaultStep(store)
>>> readings = [(0, 2 * h + i, reading(d, h)) for h in range(12) for i, d in enumerate("AB")
...             if d == "A" or h < 6]
>>> outcome = step.run(readings)
>>> store.update({k: s.to_dict() for k, s in outcome.states.items()})
>>> [(a.device_id, a.fault_kind, a.event_time.isoformat()) for a in outcome.alerts]
[('B', 'silence', '2026-01-05T09:00:00+00:00')]
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from forewarn.events import Alert, DeviceTelemetry
from streams.device_faults.detector import DeviceFaultDetector, DeviceState
from streams.unreadable import Unreadable, reason_of

#: Event-time seconds between two silence checks of a partition; checks fall on multiples.
SILENCE_SCAN_S = 3600

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """A reading the step did not score: ``kind`` is ``late``, ``owner`` or ``error``."""

    partition: int
    offset: int
    kind: str
    reason: str


@dataclass
class Outcome:
    """What one batch gave: alerts in the order raised, refusals, counters, the states to
    write back (every state read or changed), and stored states that could not be read."""

    alerts: list[Alert] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    states: dict[str, DeviceState] = field(default_factory=dict)
    unreadable: list[Unreadable] = field(default_factory=list)


class DeviceFaultStep:
    """Scores readings ``(partition, offset, reading)`` against states kept in ``store``.

    Parameters
    ----------
    store : Mapping[str, dict]
        Device states by device id as ``DeviceState.to_dict()`` documents: the agent's table,
        or a plain dict. Read only; the caller writes ``Outcome.states`` back after each batch.
    detector : DeviceFaultDetector, optional
    clock : callable, optional
        Epoch seconds now; no partition's silence clock passes it (``math.inf`` for none).
    held : Mapping[str, DeviceState], optional
        States newer than the store's, by device id: read before the store (the agent's
        checkpoint holds the states its runs changed until it writes them).
    """

    def __init__(
        self,
        store: Mapping[str, dict[str, Any]],
        *,
        detector: DeviceFaultDetector | None = None,
        clock: Callable[[], float] = time.time,
        held: Mapping[str, DeviceState] | None = None,
    ) -> None:
        self.store = store
        self.held = held if held is not None else {}
        self.detector = detector or DeviceFaultDetector()
        self.clock = clock
        self._clocks: dict[int, float | None] = {}  # derived from the store, see forget()

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Partitions revoked (all if None): their clocks are rebuilt from the store."""
        for partition in list(self._clocks) if partitions is None else partitions:
            self._clocks.pop(partition, None)

    def run(self, readings: Iterable[tuple[int, int, DeviceTelemetry]]) -> Outcome:
        """Score one batch; each partition's readings must come in offset order."""
        out = Outcome()
        detector, states, clocks = self.detector, out.states, self._clocks
        late_max = detector.lateness_hours_max
        # The worker's clock, read once for the batch (per reading it was 4% of the step).
        cap = self.clock()
        processed = replayed = 0
        for partition, offset, reading in readings:
            state = states.get(reading.device_id)
            if state is None:
                state = self._state(reading.device_id, states, (out, partition, offset))
            if state.partition == partition and offset <= state.last_offset:
                # Replayed after a crash: the store already holds its effect. Not late.
                replayed += 1
                continue
            at = reading.event_time.timestamp()
            # Only a reading older than the device's latest can be late.
            late = 0.0
            if state.last_seen is not None and at < state.last_seen:
                late = detector.lateness_hours(state, reading)
            state.partition, state.last_offset = partition, offset
            if late > late_max:
                reason = (
                    f"late by {late:.1f} h, beyond the {late_max:g} h "
                    f"bound of device-fault detection (archived, not scored)"
                )
                out.refused.append(Refusal(partition, offset, "late", reason))
                continue
            if (conflict := detector.owner_conflict(state, reading)) is not None:
                out.refused.append(Refusal(partition, offset, "owner", conflict))
                continue
            try:
                alert = detector.update(state, reading)
            except Exception as exc:  # one reading must not stop detection for the others
                log.exception("device detector failed on partition %d@%d", partition, offset)
                reason = f"the device detector failed on this reading (archived): {exc!r}"
                out.refused.append(Refusal(partition, offset, "error", reason))
                continue
            if alert is not None:
                out.alerts.append(alert)
            processed += 1
            before = (
                clocks[partition]
                if partition in clocks
                else self._partition_clock(partition, states, (out, partition, offset))
            )
            mark = at if at < cap else cap
            prior = state.clock_mark or mark
            state.clock_mark = mark if mark > prior else prior
            after = mark if before is None or mark > before else before
            clocks[partition] = after
            if before is not None and after // SILENCE_SCAN_S > before // SILENCE_SCAN_S:
                at_hour = after // SILENCE_SCAN_S * SILENCE_SCAN_S
                out.alerts += self._scan(partition, at_hour, states, (out, partition, offset))
        for kind, n in (("processed", processed), ("replayed", replayed)):
            if n:
                out.counts[kind] += n
        return out

    def _state(self, device_id: str, states: dict[str, DeviceState], where: _Where) -> DeviceState:
        state = states.get(device_id)
        if state is None:
            state = self.held.get(device_id)
            if state is None:
                state = _load(device_id, self.store.get(device_id), where)
            states[device_id] = state
        return state

    def _partition_clock(
        self, partition: int, states: dict[str, DeviceState], where: _Where
    ) -> float | None:
        """The partition's silence clock: the highest ``clock_mark`` of its devices."""
        if partition not in self._clocks:
            devices = self._devices(partition, states, where)
            marks = [m for s in devices if (m := _mark(s, self.clock))]
            self._clocks[partition] = max(marks, default=None)
        return self._clocks[partition]

    def _devices(
        self,
        partition: int,
        states: dict[str, DeviceState],
        where: _Where,
        wanted: Callable[[Mapping[str, Any]], bool] = lambda data: True,
    ) -> Iterable[DeviceState]:
        """The partition's devices: the batch's states, the held ones, then the store's others
        that are ``wanted`` (loaded; the test reads the stored document). A stored state that
        cannot be read is reported and starts over (:func:`_load`), and stays in ``states``:
        it is written back."""
        for state in list(states.values()):
            if state.partition == partition:
                yield state
        for device_id, state in list(self.held.items()):
            if device_id not in states and state.partition == partition:
                yield state
        for device_id, data in list(self.store.items()):
            fresh = device_id not in states and device_id not in self.held
            if fresh and _of_partition(data, partition) and _wanted(wanted, data):
                state = _load(device_id, data, where)
                if state.partition is None:  # unreadable: it starts over on this partition
                    state.partition = partition
                    states[device_id] = state
                yield state

    def _scan(
        self, partition: int, at: float, states: dict[str, DeviceState], where: _Where
    ) -> list[Alert]:
        """Check the partition's devices for silence as of event time ``at``."""
        now = datetime.fromtimestamp(at, UTC)
        alerts = []
        # A stored state is decoded only if it is silent: every event-time hour, a partition's
        # thousands of quiet devices were each decoded to find none (5% of a worker's time).
        silent = functools.partial(self.detector.silent, at=at)
        for state in self._devices(partition, states, where, silent):
            alerted = state.silence_alerted
            alert = self.detector.check_silence(state, now)
            if state.silence_alerted != alerted:
                # Changed even when the episode's hysteresis kept the alert back: a state
                # loaded from the store is written back, as one of the batch's would be.
                states[state.device_id] = state
            if alert is not None:
                alerts.append(alert)
        return alerts


#: Where a stored state was needed: the batch's outcome, and the reading's partition and offset.
_Where = tuple[Outcome, int, int]


def _load(device_id: str, data: Mapping[str, Any] | None, where: _Where) -> DeviceState:
    """The stored document ``data`` as a state. One that cannot be read (damaged, or written
    by a version that changed a field's type) must not stop every other device's scoring, nor
    be reset in silence: the device starts over from no history (its baselines re-learn, no
    alert until then), ``state_unreadable`` is counted in its state, and the outcome reports
    the document (the agent logs it and dead-letters it)."""
    try:
        return DeviceState.from_dict(data)  # type: ignore[arg-type]
    except Exception as exc:
        out, partition, offset = where
        reason = reason_of(f"device {device_id}", exc)
        out.unreadable.append(Unreadable(device_id, partition, offset, data, reason))
        state = DeviceState(device_id=device_id)
        state.counters["state_unreadable"] = 1
        return state


def _of_partition(data: Any, partition: int) -> bool:
    return isinstance(data, Mapping) and data.get("partition") == partition


def _wanted(wanted: Callable[[Mapping[str, Any]], bool], data: Mapping[str, Any]) -> bool:
    """``wanted(data)``; a document it cannot judge is wanted, to be loaded and reported."""
    try:
        return wanted(data)
    except Exception:
        return True


def _mark(state: DeviceState, clock: Callable[[], float]) -> float | None:
    """A state's share of its partition's clock; states written before ``clock_mark`` existed
    give their latest event time, capped at the clock now."""
    if state.clock_mark is not None:
        return state.clock_mark
    if state.last_seen is None:
        return None
    return min(state.last_seen, clock())
