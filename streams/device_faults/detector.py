"""Device-fault detection as plain classes: no Faust, no Kafka.

The same code runs inside the Faust agent (state in a table), in an offline replay over a CSV
file and in unit tests. Two layers, as in River:

* :class:`MetricBaseline` is the scoring core for one metric of one unit, with River's
  contract: ``learn_one(x, hour)`` and ``score_one(x, hour) -> float`` where a higher absolute
  score means more anomalous (a robust z-score against this unit's own hour-of-day baseline).
* :class:`DeviceFaultDetector` is the alerting layer on top: it combines CUSUM drift evidence,
  bursts of spikes and error-code bursts per device, confirms before alerting, and keeps one
  alert per episode (cooldown and hysteresis) with a severity, a confidence and an explanation
  a technician can read.

Examples
--------
>>> from datetime import datetime, timedelta, UTC
>>> from forewarn.events import DeviceTelemetry
>>> detector, state = DeviceFaultDetector(), DeviceState()
>>> t0 = datetime(2026, 1, 5, tzinfo=UTC)
>>> def reading(i, v):
...     return DeviceTelemetry(event_id=f"e{i}", event_time=t0 + timedelta(hours=i),
...                            device_id="D1", customer_id="C1", device_type="heat_pump",
...                            metrics={"vibration_mm_s": v})
>>> alerts = [detector.update(state, reading(i, 2.0 + 0.05 * (i % 3))) for i in range(72)]
>>> any(alerts)
False
>>> alert = next(a for i in range(72, 120)
...              if (a := detector.update(state, reading(i, 2.0 + 0.02 * (i - 72)))))
>>> alert.fault_kind, alert.severity in ("medium", "high", "critical")
('drift:vibration_mm_s', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from forewarn.events import Alert, DeviceTelemetry, visit_key

HOURS = 24
# Error codes starting with these letters precede faults; W (warnings) and M (maintenance)
# are benign and ignored. F01 means the unit reported its own failure.
FAULT_CODE_PREFIXES = ("E", "F")
FAILURE_CODE = "F01"

# Size bounds of a device's state (docs/detection.md), so that no burst of valid readings can
# grow it past what a changelog message holds (1 MB; a probe's 700 readings with 64 codes each
# did, and the worker exited): metrics per device, codes per device, times kept per code,
# spike times kept per metric. About 70 kB of JSON at most, whatever the input.
METRICS_MAX = 64
CODES_MAX = 32
CODE_TIMES_MAX = 16
SPIKES_MAX = 32


@dataclass
class MetricBaseline:
    """Robust online baseline of one metric of one unit, with an hour-of-day profile.

    Works when a metric has a stable level plus a daily pattern and heavy-tailed noise; adapts
    slowly (``level_rate`` per reading) so gradual drift stays visible for days. Does not model
    weekly patterns beyond what the noise scale absorbs. Updates are winsorized at ``clip``
    scales so single glitches barely move it. Cost: O(1) time, 26 floats per metric.

    Parameters
    ----------
    warmup : int
        Readings before scores are given; ``score_one`` returns 0.0 (neutral) until then.
    level_rate, profile_rate, scale_rate : float
        Exponential-averaging rates of the level, the hour-of-day profile and the scale.
    clip : float
        Residuals are clipped to +-``clip`` scales before they update the baseline.
    """

    warmup: int = 36
    level_rate: float = 0.01
    profile_rate: float = 0.1
    scale_rate: float = 0.02
    clip: float = 3.0
    n: int = 0
    level: float = 0.0
    scale: float = 0.0
    profile: list[float] = field(default_factory=lambda: [0.0] * HOURS)

    def _residual(self, x: float, hour: int) -> float:
        return x - self.level - self.profile[hour]

    def score_one(self, x: float, hour: int) -> float:
        """Robust z-score of reading ``x`` at ``hour`` (0-23); 0.0 during warm-up."""
        if self.n < self.warmup or self.scale <= 0:
            return 0.0
        return self._residual(x, hour) / self.scale

    def learn_one(self, x: float, hour: int) -> None:
        """Update the baseline with reading ``x`` taken at ``hour`` of the day."""
        self.n += 1
        if self.n == 1:
            self.level = x
            return
        r = self._residual(x, hour)
        if self.scale > 0 and self.n > self.warmup // 2:
            r = max(-self.clip * self.scale, min(self.clip * self.scale, r))
        # Fast rates while warming up, so the first days are usable.
        warm = self.n < self.warmup
        step = (0.1 if warm else self.level_rate) * r
        self.level += step
        # What the level did not absorb is this hour's share of the daily pattern.
        self.profile[hour] += self.profile_rate * (r - step)
        # Mean absolute deviation x 1.25 estimates sigma for normal noise, robustly.
        self.scale += (0.1 if warm else self.scale_rate) * (1.25 * abs(r) - self.scale)


@dataclass
class MetricState:
    baseline: MetricBaseline = field(default_factory=MetricBaseline)
    cusum_up: float = 0.0
    cusum_down: float = 0.0
    rising_since: float | None = None  # epoch seconds when the CUSUM left zero
    recent_spikes: list[float] = field(default_factory=list)  # epoch seconds
    last_z: float = 0.0
    last_value: float | None = None
    same_count: int = 0  # consecutive identical readings (a frozen sensor repeats itself)
    pending_unit: int = -1  # index into UNIT_CHANGES seen once, waiting for confirmation


@dataclass
class DeviceState:
    """Everything the detector remembers about one device (JSON-serializable via ``to_dict``)."""

    metrics: dict[str, MetricState] = field(default_factory=dict)
    firmware: str = ""
    # Fault code -> event times it was raised within the window, newest last (at most
    # CODE_TIMES_MAX per code, CODES_MAX codes).
    codes: dict[str, list[float]] = field(default_factory=dict)
    last_alert_at: float | None = None
    last_alert_rank: int = -1
    quiet_since: float | None = None
    device_id: str = ""
    customer_id: str = ""
    device_type: str = ""
    last_seen: float | None = None  # latest event time of a reading
    interval: float = 0.0  # typical seconds between readings (moving average)
    last_mode: str = "normal"
    silence_alerted: bool = False
    counters: dict[str, int] = field(default_factory=dict)  # frozen, unit_change, late, missing
    partition: int | None = None  # set by the Faust agent: which partition owns this device
    last_offset: int = -1  # set by the Faust agent: the last source offset applied
    # Set by the detection step (streams/device_faults/step.py): the latest event time of the
    # device's readings, each capped at the worker's clock when scored; the partition's
    # silence clock is the highest of its devices', so a restarted worker rebuilds it.
    clock_mark: float | None = None

    def to_dict(self) -> dict[str, Any]:
        # Hand-written rather than dataclasses.asdict: this runs once per reading, and asdict's
        # recursive deep copy took 11% of a worker's CPU in a py-spy profile.
        return {
            "metrics": {
                name: {
                    "baseline": {**vars(m.baseline), "profile": list(m.baseline.profile)},
                    "cusum_up": m.cusum_up,
                    "cusum_down": m.cusum_down,
                    "rising_since": m.rising_since,
                    "recent_spikes": list(m.recent_spikes),
                    "last_z": m.last_z,
                    "last_value": m.last_value,
                    "same_count": m.same_count,
                    "pending_unit": m.pending_unit,
                }
                for name, m in self.metrics.items()
            },
            "firmware": self.firmware,
            "codes": {code: list(times) for code, times in self.codes.items()},
            "last_alert_at": self.last_alert_at,
            "last_alert_rank": self.last_alert_rank,
            "quiet_since": self.quiet_since,
            "device_id": self.device_id,
            "customer_id": self.customer_id,
            "device_type": self.device_type,
            "last_seen": self.last_seen,
            "interval": self.interval,
            "last_mode": self.last_mode,
            "silence_alerted": self.silence_alerted,
            "counters": dict(self.counters),
            "partition": self.partition,
            "last_offset": self.last_offset,
            "clock_mark": self.clock_mark,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DeviceState:
        if not data:
            return cls()
        # Copies of the document's lists and dicts, never the document's own: learn_one
        # changes a profile in place, and a Faust table hands out the very object it stores,
        # so a state that shared it changed the table behind the changelog's back (a batch
        # that was never written, or crashed, stayed half applied in the worker's memory and
        # was applied again on its replay: tests/streams/test_determinism.py, issue 14).
        metrics = {
            name: MetricState(
                baseline=MetricBaseline(
                    **{**m["baseline"], "profile": list(m["baseline"]["profile"])}
                ),
                **{k: v for k, v in m.items() if k not in ("baseline", "recent_spikes")},
                recent_spikes=list(m.get("recent_spikes", [])),
            )
            for name, m in data["metrics"].items()
        }
        if "recent_codes" in data:  # written before codes were counted per code
            codes: dict[str, list[float]] = {}
            for t, c in data["recent_codes"]:
                codes.setdefault(str(c), []).append(float(t))
        else:
            codes = {str(c): [float(t) for t in ts] for c, ts in data.get("codes", {}).items()}
        rest = {
            k: v
            for k, v in data.items()
            if k not in ("metrics", "recent_codes", "codes", "counters")
        }
        counters = dict(data.get("counters", {}))
        return cls(metrics=metrics, codes=codes, counters=counters, **rest)

    def fault_codes(self) -> list[str]:
        """The fault codes within the window, oldest first (one entry per time raised)."""
        return [c for _, c in sorted((t, c) for c, ts in self.codes.items() for t in ts)]

    def remember_codes(self, now: float, raised: list[str], window: float) -> None:
        """Forget codes older than ``window`` seconds before ``now``; add ``raised`` at ``now``.
        Bounded: the newest CODE_TIMES_MAX times per code, the CODES_MAX codes seen last."""
        kept = {c: [t for t in ts if now - t <= window] for c, ts in self.codes.items()}
        for code in raised:
            kept.setdefault(code, []).append(now)
        kept = {c: ts[-CODE_TIMES_MAX:] for c, ts in kept.items() if ts}
        if len(kept) > CODES_MAX:
            newest = sorted(kept, key=lambda c: (kept[c][-1], c))[-CODES_MAX:]
            kept = {c: kept[c] for c in sorted(newest)}
        self.codes = kept


SEVERITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class DeviceFaultDetector:
    """Turns one device's readings into at most one alert per fault episode.

    Signals, per metric: two-sided CUSUM on the robust z-score (drift or a level shift), and a
    burst of spikes (``spike_count`` readings beyond ``spike_z`` within ``window_hours``); per
    device: a burst of fault error codes, and the unit's own failure code. Maintenance and
    self-test readings are neither scored nor learned; a firmware change re-learns the
    baselines, since a new firmware legitimately moves them.

    Works on any sampling interval (windows are in event-time hours). Needs ``warmup`` readings
    per metric before it can score drift or spikes; error codes work from the first reading.
    Handled, not alerted on: missing values (null or NaN), a stuck sensor repeating one value,
    a change of unit (C/F, bar/psi, mm/s and in/s, V/mV), and readings out of order within
    ``lateness_hours_max``. Cost: O(metrics) per reading, about 1 kB of state per device.

    Parameters
    ----------
    cusum_slack : float
        Allowed drift per reading, in scales (CUSUM's k); absorbs weekly shifts below it.
    cusum_threshold : float
        CUSUM level that confirms drift (h). About h / (z - k) readings of evidence.
    spike_z, spike_count, window_hours :
        A spike is ``|z| >= spike_z``; ``spike_count`` of them within ``window_hours`` alert.
        A single glitch never does.
    error_count : int
        Fault error codes within ``window_hours`` that alert.
    cooldown_hours : float
        After an alert, the device alerts again only on higher severity, or after this long
        with no evidence (hysteresis: the episode must end before a new one starts).
    silence_intervals, silence_hours_min : float
        A device is silent after this many of its usual intervals, and at least this many
        hours, without a reading (see :meth:`check_silence`).
    lateness_hours_max : float
        Readings older than the device's latest by more than this are not processed.
    frozen_readings : int
        Identical readings in a row from which a metric counts as stuck and is skipped.
    """

    cusum_slack: float = 1.0
    cusum_threshold: float = 15.0
    spike_z: float = 5.0
    spike_count: int = 3
    error_count: int = 3
    window_hours: float = 24.0
    cooldown_hours: float = 24.0
    z_cap: float = 6.0  # one reading adds at most this to a CUSUM: glitches cannot confirm drift
    silence_intervals: float = 4.0
    silence_hours_min: float = 3.0
    lateness_hours_max: float = 6.0
    frozen_readings: int = 3

    def lateness_hours(self, state: DeviceState, event: DeviceTelemetry) -> float:
        """How many hours ``event`` is older than the device's latest reading (0 if newer).

        Policy: readings up to ``lateness_hours_max`` late are processed as usual; older ones
        are not (the agent dead-letters them with this figure as the reason).
        """
        if state.last_seen is None:
            return 0.0
        return max(0.0, (state.last_seen - event.event_time.timestamp()) / 3600)

    def owner_conflict(self, state: DeviceState, event: DeviceTelemetry) -> str | None:
        """Why ``event`` may not be scored for this device, if it names another owner.

        A device belongs to the first customer seen with it: a reading that names another
        customer would move the device's visits to them (the probe moved a failure visit so),
        so the agent dead-letters it with this reason instead.
        """
        if state.customer_id and event.customer_id != state.customer_id:
            return (
                f"device {event.device_id} belongs to customer {state.customer_id}; this "
                f"reading names {event.customer_id} (not scored)"
            )
        return None

    def update(self, state: DeviceState, event: DeviceTelemetry) -> Alert | None:
        """Learn from ``event`` and return an alert if it confirms a fault episode."""
        if self.lateness_hours(state, event) > self.lateness_hours_max:
            _count(state, "late")
            return None
        now = event.event_time.timestamp()
        window = self.window_hours * 3600
        # The first owner seen keeps the device (owner_of); a reading naming another is
        # refused before it gets here.
        state.device_id, state.customer_id = event.device_id, state.customer_id or event.customer_id
        state.device_type = event.device_type
        if state.last_seen is not None and now > state.last_seen:
            gap = now - state.last_seen
            state.interval = gap if state.interval == 0 else 0.9 * state.interval + 0.1 * gap
        state.last_seen = max(now, state.last_seen or now)
        state.last_mode = event.mode
        state.silence_alerted = False
        if event.firmware != state.firmware:
            if state.firmware:
                state.metrics.clear()  # new firmware, new normal: re-learn
            state.firmware = event.firmware
        codes = [c for c in event.error_codes if c.startswith(FAULT_CODE_PREFIXES)]
        state.remember_codes(now, codes, window)
        if event.mode != "normal":
            return None

        findings: list[tuple[int, str, float, str]] = []  # (rank, fault_kind, score, why)
        hour = event.event_time.hour
        for name, value in event.metrics.items():
            if value is None:  # the sensor sent nothing usable (null or NaN)
                _count(state, "missing")
                continue
            m = state.metrics.get(name)
            if m is None:
                if len(state.metrics) >= METRICS_MAX:
                    _count(state, "metrics_ignored")  # bounded state: see METRICS_MAX
                    continue
                m = state.metrics[name] = MetricState()
            if self._frozen(state, m, value) or self._unit_changed(state, m, value, hour):
                continue
            z = m.baseline.score_one(value, hour)
            m.last_z = z
            capped = max(-self.z_cap, min(self.z_cap, z))
            was_zero = m.cusum_up == 0 and m.cusum_down == 0
            m.cusum_up = max(0.0, m.cusum_up + capped - self.cusum_slack)
            m.cusum_down = max(0.0, m.cusum_down - capped - self.cusum_slack)
            if m.cusum_up == 0 and m.cusum_down == 0:
                m.rising_since = None
            elif was_zero:
                m.rising_since = now
            m.recent_spikes = [t for t in m.recent_spikes if now - t <= window]
            if abs(z) >= self.spike_z:
                m.recent_spikes = [*m.recent_spikes, now][-SPIKES_MAX:]
            # Freeze learning while evidence builds, or the baseline would follow the drift.
            if max(m.cusum_up, m.cusum_down) < self.cusum_threshold / 3 and abs(z) < self.spike_z:
                m.baseline.learn_one(value, hour)
            expected = m.baseline.level + m.baseline.profile[hour]
            cusum = max(m.cusum_up, m.cusum_down)
            if cusum >= self.cusum_threshold:
                hours = (now - (m.rising_since or now)) / 3600
                direction = "above" if m.cusum_up >= m.cusum_down else "below"
                why = (
                    f"{name} {abs(z):.1f} sigma {direction} this unit's baseline "
                    f"({value:.3g} seen, {expected:.3g} expected at this hour) "
                    f"for {hours:.0f} h"
                )
                findings.append((_rank(abs(z)), f"drift:{name}", abs(z), why))
            if len(m.recent_spikes) >= self.spike_count:
                why = (
                    f"{name} spiked beyond {self.spike_z:g} sigma "
                    f"{len(m.recent_spikes)} times in {self.window_hours:g} h "
                    f"(now {value:.3g}, expected {expected:.3g})"
                )
                findings.append((_rank(abs(z)) + 1, f"spikes:{name}", abs(z), why))

        fault_codes = state.fault_codes()
        if FAILURE_CODE in codes:
            findings.append((3, "failure", 10.0, f"unit reported failure {FAILURE_CODE}"))
        elif len(fault_codes) >= self.error_count:
            counts = {c: len(ts) for c, ts in sorted(state.codes.items())}
            why = "error " + ", ".join(f"{c} x{k}" for c, k in counts.items())
            findings.append(
                (2, "error_codes", float(len(fault_codes)), why + f" in {self.window_hours:g} h")
            )
        return self._decide(
            state, event.event_id, event.event_time, findings, fault_codes, metrics=event.metrics
        )

    def check_silence(self, state: DeviceState, now: datetime) -> Alert | None:
        """Alert if the device has not reported for too long by event time ``now``.

        Call it as the stream's event time advances (the agent does, per partition, every
        event-time hour; the replay likewise). Too long means ``silence_intervals`` of the
        unit's usual interval, and at least ``silence_hours_min``. Devices in maintenance when
        they went quiet are left alone; one alert per silent spell.
        """
        if state.last_seen is None or state.silence_alerted or state.last_mode != "normal":
            return None
        quiet = now.timestamp() - state.last_seen
        limit = max(self.silence_hours_min * 3600, self.silence_intervals * state.interval)
        if state.interval == 0 or quiet < limit:
            return None
        state.silence_alerted = True
        why = (
            f"no reading for {quiet / 3600:.0f} h (usually every "
            f"{state.interval / 60:.0f} min): the unit may be down or offline"
        )
        fault_codes = state.fault_codes()
        return self._decide(
            state,
            f"{state.device_id}-silent-{int(state.last_seen)}",
            now,
            [(2, "silence", quiet / 3600, why)],
            fault_codes,
            metrics={},
        )

    def _decide(
        self,
        state: DeviceState,
        source_id: str,
        at: datetime,
        findings: list[tuple[int, str, float, str]],
        fault_codes: list[str],
        metrics: dict[str, float | None],
    ) -> Alert | None:
        """Confirmation, cooldown and hysteresis: one alert per episode, more only if worse."""
        now = at.timestamp()
        if not findings:
            if state.last_alert_at is not None:
                state.quiet_since = state.quiet_since or now
                if now - state.quiet_since >= self.cooldown_hours * 3600:
                    state.last_alert_at, state.last_alert_rank = None, -1  # episode over
            return None
        state.quiet_since = None
        findings.sort(reverse=True)
        rank, fault_kind, score, _ = findings[0]
        rank = min(rank, len(SEVERITIES) - 1)
        if state.last_alert_at is not None and rank <= state.last_alert_rank:
            return None  # same episode, nothing new to say
        state.last_alert_at, state.last_alert_rank = now, rank
        explanation = "; ".join(why for _, _, _, why in findings)
        # More independent signals and a larger excess both make us surer.
        confidence = min(0.99, 0.5 + 0.15 * (len(findings) - 1) + 0.05 * min(score, 8))
        return Alert(
            event_id=f"alert-{source_id}",
            event_time=at,
            alert_id=f"alert-{source_id}",
            dedup_key=visit_key(state.device_id),
            kind="device_fault",
            customer_id=state.customer_id,
            device_id=state.device_id,
            fault_kind=fault_kind,
            severity=SEVERITIES[rank],
            confidence=round(confidence, 3),
            score=round(score, 3),
            explanation=explanation,
            evidence={
                "device_type": state.device_type,
                "signals": [f[1] for f in findings],
                "metrics": metrics,
                "error_codes": fault_codes[-10:],
            },
            detector="device_faults.v1",
        )

    def _frozen(self, state: DeviceState, m: MetricState, value: float) -> bool:
        """A sensor repeating the exact same value is stuck, not healthy: skip it."""
        was_frozen = m.same_count + 1 >= self.frozen_readings
        m.same_count = m.same_count + 1 if value == m.last_value else 0
        m.last_value = value
        frozen = m.same_count + 1 >= self.frozen_readings
        if frozen != was_frozen:
            # Evidence gathered from the stuck value is no evidence: start the episode over.
            m.cusum_up = m.cusum_down = 0.0
            m.rising_since = None
            m.recent_spikes = []
            if frozen:
                _count(state, "frozen")
        return frozen

    def _unit_changed(self, state: DeviceState, m: MetricState, value: float, hour: int) -> bool:
        """A reading that matches the baseline converted to another unit (C to F, bar to psi,
        mm/s to in/s, V to mV...) twice in a row is a unit change: convert the baseline and go
        on, rather than call a technician for an arithmetic problem."""
        b = m.baseline
        if b.n < b.warmup or b.scale <= 0 or abs(b.score_one(value, hour)) < self.spike_z * 2:
            m.pending_unit = -1
            return False
        expected = b.level + b.profile[hour]
        for i, (a, c) in enumerate(UNIT_CHANGES):
            if abs(value - (a * expected + c)) <= 4 * b.scale * abs(a):
                if m.pending_unit == i:
                    b.level = a * b.level + c
                    b.profile = [a * p for p in b.profile]
                    b.scale *= abs(a)
                    m.pending_unit = -1
                    m.cusum_up = m.cusum_down = 0.0
                    _count(state, "unit_change")
                else:
                    m.pending_unit = i
                return True
        m.pending_unit = -1
        return False


#: Unit changes recognised as such, as y = a * x + c: Celsius/Fahrenheit, bar/psi,
#: mm/s and in/s, V and mV (and back).
UNIT_CHANGES: tuple[tuple[float, float], ...] = (
    (1.8, 32.0),
    (1 / 1.8, -32.0 / 1.8),
    (14.5038, 0.0),
    (1 / 14.5038, 0.0),
    (1 / 25.4, 0.0),
    (25.4, 0.0),
    (1000.0, 0.0),
    (0.001, 0.0),
)


def _count(state: DeviceState, name: str) -> None:
    state.counters[name] = state.counters.get(name, 0) + 1


def _rank(z: float) -> int:
    """Severity rank from the size of the deviation: <4 sigma medium, <8 high, else critical."""
    if not math.isfinite(z):
        return 3
    return 1 if z < 4 else 2 if z < 8 else 3
