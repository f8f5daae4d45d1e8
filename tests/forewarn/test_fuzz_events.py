"""Property-based fuzzing of event decoding: 10,000+ hostile cases, every one either a valid
event or an InvalidEvent with a reason, never a crash (the worker turns InvalidEvent into a
dead letter; anything else would stop the agent)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from forewarn.events import Event, InvalidEvent, decode, encode
from tests.utils.hostile import SOURCE_TOPICS, hostile, mutated_event, raw_garbage

# Derandomized: CI sees the same cases every run; no example database is written.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _decodes_or_refuses(topic: str, raw: bytes) -> None:
    try:
        event = decode(topic, raw)
    except InvalidEvent as exc:
        reason = str(exc)
        assert reason and "\n" not in reason and len(reason) < 3000
        return
    assert isinstance(event, Event)
    # What passes the contract survives a round trip unchanged: the lake and the topics agree.
    assert decode(topic, encode(event)) == event


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
