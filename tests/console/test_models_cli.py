"""forewarn models list | show | promote | rollback (issue 16, item 4)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from console.cli import main
from forewarn.registry import Registry


def _models(home, *args):
    return CliRunner(env={"FOREWARN_PUBLISH_BOOTSTRAP": ""}).invoke(
        main, ["--home", str(home), "models", *args]
    )


def _publish(home, version, passed=True):
    registry = Registry(home / "models" / "churn")
    gate = {"passed": passed, "reason": "ROC AUC 0.81 [0.77, 0.85]" if passed else "coin"}
    registry.publish(version, version.encode(), {"metrics": {"roc_auc": 0.81}, "gate": gate})
    return registry


def test_list_and_show(tmp_path):
    assert "no versions" in _models(tmp_path, "list").output
    registry = _publish(tmp_path, "2026-03-01")
    registry.promote("2026-03-01")
    listed = _models(tmp_path, "list")
    assert listed.exit_code == 0
    assert "2026-03-01" in listed.output and "champion" in listed.output and "pass" in listed.output
    shown = json.loads(_models(tmp_path, "show", "2026-03-01").output)
    assert shown["stage"] == "champion" and shown["history"][-1]["stage"] == "champion"
    missing = _models(tmp_path, "show", "nope")
    assert missing.exit_code == 2 and "Traceback" not in missing.output


def test_promote_refuses_a_model_that_failed_the_gate(tmp_path):
    _publish(tmp_path, "coin", passed=False)
    refused = _models(tmp_path, "promote", "coin")
    assert refused.exit_code == 2 and "did not pass the promotion gate (coin)" in refused.output
    forced = _models(tmp_path, "promote", "coin", "--force")
    assert forced.exit_code == 0 and "champion: coin" in forced.output


def test_rollback(tmp_path):
    _publish(tmp_path, "v1")
    _publish(tmp_path, "v2")
    assert _models(tmp_path, "promote", "v1").exit_code == 0
    assert _models(tmp_path, "promote", "v2").exit_code == 0
    done = _models(tmp_path, "rollback")
    assert done.exit_code == 0 and "champion: v1" in done.output and "not announced" in done.output
