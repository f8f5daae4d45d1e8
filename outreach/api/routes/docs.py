"""The API's OpenAPI document, Swagger UI and ReDoc, for logged-in callers only (issue 13: they
were served to anyone and mapped the API for an attacker). A bearer token or the page login's
session cookie will do; the pages fetch ``/openapi.json`` with the same cookie."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from outreach.api.deps import CurrentUser

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
def openapi(request: Request, _: CurrentUser) -> dict[str, Any]:
    return request.app.openapi()


@router.get("/docs")
def swagger_ui(request: Request, _: CurrentUser) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{request.app.title} API")


@router.get("/redoc")
def redoc(request: Request, _: CurrentUser) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title=f"{request.app.title} API")
