"""Dependencies: the request's database session, the settings, the caller, and what their role
may see (the ``Annotated`` aliases of the FastAPI full-stack template)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from outreach.config import OutreachSettings
from outreach.crud import tokens
from outreach.crud.tokens import Principal
from outreach.rules import ROLE_KINDS, OutreachRules, may_act
from outreach.schemas import ErrorOut

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


def system_clock() -> datetime:
    return datetime.now(UTC)


def get_now(request: Request) -> datetime:
    """The service's one clock (``create_app(clock=...)``): due times, countdowns, "overdue",
    history and escalation all read it, so every view tells the same time (issue 17)."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


SessionDep = Annotated[Session, Depends(get_session)]
NowDep = Annotated[datetime, Depends(get_now)]
SettingsDep = Annotated[OutreachSettings, Depends(get_settings)]
RulesDep = Annotated[OutreachRules, Depends(get_rules)]


#: Declared in the OpenAPI document, so /docs has an "Authorize" button that sends the token.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An outreach token (`forewarn outreach token --role ROLE --name NAME`).",
)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


#: The error answers every API route may give, documented once (issue 17, item 6).
ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("No valid token: send `Authorization: Bearer <token>`."),
    403: _error("Your role does not work on this task (or only its assignee may act)."),
    404: _error("No such task or customer, whoever asks."),
    413: _error("The body is over FOREWARN_MAX_REQUEST_BYTES."),
    422: _error("Malformed input: where and why, never the input itself."),
    429: _error("Too many wrong tokens from your address; see Retry-After."),
}
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: _error(
        "The lifecycle does not allow it, or the task changed since you read it "
        "(expected_version): reload it."
    ),
}


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def too_many(retry_after: int) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many wrong tokens from your address: try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def current_principal(
    request: Request,
    session: SessionDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Principal:
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


def require_action(user: Principal, kind: str, assignee: str | None, action: str) -> None:
    """403 unless ``user`` may do ``action`` (:func:`outreach.rules.may_act`)."""
    if (why := may_act(user.role, user.name, kind, assignee, action)) is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, why)


def require_admin(user: CurrentUser) -> Principal:
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin only")
    return user


AdminUser = Annotated[Principal, Depends(require_admin)]
