"""The database edge: datetime columns read back aware UTC on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from outreach.db import UTCDateTime
from outreach.models import TaskHistory
from tests.utils import factories

PARIS_SUMMER = timezone(timedelta(hours=2))


def test_datetimes_read_back_aware_utc_without_patching(any_store):
    when = datetime(2026, 3, 29, 3, 30, tzinfo=PARIS_SUMMER)
    task = any_store.upsert_alert(factories.alert(), now=when)
    stored = any_store.get(task.task_id)
    for value in (stored.created_at, stored.updated_at, stored.detected_at, stored.due_at):
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert stored.created_at == when and stored.created_at.hour == 1, "kept as UTC"
    with any_store.sessions() as session:
        (at,) = session.scalars(select(TaskHistory.at)).all()
    assert at == when and at.tzinfo == UTC


def test_a_naive_datetime_written_is_taken_as_utc(any_store):
    naive = datetime(2026, 1, 1, 12, 0)
    task = any_store.upsert_alert(factories.alert(), now=naive)
    assert any_store.get(task.task_id).created_at == naive.replace(tzinfo=UTC)


def test_only_datetimes_are_accepted():
    with pytest.raises(TypeError, match="UTCDateTime takes a datetime, got str"):
        UTCDateTime().process_bind_param("2026-01-01", None)
