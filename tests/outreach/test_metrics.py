"""The outreach service's /metrics and /healthz, on both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from outreach.api.main import create_app
from outreach.config import OutreachSettings
from tests.utils import factories


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


METRICS_TOKEN = "scraper-" + "s" * 24
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def _client(store, tmp_path) -> TestClient:
    settings = OutreachSettings(
        database_url=store.url,
        lake_dir=tmp_path / "lake",
        secure_cookies=False,
        metrics_token=METRICS_TOKEN,
    )
    return TestClient(create_app(settings, store, background=False))


def test_metrics_count_tasks_and_requests_by_route(any_store, tmp_path):
    client = _client(any_store, tmp_path)
    any_store.upsert_alert(factories.alert())
    any_store.upsert_alert(
        factories.alert(1, device_id="D00099", dedup_key="visit:D00099", customer_id="C00099")
    )
    token = any_store.create_token("tech", "technician")
    for task_id in ("nope-1", "nope-2"):  # two raw paths, one route template
        client.get(f"/api/tasks/{task_id}", headers={"Authorization": f"Bearer {token}"})

    samples = _samples(client.get("/metrics", headers=SCRAPER).text)

    assert samples[("forewarn_outreach_tasks", (("kind", "visit"), ("status", "open")))] == 2
    assert samples[("forewarn_outreach_store_up", ())] == 1
    key = (
        "forewarn_outreach_requests_total",
        (("method", "GET"), ("route", "/api/tasks/{task_id}"), ("status", "404")),
    )
    assert samples[key] == 2
    assert not any("nope-1" in str(labels) for _, labels in samples)


def test_metrics_count_proactive_misses_by_reason(any_store, tmp_path):
    client = _client(any_store, tmp_path)
    any_store.upsert_alert(factories.alert())
    any_store.apply_ticket(
        factories.ticket(category="cancellation", event_id="c", ticket_id="c", status="opened")
    )
    samples = _samples(client.get("/metrics", headers=SCRAPER).text)
    key = (
        "forewarn_outreach_missed_tasks",
        (("kind", "visit"), ("reason", "customer left before contact")),
    )
    assert samples[key] == 1


def test_healthz_says_when_the_database_is_gone(any_store, tmp_path):
    client = _client(any_store, tmp_path)
    assert client.get("/healthz").json() == {"status": "ok", "database": "up"}

    # A real unreachable server (nothing listens on port 1), not a mock.
    any_store.engine = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    any_store.sessions = sessionmaker(any_store.engine)
    down = client.get("/healthz")
    assert down.status_code == 503
    assert down.json()["database"] == "down"
    samples = _samples(client.get("/metrics", headers=SCRAPER).text)
    assert samples[("forewarn_outreach_store_up", ())] == 0
