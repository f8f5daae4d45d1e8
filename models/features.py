"""Point-in-time churn features and labels from the event lake.

The features are the stream's own (:data:`models.customer_state.FEATURES`, computed by
the same :class:`CustomerState`), so a model trained here scores the stream's features without
skew. For each cut-off, a customer's features use only events before the cut-off; the label is
whether they cancel within ``horizon_days`` after it. Customers who cancelled before a cut-off
are not rows of it.

:func:`features_from_lake` runs the same per-customer replay over a lake of any size: events
are read as Arrow columns (compact), split into chunks of customers, and each chunk's columns
are replayed through the same ``CustomerState`` methods (without an event object per row:
:func:`histories_of`) in its own forked process. Python objects exist for one chunk at a
time, the lake only as the Arrow columns the replay reads (replaying all 1.7M events of 100,000
customers as objects at once peaked at 3.97 GiB; 1M customers would have needed ~38 GiB), and
both cores work. One implementation of the features, so batch and stream cannot drift apart.

Across machines the same build is split into shards of customers (:func:`plan_shards`, then
:func:`features_of_shard` per shard, anywhere, then :func:`join_shards`): each shard reads only
its customers' events from the lake (an id range pushed down to Parquet), so its memory is
bounded by its size, and every shard uses the plan's cut-offs and data end, so the joined
rows are those of the one-machine build.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from forewarn.events import SCHEMAS, Alert, Event, Order, Ticket
from forewarn.lake import lake_days
from forewarn.settings import FEATURE_CHUNK_CUSTOMERS
from models.customer_attributes import with_attributes
from models.customer_state import FEATURES, CustomerState

LABEL = "churned"
CUSTOMER_TOPICS = ("orders", "tickets", "alerts")
#: Customers replayed per chunk (FOREWARN_FEATURE_CHUNK_CUSTOMERS, forewarn.settings).
CHUNK_CUSTOMERS = FEATURE_CHUNK_CUSTOMERS

log = logging.getLogger(__name__)


def read_customer_events(
    lake_dir: Path, start: date | None = None, end: date | None = None
) -> list[Event]:
    """Orders, tickets and device-fault alerts from the lake, in event-time order."""
    events = [
        e
        for topic, table in read_customer_tables(lake_dir, start, end).items()
        for e in to_events(topic, table)
    ]
    events.sort(key=lambda e: e.event_time)
    return events


#: The columns ``CustomerState.observe`` reads, per topic: reading only these keeps ticket
#: texts and alert evidence out of memory.
OBSERVED_COLUMNS: dict[str, list[str]] = {
    "orders": ["customer_id", "status", "amount"],
    "tickets": ["customer_id", "ticket_id", "contact_number", "category", "csat", "nps", "status"],
    "alerts": ["customer_id", "kind", "device_id"],
}


def read_customer_tables(
    lake_dir: Path,
    start: date | None = None,
    end: date | None = None,
    columns: dict[str, list[str]] | None = None,
    rows: ds.Expression | None = None,
    deduplicate: bool = True,
) -> dict[str, pa.Table]:
    """The lake's orders, tickets and device-fault alerts as Arrow tables, by topic (with
    ``event_id``, ``event_time`` and the ``columns`` given per topic; default all), the rows
    ``rows`` holds for when given (a shard's customers); ``deduplicate`` as in
    ``forewarn.lake.read_events`` (without it, no ``event_id`` unless asked for)."""
    from forewarn.lake import read_events

    kept = ["event_id", "event_time"] if deduplicate else ["event_time"]
    tables = {
        t: read_events(
            lake_dir,
            t,
            start=start,
            end=end,
            columns=None if columns is None else [*kept, *columns[t]],
            rows=rows,
            deduplicate=deduplicate,
        )
        for t in CUSTOMER_TOPICS
    }
    alerts = tables["alerts"]
    tables["alerts"] = alerts.filter(pc.equal(alerts["kind"], "device_fault"))
    return tables


def to_events(topic: str, table: pa.Table) -> list[Event]:
    """Rows of one topic's table as its contract's events (trusted: they passed intake)."""
    contract = SCHEMAS[topic][1]
    rows = table.to_pylist()
    if topic == "alerts" and "evidence" in table.column_names:
        for row in rows:
            row["evidence"] = {}  # the features need the device, not the evidence
    return [contract.model_construct(**row) for row in rows]


#: One event as the replay applies it: (epoch seconds, a ``CustomerState`` method taking the
#: state, the time and the arguments, those arguments).
Call = tuple[float, Callable[..., None], tuple[Any, ...]]


def _observe(state: CustomerState, t: float, event: Event) -> None:
    state.observe(event)


def _is_cancellation(call: Call) -> bool:
    _, method, args = call
    if method is _observe:
        event = args[0]
        return isinstance(event, Ticket) and event.category == "cancellation"
    return method is CustomerState.observe_ticket and args[2] == "cancellation"


def build_features(
    events: Iterable[Event],
    cutoffs: Sequence[datetime],
    horizon_days: int = 30,
    data_end: datetime | None = None,
) -> pd.DataFrame:
    """One row per (customer, cut-off): ``FEATURES`` as of the cut-off and the label.

    ``events`` must be in event-time order. ``data_end`` is where the data ends (default: the
    last event's time); a label is complete when its window ends by then. Returns columns
    customer_id, cutoff, the features, ``churned`` (bool) and ``label_complete`` (the row can
    be used for training).
    """
    by_customer: dict[str, list[Call]] = defaultdict(list)
    last_time = None
    for e in events:
        if isinstance(e, Order | Ticket | Alert):
            by_customer[e.customer_id].append((e.event_time.timestamp(), _observe, (e,)))
            last_time = e.event_time
    return replay(by_customer, cutoffs, horizon_days, data_end or last_time)


def replay(
    histories: dict[str, list[Call]],
    cutoffs: Sequence[datetime],
    horizon_days: int,
    data_end: datetime | None,
) -> pd.DataFrame:
    """:func:`build_features`' rows from each customer's calls in event-time order."""
    horizon = timedelta(days=horizon_days)
    # Event times are epoch seconds of microsecond datetimes: the floats order exactly as the
    # datetimes do (a microsecond is > 4 float steps at today's epoch), and the cut-offs'
    # floats are those of the datetimes.
    cuts = [(c, c.timestamp(), (c + horizon).timestamp()) for c in sorted(cutoffs)]
    rows = []
    for customer_id, history in histories.items():
        cancelled = [call[0] for call in history if _is_cancellation(call)]
        state, i = CustomerState(), 0
        for cutoff, at, window_end in cuts:
            while i < len(history) and history[i][0] < at:
                t, method, args = history[i]
                method(state, t, *args)
                i += 1
            if i == 0 or any(t < at for t in cancelled):
                continue  # not a customer yet, or already gone
            features = state.features(at=at)
            churned = any(at <= t < window_end for t in cancelled)
            rows.append(
                {
                    "customer_id": customer_id,
                    "cutoff": cutoff,
                    **features,
                    LABEL: churned,
                    "label_complete": data_end is not None and cutoff + horizon <= data_end,
                }
            )
    columns = ["customer_id", "cutoff", *FEATURES, LABEL, "label_complete"]
    return pd.DataFrame(rows, columns=columns)


#: How each topic's rows reach ``CustomerState`` in the lake's replay: the method, and the
#: columns it takes (``OBSERVED_COLUMNS`` reads them).
REPLAYED: dict[str, tuple[Callable[..., None], list[str]]] = {
    "orders": (CustomerState.observe_order, ["status", "amount"]),
    "tickets": (
        CustomerState.observe_ticket,
        ["ticket_id", "contact_number", "category", "csat", "nps", "status"],
    ),
    "alerts": (CustomerState.observe_fault, ["device_id"]),
}


def histories_of(tables: dict[str, pa.Table]) -> dict[str, list[Call]]:
    """Each customer's calls from the lake's tables (device-fault alerts only, as
    :func:`read_customer_tables` gives them), in event-time order, ties in topic then row
    order: the order in which :func:`build_features` replays the same rows as events. No
    event objects: building one per row (``to_events``) was half the feature build's time."""
    seconds, customers, calls = [], [], []
    for topic, table in tables.items():
        method, columns = REPLAYED[topic]
        micros = table["event_time"].cast(pa.int64()).to_numpy()
        seconds.append(micros / 1e6)  # == datetime.timestamp(): exact microseconds / 10**6
        customers += table["customer_id"].to_pylist()
        arguments = zip(*(table[c].to_pylist() for c in columns), strict=True)
        calls += [(method, a) for a in arguments]
    times = np.concatenate(seconds) if seconds else np.empty(0)
    order = np.argsort(times, kind="stable")
    by_customer: dict[str, list[Call]] = defaultdict(list)
    for i, t in zip(order.tolist(), times[order].tolist(), strict=True):
        method, args = calls[i]
        by_customer[customers[i]].append((t, method, args))
    return by_customer


#: The columns a plan reads: who the customers are, and when their events happened.
PLANNED_COLUMNS: dict[str, list[str]] = {
    "orders": ["customer_id"],
    "tickets": ["customer_id"],
    "alerts": ["customer_id", "kind"],
}


@dataclass(frozen=True)
class FeatureShard:
    """The customers ``low <= customer_id < high`` of a feature build (``None``: unbounded),
    shard ``index`` of ``count``, with the build's cut-offs and data end (every shard uses the
    plan's, so the shards' rows line up with the one-machine build's).
    ``customers`` is how many the plan counted in it (a customer whose first event reaches
    the lake after the plan still lands in exactly one shard: the ranges cover every id)."""

    index: int
    count: int
    low: str | None
    high: str | None
    customers: int
    cutoffs: tuple[datetime, ...]
    data_end: datetime

    def rows(self) -> ds.Expression | None:
        """The Arrow filter of the shard's customers (``None``: everyone)."""
        field, term = ds.field("customer_id"), None
        if self.low is not None:
            term = field >= self.low
        if self.high is not None:
            term = field < self.high if term is None else term & (field < self.high)
        return term

    @property
    def label(self) -> str:
        """How people see the shard, e.g. in Airflow's list of mapped tasks."""
        ids = (f" from {self.low}" if self.low else "") + (
            f" before {self.high}" if self.high else ""
        )
        return f"shard {self.index + 1} of {self.count}: {self.customers:,} customers{ids}"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (an Airflow XCom)."""
        return {
            "index": self.index,
            "count": self.count,
            "low": self.low,
            "high": self.high,
            "customers": self.customers,
            "cutoffs": [c.isoformat() for c in self.cutoffs],
            "data_end": self.data_end.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureShard:
        return cls(
            index=int(data["index"]),
            count=int(data["count"]),
            low=data["low"],
            high=data["high"],
            customers=int(data["customers"]),
            cutoffs=tuple(datetime.fromisoformat(c) for c in data["cutoffs"]),
            data_end=datetime.fromisoformat(data["data_end"]),
        )


def _before(tables: dict[str, pa.Table], end: datetime) -> dict[str, pa.Table]:
    return {t: tb.filter(pc.less(tb["event_time"], pa.scalar(end))) for t, tb in tables.items()}


def customer_ids(tables: dict[str, pa.Table]) -> np.ndarray:
    """The distinct customer ids of the tables, sorted (an object array of str). Arrow's hash
    and sort: ``np.unique`` of the ids took 11% of a shard's build, sorting every event's id."""
    ids = _distinct_ids(tables)
    return ids.take(pc.sort_indices(ids)).to_numpy(zero_copy_only=False)


def _distinct_ids(tables: dict[str, pa.Table]) -> pa.Array:
    chunks = [c for tb in tables.values() for c in tb["customer_id"].chunks]
    return pc.drop_null(pc.unique(pa.chunked_array(chunks, pa.string())))


def plan_shards(
    lake_dir: Path, end: datetime, every_days: int = 7, shard_customers: int | None = None
) -> list[FeatureShard]:
    """Split the feature build of the lake's customer events before ``end`` into shards of
    ``shard_customers`` customers (by id order; ``None``: one shard), at the cut-offs
    :func:`cutoffs_until` ``end``. Reads only customer ids and event times. Raises
    ``ValueError`` if there are no events."""
    # Day by day, keeping each day's distinct ids and time bounds: memory follows the
    # customers and one day's events, not the history (17M events' ids took 1 GiB in one
    # read; 170M would not fit a worker). Copies of an event change neither the ids nor the
    # first and last times: not sought.
    stamps, distinct = [], []
    for day in lake_days(lake_dir, CUSTOMER_TOPICS, until=end.date()):
        tables = read_customer_tables(
            lake_dir,
            start=day,
            end=day + timedelta(days=1),
            columns=PLANNED_COLUMNS,
            deduplicate=False,
        )
        tables = _before(tables, end)
        stamps += [pc.min_max(tb["event_time"]) for tb in tables.values() if tb.num_rows]
        distinct.append(_distinct_ids(tables))
    if not stamps:
        raise ValueError(f"no customer events in {lake_dir} before {end}: nothing to learn from")
    first = min(m["min"].as_py() for m in stamps)
    cutoffs = tuple(cutoffs_until(first, end, every_days))
    data_end = max(m["max"].as_py() for m in stamps)
    ids = customer_ids({"days": pa.table({"customer_id": pa.chunked_array(distinct, pa.string())})})
    size = max(1, shard_customers or len(ids))
    starts = list(range(0, len(ids), size))
    return [
        FeatureShard(
            index=k,
            count=len(starts),
            low=None if k == 0 else str(ids[start]),
            high=None if k == len(starts) - 1 else str(ids[start + size]),
            customers=min(size, len(ids) - start),
            cutoffs=cutoffs,
            data_end=data_end,
        )
        for k, start in enumerate(starts)
    ]


def features_of_shard(
    lake_dir: Path,
    end: datetime,
    shard: FeatureShard,
    horizon_days: int = 30,
    chunk_customers: int = CHUNK_CUSTOMERS,
    processes: int | None = None,
) -> pd.DataFrame:
    """:func:`build_features` rows of the shard's customers (events before ``end``, the
    shard's cut-offs), ``chunk_customers`` at a time in up to ``processes`` forked processes
    (default: the CPU count; one process or one chunk forks nothing). Unsorted, without the
    CRM's attributes: :func:`join_shards` adds them once for all shards."""
    tables = read_customer_tables(
        lake_dir, end=end.date() + timedelta(days=1), columns=OBSERVED_COLUMNS, rows=shard.rows()
    )
    tables = _before(tables, end)
    ids = customer_ids(tables)
    chunks = max(1, -(-len(ids) // chunk_customers))
    value_set = pa.array(ids, type=pa.string())
    # Read by the forked workers (copy-on-write, nothing pickled but the chunk number).
    _SHARED["tables"] = {
        t: tb.append_column(
            "_chunk", pc.divide(pc.index_in(tb["customer_id"], value_set), chunk_customers)
        )
        for t, tb in tables.items()
    }
    _SHARED["replay"] = (list(shard.cutoffs), horizon_days, shard.data_end)
    processes = min(chunks, processes or os.cpu_count() or 1)
    log.info(
        "features of %d customers in %d chunks, %d processes (%s)",
        len(ids),
        chunks,
        processes,
        shard.label,
    )
    try:
        if processes == 1:
            frames = [_features_of_chunk(k) for k in range(chunks)]
        else:
            context = mp.get_context("fork")
            with ProcessPoolExecutor(processes, mp_context=context) as pool:
                frames = []
                for k, frame in enumerate(pool.map(_features_of_chunk, range(chunks)), 1):
                    frames.append(frame)
                    log.info("features: chunk %d of %d done", k, chunks)
    finally:
        _SHARED.clear()
    return pd.concat(frames, ignore_index=True)


def join_shards(frames: Iterable[pd.DataFrame], lake_dir: Path, end: datetime) -> pd.DataFrame:
    """The shards' rows as one table sorted by customer then cut-off, with the customers'
    imported attributes as of each cut-off (``crm_*``; none without records)."""
    table = pd.concat(list(frames), ignore_index=True)
    table = table.sort_values(["customer_id", "cutoff"], ignore_index=True)
    return with_attributes(table, lake_dir, end)


def features_from_lake(
    lake_dir: Path,
    end: datetime,
    every_days: int = 7,
    horizon_days: int = 30,
    chunk_customers: int = CHUNK_CUSTOMERS,
    processes: int | None = None,
    shard_customers: int | None = None,
) -> pd.DataFrame:
    """:func:`build_features` on the lake's customer events before ``end``, at the cut-offs
    :func:`cutoffs_until` ``end``, chunk by chunk, with the customers' imported attributes as
    of each cut-off (``models.customer_attributes``) when the lake has any: the plan, every
    shard in this process one after the other, and the join.

    Rows are those of ``build_features(events, cutoffs)`` on the same events (same values,
    sorted by customer then cut-off), whatever the shard and chunk sizes. Raises
    ``ValueError`` if there are no events.
    """
    shards = plan_shards(lake_dir, end, every_days, shard_customers)
    frames = (
        features_of_shard(lake_dir, end, s, horizon_days, chunk_customers, processes)
        for s in shards
    )
    return join_shards(frames, lake_dir, end)


_SHARED: dict[str, Any] = {}


def _features_of_chunk(k: int) -> pd.DataFrame:
    cutoffs, horizon_days, data_end = _SHARED["replay"]
    tables = {
        topic: table.filter(pc.equal(table["_chunk"], k))
        for topic, table in _SHARED["tables"].items()
    }
    # Millions of small acyclic tuples and lists: the collector's passes over them cost
    # without freeing anything.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return replay(histories_of(tables), cutoffs, horizon_days, data_end)
    finally:
        if enabled:
            gc.enable()


def weekly_cutoffs(first: datetime, last: datetime, every_days: int = 7) -> list[datetime]:
    """Cut-offs at midnight UTC every ``every_days`` from a week after ``first``."""
    start = first.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=7)
    out = []
    while start <= last:
        out.append(start)
        start += timedelta(days=every_days)
    return out


def cutoffs_until(first: datetime, end: datetime, every_days: int = 7) -> list[datetime]:
    """Cut-offs every ``every_days`` back from ``end`` while more than a week after ``first``
    (the nightly's: the last one is tonight's), oldest first."""
    out, cut = [], end
    while cut > first + timedelta(days=7):
        out.append(cut)
        cut -= timedelta(days=every_days)
    return sorted(out)
