"""Migrations run where they are asked for: the command and the service's start-up, never when
a store or a session is opened."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from outreach.api.main import create_app
from outreach.config import OutreachSettings
from outreach.migrate import migrate
from outreach.store import TaskStore


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_opening_a_store_or_a_session_does_not_migrate(tmp_path):
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    store = TaskStore(url)
    with store.sessions() as session:
        session.execute(sa.text("SELECT 1"))
    store.close()
    assert tables(url) == set()


def test_migrate_brings_the_schema_to_head_and_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    migrate(url)
    migrate(url)
    assert {"tasks", "api_tokens", "web_sessions", "alembic_version"} <= tables(url)


def test_the_service_migrates_at_start_up_not_when_created(tmp_path):
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    settings = OutreachSettings(database_url=url, lake_dir=tmp_path / "lake")
    app = create_app(settings, background=False)
    assert tables(url) == set(), "creating the app must not touch the schema"
    with TestClient(app) as client:
        assert "tasks" in tables(url)
        assert client.get("/healthz").json() == {"status": "ok", "database": "up"}
