"""Factories for valid events; tests override only the fields they care about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from forewarn.events import (
    Alert,
    DeviceTelemetry,
    Event,
    Order,
    Ticket,
)
from forewarn.events_doc import examples

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
    """A valid example of every contract: the ones docs/events.md shows."""
    return examples()
