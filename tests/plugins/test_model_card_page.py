"""The Airflow plugin's model card page reads the registry and renders the card's Markdown
with raw HTML escaped (issue 16, items 4 and 5). The login itself is tested against a real
API server in test_airflow_ui.py."""

from __future__ import annotations

from fastapi.testclient import TestClient

from forewarn.registry import Registry
from forewarn.settings import Settings
from plugins.forewarn_ui import create_app

CARD = (
    b"# Churn model\n\n| a | b |\n|---|---|\n| 1 | <script>alert(1)</script> |\n\n"
    b"![plots](card.png)\n"
)


def _client(home):
    return TestClient(create_app(Settings().with_home(home), protect=False))


def test_the_page_lists_versions_and_renders_the_champions_card(tmp_path):
    registry = Registry(tmp_path / "models" / "churn")
    gate = {"passed": True, "reason": "ROC AUC 0.81 [0.77, 0.85]"}
    for version in ("2026-03-01", "2026-03-08"):
        registry.publish(
            version,
            version.encode(),
            {"metrics": {"roc_auc": 0.81}, "gate": gate},
            files={"card.md": CARD.replace(b"Churn model", version.encode())},
        )
    registry.promote("2026-03-01")
    page = _client(tmp_path).get("/model-card")
    assert page.status_code == 200
    assert "<h1>2026-03-01</h1>" in page.text and "candidate" in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert 'src="model-card/2026-03-01.png"' in page.text
    other = _client(tmp_path).get("/model-card", params={"version": "2026-03-08"})
    assert "<h1>2026-03-08</h1>" in other.text
    assert _client(tmp_path).get("/model-card", params={"version": "../etc"}).status_code == 404
