"""Churn features are point-in-time correct; the registry promotes only a better model, and
what it saves is what the stream workers load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from models.churn import (
    ModelRegistry,
    metrics,
    promotion_gate,
    train_and_evaluate,
    write_model_card,
)
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


def test_the_card_breaks_metrics_down_by_the_imported_attributes(table, tmp_path):
    """Attributes from ``forewarn import customers`` (``crm_*``, point in time) give the card
    its metrics by group, and the model learns from them too."""
    plans = table["customer_id"].map(lambda c: "pro" if int(c[1:]) % 3 == 0 else "basic")
    with_plans = table.assign(crm_plan=plans)
    result = train_and_evaluate(with_plans, ModelRegistry(tmp_path / "churn"), "v1")
    card = write_model_card(result, tmp_path / "card").read_text()
    section = card.split("## Metrics by group", 1)[1].split("##", 1)[0]
    assert "| crm_plan = basic |" in section and "| crm_plan = pro |" in section
    holdout_pro = int((result.holdout["crm_plan"] == "pro").sum())
    assert f"| crm_plan = pro | {holdout_pro} |" in section
    assert "features and the imported customer attributes (crm_plan)" in card


def test_the_nightlys_card_breaks_metrics_down_by_value_tier(table, tmp_path):
    """The day's customer values group the card's holdout by tier; the tier is no feature."""
    from datetime import date

    from models.nightly import train_churn_model

    table.to_parquet(tmp_path / "features.parquet")
    customers = table["customer_id"].unique()
    tiers = pd.DataFrame(
        {
            "customer_id": customers,
            "value_tier": ["gold" if k % 2 else "bronze" for k in range(len(customers))],
        }
    )
    tiers.to_parquet(tmp_path / "values.parquet")
    trained = train_churn_model(
        str(tmp_path / "features.parquet"),
        tmp_path / "models",
        date(2026, 4, 4),
        values_path=str(tmp_path / "values.parquet"),
    )
    card = (tmp_path / "models" / trained["version"] / "card.md").read_text()
    section = card.split("## Metrics by group", 1)[1].split("##", 1)[0]
    assert "| value_tier_today = gold |" in section and "| value_tier_today = bronze |" in section
    assert "Value tiers are today's" in card
    manifest = ModelRegistry(tmp_path / "models").files.manifest(trained["version"])
    assert "value_tier_today" not in manifest["features"], "grouping only, never a feature"


def test_the_nightly_reads_only_rows_with_complete_labels_and_records_the_whole_table(
    table, tmp_path
):
    """The nightly's training reads the rows it can use (complete labels), and gets what
    training on the whole table gets; the lineage still names every row and cut-off."""
    from datetime import date

    from models.nightly import train_churn_model

    assert not table["label_complete"].all()
    table.to_parquet(tmp_path / "features.parquet")
    trained = train_churn_model(
        str(tmp_path / "features.parquet"), tmp_path / "a", date(2026, 4, 4)
    )
    whole = train_and_evaluate(table, ModelRegistry(tmp_path / "b"), "v1")
    assert trained["train_rows"] == whole.train_rows
    assert trained["challenger"] == whole.challenger
    lineage = ModelRegistry(tmp_path / "a").files.manifest(trained["version"])["lineage"]["data"]
    assert lineage["rows"] == len(table)
    assert lineage["cutoffs"] == sorted(str(c)[:10] for c in table["cutoff"].unique())


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


class CoinFlip:
    """A challenger that scores every customer with a coin: it must never be promoted."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, x, y):
        return self

    def predict_proba(self, x):
        p = np.random.default_rng(self.seed).random(len(x))
        return np.column_stack([1 - p, p])


def test_a_coin_flip_challenger_is_not_promoted_without_a_champion(table, tmp_path):
    registry = ModelRegistry(tmp_path / "churn")
    result = train_and_evaluate(table, registry, "coin", estimator=CoinFlip())
    assert not result.promoted
    assert "includes 0.5: no better than chance" in result.reason
    assert "Brier score not better than the dummy's" in result.reason
    low, high = result.gate.intervals["roc_auc"][1:]
    assert low < 0.5 < high


def test_a_coin_flip_challenger_does_not_replace_a_champion(table, tmp_path):
    registry = ModelRegistry(tmp_path / "churn")
    first = train_and_evaluate(table, registry, "v1")
    registry.save(first)
    registry.promote("v1")
    coin = train_and_evaluate(table, registry, "coin", estimator=CoinFlip(seed=3))
    assert not coin.promoted and "not better than the champion" in coin.reason
    assert coin.gate.intervals["roc_auc_minus_champion"][2] < 0


