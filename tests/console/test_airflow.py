"""Airflow for one home (issue 18, item 3), without starting it: its environment, its size,
and what a failure says."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.airflow import AirflowError, _explain, airflow_env, parallelism, task_states
from forewarn.settings import Settings


def test_airflow_runs_on_the_same_home(tmp_path, monkeypatch):
    monkeypatch.delenv("FOREWARN_AIRFLOW_PARALLELISM", raising=False)
    env = airflow_env(Settings().with_home(tmp_path), port=8099)
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["FOREWARN_HOME"] == str(tmp_path)
    assert env["FOREWARN_DATABASE_URL"] == f"sqlite:///{tmp_path / 'outreach.db'}"
    assert env["AIRFLOW__API__PORT"] == "8099" and env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert Path(env["AIRFLOW__CORE__DAGS_FOLDER"], "forewarn_nightly.py").exists()
    assert env["PATH"].split(":")[0].endswith("bin"), "standalone finds its own airflow"


def test_task_slots_follow_the_cores_unless_set(monkeypatch):
    import os

    monkeypatch.delenv("FOREWARN_AIRFLOW_PARALLELISM", raising=False)
    assert parallelism() == (os.cpu_count() or 1)
    monkeypatch.setenv("FOREWARN_AIRFLOW_PARALLELISM", "3")
    assert parallelism() == 3
    monkeypatch.setenv("FOREWARN_AIRFLOW_PARALLELISM", "0")
    with pytest.raises(AirflowError, match="FOREWARN_AIRFLOW_PARALLELISM is '0'"):
        parallelism()


def test_a_locked_database_is_named_with_the_way_out(tmp_path):
    log = tmp_path / "nightly.log"
    log.write_text("sqlite3.OperationalError: database is locked\n")
    message = _explain("airflow dags test", log)
    assert "locked by another Airflow process" in message and "forewarn stop" in message


def test_task_states_from_a_dags_test_log(tmp_path):
    log = tmp_path / "nightly.log"
    log.write_text(
        "[info] Task instance state updated new_state=success rows_affected=1\n"
        "[info] [DAG TEST] end task task_id=check_raw_events map_index=-1\n"
        "[info] Task instance state updated new_state=failed rows_affected=1\n"
        "[info] [DAG TEST] end task task_id=build_features map_index=0\n"
        "[info] Task instance state updated new_state=success rows_affected=1\n"
        "[info] [DAG TEST] end task task_id=build_features map_index=1\n"
    )
    assert task_states(log) == {
        "check_raw_events": "success",
        "build_features[0]": "failed",  # a failed shard stays visible beside a good one
        "build_features[1]": "success",
    }
