"""Findings of the security probe (issue 13), each reproduced against the service on both
databases: formula cells in CSV, the transition rule, bodies, headers, tokens, sessions, logins,
/metrics and the API docs."""

from __future__ import annotations

import csv
import io
import logging
import select
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient
from starlette.routing import Route

from console.cli import main
from outreach.api.deps import COOKIE
from outreach.api.main import create_app
from outreach.api.ratelimit import FAILURES_PER_ADDRESS, LOGINS_PER_NAME, SlidingWindow
from outreach.api.routes import customers, lists, pages, tasks, webhooks
from outreach.config import MAX_REQUEST_BYTES, OutreachSettings
from outreach.migrate import migrate, upgrade
from outreach.models import ApiToken
from outreach.store import TaskStore, hash_token
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
            url,
            json={"to": "assigned", "assignee": "technician-user"},
            headers=auth(tokens, "dispatcher"),
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
        json={"to": "in_progress", "assignee": "technician-user"},
        headers=auth(tokens, "dispatcher"),
    )
    assert done.status_code == 200 and done.json()["assignee"] == "technician-user"


# -- request bodies ----------------------------------------------------------------------------


def test_every_route_refuses_an_oversized_body_before_authentication(api):
    client, _, visit = api
    routers = (
        client.app,
        tasks.router,
        lists.router,
        customers.router,
        pages.router,
        webhooks.router,
    )
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
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    migrate(url)
    store = TaskStore(url)
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
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    migrate(url)
    store = TaskStore(url)
    settings = OutreachSettings(
        database_url=store.url, lake_dir=tmp_path / "lake", secure_cookies=False
    )
    app = create_app(settings, store, background=False)
    assert TestClient(app).get("/metrics").status_code == 403, "a remote client is refused"
    with serving(app) as (host, port):
        assert httpx.get(f"http://{host}:{port}/metrics", timeout=10).status_code == 200
    store.close()


# -- tokens and sessions -------------------------------------------------------------------------


