"""What every page shares: the templates, the one clock's formatting, flash messages, the CSRF
token and the signed-in user.

One clock (issue 17): every time on a page is shown by :func:`when` (UTC, one format) and every
"in 3 h" or "overdue by 20 min" is measured from the same ``now`` (``request.app.state.clock``),
whether it is a due time, a timeline entry or a history line.

Flash messages live in the page session on the server (:func:`outreach.crud.tokens.push_flash`)
and are shown once: a link can no longer print its own "official" banner with ``?message=``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from outreach.api.deps import COOKIE, get_now
from outreach.crud import tokens
from outreach.crud.tokens import Principal

templates = Jinja2Templates(directory=str(Path(__file__).parents[1] / "templates"))

#: A due time this close counts as "soon" (amber) on the lists.
SOON = timedelta(hours=1)


def when(at: datetime | str | None) -> str:
    """Every time on every page, one format: ``2026-11-29 14:05 UTC`` (ISO text, as the
    history keeps times, too)."""
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            return at
    if at is None:
        return ""
    return (at.astimezone(UTC) if at.tzinfo else at).strftime("%Y-%m-%d %H:%M UTC")


def span(delta: timedelta) -> str:
    """A duration in words, coarse: ``42 min``, ``3 h 5 min``, ``4 days``.

    Examples
    --------
    >>> span(timedelta(minutes=42)), span(timedelta(hours=3, minutes=5)), span(timedelta(days=4))
    ('42 min', '3 h 5 min', '4 days')
    """
    minutes = int(abs(delta).total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes and hours < 10 else f"{hours} h"
    return f"{hours // 24} days"


def relative(at: datetime, now: datetime) -> str:
    """``in 3 h`` or ``2 days ago``, from the one clock."""
    return f"in {span(at - now)}" if at >= now else f"{span(now - at)} ago"


def countdown(due: datetime, now: datetime) -> dict[str, str]:
    """A due time as people read it: words and a state (``ok``, ``soon``, ``overdue``)."""
    if due < now:
        return {"text": f"overdue by {span(now - due)}", "state": "overdue"}
    return {"text": f"due in {span(due - now)}", "state": "soon" if due - now <= SOON else "ok"}


templates.env.filters["when"] = when
templates.env.globals.update(relative=relative, countdown=countdown)


def words(value: str | None) -> str:
    """``customer_kept`` -> ``customer kept``."""
    return (value or "").replace("_", " ")


templates.env.filters["words"] = words


def csrf_token(request: Request) -> str:
    """The form token: an HMAC of the session id, so a form from another site cannot post."""
    cookie = request.cookies.get(COOKIE, "")
    return hmac.new(request.app.state.csrf_key, cookie.encode(), hashlib.sha256).hexdigest()


def csrf_ok(request: Request, sent: str) -> bool:
    return bool(request.cookies.get(COOKIE)) and hmac.compare_digest(sent, csrf_token(request))


def page_user(request: Request, session: Session) -> Principal | None:
    return tokens.session_principal(session=session, session_id=request.cookies.get(COOKIE))


def flash(request: Request, session: Session, text: str, level: str = "ok") -> None:
    """Show ``text`` on the next page of this session (the caller commits)."""
    tokens.push_flash(
        session=session, session_id=request.cookies.get(COOKIE), text=text, level=level
    )


def render(
    request: Request,
    session: Session | None,
    name: str,
    *,
    user: Principal | None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """``name`` with the page frame's context: the user, the clock, flash messages, CSRF."""
    messages: list[dict[str, str]] = []
    if session is not None and user is not None:
        messages = tokens.pop_flash(session=session, session_id=request.cookies.get(COOKIE))
        session.commit()
    context = {
        "user": user,
        "now": get_now(request),
        "flashes": messages,
        "csrf": csrf_token(request),
        **context,
    }
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=headers
    )
