"""Findings of the security probe (issue 13), each reproduced against the service on both
databases: formula cells in CSV, the transition rule, bodies, headers, tokens, sessions, logins,
/metrics and the API docs."""

from __future__ import annotations

import csv
import io
import select
import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from outreach.api.main import create_app
from outreach.api.routes import pages, tasks, webhooks
from outreach.config import MAX_REQUEST_BYTES, OutreachSettings
from outreach.store import TaskStore
from tests.outreach.conftest import auth, serving
from tests.utils import factories

TOO_BIG = b"x" * (MAX_REQUEST_BYTES + 1)

# The full-width forms are written as escapes: ruff (RUF001) rightly flags them in source.
FORMULAS = [
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(A1)",
    "\t=1+1",
    "\r=1+1",
    "\uff1d1+1",
    "\uff0b1",
    "\uff0d1",
    "\uff20SUM(A1)",
]


def test_csv_export_defuses_every_formula_start(api, any_store):
    client, tokens, _ = api
    for i, formula in enumerate(FORMULAS, start=10):
        any_store.upsert_alert(
            factories.alert(i, dedup_key=f"visit:D{i}", device_id=f"D{i}", explanation=formula)
        )
    response = client.get("/api/lists/visit.csv", headers=auth(tokens, "technician"))
    rows = list(csv.DictReader(io.StringIO(response.text)))
    explanations = {row["explanation"] for row in rows}
    assert {"'" + f for f in FORMULAS} <= explanations, explanations
    dangerous = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
    cells = [cell for row in rows for cell in row.values()]
    assert not [c for c in cells if c.startswith(dangerous)]


@pytest.mark.parametrize("to", ["open", "assigned", "in_progress", "done", "cancelled", "expired"])
def test_a_technician_cannot_assign_a_visit_to_someone_else_through_any_state(api, to):
    client, tokens, visit = api
    url = f"/api/tasks/{visit.task_id}/transition"
    if to == "open":  # open -> open is not a transition; start from assigned
        client.post(
            url, json={"to": "assigned", "assignee": "tom"}, headers=auth(tokens, "dispatcher")
        )
    denied = client.post(
        url,
        json={"to": to, "assignee": "someone-else", "outcome": "fixed"},
        headers=auth(tokens, "technician"),
    )
    assert denied.status_code == 403, denied.text
    own = client.post(
        url,
        json={"to": to, "assignee": "technician-user", "outcome": "fixed"},
        headers=auth(tokens, "technician"),
    )
    assert own.status_code == 200 and own.json()["assignee"] == "technician-user"


def test_a_dispatcher_assigns_visits_through_in_progress(api):
    client, tokens, visit = api
    done = client.post(
        f"/api/tasks/{visit.task_id}/transition",
        json={"to": "in_progress", "assignee": "tom"},
        headers=auth(tokens, "dispatcher"),
    )
    assert done.status_code == 200 and done.json()["assignee"] == "tom"


# -- request bodies ----------------------------------------------------------------------------


def test_every_route_refuses_an_oversized_body_before_authentication(api):
    client, _, visit = api
    routers = (client.app, tasks.router, pages.router, webhooks.router)
    routes = [r for router in routers for r in router.routes if isinstance(r, Route)]
    assert len(routes) > 15
    for route in routes:
        path = route.path.replace("{task_id}", visit.task_id).replace("{kind}", "visit")
        path = path.replace("{customer_id}", "C00001").replace("{delivery_id}", "1")
        path = path.replace("{page}", "board")
        for method in route.methods - {"HEAD"}:
            answer = client.request(method, path, content=TOO_BIG)
            assert answer.status_code == 413, (method, path, answer.status_code)


