"""The API's OpenAPI document and Swagger UI, for logged-in callers only (issue 13: they were
served to anyone and mapped the API for an attacker). A bearer token or the page login's
session cookie will do; the page fetches ``/openapi.json`` with the same cookie.

Swagger UI is served by the service itself (``outreach/static/vendor/swagger-ui``, version in
its ``package.json`` note in docs/outreach.md), so ``/docs`` works offline and its page needs
no other origin (issue 17: it was blank without the CDN). ``/redoc`` sends you to ``/docs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from outreach.api.deps import CurrentUser

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parents[2] / "templates"))


@router.get("/openapi.json")
def openapi(request: Request, _: CurrentUser) -> dict[str, Any]:
    return request.app.openapi()


@router.get("/docs")
def swagger_ui(request: Request, _: CurrentUser) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "swagger.html", {"title": f"{request.app.title} API"}
    )


@router.get("/redoc")
def redoc(_: CurrentUser) -> RedirectResponse:
    return RedirectResponse("/docs", 303)
