"""Today's lists per team, as JSON and as CSV for a spreadsheet."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from outreach.api.deps import ERRORS, CurrentUser, NowDep, RulesDep, SessionDep, require_kind
from outreach.api.routes.tasks import Kind
from outreach.crud import tasks as crud
from outreach.schemas import TaskPublic

router = APIRouter(prefix="/api", tags=["lists"], responses=ERRORS)

CSV_COLUMNS = (
    "priority",
    "id",
    "title",
    "customer_id",
    "device_id",
    "severity",
    "queue",
    "value_tier",
    "value_at_stake",
    "due_at",
    "status",
    "assignee",
    "explanation",
    "suggestion",
)
#: First characters that make a spreadsheet read a cell as a formula. TAB and CR count because
#: Excel skips them before the formula sign, and Excel and LibreOffice take the full-width
#: forms for the ASCII ones (OWASP "CSV Injection"; issue 13).
FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def _safe_cell(value: Any) -> Any:
    """``value``, with a leading apostrophe if a spreadsheet would run it as a formula."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


# The CSV route comes first: /lists/{kind} would otherwise take 'visit.csv' as a kind.
@router.get("/lists/{kind}.csv")
def daily_list_csv(
    kind: Kind, session: SessionDep, rules: RulesDep, user: CurrentUser, now: NowDep
) -> Response:
    require_kind(user, kind)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for t in crud.daily_list(session=session, rules=rules, kind=kind, now=now):
        row = TaskPublic.model_validate(t).model_dump()
        writer.writerow([_safe_cell(row[c]) for c in CSV_COLUMNS])
    return Response(
        buffer.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{kind}-list.csv"'},
    )


@router.get("/lists/{kind}", response_model=list[TaskPublic])
def daily_list(
    kind: Kind, session: SessionDep, rules: RulesDep, user: CurrentUser, now: NowDep
) -> list[TaskPublic]:
    """Today's list for the team: open tasks not snoozed, best first, cut to the team's
    capacity (the rest: ``GET /api/tasks``)."""
    require_kind(user, kind)
    tasks = crud.daily_list(session=session, rules=rules, kind=kind, now=now)
    return [TaskPublic.model_validate(t) for t in tasks]
