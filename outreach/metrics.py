"""Prometheus metrics of the outreach service, served at ``/metrics``.

==========================================  =========  ========================================
metric                                      type       meaning
==========================================  =========  ========================================
forewarn_outreach_requests_total            counter    requests by method, route and status
forewarn_outreach_request_seconds           histogram  request latency by route
forewarn_outreach_tasks{kind,status}        gauge      tasks in the store (read at scrape time)
forewarn_outreach_missed_tasks{kind,reason}  gauge      proactive misses: the customer left or
                                                       complained first, or the task expired
forewarn_outreach_webhook_deliveries        gauge      outbox rows by event and status
forewarn_outreach_store_up                  gauge      1 if the last scrape reached the database
==========================================  =========  ========================================

Routes are labelled by their template (``/api/tasks/{task_id}``), never by the raw path, so a
scan of random URLs cannot blow up the number of series.

The counts describe the business and the routes map the API, so ``/metrics`` is not public
(issue 13): it needs ``Authorization: Bearer <FOREWARN_METRICS_TOKEN>`` (Prometheus:
``authorization: {credentials_file: ...}``), and without that setting it answers only on the
loopback address. The check does not touch the database, so a scrape still reports
``forewarn_outreach_store_up 0`` while the database is down.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from outreach.store import TaskStore

log = logging.getLogger(__name__)


class StoreCollector(Collector):
    """Counts tasks and deliveries when Prometheus scrapes, not on every change."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("forewarn_outreach_store_up", "1 if the database answered.")
        try:
            counts = self.store.counts()
        except Exception as exc:  # a scrape must answer even while the database is down
            log.warning("metrics: outreach store unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        tasks = GaugeMetricFamily(
            "forewarn_outreach_tasks", "Tasks by kind and status.", labels=["kind", "status"]
        )
        for (kind, status), n in sorted(counts["tasks"].items()):
            tasks.add_metric([kind, status], n)
        yield tasks
        misses = GaugeMetricFamily(
            "forewarn_outreach_missed_tasks",
            "Proactive tasks the customer overtook (left, complained) or that expired.",
            labels=["kind", "reason"],
        )
        for (kind, reason), n in sorted(counts["misses"].items()):
            # The reason's words before any colon: "expired", never free text with numbers.
            misses.add_metric([kind, reason.split(":")[0]], n)
        yield misses
        deliveries = GaugeMetricFamily(
            "forewarn_outreach_webhook_deliveries",
            "Webhook outbox rows by event and status (pending, delivered, dead).",
            labels=["event", "status"],
        )
        for (name, status), n in sorted(counts["deliveries"].items()):
            deliveries.add_metric([name, status], n)
        yield deliveries


def route_template(request: Request) -> str:
    """The matched route's template; Starlette records it in the scope while routing."""
    route = request.scope.get("route")
    return getattr(route, "path", "other") if route is not None else "unmatched"


def _loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:  # not an address (a test client's name)
        return False


def scraper_check(token: str) -> Callable[[Request], None]:
    """A dependency that lets a scraper in: by ``token`` if set, else only from loopback."""

    def check(request: Request) -> None:
        if token:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {token}".encode()):
                raise HTTPException(
                    401,
                    "the metrics token (FOREWARN_METRICS_TOKEN) is required",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        elif not _loopback(request):
            raise HTTPException(
                403,
                "metrics answer only on localhost unless FOREWARN_METRICS_TOKEN is set",
            )

    return check


def instrument(app: FastAPI, store: TaskStore, token: str = "") -> CollectorRegistry:
    """Add request metrics and ``GET /metrics`` to ``app``; return its registry. ``token`` is
    the scrapers' bearer token (empty: loopback only)."""
    registry = CollectorRegistry()
    requests = Counter(
        "forewarn_outreach_requests",
        "HTTP requests by method, route and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "forewarn_outreach_request_seconds",
        "HTTP request latency by route.",
        ["route"],
        registry=registry,
    )
    registry.register(StoreCollector(store))

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = route_template(request)
        requests.labels(request.method, route, str(response.status_code)).inc()
        latency.labels(route).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(scraper_check(token))])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry
