"""Great Expectations suites run from a plain task: pass on good data, fail with reasons."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from expectations.runner import DataQualityError, load_suite, validate
from forewarn.lake import LakeWriter, read_events
from simulator import build_world, world_events


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    world = build_world(n_customers=60, days=3, start=datetime(2026, 1, 5, tzinfo=UTC), seed=2)
    LakeWriter(lake).write([e for e in world_events(world) if e.topic != "device-telemetry"])
    return read_events(lake, "tickets").to_pandas(), read_events(lake, "orders").to_pandas()


def test_good_day_passes_and_builds_data_docs(day, tmp_path):
    tickets, _ = day
    report = validate(tickets, "tickets_day", tmp_path, {"min_rows": 1, "max_rows": 10_000})
    assert report.success and report.evaluated == 8
    assert report.docs_url.startswith("file://") and (tmp_path / "gx").exists()


def test_bad_day_fails_naming_each_problem(day, tmp_path):
    _, orders = day
    bad = pd.concat([orders, orders.head(1)])  # a duplicated event
    bad.loc[bad.index[0], "amount"] = -5.0
    with pytest.raises(DataQualityError) as info:
        validate(bad, "orders_day", tmp_path, {"min_rows": 1, "max_rows": 10_000})
    message = str(info.value)
    assert "expect_column_values_to_be_unique(column=event_id)" in message
    assert "expect_column_values_to_be_between(column=amount" in message


def test_volume_against_recent_days(day, tmp_path):
    tickets, _ = day
    with pytest.raises(DataQualityError, match="expect_table_row_count_to_be_between"):
        validate(
            tickets,
            "tickets_day",
            tmp_path,
            {"min_rows": 10 * len(tickets), "max_rows": 20 * len(tickets)},
        )


def test_a_missing_parameter_is_named():
    with pytest.raises(KeyError, match="needs parameter 'min_rows'"):
        load_suite("orders_day", {})
