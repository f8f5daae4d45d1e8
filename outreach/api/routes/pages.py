"""Server-rendered pages (no front-end build): the front door. The work lists are
:mod:`outreach.api.routes.boards`, the task page and its forms
:mod:`outreach.api.routes.task_pages`.

Everything shown is escaped by Jinja2's autoescape, including text that came from customers.
Logging in opens a server-side session: the cookie holds its random id (HttpOnly,
SameSite=Strict), not the token. Forms post with a CSRF token bound to that id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from outreach.api.deps import COOKIE, HOME, ROLE_KINDS, SessionDep, SettingsDep, client_address
from outreach.api.render import flash, page_user, render
from outreach.crud import tokens
from outreach.crud.tokens import SESSION_TTL, Principal

router = APIRouter(include_in_schema=False)


@router.get("/", response_model=None)
def home(request: Request, session: SessionDep) -> Response:
    user = page_user(request, session)
    return RedirectResponse(HOME[user.role] if user else "/login", status.HTTP_303_SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return render(request, None, "login.html", user=None)


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
        return render(
            request,
            None,
            "login.html",
            user=None,
            status_code=status.HTTP_401_UNAUTHORIZED,
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
    return render(
        request,
        None,
        "login.html",
        user=None,
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(wait)},
        error=f"{why} Try again in {wait} seconds.",
    )


@router.get("/logout")
def logout(request: Request, session: SessionDep) -> RedirectResponse:
    tokens.close_session(session=session, session_id=request.cookies.get(COOKIE))
    session.commit()
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE)
    return response


def require_page_user(request: Request, session: Session, kind: str | None = None) -> Principal:
    """The signed-in user (else to the login page), who works on ``kind`` if given."""
    user = page_user(request, session)
    if user is None:
        raise HTTPException(status.HTTP_303_SEE_OTHER, headers={"Location": "/login"})
    if kind is not None and kind not in ROLE_KINDS.get(user.role, frozenset()):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"Your role ({user.role}) does not work on {kind} tasks."
        )
    return user


__all__ = ["flash", "require_page_user", "router"]
