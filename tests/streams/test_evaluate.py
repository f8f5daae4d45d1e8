"""`forewarn evaluate`: the labelled backtest, its figures, and bad input that never crashes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from console.cli import main
from simulator import build_world, world_events
from simulator.export import write_csv
from streams.evaluate import Label, evaluate_devices, read_labels, score

HOUR = 3600.0


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    world = build_world(n_customers=40, days=20, start=datetime(2026, 1, 5, tzinfo=UTC), seed=4)
    write_csv(world_events(world), folder)
    labels = folder / "failures.csv"
    labels.write_text(
        "entity,start\n"
        + "".join(f"{f.device_id},{f.failure_time.isoformat()}\n" for f in world.faults)
    )
    churns = folder / "churns.csv"
    churns.write_text(
        "customer,churned\n"
        + "".join(f"{c.customer_id},{c.churn_time.isoformat()}\n" for c in world.churns)
    )
    return world, folder, labels


def test_lead_window_visits_and_false_visits_are_counted():
    labels = [Label("D1", 100 * HOUR, None), Label("D2", 50 * HOUR, 60 * HOUR)]
    alerts = [
        ("D1", 60 * HOUR),  # 40 h ahead: caught
        ("D1", 70 * HOUR),  # same visit
        ("D1", 99.5 * HOUR),  # a new visit, too late to count
        ("D2", 55 * HOUR),  # inside the window: caught, lead -5 h
        ("D2", 500 * HOUR),  # false
    ]
    spans = {"D1": (0.0, 1000 * HOUR), "D2": (0.0, 1190 * HOUR)}
    card = score(alerts, labels, spans=spans, lead_min_hours=1, lead_max_hours=48)
    assert (card.caught, card.recall, card.visits) == (2, 1.0, 4)
    assert (card.false_visits, card.late_visits) == (1, 1)
    assert card.leads_hours == [-5.0, 40.0]
    assert card.alerts_inside == 4 and card.alerts_outside == 1
    assert card.device_quarters == pytest.approx(2190 / (91.25 * 24), abs=1e-3)


def test_simulated_failures_are_caught_ahead_with_a_sweep(history, tmp_path):
    world, folder, labels = history
    evaluation = evaluate_devices(
        folder / "device_telemetry.csv",
        labels,
        time_column="time",
        entity_column="device_id",
        error_codes_column="error_codes",
        mode_column="mode",
        firmware_column="firmware",
        lead_max_hours=96,
    )
    assert evaluation.default.labels == len(world.faults)
    assert evaluation.default.recall >= 0.8
    assert len(evaluation.sweep) >= 5
    recalls = [c.recall for c in evaluation.sweep]  # from the most to the least sensitive
    assert recalls[0] >= recalls[-1]


def test_the_command_prints_and_writes_the_table_and_the_plot(history, tmp_path):
    _, folder, labels = history
    out = tmp_path / "eval"
    done = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--input",
            str(folder / "device_telemetry.csv"),
            "--labels",
            str(labels),
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
    assert done.exit_code == 0, done.output
    assert "false visits / device-quarter" in done.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["default"]["labels"] > 0
    assert (out / "sweep.png").stat().st_size > 1000
    assert (out / "sweep.csv").read_text().startswith("setting,")


@pytest.mark.parametrize(
    ("readings", "labels", "message"),
    [
        (
            "ts,device_id,t\n2026-01-05T00:00:00Z,D1,1\n",
            "entity,start\nD1,2026-01-06\n",
            "--time-column 'time' is not in",
        ),
        ("time,device_id,t\n2026-01-05T00:00:00Z,D1,1\n", "unit,start\nD1,2026-01-06\n", "labels"),
        (
            "time,device_id,state\n2026-01-05T00:00:00Z,D1,on\n",
            "entity,start\nD1,2026-01-06\n",
            "no numeric metric column",
        ),
        (
            "time,device_id,t\nnot a time,D1,1\n",
            "entity,start\nD1,2026-01-06\n",
            "no usable reading",
        ),
        ("", "entity,start\nD1,2026-01-06\n", "No columns to parse"),
    ],
)
def test_bad_input_is_a_clear_message_not_a_traceback(tmp_path, readings, labels, message):
    (tmp_path / "r.csv").write_text(readings)
    (tmp_path / "l.csv").write_text(labels)
    done = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--input",
            str(tmp_path / "r.csv"),
            "--labels",
            str(tmp_path / "l.csv"),
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert done.exit_code == 2
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert message in done.output


def test_awkward_but_valid_input_is_scored_and_reported(tmp_path):
    """No time zone, NaN, a constant series, negative and huge values, an unknown code."""
    rows = ["time,device_id,flat,neg,big,codes"]
    for h in range(24 * 10):
        big = 1e12 + (5e9 if h > 24 * 8 else 0) + (h % 7) * 1e8
        nan = "" if h % 11 == 0 else f"{-40 - h % 5}"
        code = "zz9" if h == 30 else ""
        rows.append(f"2026-01-{5 + h // 24:02d} {h % 24:02d}:00:00,D1,3.0,{nan},{big},{code}")
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "l.csv").write_text("entity,start\nD1,2026-01-14 12:00\nD9,2026-01-06\n")
    done = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--input",
            str(tmp_path / "r.csv"),
            "--labels",
            str(tmp_path / "l.csv"),
            "--error-codes-column",
            "codes",
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["notes"]["times without a zone, read as UTC"] == 240
    assert summary["notes"]["missing values in neg"] > 0
    assert summary["error_codes"]["ignored"]["most_common"] == {"zz9": 1}
    assert summary["labels"]["notes"]["labels of entities without readings (not scored)"] == 1
    assert summary["labels"]["notes"]["label times without a zone, read as UTC"] == 2
    assert summary["default"]["caught"] == 1


def test_labels_ending_before_they_start_are_skipped_and_counted(tmp_path):
    path = tmp_path / "l.csv"
    day, before = "2026-01-06T00:00:00Z", "2026-01-05T00:00:00Z"
    path.write_text(f"entity,start,end\nD1,{day},{before}\nD1,{day},\n,{day},\n")
    notes: Counter[str] = Counter()
    labels = read_labels(path, notes=notes)
    assert [(lb.entity, lb.end) for lb in labels] == [("D1", None)]
    assert notes["labels skipped: end before start"] == 1
    assert notes["labels skipped: no entity or start time"] == 1


def test_churn_flags_are_scored_against_churn_dates(history, tmp_path):
    world, folder, _ = history
    out = tmp_path / "churn"
    done = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--detector",
            "customer",
            "--input",
            str(folder / "customer_events.csv"),
            "--labels",
            str(folder / "churns.csv"),
            "--labels-entity-column",
            "customer",
            "--labels-start-column",
            "churned",
            "--output",
            str(out),
        ],
    )
    assert done.exit_code == 0, done.output
    assert "false visits / customer-quarter" in done.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["default"]["labels"] == len(world.churns)
    assert summary["default"]["recall"] > 0
    assert summary["lead_window_hours"] == [168, 2160]
