"""Nightly outputs reach the streams as events on the real broker: a promoted churn model as a
model-updated event, lifetime values on the compacted customer-values topic."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from forewarn.events import decode
from forewarn.lake import LakeWriter
from models import nightly
from simulator import build_world
from simulator.render import customer_events
from tests.utils.kafka import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
START = datetime(2026, 1, 5, tzinfo=UTC)
DAY = date(2026, 4, 14)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A lake of 100 days of orders and tickets (no telemetry: the nightly does not read it)."""
    home = tmp_path_factory.mktemp("forewarn")
    world = build_world(n_customers=400, days=100, start=START, seed=8)
    LakeWriter(home / "lake").write(e for c in world.customers for e in customer_events(c, world))
    return home


def test_promoted_model_and_values_are_published(home, kafka_broker):
    lake, out = home / "lake", home / "nightly"
    features = nightly.build_feature_table(lake, out, DAY)
    trained = nightly.train_churn_model(features, home / "models", DAY, kafka_broker.bootstrap)
    assert trained["promoted"] and trained["published"] == 1
    updates = [
        decode("model-updates", v)
        for v in read_topic(kafka_broker.bootstrap, "model-updates", at_least=1)
    ]
    (update,) = [u for u in updates if u.version == DAY.isoformat()]
    # A version and its hash, never a path (issue 13): workers read their own registry.
    manifest = json.loads((home / "models" / DAY.isoformat() / "manifest.json").read_text())
    assert update.model_name == "churn" and update.sha256 == manifest["sha256"]
    assert "uri" not in type(update).model_fields

    values_path = nightly.fit_lifetime_value(lake, out, DAY, kafka_broker.bootstrap)
    published = [
        decode("customer-values", v)
        for v in read_topic(kafka_broker.bootstrap, "customer-values", at_least=250)
    ]
    mine = [v for v in published if v.event_id.endswith(DAY.isoformat())]
    assert len(mine) > 250 and {v.value_tier for v in mine} == {
        "platinum",
        "gold",
        "silver",
        "bronze",
    }
    assert values_path.endswith("customer_values.parquet")
    params = json.loads((Path(values_path).parent / "params.json").read_text())
    assert params["bgnbd"]["r"] > 0 and params["customers"] == len(mine)
