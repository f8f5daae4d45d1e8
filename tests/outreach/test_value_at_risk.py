"""One definition of value at risk (issue 17, item 4): the nightly's at-risk list (what the
Airflow at-risk page shows), the outreach retention list and its CSV export show the same
figure and the same tier for every customer, and a later stream alert does not give the same
customer another tier."""

from __future__ import annotations

import csv
import io
from datetime import date

import pandas as pd
from fastapi.testclient import TestClient

from forewarn.value import value_at_risk
from models.customer_state import FEATURES
from models.nightly import build_at_risk_list
from outreach.api.main import create_app
from outreach.config import OutreachSettings
from outreach.migrate import migrate
from outreach.store import TaskStore
from tests.utils import factories
from tests.utils.models import publish

TIERS = ("platinum", "gold", "silver", "bronze")


def nightly_list(tmp_path) -> tuple[dict[str, dict], TaskStore, TestClient, dict]:
    """Build the nightly's at-risk list for 30 customers into a fresh outreach store; return
    its rows by customer, the store, a client of the service and a retention agent's headers."""
    customers = [f"C{i:05d}" for i in range(30)]
    features = pd.DataFrame(
        [
            {
                "customer_id": c,
                "cutoff": pd.Timestamp("2026-01-05"),
                **{f: float((i * 7 + k) % 5) for k, f in enumerate(FEATURES)},
            }
            for i, c in enumerate(customers)
        ]
    )
    values = pd.DataFrame(
        [
            {"customer_id": c, "clv_365d": 333.33 + 97.1 * i, "value_tier": TIERS[i % 4]}
            for i, c in enumerate(customers)
        ]
    )
    features.to_parquet(tmp_path / "features.parquet")
    values.to_parquet(tmp_path / "values.parquet")
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    path = build_at_risk_list(
        str(tmp_path / "features.parquet"),
        str(tmp_path / "values.parquet"),
        tmp_path / "registry",
        url,
        date(2026, 1, 5),
        capacity=12,
        lists_dir=tmp_path / "lists",
    )
    with open(path) as f:
        nightly = {r["customer_id"]: r for r in csv.DictReader(f)}
    assert len(nightly) == 12

    migrate(url)
    store = TaskStore(url)
    token = store.create_token("rita", "retention")
    settings = OutreachSettings(database_url=url, lake_dir=tmp_path / "lake", secure_cookies=False)
    client = TestClient(create_app(settings, store, background=False))
    return nightly, store, client, {"Authorization": f"Bearer {token}"}


def test_the_at_risk_page_the_list_and_the_csv_agree(tmp_path):
    # A champion that passed the promotion gate: its P(churn) is stated and priced.
    publish(tmp_path / "registry", "v1", trusted=True)
    nightly, store, client, headers = nightly_list(tmp_path)
    listed = {
        t["customer_id"]: t for t in client.get("/api/lists/retention", headers=headers).json()
    }
    exported = {
        r["customer_id"]: r
        for r in csv.DictReader(
            io.StringIO(client.get("/api/lists/retention.csv", headers=headers).text)
        )
    }
    shown = set(listed) & set(nightly)
    assert len(shown) >= 8, "held-out customers aside, the list is the nightly's"
    for c in shown:
        row = nightly[c]
        assert listed[c]["value_at_stake"] == float(row["value_at_risk"]), c
        assert float(exported[c]["value_at_stake"]) == float(row["value_at_risk"]), c
        assert listed[c]["value_tier"] == exported[c]["value_tier"] == row["value_tier"], c
        assert listed[c]["queue"] == row["value_tier"], "one tier in every column"
        expected = value_at_risk(float(row["p_churn"]), float(row["clv_365d"]))
        # The CSV rounds P(churn) to 4 places.
        assert abs(float(row["value_at_risk"]) - expected) < 1e-4 * float(row["clv_365d"]) + 0.01

    # A stream alert later re-ranks the customer with its own risk: every column moves together.
    c = sorted(shown)[0]
    store.upsert_alert(
        factories.alert(
            9,
            kind="churn_risk",
            dedup_key=f"retention:{c}",
            customer_id=c,
            device_id=None,
            fault_kind=None,
            evidence={"risk": 0.7, "p_churn": 0.5, "value_eur": 1000.0, "value_tier": "gold"},
        )
    )
    task = next(
        t for t in store.tasks(kind="retention") if t.customer_id == c and t.status == "open"
    )
    assert (task.value_tier, task.queue, task.value_at_stake) == ("gold", "gold", 500.0)
    store.close()


def test_without_a_trusted_model_no_screen_puts_money_at_risk(tmp_path):
    """No champion that passed the gate: the nightly ranks by points and states neither a
    probability nor money, and neither do the list, its CSV and the task page (issue 16)."""
    nightly, store, client, headers = nightly_list(tmp_path)
    assert {r["p_churn"] for r in nightly.values()} == {""}
    assert {r["value_at_risk"] for r in nightly.values()} == {""}
    listed = client.get("/api/lists/retention", headers=headers).json()
    assert listed and {t["value_at_stake"] for t in listed} == {0.0}
    exported = list(
        csv.DictReader(io.StringIO(client.get("/api/lists/retention.csv", headers=headers).text))
    )
    assert {float(r["value_at_stake"]) for r in exported} == {0.0}
    # A stream alert without a model's probability brings no money either: its blended risk
    # is points, not P(churn).
    c = listed[0]["customer_id"]
    store.upsert_alert(
        factories.alert(
            9,
            kind="churn_risk",
            dedup_key=f"retention:{c}",
            customer_id=c,
            device_id=None,
            fault_kind=None,
            evidence={"risk": 0.9, "value_eur": 1000.0, "value_tier": "gold"},
        )
    )
    task = next(t for t in store.tasks(kind="retention") if t.customer_id == c)
    assert task.value_at_stake == 0.0
    store.close()
