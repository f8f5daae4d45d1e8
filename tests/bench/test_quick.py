"""`python -m bench --quick` runs every benchmark on small inputs and writes well-formed
results. Figures are not judged here (no benchmark is a timed test); their shape is."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.common import SHARED

ROOT = Path(__file__).resolve().parents[2]
BENCH_PYTHON = ROOT / ".venv" / "bench" / "bin" / "python"
EXPECTED = {
    "lifetime_value",
    "stream_throughput",
    "scale_out",
    "latency",
    "device_step",
    "device_detector",
    "nightly_at_scale",
    "kpis_one_day",
    "churn_model",
    "skab_outliers",
    "skab_changepoints",
}

pytestmark = [pytest.mark.slow, pytest.mark.kafka]
#: Results of the benchmarks that measure on reference data (../shared/data), by benchmark: a
#: clone without it skips them and says why.
ON_REFERENCE_DATA = {
    "clv": {"lifetime_value"},
    "detection": {"skab_outliers", "skab_changepoints"},
}


def test_quick_bench_writes_well_formed_results(tmp_path):
    if not BENCH_PYTHON.exists():
        pytest.fail("the benchmark environment is missing: `make .venv/bench/.stamp`")
    out = tmp_path / "results.json"
    done = subprocess.run(
        [str(BENCH_PYTHON), "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # Faust apps default to a data folder in the current directory (bench/faust_floor.py).
    assert not list(ROOT.glob("*-data")), "the bench left a Faust data folder in the checkout"
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["machine"]["cores"] >= 1
    assert report["errors"] == {}
    results = {r["name"]: r for r in report["results"]}
    if SHARED.joinpath("data").exists():
        assert report["skipped"] == {}
    else:
        assert set(report["skipped"]) == set(ON_REFERENCE_DATA), report["skipped"]
        assert all("reference data not found" in why for why in report["skipped"].values())
    missing = {name for bench in report["skipped"] for name in ON_REFERENCE_DATA[bench]}
    assert set(results) == EXPECTED - missing
    for r in results.values():
        assert r["figures"] and r["baseline"] and r["goal"], r["name"]
        assert set(r["units"]) >= set(r["figures"]), r["name"]
        assert isinstance(r["ratio"], float | int) and r["ratio"] == r["ratio"], r["name"]
        assert isinstance(r["goal_met"], bool)
    if "lifetime_value" in results:
        notes = results["lifetime_value"]["notes"]
        assert notes["max_relative_parameter_difference"] < 1e-3
    assert results["scale_out"]["notes"]["each_event_once"] is True, results["scale_out"]["notes"]
    assert results["stream_throughput"]["notes"]["duplicate_tasks"] == 0
    # Faust's floors ran on the same messages; runs skip Faust's per-message path, so their
    # floor is well above the per-message one, and the worker cannot pass it.
    notes = results["stream_throughput"]["notes"]
    assert notes["faust_run_floor_events_per_s"] > notes["faust_floor_events_per_s"] > 0
    assert (
        results["stream_throughput"]["figures"]["events_per_s"]
        < notes["faust_run_floor_events_per_s"]
    )
    assert results["stream_throughput"]["figures"]["readings_per_s"] > 0
    # The worker with its device step off (bench/ceiling_worker.py) did the rest of the work:
    # every event archived once, no reading scored.
    assert notes["step_off_lake_rows"] == results["stream_throughput"]["figures"]["events"]
    assert notes["step_off_readings_scored"] == 0
    assert notes["step_off_events_per_s"] > 0
    # Paces between 10% and 90% archived: 0.0 only when a drain is too short to sample.
    assert notes["steady_events_per_s"] >= 0 and notes["step_off_steady_events_per_s"] >= 0
    # The quick nightly maps its feature build over shards of 4,000 customers, as Airflow would.
    assert results["nightly_at_scale"]["notes"]["feature_shards"]["10000"]["shards"] == 3
    assert (out.with_suffix(".md")).read_text().startswith("| benchmark |")
    assert "| stream_throughput |" in done.stdout
