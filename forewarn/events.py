"""Event contracts: one definition per event type, shared by producers, streams, lake and DAGs.

Every event is JSON on the wire, carries ``schema_version`` and an ``event_time`` (UTC, the time
the thing happened, which drives every window and nightly partition). ``decode`` turns raw Kafka
bytes into a validated event or raises :class:`InvalidEvent` with a reason fit for the
dead-letter topic. docs/events.md shows an example of each.

Adding a field with a default is a compatible change within a version; changing or removing a
field is breaking and gets a new ``schema_version`` (both are decoded until producers move on).

Examples
--------
>>> from datetime import datetime, UTC
>>> t = DeviceTelemetry(event_id="t-1", event_time=datetime(2026, 1, 5, tzinfo=UTC),
...                     device_id="D00001", customer_id="C00001", device_type="heat_pump",
...                     metrics={"vibration_mm_s": 2.5})
>>> decode("device-telemetry", encode(t)) == t
True
>>> decode("device-telemetry", b'{"schema_version": 9}')
Traceback (most recent call last):
...
forewarn.events.InvalidEvent: unknown schema_version 9 for topic 'device-telemetry' (known: 1)
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
)

# Events larger than this are refused before parsing: nothing we publish comes close, and a
# huge payload is either a bug or an attack (see docs/events.md).
MAX_EVENT_BYTES = 256 * 1024
#: Bytes of the original message a dead letter carries on the ``dead-letters`` topic; the
#: lake's copy of the letter keeps the whole message (:class:`DeadLetter`).
DEAD_LETTER_RAW_MAX = 64 * 1024

#: Event times before this are "too old": a device whose clock was never set reports 1970 (or
#: GPS's 1980), and no business history we take in is older. Times at or after the ceiling
#: are refused too, so that every date computed from an event (due times, windows, lake
#: partitions, pages) stays inside the calendar Python can represent.
EVENT_TIME_FLOOR = datetime(1990, 1, 1, tzinfo=UTC)
EVENT_TIME_CEILING = datetime(2200, 1, 1, tzinfo=UTC)
#: How far an event may be ahead of the receiving worker's clock (clock skew between
#: producers); further ahead it is "from the future" and dead-lettered (:func:`decode`).
MAX_AHEAD = timedelta(hours=24)
#: Scores are rankings, not measurements: clamped here so no value (a customer with a billion
#: in spend) can make an alert invalid and stop the agent that raises it.
SCORE_MAX = 1e12


def _instant_input(value: Any) -> Any:
    """Times come as ISO 8601 text (or datetimes from our own code), never as numbers: an
    epoch number's unit (s, ms, us) would be a guess."""
    if isinstance(value, str | datetime):
        return value
    raise ValueError(
        f"expected an ISO 8601 date-time with a UTC offset, got {type(value).__name__}"
    )


def _utc(value: datetime) -> datetime:
    """Normalise to UTC; a time that has no UTC date in Python's calendar is refused."""
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):  # 9999-12-31T23:59:59-14:00 is year 10000 in UTC
        when = "too old" if value.year == 1 else "from the future"
        raise ValueError(f"{when}: {value.isoformat()} is outside the calendar") from None


def _utc_within_calendar(value: datetime) -> datetime:
    """Normalise to UTC and keep times inside [EVENT_TIME_FLOOR, EVENT_TIME_CEILING)."""
    utc = _utc(value)
    if utc < EVENT_TIME_FLOOR:
        raise ValueError(
            f"too old: {utc.isoformat()} is before {EVENT_TIME_FLOOR.date()}, the floor of "
            "event time (a device clock that was never set?)"
        )
    if utc >= EVENT_TIME_CEILING:
        raise ValueError(
            f"from the future: {utc.isoformat()} is after {EVENT_TIME_CEILING.date()}, the "
            "ceiling of event time"
        )
    return utc


