"""Dependencies: the store, the caller, and what their role may see."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from outreach.config import OutreachSettings
from outreach.store import Principal, TaskStore

#: The page login's cookie: a server-side session id (outreach.store.open_session), never the
#: token itself, so a stolen cookie dies with the session and logout really ends it.
COOKIE = "forewarn_session"
#: Which task kinds each role works on (and so may read and change).
ROLE_KINDS: dict[str, frozenset[str]] = {
    "technician": frozenset({"visit"}),
    "dispatcher": frozenset({"visit"}),
    "retention": frozenset({"retention"}),
    "support": frozenset({"feedback"}),
    "admin": frozenset({"visit", "retention", "feedback"}),
}
HOME = {
    "technician": "/board",
    "dispatcher": "/board",
    "retention": "/retention",
    "support": "/support",
    "admin": "/board",
}


def get_store(request: Request) -> TaskStore:
    return request.app.state.store


def get_settings(request: Request) -> OutreachSettings:
    return request.app.state.settings


StoreDep = Annotated[TaskStore, Depends(get_store)]
SettingsDep = Annotated[OutreachSettings, Depends(get_settings)]


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


def current_principal(request: Request, store: StoreDep) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` or else the page login's session.
    Wrong bearer tokens count against the caller's address (outreach.api.ratelimit)."""
    token = bearer(request)
    if token is not None:
        failures = request.app.state.login_limits.failures_per_address
        address = client_address(request)
        if wait := failures.retry_after(address):
            raise too_many(wait)
        principal = store.authenticate(token)
        if principal is None:
            failures.hit(address)
    else:
        principal = store.session_principal(request.cookies.get(COOKIE))
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
