"""Server-rendered pages (no front-end build): the three work lists and the task page.

Everything shown is escaped by Jinja2's autoescape, including text that came from customers.
Logging in opens a server-side session: the cookie holds its random id (HttpOnly,
SameSite=Strict), not the token. Forms post with a CSRF token bound to that id.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from outreach.api.deps import (
    COOKIE,
    HOME,
    ROLE_KINDS,
    RulesDep,
    SessionDep,
    SettingsDep,
    client_address,
)
from outreach.crud import tasks as task_crud
from outreach.crud import tokens
from outreach.crud.tasks import InvalidTransition, StaleTask, TaskNotFound
from outreach.crud.tokens import SESSION_TTL, Principal
from outreach.rules import KIND_OUTCOMES
from outreach.timeline import customer_timeline
from outreach.uplift import churn_times, uplift_report

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parents[2] / "templates"))

PAGES = {
    "board": ("visit", "Field service: proactive visits"),
    "retention": ("retention", "Retention: customers at risk today"),
    "support": ("feedback", "Support: negative feedback, reply within one hour"),
}


def _user(request: Request, session: Session) -> Principal | None:
    return tokens.session_principal(session=session, session_id=request.cookies.get(COOKIE))


def _csrf(request: Request) -> str:
    token = request.cookies.get(COOKIE, "")
    return hmac.new(request.app.state.csrf_key, token.encode(), hashlib.sha256).hexdigest()


def _render(  # type: ignore[no-untyped-def]
    request: Request,
    name: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context,
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=headers
    )


@router.get("/", response_model=None)
def home(request: Request, session: SessionDep) -> Response:
    user = _user(request, session)
    return RedirectResponse(HOME[user.role] if user else "/login", status.HTTP_303_SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return _render(request, "login.html", user=None)


@router.post("/login", response_model=None)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=200)],
) -> Response:
    limits, address = request.app.state.login_limits, client_address(request)
    if wait := limits.failures_per_address.retry_after(address):
        return _too_many(request, wait, "Too many wrong tokens from your address.")
    user = tokens.authenticate(session=session, raw=token.strip())
    if user is not None and (wait := limits.logins_per_name.retry_after(user.name)):
        return _too_many(request, wait, f"Too many logins as {user.name} this hour.")
    session_id, user = (
        tokens.open_session(session=session, raw=token.strip()) if user else (None, None)
    )
    session.commit()
    if session_id is None or user is None:
        limits.failures_per_address.hit(address)
        return _render(
            request,
            "login.html",
            status.HTTP_401_UNAUTHORIZED,
            user=None,
            error="That token is not valid (or it expired or was revoked).",
        )
    limits.logins_per_name.hit(user.name)
    response = RedirectResponse(HOME[user.role], status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        max_age=int(SESSION_TTL.total_seconds()),
    )
    return response


def _too_many(request: Request, wait: int, why: str) -> HTMLResponse:
    return _render(
        request,
        "login.html",
        status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(wait)},
        user=None,
        error=f"{why} Try again in {wait} seconds.",
    )


@router.get("/logout")
def logout(request: Request, session: SessionDep) -> RedirectResponse:
    tokens.close_session(session=session, session_id=request.cookies.get(COOKIE))
    session.commit()
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE)
    return response


def _page_user(request: Request, session: Session, kind: str | None = None) -> Principal:
    user = _user(request, session)
    if user is None:
        raise HTTPException(status.HTTP_303_SEE_OTHER, headers={"Location": "/login"})
    if kind is not None and kind not in ROLE_KINDS.get(user.role, frozenset()):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"Your role ({user.role}) does not work on {kind} tasks."
        )
    return user


@router.get("/{page}", response_class=HTMLResponse)
def list_page(
    page: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    rules: RulesDep,
    message: str = "",
) -> HTMLResponse:
    if page not in PAGES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No page {page}.")
    kind, heading = PAGES[page]
    user = _page_user(request, session, kind)
    tasks = task_crud.daily_list(session=session, rules=rules, kind=kind)
    retention = (
        task_crud.list_tasks(session=session, kind="retention") if kind == "retention" else []
    )
    # The database part is done: end its transaction before reading the lake, so that SQLite's
    # write lock (BEGIN IMMEDIATE) is not held while Parquet files are read.
    session.commit()
    uplift = (
        uplift_report(retention, churn_times(settings.lake_dir)) if kind == "retention" else None
    )
    return _render(
        request,
        "list.html",
        user=user,
        tasks=tasks,
        kind=kind,
        heading=heading,
        capacity=task_crud.capacity(rules=rules, kind=kind),
        uplift=uplift,
        message=message[:200],
    )


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task_page(
    task_id: str, request: Request, session: SessionDep, settings: SettingsDep, error: str = ""
) -> HTMLResponse:
    user = _page_user(request, session)
    try:
        task = task_crud.get_task(session=session, task_id=task_id)
    except TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No task {task_id}.") from None
    _page_user(request, session, task.kind)
    customer_tasks = task_crud.list_tasks(session=session, customer_id=task.customer_id)
    reasons = [r for a in task.evidence.get("alerts", [])[-1:] for r in a.get("reasons", [])]
    # The database part is done: end its transaction before reading the lake, so that SQLite's
    # write lock (BEGIN IMMEDIATE) is not held while Parquet files are read.
    session.commit()
    return _render(
        request,
        "task.html",
        user=user,
        task=task,
        reasons=reasons,
        outcomes=KIND_OUTCOMES[task.kind],
        csrf=_csrf(request),
        error=error[:300],
        timeline=customer_timeline(settings.lake_dir, task.customer_id, customer_tasks),
    )


@router.post("/tasks/{task_id}/outcome", response_model=None)
def record_outcome(
    task_id: str,
    request: Request,
    session: SessionDep,
    outcome: Annotated[str, Form(max_length=32)],
    csrf: Annotated[str, Form(max_length=128)],
    version: Annotated[int, Form()],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    user = _page_user(request, session)
    if not hmac.compare_digest(csrf, _csrf(request)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "The form expired; reload the page.")
    try:
        task = task_crud.get_task(session=session, task_id=task_id)
        _page_user(request, session, task.kind)
        session.rollback()  # the transition reads the task again under its row lock
        task_crud.transition_task(
            session=session,
            task_id=task_id,
            to="done",
            actor=user.name,
            now=datetime.now(UTC),
            outcome=outcome,
            note=note,
            expected_version=version,
        )
        session.commit()
    except TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No task {task_id}.") from None
    except (InvalidTransition, StaleTask) as exc:
        session.rollback()
        return RedirectResponse(f"/tasks/{task_id}?error={exc}", status.HTTP_303_SEE_OTHER)
    page = next(f"/{name}" for name, (kind, _) in PAGES.items() if kind == task.kind)
    return RedirectResponse(
        f"{page}?message=Recorded: {outcome.replace('_', ' ')}", status.HTTP_303_SEE_OTHER
    )
