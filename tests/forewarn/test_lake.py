"""The event lake: partitions by topic and event date, atomic files, duplicates dropped."""

from __future__ import annotations

from datetime import date, timedelta

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
