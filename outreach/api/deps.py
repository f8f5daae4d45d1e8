"""Dependencies: the request's database session, the settings, the caller, and what their role
may see (the ``Annotated`` aliases of the FastAPI full-stack template)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from outreach.config import OutreachSettings
from outreach.crud import tokens
from outreach.crud.tokens import Principal
from outreach.rules import ROLE_KINDS, OutreachRules

#: The page login's cookie: a server-side session id (outreach.crud.tokens.open_session),
#: never the token itself, so a stolen cookie dies with the session and logout really ends it.
COOKIE = "forewarn_session"
HOME = {
    "technician": "/board",
    "dispatcher": "/board",
    "retention": "/retention",
    "support": "/support",
    "admin": "/board",
}


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, shared by its dependencies and its route. CRUD functions never
    commit: a route that writes commits before it answers; anything else is rolled back."""
    with request.app.state.sessions() as session:
        yield session


def get_settings(request: Request) -> OutreachSettings:
    return request.app.state.settings


def get_rules(request: Request) -> OutreachRules:
    return request.app.state.rules


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[OutreachSettings, Depends(get_settings)]
RulesDep = Annotated[OutreachRules, Depends(get_rules)]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def too_many(retry_after: int) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many wrong tokens from your address: try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def current_principal(request: Request, session: SessionDep) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` or else the page login's session.
    Wrong bearer tokens count against the caller's address (outreach.api.ratelimit)."""
    token = bearer(request)
    if token is not None:
        failures = request.app.state.login_limits.failures_per_address
        address = client_address(request)
        if wait := failures.retry_after(address):
            raise too_many(wait)
        principal = tokens.authenticate(session=session, raw=token)
        if principal is None:
            failures.hit(address)
    else:
        principal = tokens.session_principal(
            session=session, session_id=request.cookies.get(COOKIE)
        )
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require_kind(user: Principal, kind: str) -> None:
    if kind not in ROLE_KINDS.get(user.role, frozenset()):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"role {user.role} does not work on {kind} tasks"
        )


def require_admin(user: CurrentUser) -> Principal:
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin only")
    return user


AdminUser = Annotated[Principal, Depends(require_admin)]
