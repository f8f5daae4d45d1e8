"""Strict contracts at the ends of the calendar: every time is UTC inside [floor, ceiling),
never far ahead of the receiver's clock, and no value makes an event (or an alert) invalid by
being large."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from forewarn.events import (
    EVENT_TIME_CEILING,
    EVENT_TIME_FLOOR,
    MAX_AHEAD,
    SCORE_MAX,
    InvalidEvent,
    decode,
    encode,
)
from tests.utils import factories

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)

CALENDAR_ENDS = [
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: overflowed when read back
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-14:00",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",  # a device clock that was never set
    "9999-12-31T23:59:59-14:00",  # year 10000 in UTC: crashed the device agent
    "9999-12-31T23:30:00Z",  # overflowed the feedback task's due time
    "9999-12-31T23:59:59+14:00",
    "3000-01-01T00:00:00Z",
    "2100-01-01T00:00:00+05:30",  # raised 21 false silence visits
]


def _raw(event, **changes) -> bytes:
    data = json.loads(encode(event))
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize("when", CALENDAR_ENDS)
@pytest.mark.parametrize(
    "event", [factories.telemetry(), factories.ticket(), factories.order()], ids=lambda e: e.topic
)
def test_times_outside_the_calendar_are_refused_with_a_reason(event, when):
    with pytest.raises(InvalidEvent) as refused:
        decode(event.topic, _raw(event, event_time=when), now=NOW)
    reason = str(refused.value)
    assert "too old" in reason or "from the future" in reason, reason
    assert "\n" not in reason


def test_promised_time_is_bounded_too():
    raw = _raw(factories.order(), promised_time="9999-12-31T23:59:59-14:00")
    with pytest.raises(InvalidEvent, match=r"promised_time.*from the future"):
        decode("orders", raw, now=NOW)


def test_times_are_utc_and_the_bounds_are_inclusive_where_documented():
    event = decode(
        "tickets", _raw(factories.ticket(), event_time="2026-11-29T14:00:00+02:00"), now=NOW
    )
    assert event.event_time == datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert event.event_time.utcoffset() == timedelta(0)
    at_floor = decode("tickets", _raw(factories.ticket(), event_time="1990-01-01T00:00:00Z"))
    assert at_floor.event_time == EVENT_TIME_FLOOR
    with pytest.raises(InvalidEvent, match="too old"):
        decode("tickets", _raw(factories.ticket(), event_time="1989-12-31T23:59:59Z"))
    assert EVENT_TIME_CEILING.year == 2200


def test_events_ahead_of_the_receivers_clock_are_from_the_future():
    ahead = NOW + MAX_AHEAD + timedelta(minutes=1)
    raw = _raw(factories.telemetry(), event_time=ahead.isoformat())
    with pytest.raises(InvalidEvent, match=r"from the future: .* 24\.0 h ahead"):
        decode("device-telemetry", raw, now=NOW)
    # Clock skew within the bound is fine.
    within = NOW + MAX_AHEAD - timedelta(minutes=1)
    assert decode(
        "device-telemetry", _raw(factories.telemetry(), event_time=within.isoformat()), now=NOW
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schema_version": True}, "schema_version"),
        ({"schema_version": 1.0}, "schema_version"),
        ({"schema_version": "1"}, "schema_version"),
        ({"metrics": {"vibration_mm_s": "2.5"}}, "metrics"),
        ({"metrics": {"vibration_mm_s": True}}, "metrics"),
        ({"event_time": 1767571200}, "event_time"),
        ({"device_id": 42}, "device_id"),
    ],
)
def test_loose_types_are_refused(changes, field):
    with pytest.raises(InvalidEvent, match=field):
        decode("device-telemetry", _raw(factories.telemetry(), **changes), now=NOW)


@pytest.mark.parametrize(
    "changes",
    [{"csat": True}, {"nps": "3"}, {"contact_number": 2.0}, {"ces_agree": 1}, {"text": 5}],
)
def test_loose_ticket_fields_are_refused(changes):
    with pytest.raises(InvalidEvent, match=next(iter(changes))):
        decode("tickets", _raw(factories.ticket(), **changes), now=NOW)


def test_schema_version_is_required_as_docs_events_md_says():
    data = json.loads(encode(factories.ticket()))
    del data["schema_version"]
    with pytest.raises(InvalidEvent, match=r"schema_version missing.*required"):
        decode("tickets", json.dumps(data).encode(), now=NOW)


def test_a_billion_in_value_is_a_clamped_score_not_an_invalid_alert():
    alert = factories.alert(score=4e9)
    assert alert.score == 4e9
    assert factories.alert(score=1e300).score == SCORE_MAX
    assert factories.alert(score=-1e300).score == -SCORE_MAX
    assert decode("alerts", encode(factories.alert(score=1e300)), now=NOW).score == SCORE_MAX