def test_a_chunked_oversized_body_is_refused(api):
    client, tokens, visit = api

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * (MAX_REQUEST_BYTES // 8)

    answer = client.post(
        f"/api/tasks/{visit.task_id}/transition", content=chunks(), headers=auth(tokens, "admin")
    )
    assert answer.status_code == 413


def _send_until_answered(port: int, head: bytes, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``head`` and then ``chunks`` until the server answers; the answer and the body
    bytes that were sent before it."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        return sock.recv(65536), sent


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_the_real_server_answers_413_without_reading_a_100_mb_body(tmp_path, framing):
    """An anonymous 100 MB POST: the answer is 413 (not 401 after parsing it), and it comes
    before the client has sent more than a few MiB."""
    store = TaskStore(f"sqlite:///{tmp_path / 'outreach.db'}")
    settings = OutreachSettings(
        database_url=store.url, lake_dir=tmp_path / "lake", secure_cookies=False
    )
    piece = b"x" * 65536
    total = 100 * 1024 * 1024
    if framing == "chunked":
        length = b"Transfer-Encoding: chunked"
        pieces = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(total // len(piece)))
    else:
        length = b"Content-Length: %d" % total
        pieces = (piece for _ in range(total // len(piece)))
    head = (
        b"POST /api/tasks/x/transition HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n" + length + b"\r\n\r\n"
    )
    with serving(create_app(settings, store, background=False)) as (_, port):
        answer, sent = _send_until_answered(port, head, pieces)
    store.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 16 * 1024 * 1024, f"{sent} bytes went in before the answer"


def test_a_422_does_not_echo_the_body(api):
    client, tokens, visit = api
    note = "secret-note-" + "y" * 500_000
    answer = client.post(
        f"/api/tasks/{visit.task_id}/transition",
        json={"to": "flying", "note": note},
        headers=auth(tokens, "admin"),
    )
    assert answer.status_code == 422
    assert "secret-note" not in answer.text and "flying" not in answer.text
    assert len(answer.content) < 2000
    assert {e["loc"][-1] for e in answer.json()["detail"]} == {"to", "note"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"to": "in_progress", "note": "\\ud800"}',
        b'{"to": "in_progress", "note": "\xed\xa0\x80"}',
        b'{"to": "\\udfff"}',
        b'{"to": "in_progress", "assignee": "a\\ud83d"}',
    ],
)
def test_a_lone_surrogate_is_a_clean_422(api, body):
    client, tokens, visit = api
    answer = client.post(
        f"/api/tasks/{visit.task_id}/transition",
        content=body,
        headers={**auth(tokens, "admin"), "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert (
        client.get(f"/api/tasks/{visit.task_id}", headers=auth(tokens, "admin")).json()["status"]
        == "open"
    )


# -- headers -------------------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(api, any_store):
    client, tokens, visit = api
    admin = auth(tokens, "admin")
    answers = {
        "login page": client.get("/login"),
        "redirect": client.get("/board", follow_redirects=False),
        "401": client.get("/api/lists/visit"),
        "404": client.get("/api/tasks/nope", headers=admin),
        "413": client.post("/login", content=TOO_BIG),
        "422": client.post(f"/api/tasks/{visit.task_id}/transition", json={}, headers=admin),
        "csv": client.get("/api/lists/visit.csv", headers=admin),
        "docs": client.get("/docs", headers=admin),
        "health": client.get("/healthz"),
        "css": client.get("/static/outreach.css"),
    }
    with any_store.engine.begin() as conn:  # a real crash: the table is gone
        conn.exec_driver_sql("ALTER TABLE tasks RENAME TO tasks_gone")
    try:
        crashing = TestClient(client.app, raise_server_exceptions=False)
        answers["500"] = crashing.get("/api/lists/visit", headers=admin)
    finally:  # the PostgreSQL database outlives the test
        with any_store.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE tasks_gone RENAME TO tasks")
    assert answers["500"].status_code == 500
    for name, answer in answers.items():
        headers = answer.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], name
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["x-frame-options"] == "DENY", name
        assert headers["referrer-policy"] == "no-referrer", name
        if name != "css":
            assert headers["cache-control"] == "no-store", name
    page_csp = answers["login page"].headers["content-security-policy"]
    assert "script-src" not in page_csp and "'unsafe-inline'" not in page_csp
    assert "default-src 'none'" in page_csp and "style-src 'self'" in page_csp


def test_pages_have_no_inline_style_or_script(api):
    """The page CSP allows neither, so the pages must not need them."""
    client, tokens, visit = api
    client.post("/login", data={"token": tokens["admin"]})
    for path in ("/login", "/board", "/retention", "/support", f"/tasks/{visit.task_id}"):
        html = client.get(path).text
        assert "<script" not in html and "<style" not in html and "style=" not in html, path


# -- what needs a login --------------------------------------------------------------------------


def test_api_docs_need_a_login(api):
    client, tokens, _ = api
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert client.get(path).status_code in (401, 404), path
        assert client.get(path, headers={"Authorization": "Bearer guess"}).status_code in (
            401,
            404,
        ), path
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path, headers=auth(tokens, "technician")).status_code == 200, path
    client.post("/login", data={"token": tokens["retention"]})
    assert "swagger-ui" in client.get("/docs").text, "the page login's cookie will do"


def test_metrics_need_the_scrape_token(any_store, tmp_path):
    token = "scraper-" + "s" * 24
    settings = OutreachSettings(
        database_url=any_store.url,
        lake_dir=tmp_path / "lake",
        secure_cookies=False,
        metrics_token=token,
    )
    client = TestClient(create_app(settings, any_store, background=False))
    admin = any_store.create_token("admin-user", "admin")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code == 401
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status_code == 200 and "forewarn_outreach_store_up 1.0" in scraped.text


def test_metrics_without_a_token_answer_only_on_loopback(tmp_path):
    store = TaskStore(f"sqlite:///{tmp_path / 'outreach.db'}")
    settings = OutreachSettings(
        database_url=store.url, lake_dir=tmp_path / "lake", secure_cookies=False
    )
    app = create_app(settings, store, background=False)
    assert TestClient(app).get("/metrics").status_code == 403, "a remote client is refused"
    with serving(app) as (host, port):
        assert httpx.get(f"http://{host}:{port}/metrics", timeout=10).status_code == 200
    store.close()
