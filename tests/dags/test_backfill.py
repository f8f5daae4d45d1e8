"""A backfill of a date range through real Airflow (scheduler, API server, DAG processor,
triggerer: ``airflow standalone``), several days at once."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest

from forewarn.lake import LakeWriter
from simulator import build_world
from simulator.render import customer_events
from tests.conftest import free_port_pair

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def test_backfill_of_three_days(tmp_path):
    world = build_world(n_customers=400, days=100, start=datetime(2026, 1, 5, tzinfo=UTC), seed=8)
    LakeWriter(tmp_path / "fw" / "lake").write(
        e for c in world.customers for e in customer_events(c, world)
    )
    port = free_port_pair()
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "FOREWARN_HOME": str(tmp_path / "fw"),
        "FOREWARN_NIGHTLY_RETRIES": "0",
        # Chunks of 150 of the 400 customers: build_features forks its worker processes
        # inside a real Airflow task, as it does at scale (25,000 a chunk by default).
        "FOREWARN_FEATURE_CHUNK_CUSTOMERS": "150",
        # Shards of 200: two mapped build_features tasks a day, run by the scheduler's
        # executor (LocalExecutor) as Celery or Kubernetes workers would run them.
        "FOREWARN_NIGHTLY_SHARD_CUSTOMERS": "200",
        "PYTHONPATH": str(ROOT),
    }

    def airflow(*args: str) -> str:
        # The metadata database is SQLite here: the CLI competes with the running scheduler
        # for its one write lock and can lose under load ("database is locked", seen in CI).
        # An operator would run the command again; so does the test, a few times.
        for _ in range(5):
            done = subprocess.run(
                [str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=120
            )
            out = done.stdout + done.stderr
            if "database is locked" not in out:
                return out
            time.sleep(2)
        return out

    log = (tmp_path / "standalone.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2)
                if '"dag_processor":{"status":"healthy"' in health.text.replace(" ", "") and (
                    "forewarn_nightly" in airflow("dags", "list")
                ):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(3)
        else:
            pytest.fail(
                "Airflow did not come up: " + (tmp_path / "standalone.log").read_text()[-3000:]
            )
        airflow("dags", "unpause", "forewarn_nightly")
        created = airflow(
            "backfill",
            "create",
            "--dag-id",
            "forewarn_nightly",
            "--from-date",
            "2026-04-11",
            "--to-date",
            "2026-04-13",
        )
        assert "Created backfill Dag run" in created, created[-2000:]
        # A guard against a hang, not a timing goal: three days of train_churn share two
        # cores with the rest of the suite in CI.
        deadline = time.monotonic() + 480
        while time.monotonic() < deadline:
            runs = [
                line
                for line in airflow("dags", "list-runs", "forewarn_nightly").splitlines()
                if "backfill__" in line
            ]
            if len(runs) == 3 and not any("running" in r or "queued" in r for r in runs):
                break
            time.sleep(5)
        assert len(runs) == 3 and all("success" in r for r in runs), runs
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        # standalone's children can outlive it, and each task's supervisor ("airflow worker --
        # <id>") runs in a process group of its own: clear every process of the session, or
        # a task still training goes on burning a core for the tests that follow.
        for child in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getsid(child.pid) == proc.pid:
                    child.kill()
    feature_logs = " ".join(
        path.read_text(errors="replace")
        for path in (tmp_path / "airflow" / "logs").rglob("*")
        if path.is_file() and "build_features" in str(path)
    )
    mapped = {
        (path.parents[2].name, path.parent.name)
        for path in (tmp_path / "airflow" / "logs").rglob("*")
        if path.is_file() and "task_id=build_features" in str(path)
    }
    assert {index for _, index in mapped} == {"map_index=0", "map_index=1"}, mapped
    assert len(mapped) == 6, "two shards for each of the three days"
    # What the Airflow UI lists for the mapped tasks: each shard by its place and customers.
    with contextlib.closing(sqlite3.connect(tmp_path / "airflow.db")) as db:
        names = db.execute(
            "SELECT DISTINCT rendered_map_index FROM task_instance"
            " WHERE task_id = 'build_features' AND run_id LIKE 'backfill__%'"
        ).fetchall()
    assert sorted(n for (n,) in names) == [
        "shard 1 of 2: 200 customers before C00201",
        "shard 2 of 2: 200 customers from C00201",
    ], names
    forks = min(2, os.cpu_count() or 1)  # two or more chunks, one process per core
    assert re.search(
        rf"features of \d+ customers in \d+ chunks, {forks} processes", feature_logs
    ), feature_logs[-2000:]
    lists = tmp_path / "fw" / "nightly" / "lists"
    assert sorted(p.name for p in lists.iterdir()) == [
        "at-risk-2026-04-10.csv",
        "at-risk-2026-04-11.csv",
        "at-risk-2026-04-12.csv",
    ]
