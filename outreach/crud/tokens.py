"""API tokens and page sessions. Only hashes are stored: a token is shown once, and a page
cookie holds a random session id, never the token."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from outreach.config import token_ttl
from outreach.models import ROLES, ApiToken, WebSession

#: A page login lasts a working day at most (and never beyond its token's expiry).
SESSION_TTL = timedelta(hours=12)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name and role."""

    name: str
    role: str


def create_token(*, session: Session, name: str, role: str, ttl: timedelta | None = None) -> str:
    """A new API token for ``role``, valid for ``ttl`` (default: :func:`token_ttl`);
    returns the token, of which only a hash is kept."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    raw = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session.add(
        ApiToken(
            token_hash=hash_token(raw),
            name=name[:64],
            role=role,
            created_at=now,
            expires_at=now + (ttl if ttl is not None else token_ttl()),
        )
    )
    return raw


def _live_token(session: Session, raw: str, now: datetime) -> ApiToken | None:
    return session.scalars(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(raw),
            ApiToken.revoked.is_(False),
            ApiToken.expires_at > now,
        )
    ).first()


def authenticate(*, session: Session, raw: str | None) -> Principal | None:
    """Who holds the token ``raw``; None if it is unknown, revoked or expired."""
    if not raw:
        return None
    token = _live_token(session, raw, datetime.now(UTC))
    return Principal(token.name, token.role) if token else None


def revoke_tokens(*, session: Session, name: str | None = None, raw: str | None = None) -> int:
    """Revoke the token ``raw``, or every token of ``name``, and end their page sessions;
    return how many tokens were revoked."""
    if (name is None) == (raw is None):
        raise ValueError("revoke_tokens needs exactly one of name= or raw=")
    query = select(ApiToken).where(ApiToken.revoked.is_(False))
    if raw is not None:
        query = query.where(ApiToken.token_hash == hash_token(raw))
    else:
        query = query.where(ApiToken.name == name)
    now = datetime.now(UTC)
    tokens = list(session.scalars(query.with_for_update()))
    for token in tokens:
        token.revoked, token.revoked_at = True, now
    ids = [t.id for t in tokens]
    if ids:
        session.execute(delete(WebSession).where(WebSession.token_id.in_(ids)))
    return len(tokens)


def open_session(
    *, session: Session, raw: str, ttl: timedelta = SESSION_TTL
) -> tuple[str, Principal] | tuple[None, None]:
    """Log in with the token ``raw``: a new session id for the cookie and who it is, or
    (None, None) if the token is not valid. Expired sessions are swept on the way."""
    now = datetime.now(UTC)
    session_id = secrets.token_urlsafe(32)
    token = _live_token(session, raw, now)
    if token is None:
        return None, None
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    session.add(
        WebSession(
            id_hash=hash_token(session_id),
            token_id=token.id,
            created_at=now,
            expires_at=min(now + ttl, token.expires_at),
        )
    )
    return session_id, Principal(token.name, token.role)


def session_principal(*, session: Session, session_id: str | None) -> Principal | None:
    """Who the session ``session_id`` belongs to; None once it or its token has ended."""
    if not session_id:
        return None
    now = datetime.now(UTC)
    token = session.scalars(
        select(ApiToken)
        .join(WebSession, WebSession.token_id == ApiToken.id)
        .where(
            WebSession.id_hash == hash_token(session_id),
            WebSession.expires_at > now,
            ApiToken.revoked.is_(False),
            ApiToken.expires_at > now,
        )
    ).first()
    return Principal(token.name, token.role) if token else None


def close_session(*, session: Session, session_id: str | None) -> None:
    """Log out: the session ends whatever its expiry."""
    if session_id:
        session.execute(delete(WebSession).where(WebSession.id_hash == hash_token(session_id)))


def staff(*, session: Session, roles: tuple[str, ...]) -> frozenset[str]:
    """Names of the people with a live token of one of ``roles``: whom tasks can be given."""
    now = datetime.now(UTC)
    return frozenset(
        session.scalars(
            select(ApiToken.name).where(
                ApiToken.role.in_(roles),
                ApiToken.revoked.is_(False),
                ApiToken.expires_at > now,
            )
        )
    )


def pop_flash(*, session: Session, session_id: str | None) -> list[dict[str, str]]:
    """The messages waiting for this page session, removed as they are read."""
    if not session_id:
        return []
    row = session.get(WebSession, hash_token(session_id))
    if row is None or not row.flash:
        return []
    messages, row.flash = list(row.flash), None
    return messages


def push_flash(*, session: Session, session_id: str | None, text: str, level: str = "ok") -> None:
    """A message for the next page this session shows ("Recorded: fixed")."""
    if not session_id:
        return
    row = session.get(WebSession, hash_token(session_id))
    if row is not None:
        row.flash = [*(row.flash or [])[-4:], {"level": level, "text": text[:300]}]
