"""The quality gates fail for data (issue 18): not retried, and an empty day says where it
looked, which days the lake holds and how to fill it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from expectations.runner import DataQualityError
from models.nightly import check_raw_events

ROOT = Path(__file__).parents[2]


def test_an_empty_day_names_the_folder_and_the_days_there_are(tmp_path):
    lake = tmp_path / "lake"
    (lake / "topic=tickets" / "date=2026-01-05").mkdir(parents=True)
    (lake / "topic=tickets" / "date=2026-01-09").mkdir(parents=True)
    with pytest.raises(DataQualityError) as failed:
        check_raw_events(lake, date(2026, 2, 3), tmp_path / "gx")
    message = str(failed.value)
    assert f"no tickets for 2026-02-03 in {lake}/topic=tickets/date=2026-02-03" in message
    assert "it holds 2026-01-05 to 2026-01-09" in message
    assert "make demo" in message and "FOREWARN_HOME" in message


def test_an_empty_lake_says_so(tmp_path):
    with pytest.raises(DataQualityError, match="it holds no days at all"):
        check_raw_events(tmp_path / "lake", date(2026, 2, 3), tmp_path / "gx")


def test_the_gates_are_not_retried_and_the_rest_are(tmp_path):
    script = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(ROOT / 'dags')!r})\n"
        "dag = bag.dags['forewarn_nightly']\n"
        "print(json.dumps({t.task_id: t.retries for t in dag.tasks}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "FOREWARN_NIGHTLY_RETRIES": "2",
            "PYTHONPATH": str(ROOT),
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    retries = json.loads(done.stdout.strip().splitlines()[-1])
    assert retries["check_raw_events"] == 0 and retries["check_features"] == 0
    assert retries["train_churn"] == 2 and retries["build_features"] == 2
