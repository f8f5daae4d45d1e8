"""A customer's history across channels: orders and tickets from the lake, tasks from the
store, so nobody starts over when the customer switches channel."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from outreach.models import Task

LIMIT = 200


def customer_timeline(
    lake_dir: Path, customer_id: str, tasks: Iterable[Task]
) -> list[dict[str, Any]]:
    """Newest first: ``{"at", "channel", "type", "summary"}`` per entry; ``tasks`` are the
    customer's tasks."""
    from forewarn.lake import read_events

    entries: list[dict[str, Any]] = []
    for row in read_events(lake_dir, "orders", where={"customer_id": customer_id}).to_pylist():
        entries.append(
            {
                "at": row["event_time"],
                "channel": row["channel"],
                "type": "order",
                "summary": f"order {row['order_id']} {row['status']} "
                f"({row['amount']:.2f} {row['currency']})",
            }
        )
    for row in read_events(lake_dir, "tickets", where={"customer_id": customer_id}).to_pylist():
        survey = ", ".join(f"{k.upper()} {row[k]}" for k in ("csat", "nps") if row[k] is not None)
        entries.append(
            {
                "at": row["event_time"],
                "channel": row["channel"],
                "type": "ticket",
                "summary": f"{row['category']} ticket {row['ticket_id']} "
                f"{row['status']} (contact {row['contact_number']})"
                + (f", {survey}" if survey else "")
                + (f": {row['text']}" if row["text"] else ""),
            }
        )
    for task in tasks:
        entries.append(
            {
                "at": task.detected_at,
                "channel": "forewarn",
                "type": f"{task.kind} task",
                "summary": f"{task.title} "
                f"[{task.status}{', held out' if task.holdout else ''}]: "
                f"{task.explanation}",
                "task_id": task.id,
            }
        )
    # The lake's times are aware UTC (forewarn.lake), and so are the store's (outreach.db).
    entries.sort(key=lambda e: e["at"], reverse=True)
    return entries[:LIMIT]
