"""Hostile messages for the decoder and the worker: hypothesis strategies and a seeded sample.

Each starts from a valid event of the topic and breaks it the way producers do: bad bytes,
truncated or non-object JSON, wrong types, huge or non-finite numbers, unicode, missing and
unknown fields, unknown schema versions, oversized bodies.
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import strategies as st

from forewarn.events import MAX_EVENT_BYTES, InvalidEvent, decode, encode
from tests.utils import factories

VALID = {
    "device-telemetry": factories.telemetry(),
    "orders": factories.order(),
    "tickets": factories.ticket(),
}
SOURCE_TOPICS = sorted(VALID)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF), max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def valid_dict(topic: str) -> dict[str, Any]:
    return json.loads(encode(VALID[topic]))


@st.composite
def mutated_event(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid event of a random topic with one to three fields broken."""
    topic = draw(st.sampled_from(SOURCE_TOPICS))
    data = valid_dict(topic)
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(sorted(data)))
        action = draw(st.sampled_from(["replace", "delete", "add", "version"]))
        if action == "replace":
            data[field] = draw(json_values)
        elif action == "delete":
            data.pop(field, None)
            if not data:
                break
        elif action == "add":
            data[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
        else:
            data["schema_version"] = draw(st.one_of(st.integers(), st.text(max_size=5)))
    return topic, json.dumps(data, allow_nan=True).encode()


@st.composite
def raw_garbage(draw: st.DrawFn) -> tuple[str, bytes]:
    """Bytes that are not an event at all: random, truncated, huge, deep, or not an object."""
    topic = draw(st.sampled_from(SOURCE_TOPICS))
    good = encode(VALID[topic])
    kind = draw(st.sampled_from(["bytes", "truncated", "not-object", "huge", "deep", "bigint"]))
    if kind == "bytes":
        raw = draw(st.binary(max_size=200))
    elif kind == "truncated":
        raw = good[: draw(st.integers(0, len(good) - 1))]
    elif kind == "not-object":
        raw = json.dumps(draw(st.one_of(json_scalars, st.lists(json_scalars)))).encode()
    elif kind == "huge":
        text = "x" * (MAX_EVENT_BYTES + draw(st.integers(1, 1000)))
        raw = json.dumps({**valid_dict(topic), "text": text}).encode()
    elif kind == "deep":
        depth = draw(st.integers(500, 5000))
        raw = b'{"event_id": ' + b"[" * depth + b"]" * depth + b"}"
    else:  # integers Python refuses to parse past 4300 digits
        raw = b'{"schema_version": 1, "amount": ' + b"9" * draw(st.integers(4301, 6000)) + b"}"
    return topic, raw


hostile = st.one_of(mutated_event(), raw_garbage())


def sample(n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` messages that are all invalid, reproducibly (for the worker test; hypothesis
    drives the in-process fuzzing, where shrinking helps)."""
    rng = random.Random(seed)
    breakers: list[Any] = [None, "", "\u00e9\u202e" * 3, 10**40, -1e308, [], {"x": 1}, "NaN"]
    out: list[tuple[str, bytes]] = []
    while len(out) < n:
        topic = rng.choice(SOURCE_TOPICS)
        data = valid_dict(topic)
        data[rng.choice(sorted(data))] = rng.choice(breakers)
        raw = json.dumps(data).encode()
        if rng.random() < 0.2:
            raw = raw[: rng.randint(1, 50)]
        try:
            decode(topic, raw)
        except InvalidEvent:
            out.append((topic, raw))
    return out


#: Values on which a fast reader and pydantic could disagree: time formats, ids with a trailing
#: newline or other scripts' digits, numbers at the edge of a float, literal NaN.
EDGE_TIMES = [
    "2026-01-05T00:00:00Z",
    "2026-01-05T00:00:00.1234567Z",
    "2026-01-05T00:00:00.123456+01:00",
    "2026-01-05t00:00:00z",
    "2026-01-05 00:00:00Z",
    "2026-01-05T00:00:00",
    "2026-01-05",
    "2026-01-05T00:00:60Z",
    "2026-01-05T24:00:00Z",
    "2026-01-05T00:00:00+24:00",
    "2026-01-05T00:00:00-00:00",
    "2026-01-05T00:00:00+0100",
    "1989-12-31T23:59:59Z",
    "2199-12-31T23:59:59Z",
    "2200-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-14:00",
    "2026-02-30T00:00:00Z",
    "\uff12\uff10\uff12\uff16-01-05T00:00:00Z",  # fullwidth digits
    "2026-01-05T00:00:00.Z",
    "2026-01-05T00:00Z",
    "20260105T000000Z",
    "2026-01-05T00:00:00\nZ",
]
EDGE_IDS = ["D1", "D1\n", "D 1", "", "x" * 64, "x" * 65, "١٢", "D1/D2", "é", "a:b.c-d_e"]
EDGE_NUMBERS = [0, -0.0, 1, 2**53 + 1, 10**30, 1e308, -1e308, 5e-324, True, None, "1.0", [1.0]]


@st.composite
def near_miss_reading(draw: st.DrawFn) -> tuple[str, bytes]:
    """A reading with one to three fields set to edge values, sometimes written with literal
    NaN, duplicate keys or a bool version (what a fast path might read differently)."""
    data = valid_dict("device-telemetry")
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["time", "id", "metric", "code", "version", "mode"]))
        if where == "time":
            data["event_time"] = draw(st.sampled_from(EDGE_TIMES))
        elif where == "id":
            field = draw(st.sampled_from(["event_id", "device_id", "customer_id", "firmware"]))
            data[field] = draw(st.sampled_from(EDGE_IDS))
        elif where == "metric":
            name = draw(st.sampled_from([*EDGE_IDS, "vibration_mm_s"]))
            data["metrics"] = {**data["metrics"], name: draw(st.sampled_from(EDGE_NUMBERS))}
        elif where == "code":
            data["error_codes"] = draw(st.lists(st.sampled_from(EDGE_IDS), max_size=3))
        elif where == "version":
            data["schema_version"] = draw(st.sampled_from([1, 1.0, True, "1", 2]))
        else:
            data["mode"] = draw(st.sampled_from(["normal", "NORMAL", "self_test", None]))
    raw = json.dumps(data, allow_nan=True)
    extra = draw(st.sampled_from(["", "nan", "duplicate"]))
    if extra == "nan":
        raw = raw.replace('"metrics": {', '"metrics": {"nan_reading": NaN, ', 1)
    elif extra == "duplicate":
        raw = raw.replace('{"schema_version"', '{"device_id": "D2", "schema_version"', 1)
    return "device-telemetry", raw.encode()