def _login(client: TestClient, token: str) -> str:
    answer = client.post("/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return answer.cookies[COOKIE]


def test_the_session_cookie_is_not_the_token(api):
    client, tokens, _ = api
    answer = client.post("/login", data={"token": tokens["technician"]}, follow_redirects=False)
    assert tokens["technician"] not in answer.headers["set-cookie"]
    session_id = answer.cookies[COOKIE]
    assert len(session_id) >= 40
    bearer = {"Authorization": f"Bearer {session_id}"}
    assert client.get("/api/lists/visit", headers=bearer).status_code == 401
    assert client.get("/api/lists/visit").status_code == 200, "the cookie works for the API"


def test_logout_ends_the_session_on_the_server(api):
    client, tokens, _ = api
    session_id = _login(client, tokens["dispatcher"])
    client.get("/logout")
    client.cookies.set(COOKIE, session_id)  # a copy of the cookie kept by someone
    assert client.get("/board", follow_redirects=False).headers["location"] == "/login"


def test_revoking_through_the_cli_ends_api_and_page_access(api, any_store, tmp_path, monkeypatch):
    client, tokens, _ = api
    monkeypatch.setenv("FOREWARN_DATABASE_URL", any_store.url)
    monkeypatch.setenv("FOREWARN_HOME", str(tmp_path / "home"))
    _login(client, tokens["technician"])
    assert client.get("/board").status_code == 200

    done = CliRunner().invoke(main, ["outreach", "token", "revoke", "--name", "technician-user"])
    assert done.exit_code == 0 and "revoked 1 token" in done.output, done.output
    assert client.get("/board", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/api/lists/visit", headers=auth(tokens, "technician")).status_code == 401
    assert client.post("/login", data={"token": tokens["technician"]}).status_code == 401

    leaked = CliRunner().invoke(
        main, ["outreach", "token", "revoke", "--token-file", "-"], input=tokens["support"] + "\n"
    )
    assert leaked.exit_code == 0 and "revoked 1 token" in leaked.output, leaked.output
    assert client.get("/api/lists/feedback", headers=auth(tokens, "support")).status_code == 401
    assert client.get("/api/lists/visit", headers=auth(tokens, "dispatcher")).status_code == 200

    unknown = CliRunner().invoke(main, ["outreach", "token", "revoke", "--name", "nobody"])
    assert unknown.exit_code == 1 and "revoked 0 tokens" in unknown.output
    created = CliRunner().invoke(main, ["outreach", "token", "--role", "support", "--name", "sam"])
    assert created.exit_code == 0 and any_store.authenticate(created.output.strip()).name == "sam"


def test_an_expired_token_is_refused_everywhere(api, any_store):
    client, tokens, _ = api
    _login(client, tokens["retention"])
    with any_store.sessions.begin() as session:
        session.execute(
            sa.update(ApiToken)
            .where(ApiToken.token_hash == hash_token(tokens["retention"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert client.get("/retention", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/api/lists/retention", headers=auth(tokens, "retention")).status_code == 401
    assert client.post("/login", data={"token": tokens["retention"]}).status_code == 401


def test_tokens_expire_after_the_configured_days(any_store, monkeypatch):
    monkeypatch.setenv("FOREWARN_TOKEN_TTL_DAYS", "7")
    raw = any_store.create_token("tia", "technician")
    with any_store.sessions() as session:
        token = session.scalars(sa.select(ApiToken).where(ApiToken.name == "tia")).one()
    expires = token.expires_at.replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)
    assert any_store.authenticate(raw).name == "tia"
    monkeypatch.setenv("FOREWARN_TOKEN_TTL_DAYS", "forever")
    with pytest.raises(ValueError, match="FOREWARN_TOKEN_TTL_DAYS"):
        any_store.create_token("tia", "technician")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    """A database with no schema at all (a fresh PostgreSQL database on the shared server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    name = f"migration_{tmp_path.name.lower().replace('-', '_')}"[:60]
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


def test_the_migration_gives_existing_tokens_an_expiry(empty_database):
    engine = sa.create_engine(empty_database)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO api_tokens (token_hash, name, role, created_at, revoked) "
            f"VALUES ('{hash_token('old-token')}', 'olga', 'support', '2025-01-01', false)"
        )
    engine.dispose()
    migrate(empty_database)
    store = TaskStore(empty_database)
    assert store.authenticate("old-token").name == "olga", "still valid after the upgrade"
    with store.sessions() as session:
        token = session.scalars(sa.select(ApiToken)).one()
    expires = token.expires_at.replace(tzinfo=UTC)
    assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)
    session_id, user = store.open_session("old-token")
    assert user.name == "olga" and store.session_principal(session_id) == user
    store.close()


# -- login rate limits ---------------------------------------------------------------------------


def test_wrong_tokens_are_limited_per_client_address(api):
    client, tokens, _ = api
    for i in range(FAILURES_PER_ADDRESS):
        assert client.post("/login", data={"token": f"guess-{i}"}).status_code == 401
    blocked = client.post("/login", data={"token": tokens["admin"]}, follow_redirects=False)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    api_guess = client.get("/api/meta", headers=auth(tokens, "admin"))
    assert api_guess.status_code == 429, "the bearer header shares the address's count"
    elsewhere = TestClient(client.app, client=("10.1.2.3", 50000))
    assert elsewhere.get("/api/meta", headers=auth(tokens, "admin")).status_code == 200


def test_wrong_bearer_tokens_are_limited_too(api):
    client, tokens, _ = api
    for _ in range(FAILURES_PER_ADDRESS):
        assert client.get("/api/meta", headers={"Authorization": "Bearer x"}).status_code == 401
    assert client.get("/api/meta", headers=auth(tokens, "admin")).status_code == 429
    assert client.post("/login", data={"token": tokens["admin"]}).status_code == 429


def test_logins_are_limited_per_name(api):
    client, tokens, _ = api
    for _ in range(LOGINS_PER_NAME):
        _login(client, tokens["support"])
    again = client.post("/login", data={"token": tokens["support"]}, follow_redirects=False)
    assert again.status_code == 429 and "support-user" in again.text
    assert client.post("/login", data={"token": tokens["retention"]}).status_code == 200


def test_the_limiter_memory_is_bounded():
    window = SlidingWindow(limit=3, window_s=60, max_keys=100)
    for i in range(10_000):
        window.hit(f"10.0.{i // 256}.{i % 256}")
    assert len(window) == 100
    assert window.retry_after("10.0.0.0") == 0, "the oldest keys were forgotten first"


# -- logs ----------------------------------------------------------------------------------------

PERSONAL = ["Jolanda Pietersen", "Keizersgracht 123", "NL91ABNA0417164300"]
#: Make the database refuse new history lines, and undo it: (do, undo) per dialect.
REFUSE_HISTORY = {
    "sqlite": (
        "CREATE TRIGGER refuse BEFORE INSERT ON task_history BEGIN SELECT RAISE(ABORT, 'no'); END",
        "DROP TRIGGER refuse",
    ),
    "postgresql": (
        "ALTER TABLE task_history ADD CONSTRAINT refuse CHECK (false) NOT VALID",
        "ALTER TABLE task_history DROP CONSTRAINT refuse",
    ),
}


def test_ticket_text_never_reaches_the_logs(any_store, tmp_path, caplog):
    """Every kind of request, a crash included, on the real server with all loggers at DEBUG:
    no log line quotes customer text; the transition is logged by id and note length."""
    from forewarn.lake import LakeWriter

    text = "refund to " + ", ".join(PERSONAL)
    LakeWriter(tmp_path / "lake").write([factories.ticket(customer_id="C00001", text=text)])
    task = any_store.upsert_alert(
        factories.alert(
            kind="negative_feedback",
            dedup_key="feedback:C00001:T1",
            device_id=None,
            explanation=f"customer wrote: {text}",
        )
    )
    token = any_store.create_token("sam", "support")
    settings = OutreachSettings(
        database_url=any_store.url, lake_dir=tmp_path / "lake", secure_cookies=False
    )
    caplog.set_level(logging.DEBUG)
    bearer = {"Authorization": f"Bearer {token}"}
    app = create_app(settings, any_store, background=False)
    with (
        serving(app, log_level="debug", log_config=None) as (host, port),
        httpx.Client(base_url=f"http://{host}:{port}", timeout=10) as web,
    ):
        web.post("/login", data={"token": token})
        for path in ("/support", f"/tasks/{task.task_id}", "/api/lists/feedback.csv"):
            assert text in web.get(path).text or path.endswith(".csv"), path
        assert web.get(f"/api/tasks/{task.task_id}", headers=bearer).status_code == 200
        url = f"/api/tasks/{task.task_id}/transition"
        ok = web.post(url, json={"to": "in_progress", "note": text}, headers=bearer)
        assert ok.status_code == 200
        with any_store.engine.begin() as conn:  # a real crash, the note in its statement
            conn.exec_driver_sql(REFUSE_HISTORY[conn.dialect.name][0])
        try:
            crash = web.post(url, json={"to": "assigned", "note": text}, headers=bearer)
        finally:
            with any_store.engine.begin() as conn:
                conn.exec_driver_sql(REFUSE_HISTORY[conn.dialect.name][1])
        assert crash.status_code == 500
    logged = caplog.text
    assert "Exception in ASGI application" in logged, "the crash was logged"
    assert f"task {task.task_id} open -> in_progress by sam (note: {len(text)} characters)" in (
        logged
    )
    for secret in PERSONAL:
        assert secret not in logged, secret
