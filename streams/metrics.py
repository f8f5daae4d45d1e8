"""The worker's ``/metrics`` (Prometheus) and ``/healthz`` pages, on Faust's own web server.

The hot path counts into plain dicts (``streams.dead_letters.counters`` and Faust's monitor);
the collectors below turn them into Prometheus families only when scraped, so an event costs
a dict increment, not a labelled-metric lookup.

==========================================  =========  ========================================
metric                                      type       meaning
==========================================  =========  ========================================
forewarn_worker_messages_total{topic}       counter    messages read from a topic (rate = ev/s)
forewarn_worker_consumer_lag{topic,part.}   gauge      end offset minus committed offset
forewarn_worker_alerts_total{kind}          counter    alerts raised, by kind
forewarn_worker_dead_letters_total{kind}    counter    messages refused, by reason kind
forewarn_worker_events_total{name}          counter    other counts (archived, suppressed, ...)
forewarn_worker_task_sink_seconds           histogram  time to store one outreach task
forewarn_worker_alert_to_task_seconds       histogram  alert raised to its task stored
forewarn_worker_info{churn_model,...}       gauge      1, labelled with the models in service
==========================================  =========  ========================================
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.app import app
from streams.dead_letters import counters, status

registry = CollectorRegistry()
task_sink_seconds = Histogram(
    "forewarn_worker_task_sink_seconds",
    "Time to store one outreach task (upsert, including retries while the database is down).",
    registry=registry,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
)
alert_to_task_seconds = Histogram(
    "forewarn_worker_alert_to_task_seconds",
    "From an alert being raised (its event time) to its outreach task being stored.",
    registry=registry,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
# Counter keys "<family>.<label>" become forewarn_worker_<family>_total{kind=<label>}.
LABELLED_FAMILIES = {"alerts": "alerts", "dead_letters": "dead_letters"}


def consumer_lag() -> dict[tuple[str, int], int]:
    """Messages not yet committed, per assigned partition this worker knows the end of."""
    lag: dict[tuple[str, int], int] = {}
    consumer = app.consumer
    monitor = app.monitor
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        done = monitor.tp_committed_offsets.get(tp)
        if done is None and tp in monitor.tp_read_offsets:
            done = monitor.tp_read_offsets[tp] + 1
        if end is not None and done is not None:
            lag[(tp.topic, tp.partition)] = max(0, end - done)
    return lag


class WorkerCollector(Collector):
    """Reads the worker's counters and Faust's monitor at scrape time."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        messages = CounterMetricFamily(
            "forewarn_worker_messages", "Messages read, by topic.", labels=["topic"]
        )
        for topic, n in sorted(app.monitor.messages_received_by_topic.items()):
            messages.add_metric([topic], n)
        yield messages
        lag = GaugeMetricFamily(
            "forewarn_worker_consumer_lag",
            "End offset minus committed offset, per assigned partition.",
            labels=["topic", "partition"],
        )
        if app.consumer is not None:
            for (topic, partition), n in sorted(consumer_lag().items()):
                lag.add_metric([topic, str(partition)], n)
        yield lag
        families = {
            key: CounterMetricFamily(f"forewarn_worker_{key}", f"{key} by kind.", labels=["kind"])
            for key in LABELLED_FAMILIES
        }
        other = CounterMetricFamily(
            "forewarn_worker_events", "Other worker counts.", labels=["name"]
        )
        for key, n in sorted(counters.items()):
            family, _, label = key.partition(".")
            if family in families and label:
                families[family].add_metric([label], n)
            else:
                other.add_metric([key], n)
        yield from families.values()
        yield other
        info = GaugeMetricFamily(
            "forewarn_worker_info",
            "Always 1; the labels name the models in service (a rejected model file shows as "
            "forewarn_worker_events_total{name='models.rejected'} and an unchanged version).",
            labels=sorted(status),
        )
        info.add_metric([status[k] for k in sorted(status)], 1)
        yield info


registry.register(WorkerCollector())


def observe_task_stored(seconds: float, alert_time: float) -> None:
    """Record one stored task: the sink's time and the alert-to-task delay (both seconds)."""
    task_sink_seconds.observe(seconds)
    alert_to_task_seconds.observe(max(0.0, time.time() - alert_time))


@app.page("/metrics")
async def metrics(self, request):  # type: ignore[no-untyped-def]
    # aiohttp refuses a charset in content_type=, so the exposition type goes in as a header.
    return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


@app.page("/healthz")
async def healthz(self, request):  # type: ignore[no-untyped-def]
    """200 while the worker runs and its consumer is up; 503 while starting or stopping."""
    running = app.started and not app.should_stop and app.consumer is not None
    body = {
        "status": "ok" if running else "unavailable",
        "assigned_partitions": len(app.consumer.assignment()) if running else 0,
        "rebalancing": bool(app.rebalancing),
    }
    return self.json(body, status=200 if running else 503)
