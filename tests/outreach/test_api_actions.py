"""The task API people and programs act through (issue 17, items 2, 3 and 6): filters and cursor
pages, assign/claim/reschedule/snooze/reopen with the audit trail, known staff only, a
technician on their own visits only, "no answer" keeps a task open, documented errors, a bearer
scheme in OpenAPI, Swagger UI served locally, 404 whoever asks."""

from __future__ import annotations

from datetime import timedelta

from tests.outreach.conftest import auth
from tests.utils import factories
from tests.utils.factories import T0


def _visits(store, n: int) -> list[str]:
    ids = []
    for i in range(n):
        device = f"D{i + 10:05d}"
        task = store.upsert_alert(
            factories.alert(
                100 + i,
                dedup_key=f"visit:{device}",
                device_id=device,
                customer_id=f"C{i + 10:05d}",
                severity=("low", "medium", "high", "critical")[i % 4],
                evidence={"device_type": "heat_pump" if i % 2 else "water_heater"},
            )
        )
        ids.append(task.task_id)
    return ids


def test_task_lists_page_with_a_cursor_and_count_them_all(api, any_store):
    client, tokens, _ = api
    _visits(any_store, 7)
    headers = auth(tokens, "dispatcher")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/tasks", params=params, headers=headers).json()
        assert page["total"] == 8
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len({t["id"] for t in seen}) == 8
    keys = [(-t["priority"], t["due_at"], t["id"]) for t in seen]
    assert keys == sorted(keys), "best first across pages"


def test_limits_beyond_the_page_maximum_and_forged_cursors_are_422_not_clamped(api):
    client, tokens, _ = api
    headers = auth(tokens, "dispatcher")
    assert client.get("/api/tasks", params={"limit": 5000}, headers=headers).status_code == 422
    forged = client.get("/api/tasks", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=headers)
    assert forged.status_code == 422 and "cursor" in forged.json()["detail"]


def test_task_lists_filter_by_severity_skill_assignee_due_and_search(api, any_store):
    client, tokens, visit = api
    _visits(any_store, 8)
    headers = auth(tokens, "dispatcher")

    def ids(**params):
        page = client.get("/api/tasks", params=params, headers=headers).json()
        return {t["id"] for t in page["items"]}

    assert all(
        t["severity"] == "critical"
        for t in client.get("/api/tasks", params={"severity": "critical"}, headers=headers).json()[
            "items"
        ]
    )
    plumbing = client.get("/api/tasks", params={"skill": "plumbing"}, headers=headers).json()
    assert plumbing["total"] == 4 and all(
        t["queue"].endswith("/plumbing") for t in plumbing["items"]
    )
    assert ids(q="d00013") == {t for t in ids() if any_store.get(t).device_id == "D00013"}, (
        "search is case-insensitive on the device"
    )
    client.post(
        f"/api/tasks/{visit.task_id}/assign",
        json={"assignee": "technician-user"},
        headers=headers,
    )
    assert ids(assignee="technician-user") == {visit.task_id}
    assert visit.task_id not in ids(assignee="")
    soon = ids(due_before=(T0 + timedelta(hours=110)).isoformat())
    assert soon and all(any_store.get(t).due_at < T0 + timedelta(hours=110) for t in soon)


def test_assignment_only_to_known_staff_and_reassignment_by_a_dispatcher(api):
    client, tokens, visit = api
    url = f"/api/tasks/{visit.task_id}/assign"
    headers = auth(tokens, "dispatcher")
    ghost = client.post(url, json={"assignee": "nobody-here"}, headers=headers)
    assert ghost.status_code == 422 and "technician-user" in ghost.json()["detail"]
    assert (
        client.post(url, json={"assignee": "technician-user"}, headers=headers).status_code == 200
    )
    again = client.post(
        url, json={"assignee": "dispatcher-user", "note": "tom is ill"}, headers=headers
    )
    assert again.status_code == 200 and again.json()["assignee"] == "dispatcher-user"
    history = client.get(f"/api/tasks/{visit.task_id}", headers=headers).json()["history"]
    assert [h["action"] for h in history[-2:]] == ["assigned", "assigned"]
    assert history[-1]["detail"] == {
        "from": "technician-user",
        "assignee": "dispatcher-user",
        "note": "tom is ill",
    }
    retention = client.post(url, json={"assignee": "retention-user"}, headers=headers)
    assert retention.status_code == 422, "a retention agent does not do visits"


def test_a_technician_acts_only_on_their_own_visits(api):
    client, tokens, visit = api
    tech = auth(tokens, "technician")
    client.post(
        f"/api/tasks/{visit.task_id}/assign",
        json={"assignee": "dispatcher-user"},
        headers=auth(tokens, "dispatcher"),
    )
    for path, body in (
        ("outcome", {"outcome": "fixed"}),
        ("transition", {"to": "done", "outcome": "fixed"}),
        ("claim", {}),
        ("reschedule", {"due_at": "2026-02-01T00:00:00Z", "reason": "x"}),
    ):
        denied = client.post(f"/api/tasks/{visit.task_id}/{path}", json=body, headers=tech)
        assert denied.status_code == 403, (path, denied.text)
    assert client.get(f"/api/tasks/{visit.task_id}", headers=tech).json()["status"] == "assigned"


