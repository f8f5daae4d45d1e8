"""The Airflow environment: Airflow 3.3, Great Expectations 1.x, scikit-learn, and the shared
packages, without Faust (whose pins conflict with Airflow's; docs/architecture.md)."""

from __future__ import annotations

import importlib.util
from importlib.metadata import version

from console.envcheck import check
from forewarn.lake import LakeWriter, read_events
from outreach.migrate import migrate
from outreach.store import TaskStore
from tests.utils import factories


def test_locked_versions_are_installed():
    assert check("airflow") == []
    assert version("apache-airflow").startswith("3.3.")
    assert version("great-expectations").startswith("1.")


def test_faust_is_not_in_this_environment():
    assert importlib.util.find_spec("faust") is None


def test_shared_lake_and_store_work_here(tmp_path):
    LakeWriter(tmp_path / "lake").write([factories.telemetry(i) for i in range(3)])
    assert read_events(tmp_path / "lake", "device-telemetry").num_rows == 3
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    migrate(url)
    store = TaskStore(url)
    assert store.upsert_alert(factories.alert()).created
