"""The command line: simulate to the lake (backfill) and to ground truth only."""

from __future__ import annotations

import json

from click.testing import CliRunner

from console.cli import main
from forewarn.lake import read_events


def test_simulate_backfills_the_lake(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "--home",
            str(tmp_path),
            "simulate",
            "--customers",
            "10",
            "--days",
            "5",
            "--to",
            "lake",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    written = int(result.output.split("wrote ")[1].split(" events")[0])
    rows = sum(
        read_events(tmp_path / "lake", t, columns=["event_id"]).num_rows
        for t in ("device-telemetry", "orders", "tickets")
    )
    assert rows == written > 0
    assert sorted(p.name for p in (tmp_path / "lake").iterdir()) == [
        "topic=device-telemetry",
        "topic=orders",
        "topic=tickets",
    ]


def test_simulate_truth_only(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "--home",
            str(tmp_path),
            "simulate",
            "--customers",
            "40",
            "--days",
            "20",
            "--to",
            "none",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "sim" / "truth" / "summary.json").read_text())
    assert summary["customers"] == 40 and summary["params"]["seed"] == 3
    assert not (tmp_path / "lake").exists()


def test_kafka_status_of_a_stopped_broker_exits_1(tmp_path):
    result = CliRunner().invoke(
        main, ["--home", str(tmp_path), "--bootstrap", "127.0.0.1:1", "kafka", "status"]
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["running"] is False


def test_files_under_home_are_private(tmp_path):
    """The lake holds ticket texts and the store tokens: whatever the user's umask, what the
    command line writes under FOREWARN_HOME is 0600 (folders 0700)."""
    import os
    import stat
    import subprocess
    import sys

    home = tmp_path / "home"
    command = [sys.executable, "-m", "console.cli", "--home", str(home)]
    args = ["simulate", "--customers", "3", "--days", "2", "--to", "lake"]
    done = subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$@"', "sh", *command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert done.returncode == 0, done.stderr
    paths = [p for p in home.rglob("*")]
    assert any(p.suffix == ".parquet" for p in paths)
    loose = [
        (str(p.relative_to(home)), oct(stat.S_IMODE(p.stat().st_mode)))
        for p in paths
        if stat.S_IMODE(p.stat().st_mode) & 0o077
    ]
    assert not loose, loose


def test_outreach_migrate_creates_the_schema(tmp_path):
    import sqlalchemy as sa

    from forewarn.settings import Settings

    result = CliRunner().invoke(main, ["--home", str(tmp_path), "outreach", "migrate"])
    assert result.exit_code == 0, result.output
    assert "outreach database at revision head" in result.output
    engine = sa.create_engine(Settings().with_home(tmp_path).database_url)
    try:
        assert "tasks" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_outreach_token_works_on_a_fresh_database(tmp_path):
    """The token commands may come first (a new install), so they bring the schema up."""
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    created = runner.invoke(main, [*home, "outreach", "token", "--role", "admin", "--name", "ann"])
    assert created.exit_code == 0, created.output
    revoked = runner.invoke(main, [*home, "outreach", "token", "revoke", "--name", "ann"])
    assert revoked.output.strip() == "revoked 1 token"