def test_a_technician_claims_an_unassigned_visit_and_records_no_answer_then_fixed(api):
    client, tokens, visit = api
    tech = auth(tokens, "technician")
    claimed = client.post(f"/api/tasks/{visit.task_id}/claim", json={}, headers=tech)
    assert claimed.status_code == 200 and claimed.json()["assignee"] == "technician-user"
    url = f"/api/tasks/{visit.task_id}/outcome"
    no_answer = client.post(url, json={"outcome": "no_answer"}, headers=tech).json()
    assert no_answer["status"] == "assigned" and no_answer["attempts"] == 1
    fixed = client.post(url, json={"outcome": "fixed"}, headers=tech).json()
    assert fixed["status"] == "done" and fixed["outcome"] == "fixed"


def test_reschedule_and_snooze_need_a_reason_and_are_in_the_history(api):
    client, tokens, visit = api
    headers = auth(tokens, "dispatcher")
    base = f"/api/tasks/{visit.task_id}"
    assert (
        client.post(
            f"{base}/reschedule",
            json={"due_at": "2026-02-01T09:00:00Z", "reason": ""},
            headers=headers,
        ).status_code
        == 422
    )
    moved = client.post(
        f"{base}/reschedule",
        json={"due_at": "2026-02-01T09:00:00Z", "reason": "customer away until February"},
        headers=headers,
    )
    assert moved.status_code == 200 and moved.json()["due_at"].startswith("2026-02-01T09:00")
    snoozed = client.post(
        f"{base}/snooze",
        json={"until": "2099-01-01T00:00:00Z", "reason": "waiting for a part"},
        headers=headers,
    )
    assert snoozed.status_code == 200
    assert client.get("/api/lists/visit", headers=headers).json() == [], "hidden until then"
    history = client.get(base, headers=headers).json()["history"]
    assert history[-2]["detail"]["reason"] == "customer away until February"
    assert history[-1]["action"] == "snoozed"


def test_reopen_by_dispatcher_or_admin_only(api):
    client, tokens, visit = api
    base = f"/api/tasks/{visit.task_id}"
    client.post(f"{base}/outcome", json={"outcome": "fixed"}, headers=auth(tokens, "technician"))
    body = {"reason": "recorded on the wrong visit"}
    assert (
        client.post(f"{base}/reopen", json=body, headers=auth(tokens, "technician")).status_code
        == 403
    )
    reopened = client.post(f"{base}/reopen", json=body, headers=auth(tokens, "dispatcher"))
    assert reopened.status_code == 200 and reopened.json()["status"] == "open"
    again = client.post(f"{base}/reopen", json=body, headers=auth(tokens, "admin"))
    assert again.status_code == 409 and "open already" in again.json()["detail"]


def test_unknown_ids_are_404_whoever_asks(api):
    client, tokens, _ = api
    for role in ("admin", "support", "technician"):
        headers = auth(tokens, role)
        assert client.get("/api/tasks/nope", headers=headers).status_code == 404
        assert client.post("/api/tasks/nope/claim", json={}, headers=headers).status_code == 404
        assert client.get("/api/customers/C99999/timeline", headers=headers).status_code == 404
    assert (
        client.post(
            "/api/tasks/nope/outcome", json={"outcome": "fixed"}, headers=auth(tokens, "admin")
        ).status_code
        == 404
    )


def test_openapi_declares_the_bearer_scheme_and_the_error_answers(api):
    client, tokens, _ = api
    spec = client.get("/openapi.json", headers=auth(tokens, "admin")).json()
    assert spec["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["token"]["description"],
    }
    listing = spec["paths"]["/api/tasks"]["get"]
    assert {"token": []} in listing["security"]
    assert {"401", "403", "404", "422"} <= set(listing["responses"])
    assert "409" in spec["paths"]["/api/tasks/{task_id}/assign"]["post"]["responses"]
    params = {p["name"] for p in listing["parameters"]}
    assert {"status", "assignee", "queue", "customer_id", "due_before", "cursor", "q"} <= params


def test_swagger_ui_is_served_by_the_service_itself(api):
    client, tokens, _ = api
    page = client.get("/docs", headers=auth(tokens, "admin"))
    assert "cdn." not in page.text and "https://" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "https:" not in page.headers["content-security-policy"]
    for asset in (
        "/static/vendor/swagger-ui/swagger-ui-bundle.js",
        "/static/vendor/swagger-ui/swagger-ui.css",
        "/static/swagger-init.js",
    ):
        assert asset in page.text
        assert client.get(asset).status_code == 200, asset


def test_kpis_count_misses_for_your_kinds(api, any_store):
    client, tokens, _ = api
    any_store.apply_ticket(
        factories.ticket(category="cancellation", event_id="c1", ticket_id="c1", status="opened")
    )
    (kpis,) = client.get("/api/kpis", headers=auth(tokens, "dispatcher")).json()
    assert kpis["kind"] == "visit" and kpis["missed"] == 1
    assert kpis["missed_by_reason"] == {"customer left before contact": 1}


def test_a_task_comes_with_the_customers_contact_details(api, any_store):
    client, tokens, visit = api
    any_store.import_customers(
        [{"customer_id": "C00001", "name": "Ada Lovelace", "phone": "+44 1", "email": "a@x.org"}]
    )
    task = client.get(f"/api/tasks/{visit.task_id}", headers=auth(tokens, "technician")).json()
    assert task["customer"]["name"] == "Ada Lovelace" and task["customer"]["phone"] == "+44 1"
