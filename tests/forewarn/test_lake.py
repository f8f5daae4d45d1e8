"""The event lake: partitions by topic and event date, atomic files, duplicates dropped."""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from forewarn.events import SCHEMAS
from forewarn.lake import LakeWriter, arrow_schema, read_events
from tests.utils import factories


def test_write_partitions_by_topic_and_event_date(tmp_path):
    events = [factories.telemetry(i) for i in range(0, 48, 6)] + [factories.order()]
    files = LakeWriter(tmp_path).write(events, batch_id="b1")
    assert sorted(str(p.relative_to(tmp_path)) for p in files) == [
        "topic=device-telemetry/date=2026-01-05/part-b1.parquet",
        "topic=device-telemetry/date=2026-01-06/part-b1.parquet",
        "topic=orders/date=2026-01-05/part-b1.parquet",
    ]
    assert not list(tmp_path.rglob(".tmp-*")), "temporary files must be renamed away"


def test_read_back_equals_what_was_written(tmp_path):
    events = [factories.telemetry(i, error_codes=["E42"] if i == 3 else []) for i in range(10)]
    LakeWriter(tmp_path).write(events)
    table = read_events(tmp_path, "device-telemetry")
    assert table.num_rows == 10
    rows = table.to_pylist()
    assert rows[3]["error_codes"] == ["E42"]
    assert dict(rows[0]["metrics"]) == {"vibration_mm_s": 2.0, "current_a": 6.0}
    assert rows[0]["event_time"] == events[0].event_time


def test_replayed_batches_are_read_once(tmp_path):
    events = [factories.telemetry(i) for i in range(5)]
    writer = LakeWriter(tmp_path)
    writer.write(events)
    writer.write(events[2:])  # a batch written again after a crash
    assert read_events(tmp_path, "device-telemetry").num_rows == 5


def test_reads_that_copies_cannot_change_may_skip_finding_them(tmp_path):
    events = [factories.telemetry(i) for i in range(5)]
    LakeWriter(tmp_path).write(events)
    LakeWriter(tmp_path).write(events[:2])  # a replayed batch
    copies = read_events(tmp_path, "device-telemetry", columns=["device_id"], deduplicate=False)
    assert copies.num_rows == 7 and copies.column_names == ["device_id"]
    once = read_events(tmp_path, "device-telemetry", columns=["device_id"])
    assert once.num_rows == 5


def test_date_range_filter(tmp_path):
    LakeWriter(tmp_path).write([factories.telemetry(i) for i in range(0, 72, 12)])
    start = date(2026, 1, 6)
    table = read_events(tmp_path, "device-telemetry", start=start, end=start + timedelta(days=1))
    assert table.num_rows == 2


def test_empty_topic_reads_as_empty_table_with_schema(tmp_path):
    table = read_events(tmp_path, "tickets")
    assert table.num_rows == 0
    assert table.schema == arrow_schema(SCHEMAS["tickets"][1])


def test_free_form_evidence_is_stored_as_json_text(tmp_path):
    (path,) = LakeWriter(tmp_path).write([factories.alert()])
    assert pq.read_table(path).column("evidence").to_pylist() == [
        '{"signals": ["drift:vibration_mm_s"]}'
    ]


def test_every_contract_reads_back_as_it_was_written(tmp_path):
    """The archive builds columns from attributes (not model_dump): every field of every
    contract, enums, maps, nulls and free-form JSON included, must come back as it went in."""
    events = factories.one_of_each()
    LakeWriter(tmp_path).write(events)
    for event in events:
        (row,) = read_events(tmp_path, event.topic).to_pylist()
        for name, written in event.model_dump(mode="python").items():
            stored, value = row[name], written
            if isinstance(value, dict) and pa.types.is_map(
                arrow_schema(type(event)).field(name).type
            ):
                stored = dict(stored)
            elif isinstance(value, dict):
                stored = json.loads(stored)
                value = json.loads(json.dumps(written, default=str))
            assert stored == value, f"{event.topic}.{name}: {stored!r} != {value!r}"


WRITER = """
import sys
from datetime import timedelta
from pathlib import Path
from forewarn.lake import LakeWriter
from tests.utils import factories
writer = LakeWriter(Path(sys.argv[1]))
# One day, one file per write: 20,000 readings a second apart.
batch = [factories.telemetry(event_id=f"D00001-{i}", event_time=factories.T0 + timedelta(seconds=i))
         for i in range(20000)]
print("ready", flush=True)
while True:
    writer.write(batch)
"""


