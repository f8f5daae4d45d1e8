"""Device-fault detection as plain classes: no Faust, no Kafka.

The same code runs inside the Faust agent (state in a table), in an offline replay over a CSV
file and in unit tests. Two layers, as in River:

* :class:`MetricBaseline` is the scoring core for one metric of one unit, with River's
  contract: ``learn_one(x, hour)`` and ``score_one(x, hour) -> float`` where a higher absolute
  score means more anomalous (a robust z-score against this unit's own hour-of-day baseline).
* :class:`DeviceFaultDetector` is the alerting layer on top: it combines each metric's
  standardised EWMA evidence across the device's metrics (a multivariate EWMA chart), bursts
  of spikes and error-code bursts, alerts when an episode opens or gets worse, ends the
  episode when the unit is calm again or has settled at a new normal, and explains each alert
  per metric with a severity and a confidence a technician can read.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from functools import lru_cache
from statistics import NormalDist
from typing import Any

from forewarn.events import Alert, DeviceTelemetry, visit_key

HOURS = 24
#: Error codes matching these patterns (fnmatch, case-insensitive by default) precede faults;
#: others (the simulator's W* warnings and M* maintenance codes) are counted as ignored.
FAULT_CODE_PATTERNS = ("E*", "F*")
#: Codes by which a unit reports its own failure: one is enough.
FAILURE_CODES = ("F01",)

# Size bounds of a device's state (docs/detection.md), so that no burst of valid readings can
# grow it past what a changelog message holds (1 MB; a probe's 700 readings with 64 codes each
# did, and the worker exited): metrics per device, codes per device, times kept per code,
# spike times kept per metric. About 70 kB of JSON at most, whatever the input.
METRICS_MAX = 64
CODES_MAX = 32
CODE_TIMES_MAX = 16
SPIKES_MAX = 32

#: Unit changes recognised as such, as y = a * x + c, by the unit a metric's name ends with
#: (the contract puts units in names: ``outlet_temp_c``). A metric whose name states no such
#: unit is never converted: on real data without units in the names the rule fired hundreds
#: of times and explained real excursions away (issue 15).
UNIT_CONVERSIONS: dict[str, tuple[float, float]] = {
    "_c": (1.8, 32.0),  # Celsius to Fahrenheit
    "_f": (1 / 1.8, -32.0 / 1.8),
    "_bar": (14.5038, 0.0),  # bar to psi
    "_psi": (1 / 14.5038, 0.0),
    "_mm_s": (1 / 25.4, 0.0),  # mm/s to in/s
    "_in_s": (25.4, 0.0),
    "_v": (1000.0, 0.0),  # V to mV
    "_mv": (0.001, 0.0),
}


@lru_cache(maxsize=256)
def chi2_quantile(dof: int, tail: float) -> float:
    """Upper ``tail`` quantile of a chi-squared distribution with ``dof`` degrees of freedom,
    by the Wilson-Hilferty cube-root approximation (Wilson and Hilferty 1931), so the worker
    needs no scipy per reading. It errs high, so on the quiet side: against scipy's exact
    15.1 and 31.8 at a tail of 1e-4, 7% over for one metric, 2% for eight.

    >>> round(chi2_quantile(1, 1e-4), 1), round(chi2_quantile(8, 1e-4), 1)
    (16.2, 32.3)
    """
    z = NormalDist().inv_cdf(1 - tail)
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


@dataclass
class MetricBaseline:
    """Robust online baseline of one metric of one unit, with an hour-of-day profile.

    Works when a metric has a stable level plus a daily pattern and heavy-tailed noise; adapts
    slowly (``level_rate`` per reading) so gradual drift stays visible. Does not model weekly
    patterns beyond what the noise scale absorbs. Updates are winsorized at ``clip`` scales so
    single glitches barely move it. The hour-of-day profile is learned from the first reading
    but used only once every hour of the day has been seen ``profile_min`` times: before that,
    a daily cycle is part of the noise, not a drift (issue 15: on 5-minute data, scoring began
    with 21 of 24 hours unseen and the first day read as drift). Cost: O(1) time, 50 numbers.

    Parameters
    ----------
    warmup : int
        Readings before scores are given; ``score_one`` returns 0.0 (neutral) until then.
        The detector waits longer: see ``DeviceFaultDetector.warmup_readings``.
    level_rate, profile_rate, scale_rate : float
        Exponential-averaging rates of the level, the hour-of-day profile and the scale.
    clip : float
        Residuals are clipped to +-``clip`` scales before they update the baseline.
    profile_min : int
        Readings each hour of the day needs before the profile is used.
    """

    warmup: int = 30
    level_rate: float = 0.01
    profile_rate: float = 0.1
    scale_rate: float = 0.02
    clip: float = 3.0
    profile_min: int = 2
    n: int = 0
    level: float = 0.0
    scale: float = 0.0
    profile: list[float] = field(default_factory=lambda: [0.0] * HOURS)
    # Readings seen per hour of the day, until every hour has ``profile_min`` (then emptied:
    # it is the state's largest part and no longer needed).
    profile_n: list[int] = field(default_factory=lambda: [0] * HOURS)
    profile_ready: bool = False
    profile_mean: float = 0.0

    def expected(self, hour: int) -> float:
        """The value expected at ``hour``: the level, plus the hour's share of the daily
        pattern once the whole day has been seen."""
        if not self.profile_ready:
            return self.level
        return self.level + self.profile[hour] - self.profile_mean

    def score_one(self, x: float, hour: int) -> float:
        """Robust z-score of reading ``x`` at ``hour`` (0-23); 0.0 during warm-up."""
        if self.n < self.warmup or self.scale <= 0:
            return 0.0
        return (x - self.expected(hour)) / self.scale

    def learn_one(self, x: float, hour: int) -> None:
        """Update the baseline with reading ``x`` taken at ``hour`` of the day."""
        self.n += 1
        k = HOURS * self.profile_min  # any count beyond the minimum: only the rate uses it
        if not self.profile_ready:
            k = self.profile_n[hour] = self.profile_n[hour] + 1
        if self.n == 1:
            self.level = x
            return
        r = x - self.expected(hour)
        if self.scale > 0 and self.n > self.warmup // 2:
            r = max(-self.clip * self.scale, min(self.clip * self.scale, r))
        # Fast rates while warming up, so the first readings are usable.
        warm = self.n < self.warmup
        self.level += (0.1 if warm else self.level_rate) * r
        # The hour's mean departure from the level: its share of the daily pattern.
        step = max(1 / k, self.profile_rate) * (x - self.level - self.profile[hour])
        self.profile[hour] += step
        self.profile_mean += step / HOURS
        if not self.profile_ready and k >= self.profile_min:
            self.profile_ready = min(self.profile_n) >= self.profile_min
            if self.profile_ready:
                self.profile_n = []
        # Mean absolute deviation x 1.25 estimates sigma for normal noise, robustly.
        self.scale += (0.1 if warm else self.scale_rate) * (1.25 * abs(r) - self.scale)

    def shift(self, delta: float) -> None:
        """Move the level by ``delta``: the unit settled at a new normal."""
        self.level += delta


@dataclass
class MetricState:
    """One metric's baseline and evidence. ``ewma`` is the exponentially weighted mean of the
    reading's z-score; ``ewma_var`` its mean square while the unit was normal, which carries
    the metric's own autocorrelation (a temperature that wanders for minutes has a wide one,
    an iid noise a narrow one), so ``ewma / sqrt(ewma_var)`` is comparable across metrics."""

    baseline: MetricBaseline = field(default_factory=MetricBaseline)
    first_at: float | None = None  # epoch seconds of its first reading (warm-up by time)
    warm: bool = False
    ewma: float = 0.0
    ewma_var: float = 0.0
    since: float | None = None  # epoch seconds when its evidence last rose above 1 sigma
    recent_spikes: list[float] = field(default_factory=list)  # epoch seconds
    last_z: float = 0.0
    last_value: float | None = None
    same_count: int = 0  # identical readings in a row after the first
    repeat_rate: float = 0.0  # how often this metric repeats its previous value when healthy
    spike_rate: float = 0.0  # how often it reads beyond spike_z when no episode is open
    pending_unit: int = -1  # index into the metric's unit conversions, waiting for confirmation
    pending_count: int = 0


_BASELINE_FIELDS = frozenset(MetricBaseline.__dataclass_fields__)
_METRIC_FIELDS = frozenset(MetricState.__dataclass_fields__) - {"baseline", "recent_spikes"}


@dataclass
class DeviceState:
    """Everything the detector remembers about one device (JSON-serializable via ``to_dict``)."""

    metrics: dict[str, MetricState] = field(default_factory=dict)
    firmware: str = ""
    # Fault code -> event times it was raised within the window, newest last (at most
    # CODE_TIMES_MAX per code, CODES_MAX codes).
    codes: dict[str, list[float]] = field(default_factory=dict)
    # The open episode: since when (None: no episode), its latest alert and that alert's
    # severity rank, and how many calm readings in a row it has seen (it ends after
    # ``settle_readings`` of them).
    episode_since: float | None = None
    last_alert_at: float | None = None
    last_alert_rank: int = -1
    calm: int = 0
    device_id: str = ""
    customer_id: str = ""
    device_type: str = ""
    last_seen: float | None = None  # latest event time of a reading
    interval: float = 0.0  # typical seconds between readings (moving average)
    last_mode: str = "normal"
    silence_alerted: bool = False
    # frozen, unit_change, late, missing, metrics_ignored, codes_recognised, codes_ignored,
    # episodes, episodes_ended, settled (re-learned after a held shift)
    counters: dict[str, int] = field(default_factory=dict)
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
                    # What the baseline learned; its hyperparameters come from the code (a
                    # third of the document, written on every reading, issue 15).
                    "baseline": {
                        "n": m.baseline.n,
                        "level": m.baseline.level,
                        "scale": m.baseline.scale,
                        "profile": list(m.baseline.profile),
                        "profile_n": list(m.baseline.profile_n),
                        "profile_ready": m.baseline.profile_ready,
                        "profile_mean": m.baseline.profile_mean,
                    },
                    "first_at": m.first_at,
                    "warm": m.warm,
                    "ewma": m.ewma,
                    "ewma_var": m.ewma_var,
                    "since": m.since,
                    "recent_spikes": list(m.recent_spikes),
                    "last_z": m.last_z,
                    "last_value": m.last_value,
                    "same_count": m.same_count,
                    "repeat_rate": m.repeat_rate,
                    "spike_rate": m.spike_rate,
                    "pending_unit": m.pending_unit,
                    "pending_count": m.pending_count,
                }
                for name, m in self.metrics.items()
            },
            "firmware": self.firmware,
            "codes": {code: list(times) for code, times in self.codes.items()},
            "episode_since": self.episode_since,
            "last_alert_at": self.last_alert_at,
            "last_alert_rank": self.last_alert_rank,
            "calm": self.calm,
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
        # Fields a document written before issue 15 has and this version does not (its CUSUMs),
        # or a newer version's (a worker rolled back), are left behind; those it lacks take
        # their defaults.
        metrics = {}
        for name, m in data["metrics"].items():
            b = m["baseline"]
            ours = "profile_mean" in b and "cusum_up" not in m  # this version's own document
            if ours:
                try:
                    baseline = MetricBaseline(
                        **{**b, "profile": list(b["profile"]), "profile_n": list(b["profile_n"])}
                    )
                    metrics[name] = MetricState(
                        **{**m, "baseline": baseline, "recent_spikes": list(m["recent_spikes"])}
                    )
                    continue
                except TypeError:
                    pass  # a newer version's, with fields this one does not know: left behind
            b = {k: v for k, v in b.items() if k in _BASELINE_FIELDS}
            b["profile"] = list(b.get("profile", [0.0] * HOURS))
            b["profile_n"] = list(b.get("profile_n", [0] * HOURS))
            if not ours:  # kept by a newer version's document
                b["profile_mean"] = sum(b["profile"]) / HOURS
            metrics[name] = MetricState(
                baseline=MetricBaseline(**b),
                recent_spikes=list(m.get("recent_spikes", [])),
                **{k: v for k, v in m.items() if k in _METRIC_FIELDS},
            )
        if "recent_codes" in data:  # written before codes were counted per code
            codes: dict[str, list[float]] = {}
            for t, c in data["recent_codes"]:
                codes.setdefault(str(c), []).append(float(t))
        else:
            codes = {str(c): [float(t) for t in ts] for c, ts in data.get("codes", {}).items()}
        rest = {k: v for k, v in data.items() if k in _DEVICE_FIELDS}
        counters = dict(data.get("counters", {}))
        return cls(metrics=metrics, codes=codes, counters=counters, **rest)

    def to_silence(self) -> dict[str, Any]:
        """The fields silence is judged on, as ``to_dict`` names them."""
        return {
            "last_seen": self.last_seen,
            "interval": self.interval,
            "silence_alerted": self.silence_alerted,
            "last_mode": self.last_mode,
        }

    def fault_codes(self) -> list[str]:
        """The fault codes within the window, oldest first (one entry per time raised)."""
        return [c for _, c in sorted((t, c) for c, ts in self.codes.items() for t in ts)]

    def remember_codes(self, now: float, raised: list[str], window: float) -> None:
        """Forget codes older than ``window`` seconds before ``now``; add ``raised`` at ``now``.
        Bounded: the newest CODE_TIMES_MAX times per code, the CODES_MAX codes seen last."""
        if not raised and not self.codes:
            return
        kept = {c: [t for t in ts if now - t <= window] for c, ts in self.codes.items()}
        for code in raised:
            kept.setdefault(code, []).append(now)
        kept = {c: ts[-CODE_TIMES_MAX:] for c, ts in kept.items() if ts}
        if len(kept) > CODES_MAX:
            newest = sorted(kept, key=lambda c: (kept[c][-1], c))[-CODES_MAX:]
            kept = {c: kept[c] for c in sorted(newest)}
        self.codes = kept


_DEVICE_FIELDS = frozenset(DeviceState.__dataclass_fields__) - {"metrics", "codes", "counters"}


SEVERITIES = ("low", "medium", "high", "critical")
#: Visit outcomes that end an episode (``DeviceFaultDetector.visit_outcome``).
OUTCOMES = ("fixed", "no_fault_found")


@dataclass(frozen=True)
class DeviceFaultDetector:
    """Turns one device's readings into alert episodes: one alert when an episode opens, more
    only if it gets worse, and an end when the unit is calm again or settles at a new normal.

    Evidence, per metric: the exponentially weighted mean (EWMA) of the reading's robust
    z-score against this unit's baseline, standardised by its own spread while the unit was
    normal, and bursts of spikes (``spike_count`` readings beyond ``spike_z`` close together).
    Per device: the metrics' standardised EWMAs combined as a multivariate EWMA chart (the sum
    of their squares against a chi-squared limit for that many metrics: Lowry et al. 1992,
    with a diagonal covariance), so modest moves of several metrics at once add up; a burst of
    fault error codes; the unit's own failure code. Maintenance and self-test readings are
    neither scored nor learned; a firmware change re-learns the baselines.

    When it works: metrics with a stable level (plus a daily pattern, once a whole day has been
    seen) that a fault moves for a while, at any sampling interval. When it does not: faults
    that change only the shape of a signal (frequency, variance at a constant level); metrics
    whose normal level moves faster than ``level_rate`` follows; correlated metrics count
    twice (the covariance is diagonal: a full one scored worse on SKAB and costs p^2 state,
    docs/detection.md). Input: any finite values, any units, NaN or null for missing.
    Cost: O(metrics) per reading, about 1 kB of state per metric.

    Parameters
    ----------
    ewma_rate : float
        Weight of the newest z-score in each metric's EWMA (lambda; 0.1 is the textbook
        middle of 0.05-0.25, Montgomery, *Introduction to Statistical Quality Control*).
    alert_tail : float
        Chance per reading that a normal unit's combined evidence crosses the alert limit,
        if the metrics were independent (the limit is the chi-squared quantile).
    freeze_sigma : float
        A metric whose standardised EWMA is beyond this stops learning (its baseline must not
        follow a fault) until it comes back.
    settle_readings : int
        Calm readings in a row (no finding, combined evidence below its mean) that end an
        episode. Then a new, distinct deterioration alerts again.
    settle_hours : float
        An episode held this long without getting worse ends by re-learning: the unit settled
        at a new normal (issue 15: one harmless early alert used to swallow every later one).
    warmup_readings, warmup_hours_max : int, float
        A metric is scored once its baseline has seen every hour of the day (time coverage of
        the daily cycle), or, for data that never covers a day, after ``warmup_readings``
        readings (fast data: a test rig's seconds) or ``warmup_hours_max`` hours (sparse or
        irregular data that leaves hours empty), whichever comes first.
    spike_z, spike_count, spike_readings, window_hours :
        A spike is ``|z| >= spike_z``; ``spike_count`` of them within ``spike_readings`` of
        the unit's usual intervals and ``window_hours`` alert. A single glitch never does.
    spike_tail, spike_rate_rate : float
        ... but only if that many are rarer than ``spike_tail`` at the metric's own rate of
        spikes while healthy (learned at ``spike_rate_rate`` per reading, a running mean
        during warm-up).
    error_count : int
        Fault error codes within ``window_hours`` that alert.
    fault_code_patterns, failure_codes : tuple of str
        Which error codes are faults (fnmatch patterns) and which one means the unit failed;
        matched ignoring case unless ``codes_case_sensitive``.
    silence_intervals, silence_hours_min : float
        A device is silent after this many of its usual intervals, and at least this many
        hours, without a reading (see :meth:`check_silence`).
    lateness_hours_max : float
        Readings older than the device's latest by more than this are not processed.
    stuck_metrics : tuple of str
        Metrics (fnmatch patterns, case-insensitive) whose sensors are known to freeze: only
        these are checked for a stuck value. Off by default: a run of equal readings is scored
        like any other (on real data the rule dropped real signals, issue 15).
    stuck_readings, stuck_tail : int, float
        For ``stuck_metrics``: identical readings in a row count as a stuck sensor (skipped,
        its evidence dropped) only if there are at least ``stuck_readings`` and a run that
        long is rarer than ``stuck_tail`` for this metric (its own rate of repeats when
        healthy): count data that repeats itself 60% of the time needs 28 in a row,
        a continuous sensor 3.
    unit_changes : bool
        Convert the baseline when a metric whose name states a unit (``_c``, ``_bar``...)
        reads like that unit's counterpart ``unit_change_readings`` times in a row.
    """

    ewma_rate: float = 0.1
    alert_tail: float = 1e-6
    freeze_sigma: float = 3.0
    settle_readings: int = 5
    settle_hours: float = 72.0
    warmup_readings: int = 1440
    warmup_hours_max: float = 72.0
    # A z-score enters the EWMA capped at this: two glitches in a row cannot make drift alone.
    z_cap: float = 4.0
    spike_z: float = 5.0
    spike_count: int = 3
    spike_readings: int = 24
    spike_tail: float = 1e-3
    spike_rate_rate: float = 0.001
    error_count: int = 3
    window_hours: float = 24.0
    fault_code_patterns: tuple[str, ...] = FAULT_CODE_PATTERNS
    failure_codes: tuple[str, ...] = FAILURE_CODES
    codes_case_sensitive: bool = False
    silence_intervals: float = 4.0
    silence_hours_min: float = 3.0
    lateness_hours_max: float = 6.0
    stuck_metrics: tuple[str, ...] = ()
    stuck_readings: int = 3
    stuck_tail: float = 1e-6
    unit_changes: bool = True
    unit_change_readings: int = 3

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

    def is_fault_code(self, code: str) -> bool:
        """Whether ``code`` is a fault code (``fault_code_patterns``; case-insensitive by
        default: ``error3`` is a fault like ``E03``)."""
        return self._code_matches(code, self.fault_code_patterns)

    def is_failure_code(self, code: str) -> bool:
        """Whether ``code`` says the unit failed (``failure_codes``)."""
        return self._code_matches(code, self.failure_codes)

    def _code_matches(self, code: str, patterns: tuple[str, ...]) -> bool:
        if self.codes_case_sensitive:
            return any(fnmatchcase(code, p) for p in patterns)
        folded = code.casefold()
        return any(fnmatchcase(folded, p.casefold()) for p in patterns)

    def in_episode(self, state: DeviceState) -> bool:
        """Whether the device has an open alert episode (a visit would be open)."""
        return state.episode_since is not None

    def update(self, state: DeviceState, event: DeviceTelemetry) -> Alert | None:
        """Learn from ``event`` and return an alert if it opens or worsens a fault episode."""
        if self._update_common(state, event):
            return None
        return self._update_full(state, event)

    def _update_common(self, state: DeviceState, event: DeviceTelemetry) -> bool:
        """Apply ``event`` if it is a common reading, in one pass; else change nothing and
        return False (``_update_full`` takes it).

        Common, and most readings (84% of the stream benchmark's, before recent spikes were
        allowed): a normal reading, newer than the device's latest, of warmed-up metrics only,
        no value missing, no error code now or in the window, the same firmware, no episode
        open, no spike now and fewer recent ones than a finding needs, and evidence below the
        alert limit. For these ``_update_full`` raises no alert and its branches come to the
        arithmetic below, done in the same order on the same floats, so both give the same
        state to the last bit (tests/streams/test_detector_paths.py). ``update`` costs 0.73 of
        ``_update_full`` on the simulator's readings (``python -m bench --only device_step``).
        Checks come first and changes last, so a reading found uncommon half way has changed
        nothing.
        """
        last_seen = state.last_seen
        now = event.event_time.timestamp()
        if (
            last_seen is None
            or now <= last_seen
            or event.mode != "normal"
            or event.error_codes
            or state.codes
            or event.firmware != state.firmware
            or state.episode_since is not None
            or self.stuck_metrics
            or not event.metrics
        ):
            return False
        hour = event.event_time.hour
        gap = now - last_seen
        interval = gap if state.interval == 0 else 0.9 * state.interval + 0.1 * gap
        spike_window = window = self.window_hours * 3600
        if interval > 0:
            spike_window = self.spike_readings * interval
            spike_window = spike_window if spike_window < window else window
        lam, z_cap, spike_z = self.ewma_rate, self.z_cap, self.spike_z
        lam_tail = lam / (2 - lam)
        # Conditional expressions where the full path calls max, min or abs: the same float
        # chosen (max(a, b) is ``b if b > a else a``), without a call each.
        combined, moved = 0.0, False
        plan: list[tuple[MetricState, MetricBaseline, float, float, float, float, float]] = []
        spikes: list[tuple[MetricState, list[float]]] = []  # recent spikes still in the window
        metrics = state.metrics
        for name, value in event.metrics.items():
            m = metrics.get(name)
            if value is None or m is None or not m.warm:
                return False
            if m.recent_spikes:
                # One spike a while ago is common (heavy-tailed metrics); enough for a
                # finding are left to the full path.
                kept = [t for t in m.recent_spikes if now - t <= spike_window]
                if len(kept) >= self.spike_count:
                    return False
                spikes.append((m, kept))
            b = m.baseline
            scale = b.scale
            if b.n <= b.warmup or not b.profile_ready or scale <= 0:
                return False
            expected = b.level + b.profile[hour] - b.profile_mean  # b.expected(hour)
            diff = value - expected
            if not math.isfinite(diff):
                return False
            size = expected if expected >= 0 else -expected
            tiny = 1e-12 * (size if size > 1.0 else 1.0)
            z = diff / (tiny if tiny > scale else scale)
            if z >= spike_z or z <= -spike_z:
                return False
            # A unit change may be under way; only a scale below ``tiny`` gets this far.
            unit = tiny > scale and self.unit_changes and abs(diff / scale) >= spike_z * 2
            if unit and _conversions(name):
                return False
            capped = z if z < z_cap else z_cap
            capped = capped if capped > -z_cap else -z_cap
            ewma = m.ewma + lam * (capped - m.ewma)
            var = m.ewma_var
            u = ewma / math.sqrt(lam_tail if lam_tail > var else var)
            combined += u * u
            if u >= 1 or u <= -1:
                moved = True
            plan.append((m, b, value, expected, z, ewma, u))
        if moved and combined >= chi2_quantile(len(plan), self.alert_tail):
            return False  # a drift finding
        state.device_id = event.device_id
        state.customer_id = state.customer_id or event.customer_id
        state.device_type = event.device_type
        state.interval = interval
        state.last_seen = now
        state.last_mode = event.mode
        state.silence_alerted = False
        for m, kept in spikes:
            m.recent_spikes = kept
        unit_changes, spike_rate_rate = self.unit_changes, self.spike_rate_rate
        freeze = self.freeze_sigma
        for m, b, value, expected, z, ewma, u in plan:
            m.last_z = z
            m.ewma = ewma
            if unit_changes:
                m.pending_unit, m.pending_count = -1, 0
            if u >= 1 or u <= -1:
                m.since = m.since or now
            else:
                m.since = None
            m.spike_rate += spike_rate_rate * (False - m.spike_rate)  # |z| < spike_z
            if -freeze < u < freeze:
                # MetricBaseline.learn_one of a warmed-up baseline whose profile is ready.
                b.n += 1
                k = HOURS * b.profile_min
                r = value - expected
                if b.n > b.warmup // 2:
                    bound = b.clip * b.scale
                    r = r if r < bound else bound
                    low = -b.clip * b.scale
                    r = r if r > low else low
                b.level += b.level_rate * r
                rate = b.profile_rate if b.profile_rate > 1 / k else 1 / k
                step = rate * (value - b.level - b.profile[hour])
                b.profile[hour] += step
                b.profile_mean += step / HOURS
                b.scale += b.scale_rate * (1.25 * abs(r) - b.scale)
                m.ewma_var += b.level_rate * (m.ewma * m.ewma - m.ewma_var)
        return True

    def _update_full(self, state: DeviceState, event: DeviceTelemetry) -> Alert | None:
        """``update`` for every reading: the reference the common path must agree with."""
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
        codes = []
        for code in event.error_codes:
            if self.is_fault_code(code):
                codes.append(code)
        if event.error_codes:
            _count(state, "codes_recognised", len(codes))
            _count(state, "codes_ignored", len(event.error_codes) - len(codes))
        state.remember_codes(now, codes, window)
        if event.mode != "normal":
            return None

        findings: list[tuple[int, str, float, str]] = []  # (rank, fault_kind, score, why)
        hour = event.event_time.hour
        spike_window = window
        if state.interval > 0:
            spike_window = min(window, self.spike_readings * state.interval)
        lam = self.ewma_rate
        lam_tail = lam / (2 - lam)  # an EWMA's variance for iid unit-variance input
        combined, scored = 0.0, 0
        movers: list[tuple[float, str, MetricState, float, float]] = []
        for name, value in event.metrics.items():
            if value is None:  # the sensor sent nothing usable (null or NaN)
                _count(state, "missing")
                continue
            m = state.metrics.get(name)
            if m is None:
                if len(state.metrics) >= METRICS_MAX:
                    _count(state, "metrics_ignored")  # bounded state: see METRICS_MAX
                    continue
                m = state.metrics[name] = MetricState(first_at=now, ewma_var=lam_tail)
            if (self.stuck_metrics and self._stuck(state, m, name, value)) or self._unit_changed(
                state, m, name, value, hour
            ):
                continue
            b = m.baseline
            expected = b.expected(hour)
            if not math.isfinite(value - expected):  # beyond what a float can subtract
                _count(state, "out_of_range")
                continue
            z = 0.0
            if b.n >= b.warmup:
                # A scale of 0 (a constant so far) makes any change the largest z there is.
                z = (value - expected) / max(b.scale, 1e-12 * max(1.0, abs(expected)))
            m.last_z = z
            m.ewma += lam * (max(-self.z_cap, min(self.z_cap, z)) - m.ewma)
            u = 0.0
            if m.warm or self._warmed(m, now):
                # Never narrower than an EWMA of independent noise: the spread learned over
                # a short warm-up is itself noisy, and too narrow a one cried wolf (simulator).
                u = m.ewma / math.sqrt(max(m.ewma_var, lam_tail))
                combined += u * u
                scored += 1
                if abs(u) >= 1:
                    m.since = m.since or now
                    movers.append((u * u, name, m, value, expected))
                else:
                    m.since = None
                if m.recent_spikes:
                    m.recent_spikes = [t for t in m.recent_spikes if now - t <= spike_window]
                if abs(z) >= self.spike_z:
                    m.recent_spikes = [*m.recent_spikes, now][-SPIKES_MAX:]
                if (
                    len(m.recent_spikes) >= self.spike_count
                    and _poisson_tail(len(m.recent_spikes), m.spike_rate * self.spike_readings)
                    < self.spike_tail
                ):
                    why = (
                        f"{name} spiked beyond {self.spike_z:g} sigma "
                        f"{len(m.recent_spikes)} times in {spike_window / 3600:.3g} h "
                        f"(now {value:.3g}, expected {expected:.3g})"
                    )
                    findings.append((_rank(abs(z)) + 1, f"spikes:{name}", abs(z), why))
            if b.n >= b.warmup and state.episode_since is None:
                # This metric's own rate of spikes while healthy, learned slowly so that a
                # burst cannot excuse itself: heavy-tailed metrics spike more often than 5
                # robust sigma say (SKAB's pressure: every 50 readings or so).
                rate = self.spike_rate_rate if m.warm else 1 / (b.n - b.warmup + 1)
                m.spike_rate += rate * ((abs(z) >= self.spike_z) - m.spike_rate)
            # Learning pauses for a metric while it is evidence, or the baseline would follow
            # the fault; the others go on learning (a wandering temperature must not look
            # like a fault because a valve closed).
            if abs(u) < self.freeze_sigma and abs(z) < self.spike_z:
                b.learn_one(value, hour)
                if b.n > b.warmup:
                    rate = b.level_rate if m.warm else b.scale_rate
                    m.ewma_var += rate * (m.ewma * m.ewma - m.ewma_var)

        calm = combined < scored  # below the chi-squared mean: hysteresis for the episode end
        if scored and combined >= chi2_quantile(scored, self.alert_tail) and movers:
            findings.append(self._drift(movers, combined, scored, now))

        fault_codes = state.fault_codes()
        if any(self.is_failure_code(c) for c in codes):
            failed = next(c for c in codes if self.is_failure_code(c))
            findings.append((3, "failure", 10.0, f"unit reported failure {failed}"))
        elif len(fault_codes) >= self.error_count:
            counts = {c: len(ts) for c, ts in sorted(state.codes.items())}
            why = "error " + ", ".join(f"{c} x{k}" for c, k in counts.items())
            findings.append(
                (2, "error_codes", float(len(fault_codes)), why + f" in {self.window_hours:g} h")
            )
        return self._decide(
            state,
            event.event_id,
            event.event_time,
            findings,
            fault_codes,
            metrics=event.metrics,
            calm=calm,
        )

    def _warmed(self, m: MetricState, now: float) -> bool:
        """Warm-up by time: the whole daily cycle seen on ``profile_min`` days, else the
        fall-backs (see the class). Days, not readings per hour: 15-minute data fills every
        hour twice in one day, and one day taught its EWMA spread too little (the hard
        simulator's 15-minute units cried wolf the next morning)."""
        b = m.baseline
        if b.n < b.warmup:
            return False
        span = now - (m.first_at or now)
        m.warm = (
            (b.profile_ready and span >= 0.95 * b.profile_min * 86400)
            or b.n >= self.warmup_readings
            or span >= self.warmup_hours_max * 3600
        )
        return m.warm

    def _drift(
        self,
        movers: list[tuple[float, str, MetricState, float, float]],
        combined: float,
        scored: int,
        now: float,
    ) -> tuple[int, str, float, str]:
        """The drift finding: named after the metric that moved most, explained per metric."""
        movers.sort(key=lambda mv: -mv[0])
        top = movers[0]
        reasons = []
        for share, name, m, value, expected in movers[:3]:
            if share < 0.1 * combined and reasons:
                break
            hours = (now - (m.since or now)) / 3600
            direction = "above" if m.ewma >= 0 else "below"
            reasons.append(
                f"{name} {abs(m.ewma):.1f} sigma {direction} this unit's baseline "
                f"({value:.3g} seen, {expected:.3g} expected at this hour) for {hours:.0f} h"
            )
        why = "; ".join(reasons)
        if scored > 1:
            limit = chi2_quantile(scored, self.alert_tail)
            why += f" (together {combined:.0f} against a limit of {limit:.0f} for {scored} metrics)"
        size = abs(top[2].ewma)
        return (_rank(size), f"drift:{top[1]}", size, why)

    def check_silence(self, state: DeviceState, now: datetime) -> Alert | None:
        """Alert if the device has not reported for too long by event time ``now``.

        Call it as the stream's event time advances (the agent does, per partition, every
        event-time hour; the replay likewise). Too long means ``silence_intervals`` of the
        unit's usual interval, and at least ``silence_hours_min``. Devices in maintenance when
        they went quiet are left alone; one alert per silent spell.
        """
        at = now.timestamp()
        if not self.silent(state.to_silence(), at):
            return None
        assert state.last_seen is not None  # silent says so
        quiet = at - state.last_seen
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
            calm=False,
        )

    def silent(self, state: Mapping[str, Any], at: float) -> bool:
        """Whether a device whose state has these fields (``DeviceState.to_silence``, or its
        stored document) is silent at epoch seconds ``at`` and not yet alerted for it; for
        :meth:`check_silence`, and for the step, which reads stored documents without
        decoding each one every event-time hour."""
        # Defaults as from_dict's: a document of an older version may lack a field.
        last_seen, interval = state.get("last_seen"), state.get("interval", 0.0)
        alerted, mode = state.get("silence_alerted", False), state.get("last_mode", "normal")
        if last_seen is None or alerted or mode != "normal":
            return False
        limit = max(self.silence_hours_min * 3600, self.silence_intervals * interval)
        return interval != 0 and at - last_seen >= limit

    def visit_outcome(self, state: DeviceState, outcome: str) -> None:
        """A technician's verdict ends the episode. ``no_fault_found``: the unit's readings are
        its normal, so every baseline moves to where the metric is now. ``fixed``: the unit is
        back to its normal, so the baselines stay and the evidence is dropped.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        self._settle(state, move=outcome == "no_fault_found")
        _count(state, f"outcome_{outcome}")

    def _settle(self, state: DeviceState, *, move: bool) -> None:
        """End the episode; with ``move``, the metrics' current levels become their baseline."""
        for m in state.metrics.values():
            if move and abs(m.ewma) >= 1:
                # Re-learn where the metric is now: its level jumps by what the (capped)
                # evidence says, then learns fast again, as in warm-up, for the rest.
                m.baseline.shift(m.ewma * m.baseline.scale)
                m.baseline.n = min(m.baseline.n, m.baseline.warmup // 2)
            m.ewma, m.since, m.recent_spikes = 0.0, None, []
        state.episode_since, state.last_alert_rank, state.calm = None, -1, 0
        _count(state, "episodes_ended")

    def _decide(
        self,
        state: DeviceState,
        source_id: str,
        at: datetime,
        findings: list[tuple[int, str, float, str]],
        fault_codes: list[str],
        metrics: dict[str, float | None],
        calm: bool,
    ) -> Alert | None:
        """One alert per episode, more only if worse; the episode ends when the unit is calm
        for ``settle_readings`` readings, or settles at a new normal after ``settle_hours``."""
        now = at.timestamp()
        if state.episode_since is not None:
            state.calm = state.calm + 1 if calm and not findings else 0
            if state.calm >= self.settle_readings:
                self._settle(state, move=False)
            elif now - (state.last_alert_at or now) >= self.settle_hours * 3600:
                self._settle(state, move=True)  # held without getting worse: the new normal
                _count(state, "settled")
                return None
        if not findings:
            return None
        findings.sort(reverse=True)
        rank, fault_kind, score, _ = findings[0]
        rank = min(rank, len(SEVERITIES) - 1)
        if state.episode_since is not None and rank <= state.last_alert_rank:
            return None  # same episode, nothing new to say
        if state.episode_since is None:
            state.episode_since, state.calm = now, 0
            _count(state, "episodes")
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
            detector="device_faults.v2",
        )

    def _stuck(self, state: DeviceState, m: MetricState, name: str, value: float) -> bool:
        """A sensor repeating the exact same value for longer than this metric ever does when
        healthy is stuck, not healthy: skip it. Repeats are judged against the metric's own
        rate of repeats, so count data full of zeros is not stuck (issue 15: a rule of 3
        equal readings dropped 94% of one real series). Only for ``stuck_metrics``."""
        folded = name.casefold()
        if not any(fnmatchcase(folded, p.casefold()) for p in self.stuck_metrics):
            return False
        same = value == m.last_value
        m.last_value = value
        run_before = m.same_count
        m.same_count = m.same_count + 1 if same else 0
        was = self._is_stuck(m, run_before)
        stuck = self._is_stuck(m, m.same_count)
        if not same and not was:
            # The healthy rate of repeats (a running mean at first, then slowly moving),
            # learned from a run once it has ended: a run must not excuse itself.
            for repeated in [1] * min(run_before, 100) + [0]:
                rate = max(1 / (m.baseline.n + 1), 0.02)
                m.repeat_rate += rate * (repeated - m.repeat_rate)
        if stuck and not was:
            # Evidence gathered from the stuck value is no evidence: start over.
            m.ewma, m.since, m.recent_spikes = 0.0, None, []
            _count(state, "frozen")
        return stuck

    def _is_stuck(self, m: MetricState, repeats: int) -> bool:
        return repeats + 1 >= self.stuck_readings and m.repeat_rate**repeats < self.stuck_tail

    def _unit_changed(
        self, state: DeviceState, m: MetricState, name: str, value: float, hour: int
    ) -> bool:
        """A metric whose name states a unit (``outlet_temp_c``) and whose readings match the
        baseline converted to that unit's counterpart (C to F, bar to psi, mm/s to in/s, V to
        mV, or back) ``unit_change_readings`` times in a row changed unit: convert the baseline
        and go on, rather than call a technician for an arithmetic problem."""
        if not self.unit_changes:
            return False
        conversions = _conversions(name)
        b = m.baseline
        if (
            not conversions
            or b.n < b.warmup
            or b.scale <= 0
            or abs(b.score_one(value, hour)) < self.spike_z * 2
        ):
            m.pending_unit, m.pending_count = -1, 0
            return False
        expected = b.expected(hour)
        for i, (a, c) in enumerate(conversions):
            if abs(value - (a * expected + c)) <= 4 * b.scale * abs(a):
                m.pending_count = m.pending_count + 1 if m.pending_unit == i else 1
                m.pending_unit = i
                if m.pending_count >= self.unit_change_readings:
                    b.level = a * b.level + c
                    b.profile = [a * p for p in b.profile]
                    b.profile_mean *= a
                    b.scale *= abs(a)
                    m.pending_unit, m.pending_count = -1, 0
                    m.ewma, m.since = 0.0, None
                    _count(state, "unit_change")
                return True
        m.pending_unit, m.pending_count = -1, 0
        return False


@lru_cache(maxsize=4096)
def _conversions(name: str) -> tuple[tuple[float, float], ...]:
    """The unit conversions a metric's name allows: to its unit's counterpart and back."""
    folded = name.casefold()
    for suffix, (a, c) in UNIT_CONVERSIONS.items():
        if folded.endswith(suffix):
            return ((a, c), (1 / a, -c / a))
    return ()


def _poisson_tail(k: int, mean: float) -> float:
    """P(N >= k) for N ~ Poisson(``mean``): how surprising ``k`` spikes are at this rate."""
    if mean <= 0:
        return 0.0
    term = total = math.exp(-mean)
    for i in range(1, k):
        term *= mean / i
        total += term
    return max(0.0, 1.0 - total)


def _count(state: DeviceState, name: str, n: int = 1) -> None:
    if n:
        state.counters[name] = state.counters.get(name, 0) + n


def _rank(z: float) -> int:
    """Severity rank from the size of the deviation: <4 sigma medium, <8 high, else critical."""
    if not math.isfinite(z):
        return 3
    return 1 if z < 4 else 2 if z < 8 else 3