#: A point in time on the wire: ISO 8601 with an offset, normalised to UTC, within the floor
#: and the ceiling above.
Instant = Annotated[
    AwareDatetime, BeforeValidator(_instant_input), AfterValidator(_utc_within_calendar)
]
#: A time computed from an event time (a task's due time): UTC, and after the ceiling by at
#: most the longest service level, so it needs no bounds of its own.
Deadline = Annotated[AwareDatetime, BeforeValidator(_instant_input), AfterValidator(_utc)]
# Types are strict on the wire: no bool where a number or a version goes, no numbers in text.
Id = Annotated[str, Strict(), Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Text = Annotated[str, Strict(), Field(max_length=4000)]
# Any finite value: a real meter can read beyond a million (issue 15: a +-1e6 bound refused
# real readings, silently). Infinities are invalid; NaN means "no reading" (below).
Reading = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Money = Annotated[float, Strict(), Field(ge=0, le=1e7, allow_inf_nan=False)]
#: Lifetime values: no per-order cap, but finite and below a trillion.
Value = Annotated[float, Strict(), Field(ge=0, le=SCORE_MAX, allow_inf_nan=False)]
Score = Annotated[
    float,
    Strict(),
    Field(allow_inf_nan=False),
    AfterValidator(lambda v: max(-SCORE_MAX, min(SCORE_MAX, v))),
]
Count = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]
Share = Annotated[float, Strict(), Field(ge=0, le=1)]


def _nan_to_none(value: Any) -> Any:
    """A sensor's NaN means 'no reading': keep the event, drop the value (JSON null)."""
    return None if isinstance(value, float) and math.isnan(value) else value


class Channel(StrEnum):
    """Where a customer talked to us; every customer event carries one (omnichannel view)."""

    PHONE = "phone"
    EMAIL = "email"
    CHAT = "chat"
    SOCIAL = "social"
    STORE = "store"
    WEB = "web"
    APP = "app"