def test_the_gate_needs_the_lower_bound_above_the_margin():
    rng = np.random.default_rng(1)
    y = (rng.random(3000) < 0.1).astype(int)
    good = y * 0.5 + rng.random(3000)
    dummy = np.full(3000, y.mean())
    calibrated = 1 / (1 + np.exp(-(3 * good - 3.5)))
    assert promotion_gate(y, calibrated, dummy).passed
    # Slightly better than an equal champion on this sample: not enough at the lower bound.
    nudged = calibrated + 0.001 * y
    gate = promotion_gate(y, nudged, dummy, calibrated, margin=0.005)
    assert not gate.passed and "not better than the champion by 0.005" in gate.reason


def test_lift_of_tied_scores_does_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.2).astype(int)
    p = np.full(500, 0.2)
    lifts = {
        metrics(y[order], p)["lift_top_decile"]
        for order in (rng.permutation(500) for _ in range(20))
    }
    assert lifts == {1.0}
    # Half-tied at the cut: the expectation over the tied rows' orders, every time.
    q = np.where(np.arange(500) < 30, 0.9, 0.5)
    assert (
        len(
            {
                metrics(y[o], q[o])["lift_top_decile"]
                for o in (rng.permutation(500) for _ in range(20))
            }
        )
        == 1
    )


def _at_risk(table, tmp_path, registry_root):
    from models.nightly import build_at_risk_list

    features = tmp_path / "nightly" / "features" / "date=2026-04-04" / "features.parquet"
    features.parent.mkdir(parents=True)
    table.to_parquet(features)
    today = table[table["cutoff"] == table["cutoff"].max()]
    values = tmp_path / "values.parquet"
    pd.DataFrame(
        {
            "customer_id": today["customer_id"],
            "clv_365d": np.linspace(10, 500, len(today)),
            "value_tier": "gold",
        }
    ).to_parquet(values)
    path = build_at_risk_list(
        str(features),
        str(values),
        registry_root,
        f"sqlite:///{tmp_path / 'outreach.db'}",
        datetime(2026, 4, 4).date(),
        capacity=10,
        lists_dir=tmp_path / "lists",
    )
    return pd.read_csv(path)


def test_without_a_trusted_model_the_list_ranks_by_points_and_shows_no_money(table, tmp_path):
    listed = _at_risk(table, tmp_path, tmp_path / "churn")
    assert len(listed) == 10
    assert (listed["model"] == "no trustworthy churn model yet").all()
    assert listed["p_churn"].isna().all() and listed["value_at_risk"].isna().all()
    assert listed["points"].is_monotonic_decreasing


def test_a_gated_champion_ranks_by_value_at_risk(table, tmp_path):
    registry = ModelRegistry(tmp_path / "churn")
    result = train_and_evaluate(table, registry, "v1")
    assert result.promoted
    registry.save(result)
    registry.promote("v1")
    listed = _at_risk(table, tmp_path, registry.root)
    assert (listed["model"] == "churn model v1").all()
    assert listed["value_at_risk"].is_monotonic_decreasing and listed["p_churn"].between(0, 1).all()


def test_a_champion_promoted_before_the_gate_is_not_trusted(table, tmp_path):
    from tests.utils.models import publish

    publish(tmp_path / "churn", "old")  # no gate record in its manifest
    listed = _at_risk(table, tmp_path, tmp_path / "churn")
    assert (listed["model"] == "no trustworthy churn model yet").all()


def test_a_large_holdout_is_judged_on_whole_customers_sampled(monkeypatch):
    from models import churn

    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(500), 4)
    y = np.repeat((rng.random(500) < 0.2).astype(int), 4)
    good = 1 / (1 + np.exp(-(2 * y + rng.normal(size=2000) - 2)))
    kept = churn._sample_customers(groups, 1000, seed=0)
    assert len(kept) == 1000 and set(np.bincount(groups[kept])) <= {0, 4}
    monkeypatch.setattr(churn, "GATE_ROWS_MAX", 1000)
    gate = promotion_gate(y, good, np.full(2000, y.mean()), groups=groups)
    assert gate.passed and gate.intervals["roc_auc"][1] > 0.5
