"""The device agent's scoring step without Kafka (issue 19): microseconds per reading, two
comparisons in one process on the same simulator readings.

* ``device_step``: :class:`DeviceFaultStep` over runs of ``RUN`` readings of one partition,
  its states held between checkpoints of ``RUNS_PER_CHECKPOINT`` runs (``Checkpoint.held``,
  what the agent does), against the same step reading and writing each state's table document
  once per run (what the agent did before).
* ``device_detector``: ``DeviceFaultDetector.update`` (common path first) against
  ``_update_full`` alone, on the same readings and copies of the same warmed-up states.

``python -m bench --only device_step``. 80,000 readings/s per worker is 12.5 us per reading
for everything (validation, lake, state, scoring): the step's goal is its share of that.
"""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable

from bench.common import Result
from bench.stream import scenario_events
from forewarn.events import DeviceTelemetry
from streams.device_faults.detector import DeviceFaultDetector, DeviceState
from streams.device_faults.step import DeviceFaultStep

RUN = 500  # readings per run: one fetch of one partition at a few thousand readings/s
RUNS_PER_CHECKPOINT = 10  # runs of ~100 ms, checkpoints of 1 s
STEP_GOAL_US = 8.0  # about two thirds of the 12.5 us a reading may cost in all


def _readings(quick: bool) -> list[DeviceTelemetry]:
    events = scenario_events(30_000 if quick else 300_000)
    return [e for e in events if isinstance(e, DeviceTelemetry)]


def _per_run(readings: list[DeviceTelemetry]) -> float:
    """Seconds for the step with each state decoded and encoded once per run (before)."""
    store: dict = {}
    step = DeviceFaultStep(store, clock=lambda: float("inf"))
    start = time.perf_counter()
    for i in range(0, len(readings), RUN):
        out = step.run((0, i + j, r) for j, r in enumerate(readings[i : i + RUN]))
        for key, state in out.states.items():
            store[key] = state.to_dict()
    return time.perf_counter() - start


def _held(readings: list[DeviceTelemetry]) -> float:
    """Seconds for the step with states held between checkpoints (the agent now)."""
    store: dict = {}
    held: dict[str, DeviceState] = {}
    step = DeviceFaultStep(store, clock=lambda: float("inf"), held=held)
    start = time.perf_counter()
    for n, i in enumerate(range(0, len(readings), RUN)):
        out = step.run((0, i + j, r) for j, r in enumerate(readings[i : i + RUN]))
        held.update(out.states)
        if n % RUNS_PER_CHECKPOINT == RUNS_PER_CHECKPOINT - 1:
            store.update({key: state.to_dict() for key, state in held.items()})
            held.clear()
    return time.perf_counter() - start


def _detector(readings: list[DeviceTelemetry]) -> tuple[float, float, int]:
    """Seconds of ``update`` and of ``_update_full`` on the second half of the readings, from
    the same states (warmed up on the first half); and the alerts, which must agree."""
    detector = DeviceFaultDetector()
    warm: dict[str, DeviceState] = {}
    half = len(readings) // 2
    for r in readings[:half]:
        detector.update(warm.setdefault(r.device_id, DeviceState()), r)
    timings = {}
    alerts = {}
    for name, update in (("common", detector.update), ("full", detector._update_full)):
        states = copy.deepcopy(warm)
        start = time.perf_counter()
        raised = [update(states.setdefault(r.device_id, DeviceState()), r) for r in readings[half:]]
        timings[name] = time.perf_counter() - start
        alerts[name] = [a.alert_id for a in raised if a is not None]
    if alerts["common"] != alerts["full"]:
        raise AssertionError("the common path changed the alerts")
    return timings["common"], timings["full"], len(alerts["common"])


def _best(fn: Callable[[], float], rounds: int) -> float:
    return min(fn() for _ in range(rounds))


def run(quick: bool = False) -> list[Result]:
    readings = _readings(quick)
    n = len(readings)
    rounds = 1 if quick else 3
    gc.collect()
    gc.freeze()  # as the worker does after start-up (streams/__main__.py)
    before = _best(lambda: _per_run(readings), rounds)
    now = _best(lambda: _held(readings), rounds)
    common, full, alerts = _detector(readings)
    us = 1e6 / n
    devices = len({r.device_id for r in readings})
    return [
        Result(
            name="device_step",
            figures={"us_per_reading": round(now * us, 2), "readings": n},
            units={"us_per_reading": "us", "readings": "readings (one partition)"},
            baseline_name="states decoded and encoded once per run",
            baseline={"us_per_reading": round(before * us, 2)},
            ratio=round(now / before, 3),
            ratio_of="held / per run (lower is better)",
            goal=f"<= {STEP_GOAL_US:g} us per reading (its share of 12.5 us at 80,000/s)",
            goal_met=now * us <= STEP_GOAL_US,
            runs=rounds,
            notes={"devices": devices, "run": RUN, "runs_per_checkpoint": RUNS_PER_CHECKPOINT},
        ),
        Result(
            name="device_detector",
            figures={"us_per_reading": round(common * 2 * us, 2)},
            units={"us_per_reading": "us"},
            baseline_name="the full path alone",
            baseline={"us_per_reading": round(full * 2 * us, 2)},
            ratio=round(common / full, 3),
            ratio_of="update / _update_full (lower is better)",
            goal="faster than the full path with the same alerts",
            goal_met=common < full,
            notes={"alerts": alerts, "readings_timed": n - n // 2},
        ),
    ]
