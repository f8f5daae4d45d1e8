"""The nightly's logic takes its day from the DAG (Airflow's data interval), never from the
clock or from Airflow itself: models/ imports no Airflow, so a rerun of a day is that day."""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from forewarn.settings import Settings
from models.nightly import NightlyContext, run_day

MODELS = sorted((Path(__file__).resolve().parents[2] / "models").glob("*.py"))


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_models_import_no_airflow(path):
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {n for n in names if n.split(".")[0] == "airflow"}


def test_the_day_comes_from_the_run_not_the_clock():
    midnight = datetime(2026, 3, 1, tzinfo=UTC)
    assert run_day(midnight, datetime(2026, 3, 2, tzinfo=UTC)) == date(2026, 3, 1)
    assert run_day(midnight, midnight) == date(2026, 2, 28)
    assert run_day(None, None, logical_date=midnight) == date(2026, 2, 28)
    with pytest.raises(ValueError, match="data interval or logical date"):
        run_day(None, None, None)


def test_settings_configure_the_nightly(tmp_path, monkeypatch):
    monkeypatch.setenv("FOREWARN_RETENTION_CAPACITY", "7")
    monkeypatch.setenv("FOREWARN_FEATURE_CHUNK_CUSTOMERS", "150")
    monkeypatch.setenv("FOREWARN_PUBLISH_BOOTSTRAP", "kafka:9092")
    ctx = NightlyContext(date(2026, 3, 1), Settings().with_home(tmp_path))
    assert (ctx.capacity, ctx.chunk_customers, ctx.bootstrap) == (7, 150, "kafka:9092")
    assert ctx.registry == tmp_path / "models" / "churn"
