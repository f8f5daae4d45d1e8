"""Event contracts: round trips, and a clear reason for every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forewarn.events import (
    INPUT_TOPICS,
    MAX_EVENT_BYTES,
    SCHEMAS,
    InvalidEvent,
    decode,
    encode,
)
from forewarn.events_doc import render
from tests.utils import factories


@pytest.mark.parametrize("event", factories.one_of_each(), ids=lambda e: e.topic)
def test_round_trip_through_bytes(event):
    assert decode(event.topic, encode(event)) == event


def test_every_contract_has_an_example():
    assert {e.topic for e in factories.one_of_each()} == set(SCHEMAS)


def test_keys_follow_the_entity():
    assert factories.telemetry().key == "D00001"
    assert factories.order().key == "C00001"
    assert factories.alert().key == "visit:D00001"


def _raw(event, **changes) -> bytes:
    data = json.loads(encode(event))
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


TELEMETRY, TICKETS = "device-telemetry", "tickets"


@pytest.mark.parametrize(
    ("topic", "raw", "reason"),
    [
        (TELEMETRY, b"", "empty message"),
        (TELEMETRY, b"{not json", "not JSON"),
        (TELEMETRY, b"\xff\xfe", "not JSON"),
        (TELEMETRY, b"[1, 2]", "expected a JSON object"),
        (TELEMETRY, _raw(factories.telemetry(), schema_version=2), "unknown schema_version 2"),
        (TELEMETRY, _raw(factories.telemetry(), schema_version="1"), "unknown schema_version '1'"),
        (TELEMETRY, _raw(factories.telemetry(), device_id=...), "device_id: Field required"),
        (TELEMETRY, _raw(factories.telemetry(), metrics={"t": float("inf")}), "metrics.t"),
        (TELEMETRY, _raw(factories.telemetry(), metrics={"t": "hot"}), "metrics.t"),
        (TELEMETRY, _raw(factories.telemetry(), event_time="2026-01-05T00:00:00"), "event_time"),
        (TELEMETRY, _raw(factories.telemetry(), extra_field=1), "extra_field"),
        (TELEMETRY, b'{"schema_version": 1, "pad": "' + b"x" * MAX_EVENT_BYTES + b'"}', "exceeds"),
        (TICKETS, _raw(factories.ticket(), csat=6), "csat"),
        (TICKETS, _raw(factories.ticket(), nps=-1), "nps"),
        (TICKETS, _raw(factories.ticket(), channel="fax"), "channel"),
    ],
)
def test_bad_input_is_refused_with_a_reason(topic, raw, reason):
    with pytest.raises(InvalidEvent) as info:
        decode(topic, raw)
    assert reason in str(info.value)


def test_unknown_topic_is_refused():
    with pytest.raises(InvalidEvent, match="no contract for topic 'nope'"):
        decode("nope", b"{}")


def test_tickets_carry_what_the_kpis_need():
    fields = SCHEMAS["tickets"][1].model_fields
    for name in ("channel", "category", "csat", "nps", "ces_agree", "first_contact_resolution"):
        assert name in fields
    assert set(INPUT_TOPICS) == {"device-telemetry", "orders", "tickets"}


def test_docs_events_md_is_current():
    """docs/events.md is generated from the contracts: regenerate it after changing them with
    ``python -m forewarn.events_doc > docs/events.md``."""
    path = Path(__file__).parents[2] / "docs" / "events.md"
    assert path.read_text() == render()
