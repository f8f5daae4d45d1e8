"""Churn features are point-in-time correct; the registry promotes only a better model, and
what it saves is what the stream workers load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from models.churn import ModelRegistry, metrics, train_and_evaluate
from models.customer_state import FEATURES
from models.features import build_features, weekly_cutoffs
from simulator import build_world
from simulator.render import customer_events
from streams.customer_risk.model import ModelHolder
from tests.utils import factories

START = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def events():
    world = build_world(n_customers=400, days=90, start=START, seed=8)
    # Customer events only: rendering the devices' telemetry would only cost time here.
    return sorted(
        (e for c in world.customers for e in customer_events(c, world)), key=lambda e: e.event_time
    )


@pytest.fixture(scope="module")
def table(events):
    return build_features(events, weekly_cutoffs(events[0].event_time, events[-1].event_time))


def test_features_use_only_the_past(events):
    cutoff = START + timedelta(days=40)
    before = build_features(events, [cutoff])
    # Change everything after the cut-off: new complaints, a flood of late orders.
    future = [
        factories.ticket(
            event_id=f"f{i}",
            ticket_id=f"F{i}",
            customer_id=c,
            event_time=cutoff + timedelta(hours=i + 1),
            csat=1,
            category="complaint",
        )
        for i, c in enumerate(before["customer_id"][:50])
    ]
    after = build_features(sorted([*events, *future], key=lambda e: e.event_time), [cutoff])
    pd.testing.assert_frame_equal(
        before[["customer_id", *FEATURES]], after[["customer_id", *FEATURES]]
    )


def test_labels_come_from_after_the_cutoff(events, table):
    cancellations = {
        (e.customer_id, e.event_time)
        for e in events
        if e.topic == "tickets" and e.category == "cancellation"
    }
    row = table[table["churned"]].iloc[0]
    assert any(
        c == row["customer_id"] and row["cutoff"] <= t < row["cutoff"] + timedelta(days=30)
        for c, t in cancellations
    )


def test_challenger_beats_the_dummy_and_is_promoted_once(table, tmp_path):
    registry = ModelRegistry(tmp_path / "churn")
    first = train_and_evaluate(table, registry, "v1")
    assert first.challenger["roc_auc"] > first.baseline["roc_auc"] + 0.1
    assert first.promoted and first.champion is None
    registry.save(first)
    registry.promote("v1")
    second = train_and_evaluate(table, registry, "v2")
    assert not second.promoted, "an equal model does not replace the champion"
    assert second.champion["roc_auc"] == pytest.approx(first.challenger["roc_auc"])
    assert registry.champion()[0] == "v1"
    card = (tmp_path / "churn" / "v1" / "card.md").read_text()
    assert "DummyClassifier" in card and (tmp_path / "churn" / "v1" / "card.png").exists()


def test_training_rows_beyond_the_cap_are_sampled_and_the_holdout_is_not(table, tmp_path):
    registry = ModelRegistry(tmp_path / "churn")
    full = train_and_evaluate(table, registry, "v1")
    capped = train_and_evaluate(table, registry, "v1", max_train_rows=full.train_rows // 2)
    assert capped.train_rows == full.train_rows // 2
    assert len(capped.holdout) == len(full.holdout)
    # Half the rows still learn the same signal (the cap is there for millions of rows).
    assert capped.challenger["roc_auc"] > capped.baseline["roc_auc"] + 0.1


def test_the_saved_bundle_is_what_stream_workers_load(table, tmp_path):
    registry = ModelRegistry(tmp_path / "churn")
    registry.save(train_and_evaluate(table, registry, "2026-03-31"))
    assert registry.path("2026-03-31").name == "model.skops", "skops, never a pickle"
    pointer = registry.promote("2026-03-31")
    holder = ModelHolder(registry.root)
    assert holder.offer("2026-03-31", pointer["sha256"]) is None
    assert 0 <= holder.model.score(dict.fromkeys(FEATURES, 1.0)) <= 1


def test_a_rerun_of_the_champions_day_keeps_its_published_file(table, tmp_path):
    registry = ModelRegistry(tmp_path / "churn")
    result = train_and_evaluate(table, registry, "2026-03-31")
    registry.save(result)
    pointer = registry.promote("2026-03-31")
    before = registry.path("2026-03-31").read_bytes()
    registry.save(train_and_evaluate(table, registry, "2026-03-31", seed=1))
    assert registry.path("2026-03-31").read_bytes() == before
    assert registry.champion()[0] == "2026-03-31" and pointer["sha256"]


def test_metrics_by_hand():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    p = np.array([0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.3, 0.9, 0.4])
    m = metrics(y, p)
    assert m["roc_auc"] == 1.0 and m["lift_top_decile"] == 5.0
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_a_rollback_is_announced_with_the_older_versions_hash(tmp_path, monkeypatch):
    from forewarn.registry import Registry
    from models import nightly
    from tests.utils.models import publish

    root = tmp_path / "churn"
    v1 = publish(root, "v1")
    publish(root, "v2")
    Registry(root).promote("v1")
    sent = []
    monkeypatch.setattr(nightly, "_publish", lambda _, events: sent.extend(events) or len(events))
    assert nightly.announce_champion(root, "127.0.0.1:9092", datetime(2026, 4, 1, tzinfo=UTC)) == 1
    (event,) = sent
    assert (event.version, event.sha256) == ("v1", v1)
