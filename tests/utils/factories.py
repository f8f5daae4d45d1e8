"""Factories for valid events; tests override only the fields they care about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from forewarn.events import (
    Alert,
    CustomerValue,
    DeadLetter,
    DeviceTelemetry,
    Event,
    ModelUpdated,
    Order,
    OutreachTask,
    Ticket,
)

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def telemetry(i: int = 0, **overrides: Any) -> DeviceTelemetry:
    fields: dict[str, Any] = dict(
        event_id=f"D00001-{i}",
        event_time=T0 + timedelta(hours=i),
        device_id="D00001",
        customer_id="C00001",
        device_type="heat_pump",
        metrics={"vibration_mm_s": 2.0, "current_a": 6.0},
        error_codes=[],
    )
    return DeviceTelemetry(**(fields | overrides))


def order(**overrides: Any) -> Order:
    fields: dict[str, Any] = dict(
        event_id="C00001-O0001-placed",
        event_time=T0,
        order_id="C00001-O0001",
        customer_id="C00001",
        channel="web",
        status="placed",
        amount=59.9,
        promised_time=T0 + timedelta(days=3),
    )
    return Order(**(fields | overrides))


def ticket(**overrides: Any) -> Ticket:
    fields: dict[str, Any] = dict(
        event_id="C00001-T0001-1",
        event_time=T0,
        ticket_id="C00001-T0001",
        customer_id="C00001",
        channel="phone",
        category="fault",
        status="resolved",
        text="My heat pump is loud <b>again</b>",
        csat=2,
        nps=3,
        ces_agree=False,
        first_contact_resolution=True,
    )
    return Ticket(**(fields | overrides))


def alert(i: int = 0, **overrides: Any) -> Alert:
    fields: dict[str, Any] = dict(
        event_id=f"alert-{i}",
        event_time=T0 + timedelta(hours=i),
        alert_id=f"alert-{i}",
        dedup_key="visit:D00001",
        kind="device_fault",
        customer_id="C00001",
        device_id="D00001",
        fault_kind="drift:vibration_mm_s",
        severity="medium",
        confidence=0.7,
        score=3.2,
        explanation="vibration 3.2 sigma above baseline",
        evidence={"signals": ["drift:vibration_mm_s"]},
        detector="test",
    )
    return Alert(**(fields | overrides))


def one_of_each() -> list[Event]:
    """A valid example of every contract (docs/events.md shows the same ones)."""
    return [
        telemetry(),
        order(),
        ticket(),
        alert(),
        OutreachTask(
            event_id="t-1",
            event_time=T0,
            task_id="t-1",
            dedup_key="visit:D00001",
            kind="visit",
            status="open",
            customer_id="C00001",
            device_id="D00001",
            priority=58,
            due_time=T0 + timedelta(days=3),
            created=True,
        ),
        DeadLetter(
            event_id="dlq-orders-0-7",
            event_time=T0,
            source_topic="orders",
            source_partition=0,
            source_offset=7,
            reason="not JSON",
            raw="e30=",
        ),
        ModelUpdated(
            event_id="m-1",
            event_time=T0,
            model_name="churn",
            version="2026-01-05",
            uri="file:///var/models/churn/2026-01-05",
            metrics={"roc_auc": 0.81},
        ),
        CustomerValue(
            event_id="cv-1",
            event_time=T0,
            customer_id="C00001",
            p_alive=0.9,
            expected_purchases_90d=1.4,
            clv_90d=120.5,
            clv_365d=410.0,
            value_tier="gold",
        ),
    ]
