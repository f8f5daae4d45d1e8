"""Settings of the outreach service, from ``FOREWARN_*`` variables; unsafe ones are refused."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from forewarn.settings import Settings


def _secret(name: str) -> str:
    """A secret from ``FOREWARN_<NAME>`` or the file named by ``FOREWARN_<NAME>_FILE``."""
    path = os.environ.get(f"FOREWARN_{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(f"FOREWARN_{name}", "")


def _flag(name: str, *, default: bool) -> bool:
    """A yes/no setting: ``1``/``0`` (empty or unset: ``default``)."""
    raw = os.environ.get(name, "")
    if raw not in ("", "0", "1"):
        raise ValueError(f"{name} must be 1 or 0, got {raw!r}; unset it for {int(default)}")
    return default if raw == "" else raw == "1"


#: Largest request body the service reads (FOREWARN_MAX_REQUEST_BYTES): a form or a transition
#: is a few kB, and a bigger body is refused (413) before it is parsed or anyone is identified.
MAX_REQUEST_BYTES = 1024 * 1024


#: Lifetime of a new API token unless FOREWARN_TOKEN_TTL_DAYS says otherwise: a leaked or
#: forgotten token stops working by itself (issue 13: tokens never expired).
TOKEN_TTL_DAYS = 90


def token_ttl() -> timedelta:
    """How long a token issued now lives: ``FOREWARN_TOKEN_TTL_DAYS`` (1 to 3650) or 90 days."""
    raw = os.environ.get("FOREWARN_TOKEN_TTL_DAYS", "") or str(TOKEN_TTL_DAYS)
    if not raw.isdigit() or not 1 <= int(raw) <= 3650:
        raise ValueError(
            f"FOREWARN_TOKEN_TTL_DAYS must be a whole number of days from 1 to 3650, got "
            f"{raw!r}; unset it for {TOKEN_TTL_DAYS}"
        )
    return timedelta(days=int(raw))


@dataclass(frozen=True)
class OutreachSettings:
    database_url: str
    lake_dir: Path
    webhook_url: str = ""
    webhook_secret: str = ""
    secure_cookies: bool = True
    max_request_bytes: int = MAX_REQUEST_BYTES
    metrics_token: str = ""
    #: Run escalation and webhook delivery in this process (outreach.background).
    background: bool = True

    def __post_init__(self) -> None:
        if self.metrics_token and len(self.metrics_token) < 16:
            raise ValueError(
                "FOREWARN_METRICS_TOKEN (or _FILE) is shorter than 16 characters: make it "
                "random, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if self.max_request_bytes < 1024:
            raise ValueError(
                f"FOREWARN_MAX_REQUEST_BYTES must be at least 1024 (a login form), got "
                f"{self.max_request_bytes}; unset it for the default of {MAX_REQUEST_BYTES}"
            )
        if self.webhook_url and len(self.webhook_secret) < 16:
            raise ValueError(
                "FOREWARN_WEBHOOK_URL is set but FOREWARN_WEBHOOK_SECRET (or _FILE) is missing "
                "or shorter than 16 characters: the CRM could not tell our calls from forgeries"
            )

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> OutreachSettings:
        settings = settings or Settings()
        return cls(
            database_url=settings.database_url,
            lake_dir=settings.lake_dir,
            webhook_url=os.environ.get("FOREWARN_WEBHOOK_URL", ""),
            webhook_secret=_secret("WEBHOOK_SECRET"),
            metrics_token=_secret("METRICS_TOKEN"),
            # Plain http only on a laptop: FOREWARN_INSECURE_COOKIES=1 is the demo's choice.
            secure_cookies=os.environ.get("FOREWARN_INSECURE_COOKIES", "") != "1",
            max_request_bytes=int(
                os.environ.get("FOREWARN_MAX_REQUEST_BYTES", "") or MAX_REQUEST_BYTES
            ),
            background=_flag("FOREWARN_OUTREACH_BACKGROUND", default=True),
        )