class Event(BaseModel):
    """Fields every event has. Subclasses set ``topic`` and ``key_field``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: ClassVar[str]
    key_field: ClassVar[str]

    schema_version: Literal[1] = 1
    event_id: Id
    event_time: Instant

    @property
    def key(self) -> str:
        """The Kafka message key: events of one entity stay in one partition, in order."""
        return str(getattr(self, self.key_field))


class DeviceTelemetry(Event):
    """A reading from a device in a customer's home, every few minutes.

    ``metrics`` maps a metric name to its reading (units in the name: ``vibration_mm_s``), or
    to null when the sensor gave none (NaN is read as null);
    ``error_codes`` lists the codes raised since the previous reading. ``mode`` tells
    maintenance and self-tests apart from normal operation, so they are not mistaken for faults.
    """

    topic: ClassVar[str] = "device-telemetry"
    key_field: ClassVar[str] = "device_id"

    device_id: Id
    customer_id: Id
    device_type: Id
    metrics: dict[Id, Annotated[Reading | None, BeforeValidator(_nan_to_none)]] = Field(
        max_length=64
    )
    error_codes: list[Id] = Field(default_factory=list, max_length=64)
    mode: Literal["normal", "maintenance", "self_test"] = "normal"
    firmware: Id = "1.0.0"


class Order(Event):
    """A change in an order's life: placed, shipped, delivered, late, cancelled or returned."""

    topic: ClassVar[str] = "orders"
    key_field: ClassVar[str] = "customer_id"

    order_id: Id
    customer_id: Id
    channel: Channel
    status: Literal["placed", "shipped", "delivered", "late", "cancelled", "returned"]
    amount: Money
    currency: Annotated[str, Strict(), Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    promised_time: Instant | None = None


class Ticket(Event):
    """A support contact, with the survey answers the service KPIs need.

    One event per contact on the ticket (``contact_number`` counts them); ``status`` is the
    ticket's state after the contact. Survey answers are present only when the customer gave
    them: ``csat`` 1-5, ``nps`` 0-10, ``ces_agree`` whether the interaction was easy, and
    ``first_contact_resolution`` whether it was solved at the first contact.
    """

    topic: ClassVar[str] = "tickets"
    key_field: ClassVar[str] = "customer_id"

    ticket_id: Id
    customer_id: Id
    device_id: Id | None = None
    channel: Channel
    category: Literal["fault", "billing", "delivery", "complaint", "question", "cancellation"]
    status: Literal["opened", "updated", "resolved"]
    contact_number: Annotated[Count, Field(ge=1, le=1000)] = 1
    text: Text = ""
    csat: Annotated[Count, Field(ge=1, le=5)] | None = None
    nps: Annotated[Count, Field(ge=0, le=10)] | None = None
    ces_agree: Flag | None = None
    first_contact_resolution: Flag | None = None


class Alert(Event):
    """Something a detector found that a person should act on.

    ``dedup_key`` names the root cause (``visit:D00042:drift:vibration_mm_s``); the outreach
    store keeps one open task per key, so repeated alerts refresh a task instead of adding one.
    ``event_time`` is when the evidence was seen (event time), not when the worker ran.
    """

    topic: ClassVar[str] = "alerts"
    key_field: ClassVar[str] = "dedup_key"

    alert_id: Id
    dedup_key: Annotated[str, Strict(), Field(min_length=1, max_length=200)]
    kind: Literal["device_fault", "churn_risk", "negative_feedback"]
    customer_id: Id
    device_id: Id | None = None
    fault_kind: Id | None = None
    severity: Literal["low", "medium", "high", "critical"]
    confidence: Share
    score: Score
    explanation: Text
    evidence: dict[str, Any] = Field(default_factory=dict)
    detector: Id


class CustomerSignal(Alert):
    """A device-fault alert re-keyed by customer, so the customer-state agent (co-partitioned
    with orders and tickets) learns of faults on the customer's devices."""

    topic: ClassVar[str] = "customer-signals"
    key_field: ClassVar[str] = "customer_id"


class OutreachTask(Event):
    """A task stored (created or refreshed) in the outreach store, for CRMs and dashboards."""

    topic: ClassVar[str] = "outreach-tasks"
    key_field: ClassVar[str] = "dedup_key"

    task_id: Id
    dedup_key: Annotated[str, Strict(), Field(min_length=1, max_length=200)]
    kind: Literal["visit", "retention", "feedback"]
    status: Literal["open", "assigned", "in_progress", "done", "cancelled", "expired"]
    customer_id: Id
    device_id: Id | None = None
    priority: Annotated[Count, Field(ge=0, le=100)]
    due_time: Deadline
    created: Flag


class DeadLetter(Event):
    """An input event that could not be decoded or validated, kept with the reason.

    ``raw`` is the original message value, base64-encoded, so it can be replayed once fixed.
    On the ``dead-letters`` topic ``raw`` holds at most the first ``DEAD_LETTER_RAW_MAX``
    bytes (a whole 1 MB message would make a letter the broker refuses): ``raw_truncated``
    says so, ``raw_size`` and ``raw_sha256`` name the original, and the lake's
    ``topic=dead-letters`` partition keeps every letter with the whole message.
    """

    topic: ClassVar[str] = "dead-letters"
    key_field: ClassVar[str] = "source_topic"

    source_topic: Annotated[str, Strict(), Field(max_length=249)]
    source_partition: Count
    source_offset: Count
    reason: Annotated[str, Strict(), Field(max_length=2000)]
    raw: Annotated[str, Strict()]
    raw_size: Count = 0
    raw_sha256: Annotated[str, Strict(), Field(max_length=64)] = ""
    raw_truncated: Flag = False


class ModelUpdated(Event):
    """The model registry promoted a new champion; workers load it without a restart.

    The message names a registry version and the sha256 of its model file, never a file: a
    worker loads only from its own registry folder (``forewarn.registry``), and only the
    version the registry marks as champion, whose file hashes to ``sha256``. Version 1
    carried a ``uri`` that workers unpickled; it is refused, never loaded (issue 13).
    """

    topic: ClassVar[str] = "model-updates"
    key_field: ClassVar[str] = "model_name"

    schema_version: Literal[2] = 2
    model_name: Id
    # A folder name in the registry: no '/', no leading '.', so never a path (issue 13).
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    metrics: dict[Id, float] = Field(default_factory=dict)


class CustomerValue(Event):
    """Nightly lifetime value of one customer; a compacted topic keyed by customer."""

    topic: ClassVar[str] = "customer-values"
    key_field: ClassVar[str] = "customer_id"

    customer_id: Id
    p_alive: Share
    expected_purchases_90d: Annotated[
        float, Strict(), Field(ge=0, le=SCORE_MAX, allow_inf_nan=False)
    ]
    clv_90d: Value
    clv_365d: Value
    value_tier: Literal["platinum", "gold", "silver", "bronze"]


#: A calendar day as text (attribute dates: a signup or contract-end day, no time of day).
IsoDate = Annotated[str, Strict(), Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
ShortText = Annotated[str, Strict(), Field(max_length=300)]


class CustomerAttributes(Event):
    """What the CRM knows of one customer from ``event_time`` on (when the record became true).

    The contact and routing fields feed the outreach pages; the attributes feed the churn
    model, typed by the map they are in: ``numeric`` (monthly charge, product count),
    ``categorical`` (plan, contract, region, segment), ``dates`` (signup day, contract end).
    A compacted topic keyed by customer holds the latest record of each; the lake keeps every
    record, so the nightly reads the attributes as they were at each cut-off.
    ``forewarn import customers FILE --map mapping.yaml`` loads a CRM export (docs/import.md).
    """

    topic: ClassVar[str] = "customers"
    key_field: ClassVar[str] = "customer_id"
    #: The fields staff reach and route a customer by (the rest are attributes).
    contact_fields: ClassVar[tuple[str, ...]] = (
        "name",
        "phone",
        "email",
        "address",
        "territory",
        "preferred_channel",
    )

    customer_id: Id
    name: ShortText = ""
    phone: ShortText = ""
    email: ShortText = ""
    address: ShortText = ""
    territory: ShortText = ""
    preferred_channel: Channel | None = None
    numeric: dict[Id, Reading] = Field(default_factory=dict, max_length=200)
    categorical: dict[Id, ShortText] = Field(default_factory=dict, max_length=200)
    dates: dict[Id, IsoDate] = Field(default_factory=dict, max_length=200)


class MaintenanceVisit(Event):
    """A technician's visit as the field-service system recorded it (``event_time``: when it
    started). ``outcome`` ``fixed`` or ``replaced`` closes the device's open visit task as
    fixed, ``no_fault_found`` closes it so, ``not_fixed`` leaves it open with a note
    (``outreach.crud.tasks.apply_maintenance``). ``forewarn import maintenance`` loads a log
    (docs/import.md)."""

    topic: ClassVar[str] = "maintenance"
    key_field: ClassVar[str] = "device_id"

    visit_id: Id
    device_id: Id
    customer_id: Id
    kind: Literal["inspection", "repair", "replacement", "firmware_update", "other"] = "repair"
    outcome: Literal["fixed", "replaced", "no_fault_found", "not_fixed"] | None = None
    ended_at: Instant | None = None
    technician: ShortText = ""
    note: Text = ""


#: Partitions of every topic but model-updates (which has one, read whole by every worker).
#: Faust tables are co-partitioned with their source topics, so this is one number for all.
PARTITIONS = 4


def visit_key(device_id: str) -> str:
    """Dedup key of a device-fault alert: one open visit per device, whatever the signal."""
    return f"visit:{device_id}"


def retention_key(customer_id: str) -> str:
    """Dedup key of a churn-risk alert: one open retention call per customer."""
    return f"retention:{customer_id}"


def feedback_key(ticket_id: str) -> str:
    """Dedup key of a negative-feedback alert: one reply per ticket."""
    return f"feedback:{ticket_id}"


#: Source topics the worker consumes; each maps schema_version -> contract.
INPUT_TOPICS: tuple[str, ...] = ("device-telemetry", "orders", "tickets")

SCHEMAS: dict[str, dict[int, type[Event]]] = {
    cls.topic: {cls.model_fields["schema_version"].default: cls}
    for cls in (
        DeviceTelemetry,
        Order,
        Ticket,
        Alert,
        CustomerSignal,
        OutreachTask,
        DeadLetter,
        ModelUpdated,
        CustomerValue,
        CustomerAttributes,
        MaintenanceVisit,
    )
}


class InvalidEvent(ValueError):
    """Raised by :func:`decode`; the message is the dead-letter reason."""


def encode(event: Event) -> bytes:
    """Serialize ``event`` to the JSON bytes that go on the wire."""
    return event.model_dump_json().encode()


def decode(
    topic: str, raw: bytes | None, now: datetime | None = None, *, fast: bool = True
) -> Event:
    """Validate raw message bytes from ``topic`` into its contract.

    ``now`` is the receiver's clock (default: this machine's): an event whose ``event_time``
    is more than ``MAX_AHEAD`` ahead of it is refused as "from the future", so that it never
    moves a detector's clock (silence checks, lateness) or a lake partition. Readings in the
    usual shape take a fast path (``forewarn.fast_decode``, 2.4x faster) that gives the same
    events; ``fast=False`` takes the full path for every message (tests compare the two).

    Raises
    ------
    InvalidEvent
        With a one-line reason: empty or oversized message, bad JSON, unknown topic,
        missing or unknown schema version, missing or invalid fields (the first few pydantic
        errors), an event time from the future or before the floor.
    """
    versions = SCHEMAS.get(topic)
    if versions is None:
        raise InvalidEvent(f"no contract for topic {topic!r}")
    if not raw:
        raise InvalidEvent("empty message")
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"message of {len(raw)} bytes exceeds the {MAX_EVENT_BYTES} limit")
    event = None
    if fast and topic == DeviceTelemetry.topic:
        event = fast_decode.fast_reading(raw)
    if event is None:
        event = _validated(topic, versions, raw)
    ahead = event.event_time - (now or datetime.now(UTC))
    if ahead > MAX_AHEAD:
        raise InvalidEvent(
            f"from the future: event_time {event.event_time.isoformat()} is "
            f"{ahead.total_seconds() / 3600:,.1f} h ahead of this worker's clock "
            f"(bound {MAX_AHEAD.total_seconds() / 3600:g} h)"
        )
    return event


def _validated(topic: str, versions: dict[int, type[Event]], raw: bytes) -> Event:
    """The full path of :func:`decode`: JSON, schema version, the pydantic contract."""
    try:
        # JSON on the wire is UTF-8 (RFC 8259, 8.1): decoding it ourselves skips json's
        # encoding sniffing, a quarter of json.loads on a reading.
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad JSON and UTF-8 and also integers of more than 4,300 digits,
        # which Python refuses to parse (found by tests/forewarn/test_fuzz_events.py).
        raise InvalidEvent(f"not JSON: {str(exc)[:300]}") from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(data).__name__}")
    known = ", ".join(map(str, versions))
    if "schema_version" not in data:
        raise InvalidEvent(
            f"schema_version missing for topic {topic!r}: it is required (known: {known})"
        )
    version = data["schema_version"]
    # type() and not isinstance(): true is an int to Python, not a schema version.
    contract = versions.get(version) if type(version) is int else None
    if contract is None:
        raise InvalidEvent(
            f"unknown schema_version {_printable(repr(version))[:40]} for topic {topic!r} "
            f"(known: {known})"
        )
    try:
        return contract.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_printable('.'.join(map(str, e['loc'])))[:80] or '<root>'}: {_printable(e['msg'])}"
            for e in exc.errors()[:5]
        )
        raise InvalidEvent(f"invalid {contract.__name__}: {problems}") from None
    except Exception as exc:  # a validator we did not foresee: still a reason, never a crash
        raise InvalidEvent(f"invalid {contract.__name__}: {_printable(repr(exc))[:300]}") from None


def _printable(text: str) -> str:
    """Field names come from the producer: escape control characters so a reason stays one
    log line (a name with a newline could forge log entries)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def event_date(event: Event) -> str:
    """The lake partition (UTC date of the event time) an event belongs to. ``isoformat``
    of the date: strftime took 1.5 us per event of the device agent's archive (0.14 here);
    the same text for every year the contract allows (EVENT_TIME_FLOOR on)."""
    return event.event_time.date().isoformat()


# Last: the fast path imports this module (an import inside ``decode`` was 13% of validation).
from forewarn import fast_decode  # noqa: E402
