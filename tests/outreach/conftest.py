"""Stores on SQLite and on a real PostgreSQL 15 server (started once per session)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from outreach.api.main import create_app
from outreach.config import OutreachSettings
from outreach.migrate import migrate
from outreach.store import TaskStore
from tests.conftest import free_port_pair
from tests.utils import factories
from tests.utils.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster on a free port, removed at the end of the session."""
    try:
        server = PostgresServer()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server.start().url
    finally:
        server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """The same tests on both databases; PostgreSQL tables are emptied between tests."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'outreach.db'}"
        migrate(url)
        store = TaskStore(url)
    else:
        url = request.getfixturevalue("postgres_url")
        migrate(url)
        store = TaskStore(url)
        from outreach.models import Base

        with store.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    yield store
    store.close()


@pytest.fixture
def api(any_store, tmp_path):
    """A client of the service on ``any_store``, a token per role, and one open visit."""
    settings = OutreachSettings(
        database_url=any_store.url, lake_dir=tmp_path / "lake", secure_cookies=False
    )
    client = TestClient(create_app(settings, any_store, background=False))
    tokens = {
        role: any_store.create_token(f"{role}-user", role)
        for role in ("technician", "dispatcher", "retention", "support", "admin")
    }
    visit = any_store.upsert_alert(factories.alert())
    return client, tokens, visit


def auth(tokens: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[role]}"}


@contextmanager
def serving(app: FastAPI, **config: object) -> Iterator[tuple[str, int]]:
    """``app`` on a real uvicorn server on a free port; yields (host, port)."""
    port = free_port_pair()
    settings = {"log_level": "warning", **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **settings))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(10)
