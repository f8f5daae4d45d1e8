"""Replay: the stream detectors over a CSV history give what they give in the stream."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from console.cli import main
from simulator import build_world, world_events
from simulator.export import write_csv
from streams.device_faults.detector import DeviceFaultDetector, DeviceState
from streams.replay import replay_customers, replay_devices


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    folder = tmp_path_factory.mktemp("history")
    world = build_world(n_customers=40, days=20, start=datetime(2026, 1, 5, tzinfo=UTC), seed=4)
    write_csv(world_events(world), folder)
    return world, folder


def _device_replay(folder):
    return replay_devices(
        folder / "device_telemetry.csv",
        time_column="time",
        entity_column="device_id",
        error_codes_column="error_codes",
        customer_column="customer_id",
        mode_column="mode",
        firmware_column="firmware",
    )


def test_device_replay_matches_the_detector_on_the_events(history):
    world, folder = history
    result = _device_replay(folder)
    detector, states = DeviceFaultDetector(), defaultdict(DeviceState)
    direct = [
        (a.device_id, a.fault_kind)
        for e in world_events(world)
        if e.topic == "device-telemetry"
        if (a := detector.update(states[e.device_id], e))
    ]
    replayed = [(a.device_id, a.fault_kind) for a in result.alerts if a.fault_kind != "silence"]
    assert replayed == direct
    assert {f.device_id for f in world.faults} <= {a.device_id for a in result.alerts}
    assert result.entities == len(world.devices) and not result.skipped


def test_device_replay_flags_a_unit_that_stops_reporting(history, tmp_path):
    world, folder = history
    quiet = next(d.device_id for d in world.devices if d.fault is None)
    lines = (folder / "device_telemetry.csv").read_text().splitlines()
    cut = [ln for ln in lines if f",{quiet}," not in ln or ln < "2026-01-15"]
    (tmp_path / "cut.csv").write_text("\n".join(cut) + "\n")
    result = replay_devices(
        tmp_path / "cut.csv",
        time_column="time",
        entity_column="device_id",
        mode_column="mode",
        firmware_column="firmware",
        error_codes_column="error_codes",
    )
    (alert,) = [a for a in result.alerts if a.device_id == quiet]
    assert alert.fault_kind == "silence"
    assert alert.event_time.date().isoformat() == "2026-01-15"


def test_bad_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "readings.csv"
    rows = ["ts,unit,temp"] + [f"2026-01-05T{h:02d}:00:00,U1,{20 + h % 3}" for h in range(20)]
    rows += ["2026-01-06T00:00:00,U1,inf", "2026-01-06T01:00:00,,21"]
    path.write_text("\n".join(rows) + "\n")
    result = replay_devices(path, time_column="ts", entity_column="unit")
    assert result.rows == 22
    assert sum(result.skipped.values()) == 2


def test_unknown_column_is_a_clear_error(tmp_path):
    path = tmp_path / "readings.csv"
    path.write_text("ts,unit,temp\n2026-01-05T00:00:00,U1,20\n")
    with pytest.raises(ValueError, match="--time-column 'time' is not in"):
        replay_devices(path, time_column="time", entity_column="unit")


def test_customer_replay_flags_churners_early(history):
    world, folder = history
    result = replay_customers(
        folder / "customer_events.csv", time_column="time", entity_column="customer_id"
    )
    flagged = {a.customer_id for a in result.alerts if a.kind == "churn_risk"}
    churners = {c.customer_id for c in world.churns}
    assert flagged & churners
    assert any(a.kind == "negative_feedback" for a in result.alerts)


def test_replay_command_writes_alerts_csv(history, tmp_path):
    _, folder = history
    out = tmp_path / "alerts.csv"
    result = CliRunner().invoke(
        main,
        [
            "replay",
            "--detector",
            "device",
            "--input",
            str(folder / "device_telemetry.csv"),
            "--time-column",
            "time",
            "--entity-column",
            "device_id",
            "--error-codes-column",
            "error_codes",
            "--mode-column",
            "mode",
            "--firmware-column",
            "firmware",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("time,entity,customer_id,kind,fault_kind,severity")
    assert (len(lines) > 1 and "sigma" in out.read_text()) or "error" in out.read_text()


def test_customer_rows_with_pandas_types_are_taken_in(tmp_path):
    """The contracts are strict about types (no 1 for true, no 3.0 for a count): a CSV's bool
    columns and int columns with gaps (read as floats) must still replay, not be skipped."""
    path = tmp_path / "customers.csv"
    path.write_text(
        "time,customer,event,category,status,csat,ces_agree,first_contact_resolution,amount\n"
        "2026-01-05T10:00:00Z,C1,ticket,complaint,opened,1,False,True,\n"
        "2026-01-05T11:00:00Z,C1,ticket,question,resolved,,True,False,\n"
        "2026-01-05T12:00:00Z,C1,order,,placed,,,,59.9\n"
    )
    result = replay_customers(path, time_column="time", entity_column="customer")
    assert not result.skipped, result.skipped
    assert "negative_feedback" in {a.kind for a in result.alerts}


def test_summary_counts_recognised_and_ignored_codes_and_zoneless_times(tmp_path):
    path = tmp_path / "readings.csv"
    rows = ["ts,unit,temp,codes"]
    rows += [
        f"2026-01-05T{h:02d}:00:00,U1,{20 + h % 3},{'error3;W1' if h == 5 else ''}"
        for h in range(20)
    ]
    rows += ["2026-01-06T00:00:00+00:00,U1,21,E7", "2026-01-06T01:00:00Z,U1,,"]
    path.write_text("\n".join(rows) + "\n")
    result = replay_devices(
        path, time_column="ts", entity_column="unit", error_codes_column="codes"
    )
    summary = result.summary()
    assert summary["error_codes"]["recognised"]["most_common"] == {"error3": 1, "E7": 1}
    assert summary["error_codes"]["ignored"]["most_common"] == {"W1": 1}
    assert summary["notes"]["times without a zone, read as UTC"] == 20
    assert summary["notes"]["missing values in temp"] == 1


def test_a_file_without_numeric_metrics_is_a_clear_error(tmp_path):
    path = tmp_path / "readings.csv"
    path.write_text("ts,unit,state\n2026-01-05T00:00:00Z,U1,on\n")
    with pytest.raises(ValueError, match="no numeric metric column"):
        replay_devices(path, time_column="ts", entity_column="unit")
