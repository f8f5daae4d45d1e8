"""The pages people act from (issue 17, items 2, 3 and 7), through the test client on both
databases: the board's capacity and paging, filters, the forms (CSRF, no preselected outcome,
"no answer", covers both, assign only known staff), conflicts that keep the agent's text, error
pages with navigation, flash messages from the session, one clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from outreach.api.main import create_app
from outreach.config import OutreachSettings
from outreach.rules import OutreachRules, in_holdout
from tests.utils import factories
from tests.utils.factories import T0

NOW = T0 + timedelta(hours=30)


@pytest.fixture
def site(any_store, tmp_path):
    """The service on a pinned clock (30 h after the first evidence), a token per role."""
    settings = OutreachSettings(
        database_url=any_store.url, lake_dir=tmp_path / "lake", secure_cookies=False
    )
    app = create_app(settings, any_store, background=False, clock=lambda: NOW)
    tokens = {
        role: any_store.create_token(f"{role}-user", role)
        for role in ("technician", "dispatcher", "retention", "support", "admin")
    }
    tokens["tara"] = any_store.create_token("tara", "technician")

    def login(role: str) -> TestClient:
        client = TestClient(app)
        client.post("/login", data={"token": tokens[role]})
        return client

    return login, any_store


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def _version(html: str, form_id: str) -> str:
    form = html[html.index(f'id="{form_id}"') :]
    return re.search(r'name="version" value="(\d+)"', form).group(1)


def _visits(store, n: int, territory_of=lambda i: "north") -> list[str]:
    store.import_customers(
        [{"customer_id": f"C{i:05d}", "territory": territory_of(i)} for i in range(n)]
    )
    return [
        store.upsert_alert(
            factories.alert(
                i,
                dedup_key=f"visit:D{i:05d}",
                device_id=f"D{i:05d}",
                customer_id=f"C{i:05d}",
                severity="critical" if i % 3 == 0 else "medium",
                evidence={"device_type": "heat_pump" if i % 2 else "water_heater"},
            )
        ).task_id
        for i in range(n)
    ]


def test_the_board_says_how_many_wait_beyond_capacity_and_pages_to_them(site):
    login, store = site
    _visits(store, 25)
    board = login("dispatcher").get("/board").text
    assert board.count('class="task-row"') == 20
    assert "5 more waiting beyond today's capacity" in board
    second = login("dispatcher").get("/board?n=2").text
    assert second.count('class="task-row"') == 5
    assert "21\u201325 of 25 open visits" in second


def test_board_filters_by_territory_skill_severity_and_search(site):
    login, store = site
    _visits(store, 12, territory_of=lambda i: "north" if i < 6 else "south")
    client = login("dispatcher")
    south = client.get("/board?territory=south").text
    assert south.count('class="task-row"') == 6 and "north/" not in south
    plumbing = client.get("/board?skill=plumbing&severity=critical").text
    assert plumbing.count('class="task-row"') == 2  # D00000, D00006: even and a multiple of 3
    found = client.get("/board?q=d00007").text
    assert found.count('class="task-row"') == 1 and "D00007" in found
    overdue = client.get("/board?due=overdue").text
    assert overdue.count('class="task-row"') == 4, "the critical ones (due in 4 h) are overdue"


def test_titles_are_plain_words_and_the_board_shows_one_clock(site):
    login, store = site
    _visits(store, 1)
    board = login("technician").get("/board").text
    assert "Water heater D00000: vibration rising" in board
    assert "drift:" not in board and "sigma" not in board
    assert "now 2026-01-06 06:00 UTC" in board, "the footer shows the service's clock"
    assert "overdue by 1 days" not in board and "overdue by 26 h" in board


def test_no_outcome_is_preselected_and_no_answer_keeps_the_task_open(site):
    login, store = site
    (visit,) = _visits(store, 1)
    client = login("technician")
    page = client.get(f"/tasks/{visit}").text
    assert "checked" not in page[page.index('id="outcome-form"') :]
    done = client.post(
        f"/tasks/{visit}/outcome",
        data={
            "csrf": _csrf(page),
            "version": _version(page, "outcome-form"),
            "outcome": "no_answer",
        },
    )
    assert "No answer recorded (attempt 1); the task stays open." in done.text
    assert store.get(visit).status == "open" and store.get(visit).attempts == 1


def test_a_technician_cannot_act_on_a_visit_assigned_to_someone_else(site):
    login, store = site
    visit, other = _visits(store, 2)
    dispatcher = login("dispatcher")
    page = dispatcher.get(f"/tasks/{visit}").text
    dispatcher.post(
        f"/tasks/{visit}/assign",
        data={"csrf": _csrf(page), "version": _version(page, "assign-form"), "assignee": "tara"},
    )
    tech = login("technician")
    page = tech.get(f"/tasks/{visit}").text
    assert 'id="outcome-form"' not in page, "no form to act with"
    csrf = _csrf(tech.get(f"/tasks/{other}").text)  # a real token of this session
    forged = tech.post(
        f"/tasks/{visit}/outcome",
        data={"csrf": csrf, "version": "2", "outcome": "fixed"},
    )
    assert forged.status_code == 403 and "assigned to tara" in forged.text
    assert 'href="/logout"' in forged.text and 'href="/board"' in forged.text, "navigation"
    assert store.get(visit).status == "assigned"


def test_assigning_to_an_unknown_person_is_refused_and_the_note_kept(site):
    login, store = site
    (visit,) = _visits(store, 1)
    client = login("dispatcher")
    page = client.get(f"/tasks/{visit}").text
    refused = client.post(
        f"/tasks/{visit}/assign",
        data={
            "csrf": _csrf(page),
            "version": _version(page, "assign-form"),
            "assignee": "ghost",
            "note": "urgent, call first",
        },
    )
    assert refused.status_code == 422 and "Nobody called &#39;ghost&#39;" in refused.text
    assert 'value="urgent, call first"' in refused.text
    assert store.get(visit).assignee is None


def test_a_stale_edit_says_who_changed_what_and_keeps_the_agents_text(site):
    login, store = site
    (visit,) = _visits(store, 1)
    tech = login("technician")
    page = tech.get(f"/tasks/{visit}").text
    store.transition(visit, to="in_progress", actor="tara", assignee="technician-user")
    note = "Replaced the fan bearing; customer happy"
    stale = tech.post(
        f"/tasks/{visit}/outcome",
        data={
            "csrf": _csrf(page),
            "version": _version(page, "outcome-form"),
            "outcome": "fixed",
            "note": note,
        },
    )
    assert stale.status_code == 409
    assert "Someone else changed this task while you were working on it: tara recorded" in (
        stale.text
    )
    assert "version" not in stale.text.split('id="error"')[1].split("</p>")[0]
    assert f">{note}</textarea>" in stale.text, "the note is still in the form"
    assert 'value="fixed" id="outcome-fixed" required checked' in stale.text
    assert store.get(visit).status == "in_progress"


def test_every_form_refuses_a_forged_post(site):
    login, store = site
    (visit,) = _visits(store, 1)
    client = login("dispatcher")
    forms = {
        "outcome": {"outcome": "fixed"},
        "assign": {"assignee": "tara"},
        "reschedule": {"due_at": "2026-02-01T09:00", "reason": "r"},
        "snooze": {"until": "1h", "reason": "r"},
        "reopen": {"reason": "r"},
        "claim": {},
    }
    for action, fields in forms.items():
        answer = client.post(
            f"/tasks/{visit}/{action}", data={"csrf": "0" * 64, "version": "1", **fields}
        )
        assert answer.status_code == 403, action
        assert "reload the page" in answer.text, action
    assert store.get(visit).version == 1, "nothing changed"


def test_oversized_notes_get_a_clear_page_and_change_nothing(site):
    login, store = site
    (visit,) = _visits(store, 1)
    client = login("technician")
    page = client.get(f"/tasks/{visit}").text
    answer = client.post(
        f"/tasks/{visit}/outcome",
        data={"csrf": _csrf(page), "version": "1", "outcome": "fixed", "note": "x" * 3000},
    )
    assert answer.status_code == 422 and "note" in answer.text and 'href="/logout"' in answer.text
    assert "x" * 3000 not in answer.text
    assert store.get(visit).status == "open"


def test_unknown_tasks_and_pages_are_404_pages_with_navigation(site):
    login, _ = site
    client = login("admin")
    for path in ("/tasks/nope", "/nothing-here"):
        answer = client.get(path)
        assert answer.status_code == 404 and 'href="/logout"' in answer.text, path
        assert "Back to your list" in answer.text


def test_covers_both_closes_the_linked_retention_task_from_the_visit_page(site):
    login, store = site
    customer = next(f"C{i:05d}" for i in range(100) if not in_holdout(f"C{i:05d}", OutreachRules()))
    visit = store.upsert_alert(factories.alert(customer_id=customer)).task_id
    retention = store.upsert_alert(
        factories.alert(
            1,
            kind="churn_risk",
            dedup_key=f"retention:{customer}",
            customer_id=customer,
            device_id=None,
            evidence={"reasons": ["3 late orders"]},
        )
    ).task_id
    client = login("technician")
    page = client.get(f"/tasks/{visit}").text
    assert f'href="/tasks/{retention}"' not in page, "no dead-end link for a technician"
    assert 'id="linked-outcomes"' in page
    done = client.post(
        f"/tasks/{visit}/outcome",
        data={
            "csrf": _csrf(page),
            "version": _version(page, "outcome-form"),
            "outcome": "fixed",
            "linked_outcome": "customer_kept",
        },
    )
    assert "The linked retention task is closed too (customer kept)." in done.text
    assert store.get(retention).status == "done"


def test_the_support_queue_shows_contact_details_and_an_sla_countdown(site):
    login, store = site
    store.import_customers(
        [
            {
                "customer_id": "C00001",
                "name": "Ada Lovelace",
                "phone": "+44 20 7946 0000",
                "email": "ada@example.org",
                "preferred_channel": "email",
            }
        ]
    )
    alert = factories.alert(
        0,
        kind="negative_feedback",
        dedup_key="feedback:T1",
        device_id=None,
        event_time=NOW - timedelta(minutes=20),
    )
    task = store.upsert_alert(alert).task_id
    client = login("support")
    queue = client.get("/support").text
    assert "Ada Lovelace" in queue and "due in 40 min" in queue and "due-soon" in queue
    assert 'http-equiv="refresh"' in queue, "the countdown stays current"
    page = client.get(f"/tasks/{task}").text
    assert "ada@example.org" in page and "+44 20 7946 0000" in page
    assert "Reply on email (due in 40 min)" in page


def test_every_time_uses_one_format_and_the_service_clock(site):
    login, store = site
    (visit,) = _visits(store, 1)
    page = login("technician").get(f"/tasks/{visit}").text
    times = re.findall(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d)?(?: UTC)?", page)
    shown = [t for t in times if not t.startswith(("2026-01-05T", "2026-01-06T"))]
    assert shown and all(t.endswith(" UTC") for t in shown), shown
    assert datetime(2026, 1, 6, 6, tzinfo=UTC) == NOW


def test_claiming_from_the_list_returns_to_the_list_on_this_site_only(site):
    login, store = site
    first, second = _visits(store, 2)
    client = login("technician")
    board = client.get("/board?severity=critical").text
    csrf = _csrf(board)
    back = client.post(
        f"/tasks/{first}/claim",
        data={"csrf": csrf, "version": "1", "back": "/board?severity=critical"},
        follow_redirects=False,
    )
    assert back.headers["location"] == "/board?severity=critical"
    assert store.get(first).assignee == "technician-user"
    for evil in ("//evil.example/board", "/\\evil.example", "https://evil.example/"):
        answer = client.post(
            f"/tasks/{second}/claim",
            data={"csrf": csrf, "version": str(store.get(second).version), "back": evil},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/board", evil


def test_an_admin_is_offered_no_take_it_button_they_could_not_use(site):
    login, store = site
    (visit,) = _visits(store, 1)
    admin = login("admin")
    assert "Take it" not in admin.get("/board").text
    assert 'id="claim"' not in admin.get(f"/tasks/{visit}").text
    assert "Take it" in login("technician").get("/board").text
