"""Why the device detector's baseline is hand-written rather than built from river.

The worker writes each device's detector state to a Faust changelog on every reading, so the
cost that matters is update + state round trip (serialize, deserialize) per reading. This
compares, in one process on the same readings:

* ours: ``MetricBaseline`` + the EWMA evidence (``DeviceFaultDetector``), JSON state as the table
  stores it;
* river: ``stats.EWMean`` + ``stats.EWVar`` + ``drift.PageHinkley`` per metric, pickled.

Run: ``python bench/detector_state.py`` in an environment with river installed
(``uv pip install river`` into a scratch venv; river is not a dependency of Forewarn). Without
river, only ours is measured (``--ours-only`` says so explicitly). ``--compare PATH`` times
ours against the detector of another checkout (``PATH``, e.g. the main branch's) in one
process, in alternating rounds, and prints the median ratio.
"""

from __future__ import annotations

import json
import pickle
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from forewarn.events import DeviceTelemetry
from streams.device_faults.detector import DeviceFaultDetector, DeviceState

N = 20_000
METRICS = ("vibration_mm_s", "outlet_temp_c", "current_a")


def readings() -> list[DeviceTelemetry]:
    rng = np.random.default_rng(0)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    return [
        DeviceTelemetry.model_construct(
            event_id=f"e{i}",
            event_time=t0 + timedelta(hours=i),
            device_id="D1",
            customer_id="C1",
            device_type="heat_pump",
            error_codes=[],
            mode="normal",
            firmware="1.0.0",
            metrics={m: float(v) for m, v in zip(METRICS, rng.normal(5, 0.5, 3), strict=True)},
        )
        for i in range(N)
    ]


def ours(events: list[DeviceTelemetry]) -> tuple[float, int]:
    detector, blob = DeviceFaultDetector(), json.dumps(DeviceState().to_dict())
    start = time.perf_counter()
    for e in events:
        state = DeviceState.from_dict(json.loads(blob))
        detector.update(state, e)
        blob = json.dumps(state.to_dict())
    return (time.perf_counter() - start) / len(events) * 1e6, len(blob)


def river_based(events: list[DeviceTelemetry]) -> tuple[float, int]:
    from river import drift, stats

    state = {
        m: (stats.EWMean(fading_factor=0.01), stats.EWVar(fading_factor=0.01), drift.PageHinkley())
        for m in METRICS
    }
    blob = pickle.dumps(state)
    start = time.perf_counter()
    for e in events:
        state = pickle.loads(blob)
        for m, (mean, var, ph) in state.items():
            x = e.metrics[m]
            z = (x - mean.get()) / (var.get() ** 0.5 or 1.0)
            ph.update(z)
            mean.update(x)
            var.update(x)
        blob = pickle.dumps(state)
    return (time.perf_counter() - start) / len(events) * 1e6, len(blob)


def compare(other_root: str, rounds_of: int = 1000) -> str:
    """Ours against the detector of another checkout (``other_root``), in one process, in
    alternating rounds of ``rounds_of`` readings after a shared warm-up: on a busy machine the
    load moves between two separate runs, so only the per-round ratio means something."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "other_detector", f"{other_root}/streams/device_faults/detector.py"
    )
    assert spec is not None and spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    sys.modules["other_detector"] = other  # dataclasses look their module up
    spec.loader.exec_module(other)
    events = readings()

    def run(detector, state_type, chunk, blob):
        start = time.perf_counter()
        for e in chunk:
            state = state_type.from_dict(json.loads(blob))
            detector.update(state, e)
            blob = json.dumps(state.to_dict())
        return (time.perf_counter() - start) / len(chunk) * 1e6, blob

    sides = {
        "ours": (DeviceFaultDetector(), DeviceState),
        "other": (other.DeviceFaultDetector(), other.DeviceState),
    }
    blobs = {
        k: run(d, t, events[:2000], json.dumps(t().to_dict()))[1] for k, (d, t) in sides.items()
    }
    times: dict[str, list[float]] = {"ours": [], "other": []}
    for k in range(2000, N, rounds_of):
        for side, (detector, state_type) in sides.items():
            spent, blobs[side] = run(detector, state_type, events[k : k + rounds_of], blobs[side])
            times[side].append(spent)
    ratios = [o / t for o, t in zip(times["ours"], times["other"], strict=True)]
    return (
        f"per reading, update + state round trip, {len(ratios)} alternating rounds of "
        f"{rounds_of:,}: ours {statistics.median(times['ours']):.1f} us, {other_root} "
        f"{statistics.median(times['other']):.1f} us; median ratio ours / other "
        f"{statistics.median(ratios):.3f}"
    )


if __name__ == "__main__":
    import importlib.util
    import sys

    if "--compare" in sys.argv:
        print(compare(sys.argv[sys.argv.index("--compare") + 1]))
        sys.exit(0)
    events = readings()
    if "--ours-only" in sys.argv or importlib.util.find_spec("river") is None:
        times = [ours(events) for _ in range(3)]
        print(
            f"per reading, update + state round trip (median of 3 x {N:,}): ours "
            f"{statistics.median(t[0] for t in times):.1f} us, state {times[0][1]:,} bytes "
            "(river not installed: not measured)"
        )
        sys.exit(0)
    runs = {"ours": [], "river": []}
    for _ in range(3):
        runs["ours"].append(ours(events))
        runs["river"].append(river_based(events))
    o = statistics.median(r[0] for r in runs["ours"])
    r = statistics.median(r[0] for r in runs["river"])
    print(f"per reading, update + state round trip (median of 3 x {N:,}):")
    print(
        f"  ours  (EWMA evidence, spikes, codes, hour profile; JSON) {o:7.1f} us, state "
        f"{runs['ours'][0][1]:,} bytes"
    )
    print(
        f"  river (EWMean, EWVar, PageHinkley only; pickle)  {r:7.1f} us, state "
        f"{runs['river'][0][1]:,} bytes"
    )
    print(f"  ratio river / ours: {r / o:.2f}")
