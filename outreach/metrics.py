"""Prometheus metrics of the outreach service, served at ``/metrics``.

==========================================  =========  ========================================
metric                                      type       meaning
==========================================  =========  ========================================
forewarn_outreach_requests_total            counter    requests by method, route and status
forewarn_outreach_request_seconds           histogram  request latency by route
forewarn_outreach_tasks{kind,status}        gauge      tasks in the store (read at scrape time)
forewarn_outreach_webhook_deliveries        gauge      outbox rows by event and status
forewarn_outreach_store_up                  gauge      1 if the last scrape reached the database
==========================================  =========  ========================================

Routes are labelled by their template (``/api/tasks/{task_id}``), never by the raw path, so a
scan of random URLs cannot blow up the number of series.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import FastAPI, Request, Response
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


def instrument(app: FastAPI, store: TaskStore) -> CollectorRegistry:
    """Add request metrics and ``GET /metrics`` to ``app``; return its registry."""
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

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry
