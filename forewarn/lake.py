"""The event lake: Parquet files partitioned by topic and event date.

Layout: ``<root>/topic=<topic>/date=<YYYY-MM-DD>/<batch>.parquet`` (Hive partitioning, so
pyarrow, pandas, DuckDB and Spark read it as one table). Files are written to a temporary name
in the same folder and renamed, so a reader never sees a half-written file. Writers are
at-least-once (a batch replayed after a crash is written again); readers drop duplicates by
``event_id``, which :func:`read_events` does.
"""

from __future__ import annotations

import functools
import json
import os
import types
import typing
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import AwareDatetime

from forewarn.events import EVENT_TIME_CEILING, EVENT_TIME_FLOOR, SCHEMAS, Event, event_date

_SCALARS: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: pa.timestamp("us", tz="UTC"),
}


def _arrow_type(annotation: Any) -> pa.DataType:
    """Map a pydantic field annotation to an Arrow type (JSON text for free-form dicts)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _arrow_type(args[0])
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _arrow_type(inner)
    if origin is Literal:
        return _SCALARS[type(args[0])]
    if origin is list:
        return pa.list_(_arrow_type(args[0]))
    if origin is dict:
        value = args[1]
        if value is Any:
            return pa.string()  # free-form evidence: stored as JSON text
        return pa.map_(_arrow_type(args[0]), _arrow_type(value))
    if annotation is AwareDatetime:
        return _SCALARS[datetime]
    if isinstance(annotation, type) and issubclass(annotation, str):
        return pa.string()  # StrEnum
    if isinstance(annotation, type) and annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"no Arrow type for annotation {annotation!r}")


@functools.cache
def arrow_schema(contract: type[Event]) -> pa.Schema:
    """The Parquet schema of one contract, derived from its fields (one definition)."""
    return pa.schema(
        [pa.field(name, _arrow_type(f.annotation)) for name, f in contract.model_fields.items()]
    )


def _table(events: Sequence[Event], schema: pa.Schema) -> pa.Table:
    """Events of one contract as an Arrow table, built column by column from attributes.

    Maps go to Arrow as (key, value) pairs, free-form dicts as sorted JSON text. Column by
    column rather than ``model_dump`` per event: on 100,000 readings 3.5 us per event against
    16.6 (the archive writes every event once, so this was most of its cost).
    """
    columns: dict[str, list[Any]] = {}
    json_text = _json_text_fields(type(events[0]))
    for field in schema:
        # The name once per column: pyarrow's ``field.name`` makes a new str on every call,
        # which in the comprehension was 2.5 of the 5.1 us per reading of this function.
        name = field.name
        values = [getattr(e, name) for e in events]
        if pa.types.is_map(field.type):
            values = [None if v is None else list(v.items()) for v in values]
        elif name in json_text:
            values = [
                None if v is None else json.dumps(v, sort_keys=True, default=str) for v in values
            ]
        columns[name] = values
    return pa.Table.from_pydict(columns, schema=schema)


@functools.cache
def _json_text_fields(contract: type[Event]) -> frozenset[str]:
    """Fields stored as JSON text: free-form ``dict[str, Any]`` (see :func:`_arrow_type`)."""
    schema = arrow_schema(contract)
    return frozenset(
        name
        for name, f in contract.model_fields.items()
        if typing.get_origin(f.annotation) is dict and pa.types.is_string(schema.field(name).type)
    )


def write_parquet_atomic(table: pa.Table, path: Path, row_group_size: int | None = None) -> Path:
    """Write ``table`` to ``path`` via a temporary file and a rename: readers see the whole
    file or none of it (the rename is atomic on POSIX within one folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}.parquet"
    pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)
    os.replace(tmp, path)
    return path


