"""The nightly DAG in a real Airflow 3.3 (its own metadata database per test), end to end.

Airflow reads its configuration at import, so every Airflow call runs in a subprocess with
this test's AIRFLOW_HOME; ``airflow dags test`` runs the whole DAG in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from console.cli import main
from forewarn.events import SCHEMAS
from forewarn.lake import arrow_schema, read_events, write_parquet_atomic
from outreach.store import TaskStore

ROOT = Path(__file__).parents[2]
AIRFLOW = Path(sys.executable).parent / "airflow"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lake_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("forewarn")
    result = CliRunner().invoke(
        main,
        [
            "--home",
            str(home),
            "simulate",
            "--customers",
            "150",
            "--days",
            "60",
            "--to",
            "lake",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    return home


def _airflow(home: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp / 'airflow.db'}",
        "FOREWARN_HOME": str(home),
        "FOREWARN_NIGHTLY_RETRIES": "0",
        # Shards of 60 of the 150 customers: build_features runs as three mapped tasks.
        "FOREWARN_NIGHTLY_SHARD_CUSTOMERS": "60",
        "PYTHONPATH": str(ROOT),
    }
    if not (tmp / "airflow.db").exists():
        subprocess.run(
            [str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True, text=True
        )
    return subprocess.run(
        [str(AIRFLOW), *args], env=env, capture_output=True, text=True, timeout=600
    )


def _run(home: Path, tmp: Path, logical_date: str) -> str:
    done = _airflow(home, tmp, "dags", "test", "forewarn_nightly", logical_date)
    return done.stdout + done.stderr


def test_dag_file_parses_without_errors(tmp_path):
    done = _airflow(tmp_path, tmp_path, "dags", "list-import-errors", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] in ("[]", "No data found"), done.stdout
    listed = _airflow(tmp_path, tmp_path, "tasks", "list", "forewarn_nightly")
    assert set(listed.stdout.split()) >= {
        "compact_lake",
        "check_raw_events",
        "plan_features",
        "build_features",
        "join_features",
        "check_features",
        "train_churn",
        "lifetime_value",
        "at_risk_list",
        "service_kpis",
    }


def test_nightly_run_and_idempotent_rerun(lake_home, tmp_path):
    log = _run(lake_home, tmp_path, "2026-03-01")
    assert "state=success" in log, log[-3000:]
    nightly = lake_home / "nightly"
    features = nightly / "features" / "date=2026-02-28"
    parts = sorted(p.name for p in features.glob("part-*.parquet"))
    assert parts == [f"part-{k:05d}-of-00003.parquet" for k in range(3)], parts
    joined = pd.read_parquet(features / "features.parquet")
    assert len(joined) == sum(len(pd.read_parquet(features / p)) for p in parts)
    assert joined["customer_id"].nunique() > 100
    assert (nightly / "kpis" / "date=2026-02-28" / "kpis.parquet").exists()
    card = lake_home / "models" / "churn" / "2026-02-28" / "card.md"
    assert "ROC AUC" in card.read_text() and (card.parent / "card.png").exists()
    at_risk = (nightly / "lists" / "at-risk-2026-02-28.csv").read_text().splitlines()
    assert at_risk[0].startswith("rank,customer_id,p_churn") and len(at_risk) == 26
    store = TaskStore(f"sqlite:///{lake_home / 'outreach.db'}")
    before = {t.id: t.alert_count for t in store.tasks(kind="retention")}
    assert len(before) == 25

    rerun = _run(lake_home, tmp_path / "again", "2026-03-01")
    assert "state=success" in rerun
    after = {t.id: t.alert_count for t in store.tasks(kind="retention")}
    assert after == before, "a rerun of the day must neither add nor refresh tasks"
    assert (nightly / "lists" / "at-risk-2026-02-28.csv").read_text().splitlines() == at_risk


def test_a_failed_quality_gate_stops_training(lake_home, tmp_path):
    # An upstream bug writes an impossible survey answer into the day's tickets.
    day = read_events(lake_home / "lake", "tickets").to_pylist()[-1]
    bad = {**day, "event_id": "bad-1", "csat": 9}
    schema = arrow_schema(SCHEMAS["tickets"][1])
    folder = lake_home / "lake" / "topic=tickets" / "date=2026-02-20"
    write_parquet_atomic(pa.Table.from_pylist([bad], schema=schema), folder / "part-bad.parquet")
    log = _run(lake_home, tmp_path, "2026-02-21")
    assert "DataQualityError: suite tickets_day failed" in log
    assert "expect_column_values_to_be_between(column=csat" in log
    assert not (lake_home / "models" / "churn" / "2026-02-20").exists(), "no training"
    assert not (lake_home / "nightly" / "features" / "date=2026-02-20").exists()