def test_a_writer_killed_mid_write_leaves_only_whole_files(tmp_path):
    """kill -9 a process that writes large batches while this one reads the lake: every file
    a reader can see opens, and the killed write's temporary file stays invisible."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    reads, deadline = 0, time.monotonic() + 4
    while time.monotonic() < deadline:
        for path in tmp_path.glob("topic=*/date=*/*.parquet"):
            if not path.name.startswith("."):
                assert pq.ParquetFile(path).metadata.num_rows == 20000
                reads += 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    visible = [p for p in tmp_path.glob("topic=*/date=*/*.parquet") if not p.name.startswith(".")]
    assert reads > 0 and visible
    for path in visible:
        assert pq.ParquetFile(path).metadata.num_rows == 20000
    table = read_events(tmp_path, "device-telemetry", columns=["event_id"])
    assert table.num_rows == 20000  # every batch is the same events: read once


def test_rows_outside_the_calendar_written_before_the_bound_are_skipped(tmp_path):
    """A lake written before the contract bounded event time can hold a ticket dated
    9999-12-31T23:59:59-14:00 (year 10000 in UTC): every page reading tickets returned 500 until
    the file was deleted by hand. Readers now skip such rows (and the timeline still works)."""
    good = factories.ticket()
    LakeWriter(tmp_path).write([good])
    schema = arrow_schema(SCHEMAS["tickets"][1])
    row = {**good.model_dump(mode="python"), "event_id": "bad-1"}
    bad = pa.Table.from_pylist([row], schema=schema)
    # Year 10000 in microseconds since the epoch: what a writer without the bound stored.
    year_10000 = pa.array([253402318799000000 + 14 * 3600 * 10**6], pa.timestamp("us", tz="UTC"))
    bad = bad.set_column(schema.get_field_index("event_time"), "event_time", year_10000)
    folder = tmp_path / "topic=tickets" / "date=9999-12-31"
    folder.mkdir(parents=True)
    pq.write_table(bad, folder / "part-old.parquet")
    rows = read_events(tmp_path, "tickets").to_pylist()  # converting year 10000 raised here
    assert [r["event_id"] for r in rows] == [good.event_id]


def _day_files(root: Path, topic: str, day: str) -> list[Path]:
    return sorted((root / f"topic={topic}" / f"date={day}").glob("*.parquet"))


def _orders_of(customers: list[str], at, batch: int) -> list:
    return [
        factories.order(
            event_id=f"{c}-O{batch}-{k}",
            order_id=f"{c}-O{batch}",
            customer_id=c,
            status=("placed", "late")[k],
            event_time=at,  # both at one instant: their order is the files'
        )
        for c in customers
        for k in range(2)
    ]


def _by_customer(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["customer_id"], []).append(row)
    return out


def test_compaction_makes_one_sorted_file_and_changes_no_answer(tmp_path, monkeypatch):
    from forewarn import lake

    monkeypatch.setattr(lake, "COMPACT_ROW_GROUP", 8)
    at = factories.T0 + timedelta(hours=3)
    writer = LakeWriter(tmp_path)
    customers = [f"C{n:03d}" for n in (7, 3, 42, 11, 5, 30, 1, 19)]
    for batch in range(5):
        writer.write(_orders_of(customers[batch:] + customers[:batch], at, batch))
    writer.write(_orders_of(customers[:2], at, 0), batch_id="replayed")  # copies
    writer.write(_orders_of(customers[:2], at + timedelta(days=1), 9))  # the next day
    day = at.date().isoformat()
    before = read_events(tmp_path, "orders").to_pylist()
    copies_before = read_events(tmp_path, "orders", deduplicate=False).num_rows
    assert len(_day_files(tmp_path, "orders", day)) == 6

    done = lake.compact(tmp_path, ["orders", "tickets"], until=at.date())

    assert [(c.topic, c.day, c.files) for c in done] == [("orders", day, 6)]
    (path,) = _day_files(tmp_path, "orders", day)
    assert path.name.startswith(lake.COMPACTED_PREFIX)
    assert len(_day_files(tmp_path, "orders", (at + timedelta(days=1)).date().isoformat())) == 1
    # Each customer's events in the same order, ties at one instant included (the order of
    # different customers' ties is the files' and was never an answer).
    assert _by_customer(read_events(tmp_path, "orders").to_pylist()) == _by_customer(before)
    assert read_events(tmp_path, "orders", deduplicate=False).num_rows == copies_before
    # Row groups cover increasing customer ranges: a reader of some customers skips the rest.
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.names.index("customer_id")
    ranges = [
        (
            meta.row_group(g).column(column).statistics.min,
            meta.row_group(g).column(column).statistics.max,
        )
        for g in range(meta.num_row_groups)
    ]
    assert meta.num_row_groups > 1 and ranges == sorted(ranges)
    assert all(high <= low for (_, high), (low, _) in itertools.pairwise(ranges))
    # A compacted day and a day of one file are left alone by the next night.
    assert lake.compact(tmp_path, ["orders"], until=at.date() + timedelta(days=1)) == []


def test_a_file_written_after_a_compaction_is_compacted_the_next_night(tmp_path):
    from forewarn.lake import compact

    at = factories.T0
    writer = LakeWriter(tmp_path)
    writer.write(_orders_of(["C2", "C1"], at, 1))
    writer.write(_orders_of(["C3"], at, 2))
    compact(tmp_path, ["orders"], until=at.date())
    writer.write(_orders_of(["C0"], at, 3))  # a late event of the compacted day
    (done,) = compact(tmp_path, ["orders"], until=at.date())
    assert (done.files, done.rows) == (2, 8)
    assert [r["customer_id"] for r in pq.read_table(done.path).to_pylist()] == [
        "C0",
        "C0",
        "C1",
        "C1",
        "C2",
        "C2",
        "C3",
        "C3",
    ]


def test_a_reader_racing_a_compaction_reads_every_row_once(tmp_path, monkeypatch):
    """A reader lists a day's files, a compaction replaces them, then the reader opens them:
    it lists again and reads the compacted file (a real compaction between the two steps)."""
    from forewarn import lake

    at = factories.T0
    writer = LakeWriter(tmp_path)
    for batch in range(3):
        writer.write(_orders_of([f"C{batch}"], at, batch))
    real_dataset, raced = lake.ds.dataset, []

    def dataset_after_a_compaction(paths, **kwargs):
        if not raced:
            raced.append(None)  # the compaction's own read goes to the real dataset
            raced[0] = lake.compact_day(tmp_path, "orders", at.date())
        return real_dataset(paths, **kwargs)

    monkeypatch.setattr(lake.ds, "dataset", dataset_after_a_compaction)
    table = lake.read_events(tmp_path, "orders")
    assert raced[0].files == 3 and raced[0].path.exists()
    assert sorted(table["event_id"].to_pylist()) == sorted(
        e.event_id for b in range(3) for e in _orders_of([f"C{b}"], at, b)
    )
