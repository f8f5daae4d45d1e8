"""Security headers on every answer of the outreach service (issue 13).

The pages have no script and one style sheet from ``/static``, so their Content-Security-Policy
allows nothing else: injected markup could neither run nor load anything, and no other site may
frame the pages (clickjacking). Swagger UI (``/docs``, behind login) is served from ``/static``
too and started by a script file; it sets inline style attributes, so that one page's policy
allows scripts from this service and inline styles, and nothing from any other origin. Answers
are ``no-store`` (tasks hold customers' personal data, and a shared or back-buttoned browser
must not show them after logout), except the static files.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
DOCS_PATHS = frozenset({"/docs"})
#: A year of HTTPS only, sent when cookies are Secure (the service is behind TLS then).
HSTS = "max-age=31536000"


def security_headers(path: str, *, https: bool) -> dict[str, str]:
    """The headers every answer for ``path`` carries."""
    headers = {
        "Content-Security-Policy": DOCS_CSP if path in DOCS_PATHS else PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }
    if not path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"
    if https:
        headers["Strict-Transport-Security"] = HSTS
    return headers


class SecurityHeaders:
    """ASGI middleware that sets :func:`security_headers` on every response it passes on."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["path"], https=self.https)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
