"""Simulated history as plain CSV, the format ``forewarn replay`` reads (and users have)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from forewarn.events import DeviceTelemetry, Event, Order, Ticket

CUSTOMER_COLUMNS = (
    "time",
    "customer_id",
    "event",
    "order_id",
    "ticket_id",
    "status",
    "amount",
    "channel",
    "category",
    "contact_number",
    "csat",
    "nps",
    "device_id",
)


def write_csv(events: Iterable[Event], folder: Path) -> dict[str, int]:
    """Write ``device_telemetry.csv`` (one row per reading, a column per metric, error codes
    joined by ``;``) and ``customer_events.csv`` (orders and tickets, one row each)."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = {"device_telemetry": 0, "customer_events": 0}
    metric_names: list[str] | None = None
    with (
        (folder / "device_telemetry.csv").open("w", newline="") as dev_fh,
        (folder / "customer_events.csv").open("w", newline="") as cust_fh,
    ):
        devices = csv.writer(dev_fh)
        customers = csv.writer(cust_fh)
        customers.writerow(CUSTOMER_COLUMNS)
        seen_metrics: dict[str, None] = {}
        rows = []
        for event in events:
            if isinstance(event, DeviceTelemetry):
                seen_metrics.update(dict.fromkeys(event.metrics))
                rows.append(event)
            elif isinstance(event, Order):
                customers.writerow(
                    [
                        event.event_time.isoformat(),
                        event.customer_id,
                        "order",
                        event.order_id,
                        "",
                        event.status,
                        event.amount,
                        event.channel,
                        "",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
                counts["customer_events"] += 1
            elif isinstance(event, Ticket):
                customers.writerow(
                    [
                        event.event_time.isoformat(),
                        event.customer_id,
                        "ticket",
                        "",
                        event.ticket_id,
                        event.status,
                        "",
                        event.channel,
                        event.category,
                        event.contact_number,
                        "" if event.csat is None else event.csat,
                        "" if event.nps is None else event.nps,
                        event.device_id or "",
                    ]
                )
                counts["customer_events"] += 1
        metric_names = list(seen_metrics)
        devices.writerow(
            ["time", "device_id", "customer_id", "mode", "firmware", "error_codes", *metric_names]
        )
        for r in rows:
            devices.writerow(
                [
                    r.event_time.isoformat(),
                    r.device_id,
                    r.customer_id,
                    r.mode,
                    r.firmware,
                    ";".join(r.error_codes),
                    *["" if r.metrics.get(m) is None else r.metrics[m] for m in metric_names],
                ]
            )
        counts["device_telemetry"] = len(rows)
    return counts
