"""Property-based fuzzing of event decoding: 10,000+ hostile cases, every one either a valid
event or an InvalidEvent with a reason, never a crash (the worker turns InvalidEvent into a
dead letter; anything else would stop the agent). Readings' fast path (forewarn/fast_decode.py)
gives what the full path gives on every case: the same event or the same reason."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings

from forewarn.events import Event, InvalidEvent, decode, encode
from tests.utils.hostile import (
    SOURCE_TOPICS,
    hostile,
    mutated_event,
    near_miss_reading,
    raw_garbage,
)

#: One receiver clock for both paths (events from the future are judged against it).
NOW = datetime(2026, 6, 1, tzinfo=UTC)

# Derandomized: CI sees the same cases every run; no example database is written.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _outcome(topic: str, raw: bytes, fast: bool) -> tuple[str, object]:
    try:
        event = decode(topic, raw, NOW, fast=fast)
    except InvalidEvent as exc:
        return "refused", str(exc)
    return "event", (event, encode(event), type(event))


def _decodes_or_refuses(topic: str, raw: bytes) -> None:
    fast, full = _outcome(topic, raw, fast=True), _outcome(topic, raw, fast=False)
    assert fast == full, f"the fast path disagrees on {raw[:200]!r}"
    try:
        event = decode(topic, raw, NOW)
    except InvalidEvent as exc:
        reason = str(exc)
        assert reason and "\n" not in reason and len(reason) < 3000
        return
    assert isinstance(event, Event)
    # What passes the contract survives a round trip unchanged: the lake and the topics agree.
    assert decode(topic, encode(event), NOW) == event


@settings(FUZZ, max_examples=2000)
@given(near_miss_reading())
def test_readings_near_the_fast_paths_edges(case):
    _decodes_or_refuses(*case)


@settings(FUZZ, max_examples=5000)
@given(mutated_event())
def test_mutated_events(case):
    _decodes_or_refuses(*case)


@settings(FUZZ, max_examples=3000)
@given(raw_garbage())
def test_garbage_bytes(case):
    topic, raw = case
    try:
        decode(topic, raw)
    except InvalidEvent:
        return
    raise AssertionError(f"garbage accepted on {topic}: {raw[:80]!r}")


@settings(FUZZ, max_examples=2000)
@given(hostile)
def test_any_hostile_message(case):
    _decodes_or_refuses(*case)


def test_every_source_topic_is_fuzzed():
    assert set(SOURCE_TOPICS) == {"device-telemetry", "orders", "tickets"}
