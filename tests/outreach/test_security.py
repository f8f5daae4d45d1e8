"""Findings of the security probe (issue 13), each reproduced against the service on both
databases: formula cells in CSV, the transition rule, bodies, headers, tokens, sessions, logins,
/metrics and the API docs."""

from __future__ import annotations

import csv
import io
import select
import socket
from collections.abc import Iterator

import pytest
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
