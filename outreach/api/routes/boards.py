"""The work lists as pages: the field-service board, the retention list and the support queue.

Each shows today's open tasks best first, cut to the team's capacity, and says how many more
are waiting beyond it (``?page=2`` shows them: every open task is reachable). Filters are plain
GET parameters, so a filtered board can be bookmarked: territory and skill (visits), severity,
due window, assignee and a search over customer id and name, device and title.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.api.deps import NowDep, RulesDep, SessionDep, SettingsDep
from outreach.api.render import csrf_ok, flash, render
from outreach.api.routes.pages import require_page_user
from outreach.api.routes.tasks import staff_for
from outreach.crud import tasks as task_crud
from outreach.crud.tasks import InvalidTransition, StaleTask, TaskFilter, TaskNotFound, UnknownStaff
from outreach.models import OPEN_STATUSES, CustomerProfile, Task
from outreach.rules import SKILLS, may_act
from outreach.uplift import churn_times, uplift_report

router = APIRouter(include_in_schema=False)

PAGES = {
    "board": ("visit", "Field service: proactive visits"),
    "retention": ("retention", "Retention: customers at risk"),
    "support": ("feedback", "Support: negative feedback, reply within one hour"),
}
PAGE_OF_KIND = {kind: f"/{name}" for name, (kind, _) in PAGES.items()}
#: Due windows of the filter bar, by how far ahead of now.
DUE_WINDOWS = {
    "overdue": ("Overdue", timedelta(0)),
    "today": ("Due within 24 h", timedelta(hours=24)),
    "2days": ("Due within 48 h", timedelta(hours=48)),
    "week": ("Due within 7 days", timedelta(days=7)),
}
SEVERITIES = ("critical", "high", "medium", "low")


def profiles_of(session: Session, tasks: list[Task]) -> dict[str, CustomerProfile]:
    ids = {t.customer_id for t in tasks}
    if not ids:
        return {}
    rows = session.scalars(select(CustomerProfile).where(CustomerProfile.customer_id.in_(ids)))
    return {p.customer_id: p for p in rows}


def linked_of(session: Session, tasks: list[Task]) -> dict[str, Task]:
    ids = {t.linked_task_id for t in tasks if t.linked_task_id}
    if not ids:
        return {}
    return {t.id: t for t in session.scalars(select(Task).where(Task.id.in_(ids)))}


def _territories(session: Session) -> list[str]:
    queues = session.scalars(
        select(Task.queue).where(Task.kind == "visit", Task.status.in_(OPEN_STATUSES)).distinct()
    )
    return sorted({q.split("/")[0] for q in queues if "/" in q})


@router.get("/{page}", response_class=HTMLResponse)
def list_page(
    page: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    rules: RulesDep,
    now: NowDep,
    territory: Annotated[str, Query(max_length=32)] = "",
    skill: Annotated[str, Query(max_length=32)] = "",
    severity: Annotated[str, Query(max_length=16)] = "",
    due: Annotated[str, Query(max_length=16)] = "",
    assignee: Annotated[str, Query(max_length=64)] = "",
    q: Annotated[str, Query(max_length=100)] = "",
    n: Annotated[int, Query(ge=1, le=1000)] = 1,
) -> HTMLResponse:
    if page not in PAGES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"There is no page called {page}.")
    kind, heading = PAGES[page]
    user = require_page_user(request, session, kind)
    window = DUE_WINDOWS.get(due)
    who = {"": None, "-": "", "me": user.name}.get(assignee, assignee)
    where = TaskFilter(
        kind=kind,
        statuses=task_crud.OPEN,
        territory=territory or None,
        skill=skill or None,
        severity=severity if severity in SEVERITIES else None,
        due_before=now + window[1] if window else None,
        assignee=who,
        search=q or None,
        include_snoozed=False,
        now=now,
    )
    capacity = task_crud.capacity(rules=rules, kind=kind)
    staff = staff_for(session, kind)
    total = task_crud.count_tasks(session=session, where=where)
    tasks = task_crud.list_tasks(session=session, where=where, limit=capacity * n)
    tasks = tasks[capacity * (n - 1) :]
    snoozed = task_crud.count_tasks(
        session=session, where=TaskFilter(kind=kind, statuses=task_crud.OPEN)
    ) - task_crud.count_tasks(
        session=session,
        where=TaskFilter(kind=kind, statuses=task_crud.OPEN, include_snoozed=False, now=now),
    )
    context: dict[str, Any] = {
        "tasks": tasks,
        "kind": kind,
        "page": page,
        "heading": heading,
        "capacity": capacity,
        "total": total,
        "shown_from": capacity * (n - 1),
        "n": n,
        "more": max(0, total - capacity * n),
        "snoozed": snoozed,
        "profiles": profiles_of(session, tasks),
        "linked": linked_of(session, tasks),
        "filters": {
            "territory": territory,
            "skill": skill,
            "severity": severity,
            "due": due,
            "assignee": assignee,
            "q": q,
        },
        "filtered": any((territory, skill, severity, due, assignee, q)),
        "territories": _territories(session) if kind == "visit" else [],
        "skills": sorted(set(SKILLS.values()) | {"general"}) if kind == "visit" else [],
        "severities": SEVERITIES,
        "due_windows": {k: label for k, (label, _) in DUE_WINDOWS.items()},
        "staff": sorted(staff),
        "kpis": task_crud.proactive_kpis(session=session, kind=kind),
        # "Take it" only for people tasks of this kind can be given to (not an admin).
        "can": {
            t.id: may_act(user.role, user.name, kind, t.assignee, "claim") is None
            and t.assignee != user.name
            and user.name in staff
            for t in tasks
        },
    }
    retention = (
        task_crud.list_tasks(session=session, kind="retention") if kind == "retention" else []
    )
    # The database part is done: end its transaction before reading the lake, so that SQLite's
    # write lock (BEGIN IMMEDIATE) is not held while Parquet files are read.
    session.commit()
    if kind == "retention":
        context["uplift"] = uplift_report(retention, churn_times(settings.lake_dir))
    return render(request, session, "list.html", user=user, **context)


@router.post("/tasks/{task_id}/claim", response_model=None)
def claim_from_list(
    task_id: str,
    request: Request,
    session: SessionDep,
    now: NowDep,
    csrf: Annotated[str, Form(max_length=128)],
    version: Annotated[int, Form()],
    back: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    """A "Claim" button on a list: the task becomes yours."""
    user = require_page_user(request, session)
    if not csrf_ok(request, csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "The form expired; reload the page.")
    try:
        task = task_crud.get_task(session=session, task_id=task_id)
    except TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"There is no task {task_id}.") from None
    if (why := may_act(user.role, user.name, task.kind, task.assignee, "claim")) is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, why[:1].upper() + why[1:] + ".")
    staff = staff_for(session, task.kind)
    title = task.title
    session.rollback()
    try:
        task_crud.assign_task(
            session=session,
            task_id=task_id,
            assignee=user.name,
            staff=staff,
            actor=user.name,
            now=now,
            expected_version=version,
        )
        flash(request, session, f"You took “{title}”.")
    except (InvalidTransition, StaleTask, UnknownStaff) as exc:
        session.rollback()
        flash(request, session, f"Could not take “{title}”: {exc}", "error")
    session.commit()
    # Back to the list it came from, on this site only ("//x" or "/\\x" would leave it).
    target = back if re.fullmatch(r"/[a-z]+(\?[^\\]*)?", back) else PAGE_OF_KIND[task.kind]
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)
