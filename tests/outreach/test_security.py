"""Findings of the security probe (issue 13), each reproduced against the service on both
databases: formula cells in CSV, the transition rule, bodies, headers, tokens, sessions, logins,
/metrics and the API docs."""

from __future__ import annotations

import csv
import io

import pytest

from tests.outreach.conftest import auth
from tests.utils import factories

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
