"""The outreach service: REST API (OpenAPI at /docs and /openapi.json, for logged-in callers),
the web pages, ``/metrics`` (Prometheus, admin token) and ``/healthz`` (open, for load balancers).

``forewarn outreach serve`` runs it with uvicorn; tests build it with :func:`create_app`.
Start-up migrates the database, once. The background loops (escalation, webhook delivery) run
here only if the settings say this replica runs them (:mod:`outreach.background`).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from outreach import background as background_loops
from outreach.api.deps import system_clock
from outreach.api.headers import SecurityHeaders
from outreach.api.ratelimit import LoginLimits
from outreach.api.render import page_user, render
from outreach.api.routes import boards, customers, docs, lists, pages, task_pages, tasks, webhooks
from outreach.config import OutreachSettings
from outreach.metrics import instrument
from outreach.migrate import upgrade
from outreach.store import TaskStore

log = logging.getLogger(__name__)
#: Outside /api, the paths whose errors are JSON for programs rather than pages for people.
MACHINE_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json"})


class OutreachApp(FastAPI):
    """FastAPI with :class:`SecurityHeaders` around its whole stack: FastAPI answers a crash
    (500) and a too-large body (413) outside the app's own middleware, and those answers need
    the headers too."""

    def __init__(self, *, https: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.https = https

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), https=self.https)


def create_app(
    settings: OutreachSettings,
    store: TaskStore | None = None,
    background: bool | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The service on ``store`` (default: one on ``settings.database_url``). ``background``
    overrides ``settings.background``: whether this process runs the background loops.
    ``clock`` is the one clock of every view (default: the system's, aware UTC)."""
    store = store or TaskStore(settings.database_url)
    run_loops = settings.background if background is None else background
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Start-up is where the service migrates, once (creating the app or the store never
        # does); replicas starting together take turns (outreach.migrate.MIGRATION_LOCK).
        upgrade(store.engine)
        if run_loops:
            background_loops.start(store, settings, stop)
        yield
        stop.set()

    # max_body_size: Starlette refuses a bigger body with 413 as it is read (declared length or
    # chunks counted), so before it is parsed and before the caller is identified (issue 13).
    app = OutreachApp(
        https=settings.secure_cookies,
        title="Forewarn outreach",
        version="1",
        lifespan=lifespan,
        max_body_size=settings.max_request_bytes,
        # Served by outreach/api/routes/docs.py instead, behind login.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.store, app.state.settings = store, settings
    app.state.sessions, app.state.rules = store.sessions, store.rules
    app.state.csrf_key = secrets.token_bytes(32)
    app.state.clock = clock or system_clock
    app.state.login_limits = LoginLimits()
    for router in (tasks.router, lists.router, customers.router, webhooks.router):
        app.include_router(router)
    app.include_router(docs.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parents[1] / "static"), "static")

    instrument(app, store, settings.metrics_token)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        """200 when the database answers, 503 otherwise (a load balancer stops routing here)."""
        try:
            store.ping()
        except Exception as exc:
            log.warning("health check: outreach store unavailable: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "database": "down"}, 503)
        return JSONResponse({"status": "ok", "database": "up"})

    # The list pages' /{page} comes last: it would take any one-segment path before it.
    for router in (pages.router, task_pages.router, boards.router):
        app.include_router(router)

    @app.exception_handler(HTTPException)
    async def pages_or_json(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api") or request.url.path in MACHINE_PATHS:
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        if exc.status_code == 303:
            return RedirectResponse(exc.headers["Location"], 303)
        # An error page keeps the navigation: who you are and where you can go (issue 17).
        with request.app.state.sessions() as session:
            user = page_user(request, session)
            return render(
                request,
                session,
                "error.html",
                user=user,
                status_code=exc.status_code,
                headers=exc.headers,
                status=exc.status_code,
                detail=exc.detail,
            )

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> Response:
        # Where and why, never the input itself: FastAPI's default echoes it, so a 1 MiB body
        # came back whole in the 422, and a lone UTF-16 surrogate in it ("\ud800", refused by
        # pydantic as string_unicode) could not be encoded in the answer: a 500 (issue 13).
        errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
        if request.url.path.startswith("/api") or request.url.path in MACHINE_PATHS:
            return JSONResponse({"detail": jsonable_encoder(errors)}, 422)
        # A page or its form: say which field and why, on a page with the navigation.
        fields = "; ".join(
            f"{e['loc'][-1]}: {str(e.get('msg', 'not valid')).lower()}" for e in errors[:5]
        )
        return await pages_or_json(
            request,
            HTTPException(
                422,
                f"The form could not be taken ({fields}). Nothing was changed: go back, "
                "correct it and send it again.",
            ),
        )

    return app
