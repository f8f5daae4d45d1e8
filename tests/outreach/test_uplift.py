"""The holdout report: contacted versus held-out at-risk customers, judged from the lake."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner

from console.cli import main
from outreach.migrate import migrate
from outreach.rules import OutreachRules, in_holdout
from outreach.store import TaskStore
from outreach.uplift import uplift_report
from tests.utils import factories
from tests.utils.factories import T0


def test_uplift_compares_the_groups(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    migrate(url)
    store = TaskStore(url)
    customers = [f"C{i:05d}" for i in range(400)]
    held = [c for c in customers if in_holdout(c, OutreachRules())][:20]
    contacted = [c for c in customers if not in_holdout(c, OutreachRules())][:40]
    for i, c in enumerate(held + contacted):
        store.upsert_alert(
            factories.alert(
                i, kind="churn_risk", dedup_key=f"retention:{c}", customer_id=c, device_id=None
            )
        )
    # Half the held-out customers leave, a quarter of the contacted ones; one left before
    # the task was opened and does not count against outreach.
    churned = {c: T0 + timedelta(days=20) for c in held[:10] + contacted[:10]}
    churned[contacted[10]] = T0 - timedelta(days=1)
    report = uplift_report(store.tasks(kind="retention"), churned)
    assert report["groups"] == {
        "contacted": {"customers": 40, "lost": 10},
        "holdout": {"customers": 20, "lost": 10},
    }
    assert report["retention_rate"] == {"contacted": 0.75, "holdout": 0.5}
    assert report["uplift"] == 0.25
    low, high = report["ci95"]
    assert low < 0.25 < high and report["note"].startswith("small groups")


def test_token_command_prints_a_working_token(tmp_path):
    result = CliRunner().invoke(
        main, ["--home", str(tmp_path), "outreach", "token", "--role", "support", "--name", "sam"]
    )
    assert result.exit_code == 0, result.output
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    migrate(url)
    store = TaskStore(url)
    assert store.authenticate(result.output.strip()).role == "support"
