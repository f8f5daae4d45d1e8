"""Render docs/events.md from the contracts themselves, so the document cannot drift.

``python -m forewarn.events_doc > docs/events.md``; a test fails when the file is stale.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime

from forewarn.events import (
    EVENT_TIME_CEILING,
    EVENT_TIME_FLOOR,
    MAX_AHEAD,
    SCHEMAS,
    SCORE_MAX,
    Alert,
    CustomerAttributes,
    CustomerSignal,
    CustomerValue,
    DeadLetter,
    DeviceTelemetry,
    Event,
    MaintenanceVisit,
    ModelUpdated,
    Order,
    OutreachTask,
    Ticket,
)

T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def examples() -> list[Event]:
    """A valid example of every contract (tests build on the same ones)."""
    return [
        DeviceTelemetry(
            event_id="D00042-233",
            event_time=T0,
            device_id="D00042",
            customer_id="C00031",
            device_type="heat_pump",
            metrics={"vibration_mm_s": 2.41, "outlet_temp_c": 44.8, "current_a": 6.2},
            error_codes=["E42"],
            mode="normal",
            firmware="1.0.0",
        ),
        Order(
            event_id="C00031-O0004-late",
            event_time=T0,
            order_id="C00031-O0004",
            customer_id="C00031",
            channel="web",
            status="late",
            amount=59.9,
            promised_time=T0 - timedelta(hours=2),
        ),
        Ticket(
            event_id="C00031-T0002-1",
            event_time=T0,
            ticket_id="C00031-T0002",
            customer_id="C00031",
            device_id="D00042",
            channel="phone",
            category="fault",
            status="resolved",
            contact_number=1,
            text="The heat pump is loud again.",
            csat=2,
            nps=4,
            ces_agree=False,
            first_contact_resolution=True,
        ),
        Alert(
            event_id="alert-D00042-233",
            event_time=T0,
            alert_id="alert-D00042-233",
            dedup_key="visit:D00042",
            kind="device_fault",
            customer_id="C00031",
            device_id="D00042",
            fault_kind="drift:vibration_mm_s",
            severity="high",
            confidence=0.74,
            score=4.2,
            explanation="vibration_mm_s 4.2 sigma above this unit's baseline (2.41 seen, "
            "2.02 expected at this hour) for 14 h; error E42 x3 in 24 h",
            evidence={"signals": ["drift:vibration_mm_s", "error_codes"]},
            detector="device_faults.v2",
        ),
        CustomerSignal(
            event_id="alert-D00042-233",
            event_time=T0,
            alert_id="alert-D00042-233",
            dedup_key="visit:D00042",
            kind="device_fault",
            customer_id="C00031",
            device_id="D00042",
            fault_kind="drift:vibration_mm_s",
            severity="high",
            confidence=0.74,
            score=4.2,
            explanation="vibration_mm_s 4.2 sigma above baseline",
            detector="device_faults.v2",
        ),
        OutreachTask(
            event_id="6f1c-1",
            event_time=T0,
            task_id="6f1c",
            dedup_key="visit:D00042",
            kind="visit",
            status="open",
            customer_id="C00031",
            device_id="D00042",
            priority=81,
            due_time=T0 + timedelta(hours=24),
            created=True,
        ),
        DeadLetter(
            event_id="dlq-orders-2-1187",
            event_time=T0,
            source_topic="orders",
            source_partition=2,
            source_offset=1187,
            reason="unknown schema_version 3 for topic 'orders' (known: 1)",
            raw="eyJzY2hlbWFfdmVyc2lvbiI6IDN9",
        ),
        ModelUpdated(
            event_id="churn-2026-01-05",
            event_time=T0,
            model_name="churn",
            version="2026-01-05",
            sha256="9f2b4c1e0d6a8f3b7c5e2d1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c",
            metrics={"roc_auc": 0.81},
        ),
        CustomerValue(
            event_id="cv-C00031-2026-01-05",
            event_time=T0,
            customer_id="C00031",
            p_alive=0.87,
            expected_purchases_90d=1.4,
            clv_90d=120.5,
            clv_365d=410.0,
            value_tier="gold",
        ),
        CustomerAttributes(
            event_id="crm-C00031-2026-01-05",
            event_time=T0,
            customer_id="C00031",
            name="Ada Keller",
            phone="+44 7700 900123",
            email="ada.keller.c00031@example.com",
            address="12 Mill Road, Northby",
            territory="north",
            preferred_channel="phone",
            numeric={"monthly_charge_eur": 49.0, "products": 2.0},
            categorical={"plan": "comfort", "contract": "12 months"},
            dates={"signup": "2023-04-17", "contract_end": "2026-04-16"},
        ),
        MaintenanceVisit(
            event_id="fsm-V1187",
            event_time=T0,
            visit_id="V1187",
            device_id="D00042",
            customer_id="C00031",
            kind="repair",
            outcome="fixed",
            ended_at=T0 + timedelta(hours=1, minutes=20),
            technician="tom",
            note="Replaced the fan bearing; vibration back to 2.1 mm/s.",
        ),
    ]


def _type_name(annotation: typing.Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is AwareDatetime:
        return "datetime (UTC, ISO 8601)"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " | ".join(_type_name(a) for a in inner) + " | null"
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if inspect.isclass(annotation) and issubclass(annotation, str) and annotation is not str:
        return " \\| ".join(json.dumps(m.value) for m in annotation)  # StrEnum
    return getattr(annotation, "__name__", str(annotation))


def render() -> str:
    lines = [
        "# Event contracts",
        "",
        "<!-- Generated by `python -m forewarn.events_doc`; edit forewarn/events.py instead. -->",
        "",
        "Every event is a JSON object on the wire with `schema_version` (required) and",
        "`event_time` (ISO 8601 with a UTC offset; when it happened: windows, baselines and",
        "nightly partitions use it, never arrival time). One definition per type lives in",
        "`forewarn/events.py` and is shared by the simulator, the Faust worker, the event lake",
        "and the nightly DAGs. An event that fails validation (bad JSON, a missing or unknown",
        "`schema_version`, missing or absurd fields, over 256 KiB) goes to `dead-letters` with",
        "the raw bytes and the reason; the worker goes on.",
        "",
        'Types are strict: numbers are JSON numbers (`"2.5"` is refused), flags are `true` or',
        "`false` (not `1`), and `true` is no schema version. Times are normalised to UTC and",
        f"must lie in [{EVENT_TIME_FLOOR.date()}, {EVENT_TIME_CEILING.date()}): earlier is",
        "refused as *too old* (a device clock that was never set), later as *from the future*;",
        f"an `event_time` more than {MAX_AHEAD.total_seconds() / 3600:g} h ahead of the",
        "receiving worker's clock is refused as *from the future* too, so one wrong clock",
        "cannot move a detector's event time. Alert scores are clamped to",
        f"+-{SCORE_MAX:g}.",
        "",
        "Versioning: adding an optional field is compatible; changing or removing one is a new",
        "`schema_version`, decoded side by side until every producer has moved.",
        "",
    ]
    for example in examples():
        contract = type(example)
        version = contract.model_fields["schema_version"].default
        assert contract is SCHEMAS[contract.topic][version]
        doc = inspect.cleandoc(contract.__doc__ or "")
        lines += [
            f"## `{contract.topic}` — {contract.__name__}",
            "",
            doc,
            "",
            f"Key: `{contract.key_field}`. Version: {version}.",
            "",
            "| field | type | required |",
            "|---|---|---|",
        ]
        for name, field in contract.model_fields.items():
            # schema_version has a default in code, but producers must send it.
            required = "yes" if field.is_required() or name == "schema_version" else "no"
            lines.append(f"| `{name}` | {_type_name(field.annotation)} | {required} |")
        body = json.dumps(json.loads(example.model_dump_json()), indent=2)
        lines += ["", "```json", body, "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
