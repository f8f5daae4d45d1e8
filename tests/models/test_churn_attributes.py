"""Churn on attributes and events (issue 16, item 2): the nightly trains on the customers'
imported attributes (``crm_*``, as of each cut-off) beside the stream's features, with
categories encoded; the registry serves the model to the at-risk list; stream workers, which
hold no attributes, refuse it and say why."""

from __future__ import annotations

import csv
from datetime import date

import numpy as np
import pandas as pd
import pytest

from models.churn import ModelRegistry, load_bundle, predict, train_and_evaluate
from models.customer_state import FEATURES
from models.nightly import build_at_risk_list
from streams.customer_risk.model import ModelRejected, load_champion, load_model

CUTOFFS = pd.date_range("2026-01-05", periods=8, freq="7D")


def attribute_table(customers: int = 400, seed: int = 3) -> pd.DataFrame:
    """Weekly rows per customer whose churn follows their plan and tenure (attributes), not
    the behavioural features (noise here): a world where only attributes can predict."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["monthly", "yearly", "two-year"], size=customers, p=[0.4, 0.4, 0.2])
    tenure = rng.gamma(2.0, 12.0, size=customers)
    base = {"monthly": 0.35, "yearly": 0.08, "two-year": 0.03}
    rows = []
    for cutoff in CUTOFFS:
        for i in range(customers):
            p = base[plan[i]] * (1.5 if tenure[i] < 6 else 1.0)
            rows.append(
                {
                    "customer_id": f"C{i:05d}",
                    "cutoff": cutoff,
                    **{f: float(rng.poisson(1.0)) for f in FEATURES},
                    "crm_plan": plan[i],
                    "crm_tenure_months": float(tenure[i]),
                    "churned": bool(rng.random() < p),
                    "label_complete": True,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return attribute_table()


def test_attributes_are_learned_where_the_stream_features_know_nothing(table, tmp_path):
    with_attributes = train_and_evaluate(table, ModelRegistry(tmp_path / "a"), "v1")
    features_only = train_and_evaluate(
        table.drop(columns=["crm_plan", "crm_tenure_months"]), ModelRegistry(tmp_path / "b"), "v1"
    )
    assert with_attributes.columns.categorical == ["crm_plan"]
    assert with_attributes.columns.numeric == [*FEATURES, "crm_tenure_months"]
    # Same rows, same holdout, same run: the attributes carry the signal.
    assert features_only.challenger["roc_auc"] < 0.6
    assert with_attributes.challenger["roc_auc"] > features_only.challenger["roc_auc"] + 0.15
    assert with_attributes.promoted, with_attributes.reason


def test_the_registry_serves_it_to_the_nightly_and_workers_refuse_it(table, tmp_path):
    registry = ModelRegistry(tmp_path / "churn")
    result = train_and_evaluate(table, registry, "v1")
    registry.save(result)
    registry.promote("v1")
    version, bundle = registry.champion()
    assert version == "v1" and bundle["categorical"] == ["crm_plan"]
    # Scoring needs no perfect frame: a plan never seen and a missing tenure still score.
    today = table[table["cutoff"] == CUTOFFS[-1]].head(3).copy()
    today.loc[today.index[0], "crm_plan"] = "family"
    today.loc[today.index[1], "crm_tenure_months"] = np.nan
    p = predict(bundle, today)
    assert p.shape == (3,) and np.all((p > 0) & (p < 1))
    data = registry.path("v1").read_bytes()
    pointer = registry.files.champion()
    with pytest.raises(ModelRejected, match=r"also uses customer attributes .*crm_tenure_months"):
        load_champion(registry.files, "v1", pointer["sha256"])
    with pytest.raises(ModelRejected):  # the bytes alone: its types are not the stream's
        load_model(data, "v1")
    assert load_bundle(data, "v1")["features"][-1] == "crm_plan"
    manifest = registry.files.manifest("v1")
    assert manifest["stream_compatible"] is False
    assert manifest["signature"]["inputs"]["crm_plan"] == "category"
    card = (tmp_path / "churn" / "v1" / "card.md").read_text()
    assert "imported customer attributes (crm_tenure_months, crm_plan)" in card


def test_the_at_risk_list_ranks_with_the_attribute_model(table, tmp_path):
    registry = ModelRegistry(tmp_path / "churn")
    result = train_and_evaluate(table, registry, "v1")
    assert result.promoted
    registry.save(result)
    registry.promote("v1")
    last = table[table["cutoff"] == CUTOFFS[-1]]
    last.to_parquet(tmp_path / "features.parquet")
    values = pd.DataFrame(
        {"customer_id": last["customer_id"], "clv_365d": 1000.0, "value_tier": "gold"}
    )
    values.to_parquet(tmp_path / "values.parquet")
    path = build_at_risk_list(
        str(tmp_path / "features.parquet"),
        str(tmp_path / "values.parquet"),
        tmp_path / "churn",
        f"sqlite:///{tmp_path / 'outreach.db'}",
        date(2026, 2, 23),
        capacity=20,
        lists_dir=tmp_path / "lists",
    )
    with open(path) as f:
        listed = list(csv.DictReader(f))
    plans = last.set_index("customer_id")["crm_plan"]
    # Same value for everyone: the rank is P(churn), which the monthly plan drives.
    share = np.mean([plans[r["customer_id"]] == "monthly" for r in listed])
    assert share > 0.8, share
    assert all(r["model"] == "churn model v1" and r["p_churn"] for r in listed)
