"""The task page and its forms: record an outcome (or "no answer"), assign or claim,
reschedule, snooze, reopen.

Every form carries the CSRF token and the version the person read. What goes wrong is said on
the task page itself, with what they typed still in the form: a stale version (someone else
changed the task meanwhile) names who did what and when, and keeps the note (issue 17: it
showed raw version numbers and lost the second agent's text). What went right is a flash
message on the next page.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from outreach.api.deps import NowDep, SessionDep, SettingsDep
from outreach.api.render import csrf_ok, flash, render, when, words
from outreach.api.routes.boards import PAGE_OF_KIND
from outreach.api.routes.pages import require_page_user
from outreach.api.routes.tasks import staff_for
from outreach.crud import customers as customer_crud
from outreach.crud import tasks as task_crud
from outreach.crud.tasks import InvalidTransition, StaleTask, TaskNotFound, UnknownStaff
from outreach.crud.tokens import Principal
from outreach.models import OPEN_STATUSES, Task
from outreach.rules import ACTIONS, KIND_OUTCOMES, ROLE_KINDS, may_act
from outreach.timeline import customer_timeline

router = APIRouter(include_in_schema=False)

#: Snooze choices on the page: label and how to compute the time from now.
SNOOZES: dict[str, tuple[str, Callable[[datetime], datetime]]] = {
    "1h": ("1 hour", lambda now: now + timedelta(hours=1)),
    "4h": ("4 hours", lambda now: now + timedelta(hours=4)),
    "tomorrow": (
        "tomorrow 08:00 UTC",
        lambda now: (now + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0),
    ),
    "3d": ("3 days", lambda now: now + timedelta(days=3)),
}
NOTE_MAX = 2000
Csrf = Annotated[str, Form(max_length=128)]
Version = Annotated[int, Form()]
Note = Annotated[str, Form(max_length=NOTE_MAX)]


def _task(session: Session, task_id: str) -> Task:
    try:
        return task_crud.get_task(session=session, task_id=task_id)
    except TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"There is no task {task_id}.") from None


def _sentence(why: str) -> str:
    return why[:1].upper() + why[1:] + "."


def task_context(
    request: Request, session: Session, settings: Any, user: Principal, task: Task
) -> dict[str, Any]:
    """Everything the task page shows (ends the database transaction: the lake comes last)."""
    linked = session.get(Task, task.linked_task_id) if task.linked_task_id else None
    profile = customer_crud.get_profile(session=session, customer_id=task.customer_id)
    customer_tasks = task_crud.list_tasks(session=session, customer_id=task.customer_id)
    reasons = [r for a in task.evidence.get("alerts", [])[-1:] for r in a.get("reasons", [])]
    tickets = [
        a.get("ticket_id") or a.get("dedup_key", "").removeprefix("feedback:")
        for a in task.evidence.get("alerts", [])
    ]
    can = {a: may_act(user.role, user.name, task.kind, task.assignee, a) is None for a in ACTIONS}
    team = staff_for(session, task.kind)
    can["claim"] = can["claim"] and user.name in team  # an admin is nobody's assignee
    staff = sorted(team) if can["assign"] else []
    history = list(task.history)
    session.commit()
    return {
        "task": task,
        "profile": profile,
        "linked": linked,
        "linked_visible": linked is not None
        and linked.kind in ROLE_KINDS.get(user.role, frozenset()),
        "linked_open": linked is not None and linked.status in OPEN_STATUSES,
        "linked_outcomes": [o for o in KIND_OUTCOMES[linked.kind] if o != "no_answer"]
        if linked
        else [],
        "reasons": reasons,
        "tickets": [t for t in tickets if t],
        "outcomes": KIND_OUTCOMES[task.kind],
        "is_open": task.status in OPEN_STATUSES,
        "can": can,
        "staff": staff,
        "snoozes": {k: label for k, (label, _) in SNOOZES.items()},
        "history": history,
        "timeline": customer_timeline(settings.lake_dir, task.customer_id, customer_tasks),
        "form": {},
    }


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task_page(
    task_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    user = require_page_user(request, session)
    task = _task(session, task_id)
    require_page_user(request, session, task.kind)
    context = task_context(request, session, settings, user, task)
    return render(request, session, "task.html", user=user, **context)


def _act(
    request: Request,
    session: Session,
    settings: Any,
    task_id: str,
    csrf: str,
    action: str,
    change: Callable[[Principal], tuple[str, str]],
    form: dict[str, Any],
) -> Response:
    """Check the form and the person, run ``change`` (it returns the flash text and where to
    go next), commit; on a domain error, show the task page again with the form kept."""
    user = require_page_user(request, session)
    if not csrf_ok(request, csrf):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "This form is from an earlier session or another site; reload the page and try again.",
        )
    task = _task(session, task_id)
    require_page_user(request, session, task.kind)
    if (why := may_act(user.role, user.name, task.kind, task.assignee, action)) is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, _sentence(why))
    session.rollback()  # the change reads the task again under its row lock
    try:
        text, target = change(user)
        flash(request, session, text)
        session.commit()
    except (InvalidTransition, StaleTask, UnknownStaff) as exc:
        session.rollback()
        task = _task(session, task_id)
        context = task_context(request, session, settings, user, task)
        if isinstance(exc, StaleTask):
            last = task.history[-1] if task.history else None
            who = (
                f"{last.actor} recorded “{words(last.action)}” at {when(last.at)}"
                if last
                else "someone changed it"
            )
            error = (
                f"Someone else changed this task while you were working on it: {who}. "
                "Nothing of yours was saved yet. Your text is still in the form below: check "
                "the task and send it again."
            )
        else:
            error = _sentence(str(exc))
        code = status.HTTP_409_CONFLICT if not isinstance(exc, UnknownStaff) else 422
        context.update(form={"action": action, **form}, error=error)
        return render(request, session, "task.html", user=user, status_code=code, **context)
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.post("/tasks/{task_id}/outcome", response_model=None)
def record_outcome(
    task_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf,
    version: Version,
    outcome: Annotated[str, Form(max_length=32)] = "",
    linked_outcome: Annotated[str, Form(max_length=32)] = "",
    note: Note = "",
) -> Response:
    def change(user: Principal) -> tuple[str, str]:
        if not outcome:
            raise InvalidTransition("choose what happened first")
        task, linked = task_crud.record_outcome(
            session=session,
            task_id=task_id,
            outcome=outcome,
            actor=user.name,
            now=now,
            note=note,
            expected_version=version,
            linked_outcome=None if linked_outcome in ("", "not_discussed") else linked_outcome,
        )
        if outcome == "no_answer":
            return (
                f"No answer recorded (attempt {task.attempts}); the task stays open.",
                f"/tasks/{task_id}",
            )
        text = f"Recorded: {words(outcome)}."
        if linked is not None:
            text += (
                f" The linked {linked.kind} task is closed too ({words(linked.outcome)})."
                if linked.status == "done"
                else f" The linked {linked.kind} task was told about your contact."
            )
        return text, PAGE_OF_KIND[task.kind]

    form = {"outcome": outcome, "linked_outcome": linked_outcome, "note": note}
    return _act(request, session, settings, task_id, csrf, "work", change, form)


@router.post("/tasks/{task_id}/assign", response_model=None)
def assign(
    task_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf,
    version: Version,
    assignee: Annotated[str, Form(max_length=64)],
    note: Note = "",
) -> Response:
    def change(user: Principal) -> tuple[str, str]:
        task = task_crud.get_task(session=session, task_id=task_id)
        task_crud.assign_task(
            session=session,
            task_id=task_id,
            assignee=assignee,
            staff=staff_for(session, task.kind),
            actor=user.name,
            now=now,
            note=note,
            expected_version=version,
        )
        return f"Assigned to {assignee}.", f"/tasks/{task_id}"

    action = "claim" if assignee == _user_name(request, session) else "assign"
    form = {"assignee": assignee, "note": note}
    return _act(request, session, settings, task_id, csrf, action, change, form)


def _user_name(request: Request, session: Session) -> str:
    return require_page_user(request, session).name


@router.post("/tasks/{task_id}/reschedule", response_model=None)
def reschedule(
    task_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf,
    version: Version,
    due_at: Annotated[str, Form(max_length=32)],
    reason: Note = "",
) -> Response:
    def change(user: Principal) -> tuple[str, str]:
        try:
            due = datetime.fromisoformat(due_at).replace(tzinfo=UTC)
        except ValueError:
            raise InvalidTransition(
                f"give the new due time as date and time, not {due_at[:32]!r}"
            ) from None
        task_crud.reschedule_task(
            session=session,
            task_id=task_id,
            due_at=due,
            reason=reason,
            actor=user.name,
            now=now,
            expected_version=version,
        )
        return f"Rescheduled to {when(due)}.", f"/tasks/{task_id}"

    form = {"due_at": due_at, "reason": reason}
    return _act(request, session, settings, task_id, csrf, "reschedule", change, form)


@router.post("/tasks/{task_id}/snooze", response_model=None)
def snooze(
    task_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf,
    version: Version,
    until: Annotated[str, Form(max_length=16)],
    reason: Note = "",
) -> Response:
    def change(user: Principal) -> tuple[str, str]:
        if until not in SNOOZES:
            raise InvalidTransition(f"choose how long to snooze: {', '.join(SNOOZES)}")
        time = SNOOZES[until][1](now)
        task = task_crud.snooze_task(
            session=session,
            task_id=task_id,
            until=time,
            reason=reason,
            actor=user.name,
            now=now,
            expected_version=version,
        )
        return f"Snoozed until {when(time)}.", PAGE_OF_KIND[task.kind]

    form = {"until": until, "reason": reason}
    return _act(request, session, settings, task_id, csrf, "snooze", change, form)


@router.post("/tasks/{task_id}/reopen", response_model=None)
def reopen(
    task_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf,
    version: Version,
    reason: Note = "",
) -> Response:
    def change(user: Principal) -> tuple[str, str]:
        task_crud.reopen_task(
            session=session,
            task_id=task_id,
            reason=reason,
            actor=user.name,
            now=now,
            expected_version=version,
        )
        return "Reopened.", f"/tasks/{task_id}"

    return _act(request, session, settings, task_id, csrf, "reopen", change, {"reason": reason})