class ArrowEvents:
    """Events as Arrow tables by topic and event date, converted as they are added.

    A writer that holds events for a while (the device agent's checkpoint) converts each run
    when it comes, so storing them is only Parquet's work (done outside the GIL, in a thread:
    ``streams.dead_letters.archive``): converting a checkpoint's readings at once held the
    event loop ~4-7 us a reading, up to ~35 ms a checkpoint at 5,000 readings/s, which every
    alert waiting behind it paid (docs/benchmarks.md).
    """

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self.pieces: defaultdict[tuple[str, str], list[pa.Table]] = defaultdict(list)
        self.count = 0
        self.extend(events)

    def extend(self, events: Iterable[Event] | ArrowEvents) -> None:
        """Add ``events``, converted now (or already converted)."""
        if isinstance(events, ArrowEvents):
            for key, pieces in events.pieces.items():
                self.pieces[key].extend(pieces)
            self.count += events.count
            return
        groups: dict[tuple[str, str], list[Event]] = defaultdict(list)
        for event in events:
            groups[(event.topic, event_date(event))].append(event)
        for (topic, day), group in groups.items():
            schema = arrow_schema(SCHEMAS[topic][group[0].schema_version])
            self.pieces[(topic, day)].append(_table(group, schema))
            self.count += len(group)

    def __len__(self) -> int:
        return self.count

    def tables(self) -> Iterable[tuple[str, str, pa.Table]]:
        """``(topic, day, table)`` for each topic and event date, in order."""
        for (topic, day), pieces in sorted(self.pieces.items()):
            yield topic, day, pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)


class LakeWriter:
    """Append events to the lake, one atomic Parquet file per topic, date and batch.

    Parameters
    ----------
    root : Path
        The lake folder (``Settings.lake_dir``).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def write(
        self, events: Iterable[Event] | ArrowEvents, batch_id: str | None = None
    ) -> list[Path]:
        """Write ``events`` and return the files written (one per topic and event date).

        ``batch_id`` names the files; give a deterministic one (for example the source
        partition and first offset) to make a replayed batch overwrite its first attempt.
        """
        arrow = events if isinstance(events, ArrowEvents) else ArrowEvents(events)
        batch = batch_id or uuid.uuid4().hex
        written = []
        for topic, day, table in arrow.tables():
            folder = self.root / f"topic={topic}" / f"date={day}"
            written.append(write_parquet_atomic(table, folder / f"part-{batch}.parquet"))
        return written


def read_events(
    root: Path,
    topic: str,
    start: date | None = None,
    end: date | None = None,
    columns: Sequence[str] | None = None,
    where: dict[str, str] | None = None,
    rows: ds.Expression | None = None,
    deduplicate: bool = True,
) -> pa.Table:
    """Read one topic's events with ``start <= date < end`` (both optional), deduplicated;
    ``where`` keeps rows whose columns equal the given values, ``rows`` those an Arrow
    expression holds for (both pushed down to Parquet).

    Returns an Arrow table (``.to_pandas()`` for a DataFrame) sorted by ``event_time``; an empty
    table with the contract's schema when nothing is there. With ``deduplicate=False``, every
    stored copy in file order: for answers that copies of an event cannot change (distinct
    ids, earliest and latest times), without the cost of finding them (17M events: the sort
    and the group-by over their ids took most of a minute and 4 GiB).
    """
    # A compaction (``compact_day``) may remove files between the listing and the read: the
    # rows are in its new file by then, so a second listing reads them all.
    for attempt in range(3):
        try:
            return _read_events(root, topic, start, end, columns, where, rows, deduplicate)
        except FileNotFoundError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _read_events(
    root: Path,
    topic: str,
    start: date | None,
    end: date | None,
    columns: Sequence[str] | None,
    where: dict[str, str] | None,
    rows: ds.Expression | None,
    deduplicate: bool,
) -> pa.Table:
    schema = current_schema(topic)
    folder = Path(root) / f"topic={topic}"
    files = sorted(p for p in folder.glob("date=*/*.parquet") if not p.name.startswith("."))
    if start is not None:
        files = [p for p in files if p.parent.name[5:] >= start.isoformat()]
    if end is not None:
        files = [p for p in files if p.parent.name[5:] < end.isoformat()]
    if not files:
        empty = schema.empty_table()
        return empty.select(list(columns)) if columns else empty
    dataset = ds.dataset([str(p) for p in files], schema=schema, format="parquet")
    cols = list(dict.fromkeys(["event_id", "event_time", *(columns or schema.names)]))
    # Rows outside the calendar of event time (written before the contract bounded it: a
    # ticket dated 9999-12-31T23:59:59-14:00 broke every page that read tickets) are skipped.
    condition = (ds.field("event_time") >= pa.scalar(EVENT_TIME_FLOOR)) & (
        ds.field("event_time") < pa.scalar(EVENT_TIME_CEILING)
    )
    for name, value in (where or {}).items():
        term = ds.field(name) == value
        condition = condition & term
    if rows is not None:
        condition = condition & rows
    if not deduplicate:
        return dataset.to_table(columns=list(columns) if columns else None, filter=condition)
    table = dataset.to_table(columns=cols, filter=condition)
    table = _drop_duplicate_ids(table)
    table = table.sort_by("event_time")
    return table.select(list(columns)) if columns else table


def _drop_duplicate_ids(table: pa.Table) -> pa.Table:
    ids = table.column("event_id")
    index = pa.array(range(len(ids)))
    first = pa.table({"event_id": ids, "i": index}).group_by("event_id").aggregate([("i", "min")])
    if first.num_rows == table.num_rows:
        return table
    return table.take(first.column("i_min").sort())


def current_schema(topic: str) -> pa.Schema:
    """The Parquet schema of ``topic``'s current contract version (readers read every stored
    version with it)."""
    versions = SCHEMAS[topic]
    return arrow_schema(versions[max(versions)])


#: Rows per row group of a compacted file. Sorted by customer, a group covers a narrow id
#: range, so a reader of some customers (a feature shard) skips the others' groups by their
#: statistics.
COMPACT_ROW_GROUP = 64_000
#: The column a compacted day's rows are sorted by, per topic (default ``customer_id`` where
#: the contract has one): the key readers select on.
COMPACT_SORT: dict[str, str] = {"device-telemetry": "device_id"}
COMPACTED_PREFIX = "part-compacted-"


@dataclass(frozen=True)
class Compaction:
    """What :func:`compact_day` did to one topic's day: files read, rows written."""

    topic: str
    day: str
    files: int
    rows: int
    path: Path | None


