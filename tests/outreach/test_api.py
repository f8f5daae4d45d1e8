"""REST API and pages on both databases: roles, lists, CSV, errors, escaping."""

from __future__ import annotations

import re

from tests.outreach.conftest import auth as _auth
from tests.utils import factories


def test_openapi_document_is_served(api):
    client, tokens, _ = api
    spec = client.get("/openapi.json", headers=_auth(tokens, "support")).json()
    assert "/api/tasks/{task_id}/transition" in spec["paths"]


def test_no_token_is_401(api):
    client, _, _ = api
    response = client.get("/api/lists/visit")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_a_technician_cannot_read_the_retention_list(api):
    client, tokens, _ = api
    assert (
        client.get("/api/lists/retention", headers=_auth(tokens, "technician")).status_code == 403
    )
    assert client.get("/api/lists/visit", headers=_auth(tokens, "technician")).status_code == 200


def test_read_task_not_found(api):
    client, tokens, _ = api
    assert client.get("/api/tasks/nope", headers=_auth(tokens, "admin")).status_code == 404


def test_transition_and_conflicts(api):
    client, tokens, visit = api
    url = f"/api/tasks/{visit.task_id}/transition"
    ok = client.post(
        url, json={"to": "done", "outcome": "fixed"}, headers=_auth(tokens, "technician")
    )
    assert ok.status_code == 200 and ok.json()["status"] == "done"
    again = client.post(
        url, json={"to": "done", "outcome": "fixed"}, headers=_auth(tokens, "technician")
    )
    assert again.status_code == 409 and "cannot become done" in again.json()["detail"]
    bad = client.post(url, json={"to": "flying"}, headers=_auth(tokens, "technician"))
    assert bad.status_code == 422


def test_stale_version_is_409(api):
    client, tokens, visit = api
    url = f"/api/tasks/{visit.task_id}/transition"
    headers = _auth(tokens, "dispatcher")
    assert (
        client.post(
            url,
            json={"to": "assigned", "assignee": "technician-user", "expected_version": 1},
            headers=headers,
        ).status_code
        == 200
    )
    stale = client.post(url, json={"to": "open", "expected_version": 1}, headers=headers)
    assert stale.status_code == 409 and "reload" in stale.json()["detail"]


def test_only_dispatchers_assign_visits_to_others(api):
    client, tokens, visit = api
    url = f"/api/tasks/{visit.task_id}/transition"
    denied = client.post(
        url,
        json={"to": "assigned", "assignee": "someone-else"},
        headers=_auth(tokens, "technician"),
    )
    assert denied.status_code == 403


def test_csv_export_defuses_formulas(api, any_store):
    client, tokens, _ = api
    any_store.upsert_alert(
        factories.alert(
            9, dedup_key="visit:D9", device_id="D9", explanation='=HYPERLINK("http://evil")'
        )
    )
    response = client.get("/api/lists/visit.csv", headers=_auth(tokens, "technician"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0].startswith("priority,id,title")
    assert "'=HYPERLINK" in response.text and ",=HYPERLINK" not in response.text


def test_pages_escape_customer_text(api, any_store):
    client, tokens, _ = api
    script = "<script>alert('x')</script>"
    task = any_store.upsert_alert(
        factories.alert(
            3, dedup_key="visit:D3", device_id="D3", explanation=f"customer said {script}"
        )
    )
    client.post("/login", data={"token": tokens["technician"]})
    for path in ("/board", f"/tasks/{task.task_id}"):
        assert script not in client.get(path).text, path
    assert "&lt;script&gt;" in client.get(f"/tasks/{task.task_id}").text


def test_every_page_escapes_hostile_text(api, any_store, tmp_path):
    """Customer text reaches pages from alerts (explanations), tickets in the lake (the task
    page's timeline), the URL (flash messages, unknown pages): all of it rendered inert."""
    from forewarn.lake import LakeWriter

    client, tokens, _ = api
    script = "<script>alert('x')</script>"
    attr = '" onmouseover="alert(1)'
    LakeWriter(tmp_path / "lake").write(
        [factories.ticket(customer_id="C00001", text=f"angry {script} {attr}")]
    )
    ids = [
        any_store.upsert_alert(
            factories.alert(
                i, kind=kind, dedup_key=f"{kind}:C00001:{i}", explanation=f"said {script}{attr}"
            )
        ).task_id
        for i, kind in enumerate(["device_fault", "churn_risk", "negative_feedback"], start=5)
    ]
    client.post("/login", data={"token": tokens["admin"]})
    pages = ["/board", "/retention", "/support", *(f"/tasks/{i}" for i in ids)]
    img = "<img src=x onerror=alert(1)>"  # no slash: reaches the /{page} route's 404 page
    pages += [f"/board?message={script}", f"/{img}"]
    for path in pages:
        html = client.get(path).text
        assert script not in html and attr not in html and img not in html, path
    # Where the text is shown at all (the lists show plain titles and reasons), it is escaped;
    # a ?message= prints nothing (flash messages come from the session, issue 17).
    for path in ["/support", *(f"/tasks/{i}" for i in ids)]:
        assert "&lt;script&gt;" in client.get(path).text, path
    assert "&lt;img" in client.get(f"/{img}").text
    assert 'class="flash' not in client.get(f"/board?message={script}").text
    timeline = client.get(f"/tasks/{ids[0]}").text
    assert "angry &lt;script&gt;" in timeline, "the ticket reached the timeline, escaped"


def test_query_parameters_are_bound_not_spliced(api, any_store):
    """Filters from the URL go to SQL as bound parameters: an injection matches nothing and
    changes nothing."""
    client, tokens, _ = api
    before = len(any_store.tasks())
    for value in ("visit' OR '1'='1", "visit; DROP TABLE tasks; --"):
        done = client.get("/api/tasks", params={"kind": value}, headers=_auth(tokens, "admin"))
        assert done.status_code in (200, 422)
        assert done.status_code == 422 or done.json() == []
    # Spliced into SQL, the OR would find C00001's tasks and show the timeline; bound, the
    # odd id is no customer at all: 404, even for an admin.
    timeline = client.get(
        "/api/customers/C00001' OR '1'='1/timeline", headers=_auth(tokens, "admin")
    )
    assert timeline.status_code == 404
    assert len(any_store.tasks()) == before


def test_login_sets_a_strict_httponly_cookie_and_bad_token_is_refused(api):
    client, tokens, _ = api
    bad = client.post("/login", data={"token": "guess"}, follow_redirects=False)
    assert bad.status_code == 401
    good = client.post("/login", data={"token": tokens["support"]}, follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/support"
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/board", follow_redirects=False).status_code == 403


def test_outcome_form_needs_the_csrf_token(api):
    client, tokens, visit = api
    client.post("/login", data={"token": tokens["technician"]})
    page = client.get(f"/tasks/{visit.task_id}").text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    forged = client.post(
        f"/tasks/{visit.task_id}/outcome", data={"outcome": "fixed", "csrf": "0" * 64, "version": 1}
    )
    assert forged.status_code == 403
    done = client.post(
        f"/tasks/{visit.task_id}/outcome",
        data={"outcome": "fixed", "csrf": csrf, "version": 1},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/board"
    assert "Recorded: fixed." in client.get("/board").text, "a flash message from the session"
    assert "Recorded" not in client.get("/board").text, "shown once"


def test_oversized_text_is_refused(api):
    client, tokens, visit = api
    response = client.post(
        f"/api/tasks/{visit.task_id}/transition",
        json={"to": "done", "outcome": "fixed", "note": "x" * 5000},
        headers=_auth(tokens, "technician"),
    )
    assert response.status_code == 422
