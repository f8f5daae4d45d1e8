"""The holdout report: contacted versus held-out at-risk customers, judged from the lake."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner

from console.cli import main
from outreach.migrate import migrate
from outreach.rules import OutreachRules, in_holdout
from outreach.store import TaskStore
from outreach.uplift import newcombe, uplift_report
from tests.utils import factories
from tests.utils.factories import T0


def _store_with_tasks(tmp_path, n_held: int, n_contacted: int):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    migrate(url)
    store = TaskStore(url)
    customers = [f"C{i:05d}" for i in range(600)]
    held = [c for c in customers if in_holdout(c, OutreachRules())][:n_held]
    contacted = [c for c in customers if not in_holdout(c, OutreachRules())][:n_contacted]
    tasks = {}
    for i, c in enumerate(held + contacted):
        tasks[c] = store.upsert_alert(
            factories.alert(
                i, kind="churn_risk", dedup_key=f"retention:{c}", customer_id=c, device_id=None
            )
        ).task_id
    return store, held, contacted, tasks


def test_no_recorded_contact_means_no_uplift_claimed(tmp_path):
    """Issue 17: with no outcome recorded the card showed '+36.2 points (95% CI ...)'."""
    store, held, _, _ = _store_with_tasks(tmp_path, 20, 40)
    churned = {c: T0 + timedelta(days=20) for c in held[:10]}
    report = uplift_report(store.tasks(kind="retention"), churned)
    assert report["groups"]["contacted"] == {"customers": 0, "lost": 0}
    assert report["not_contacted_yet"] == 40
    assert "uplift" not in report and "ci95" not in report
    assert report["note"].startswith("not enough outcomes yet")


def test_uplift_compares_customers_with_a_recorded_contact(tmp_path):
    store, held, contacted, tasks = _store_with_tasks(tmp_path, 24, 50)
    for c in contacted[:40]:
        store.record_outcome(tasks[c], outcome="customer_kept", actor="rita")
    store.record_outcome(tasks[contacted[40]], outcome="no_answer", actor="rita")
    # Half the held-out customers leave, a quarter of the contacted ones; one left before
    # the task was opened and does not count against outreach.
    churned = {c: T0 + timedelta(days=20) for c in held[:12] + contacted[:10]}
    churned[contacted[10]] = T0 - timedelta(days=1)
    report = uplift_report(store.tasks(kind="retention"), churned)
    assert report["groups"] == {
        "contacted": {"customers": 40, "lost": 10},
        "holdout": {"customers": 24, "lost": 12},
    }
    assert report["not_contacted_yet"] == 10, "nine open tasks and one 'no answer'"
    assert report["retention_rate"] == {"contacted": 0.75, "holdout": 0.5}
    assert report["uplift"] == 0.25
    low, high = report["ci95"]
    assert [low, high] == [round(x, 4) for x in newcombe(30, 40, 12, 24)]
    assert low < 0.25 < high


def test_the_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), table II, example (a): 56/70 versus 48/80, method 10.
    assert [round(x, 4) for x in newcombe(56, 70, 48, 80)] == [0.0524, 0.3339]


def test_token_command_prints_a_working_token(tmp_path):
    result = CliRunner().invoke(
        main, ["--home", str(tmp_path), "outreach", "token", "--role", "support", "--name", "sam"]
    )
    assert result.exit_code == 0, result.output
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    migrate(url)
    store = TaskStore(url)
    assert store.authenticate(result.output.strip()).role == "support"