def compact_day(root: Path, topic: str, day: date) -> Compaction:
    """Rewrite one day of ``topic`` as one file sorted by its key (``COMPACT_SORT``), when it
    holds more than one file; every row kept, copies included (readers drop them).

    The stream writes a file per checkpoint (tens of thousands a day); a reader opens every
    one, and each of the nightly's feature shards read them all to find its customers (1M
    customers, 44,075 files: 9.6 s of a shard's 17.8 s). Rows of one key keep the order the
    files gave them (a reader's ties in event time stay as they were).

    Safe beside a writer: only the files listed are removed, after the new one is in place (a
    reader in between sees copies, which it drops; one that listed a removed file lists
    again: :func:`read_events`). Concurrent compactions of one day leave copies, never lose
    rows.
    """
    folder = Path(root) / f"topic={topic}" / f"date={day.isoformat()}"
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    if len(files) < 2:
        return Compaction(topic, day.isoformat(), len(files), 0, None)
    schema = current_schema(topic)
    table = ds.dataset([str(p) for p in files], schema=schema, format="parquet").to_table()
    key = COMPACT_SORT.get(topic, "customer_id")
    if key in schema.names:
        # Stable: rows of one key keep the order the files gave them.
        table = table.take(pc.sort_indices(table, [(key, "ascending", "at_end")]))
    path = folder / f"{COMPACTED_PREFIX}{uuid.uuid4().hex}.parquet"
    write_parquet_atomic(table, path, row_group_size=COMPACT_ROW_GROUP)
    for old in files:
        old.unlink(missing_ok=True)
    return Compaction(topic, day.isoformat(), len(files), table.num_rows, path)


def compact(root: Path, topics: Sequence[str], until: date) -> list[Compaction]:
    """:func:`compact_day` for every day of ``topics`` up to and including ``until`` that
    holds more than one file; the days compacted."""
    done = []
    for topic in topics:
        for day in lake_days(root, [topic], until):
            result = compact_day(root, topic, day)
            if result.path is not None:
                done.append(result)
    return done


def lake_days(root: Path, topics: Iterable[str], until: date) -> list[date]:
    """The event dates up to and including ``until`` for which the lake holds any of
    ``topics``, oldest first."""
    days = {
        date.fromisoformat(part.name.removeprefix("date="))
        for topic in topics
        for part in (Path(root) / f"topic={topic}").glob("date=*")
    }
    return sorted(d for d in days if d <= until)
