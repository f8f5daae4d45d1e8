"""The database edge: engines, sessions, and a timezone-aware datetime column type.

Everything else takes a :class:`~sqlalchemy.orm.Session` it is given (``outreach/crud``) and
never builds an engine of its own. Migrations are not run here: see :mod:`outreach.migrate`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, create_engine, event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A ``TIMESTAMP WITH TIME ZONE`` that always hands back an aware UTC datetime.

    PostgreSQL keeps the offset; SQLite has no such type and stores text without one, so a
    value read back was naive (15 ``aware()`` calls patched that, issue 14). Values are
    converted to UTC on the way in, so SQLite's text holds UTC, and marked UTC on the way out.
    A naive value written is taken to be UTC already, as everything stored here is.

    Examples
    --------
    >>> from datetime import timedelta, timezone
    >>> col = UTCDateTime()
    >>> paris = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    >>> col.process_bind_param(paris, None)
    datetime.datetime(2026, 3, 29, 1, 30, tzinfo=datetime.timezone.utc)
    >>> col.process_result_value(datetime(2026, 3, 29, 1, 30), None)
    datetime.datetime(2026, 3, 29, 1, 30, tzinfo=datetime.timezone.utc)
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect | None) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UTCDateTime takes a datetime, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so a worker and the web
    service can share one file.

    ``hide_parameters``: a database error's message would otherwise quote the statement's
    values (ticket text, names, IBANs), and the server logs that message with the traceback
    (issue 13: customer text must never reach the logs).
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (see below).
            conn.isolation_level = None
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # type: ignore[no-untyped-def]
            # pysqlite starts a transaction only at the first write, so a read-modify-write
            # loses concurrent updates (tests/outreach/test_store.py caught it). BEGIN IMMEDIATE
            # takes the write lock up front, as SELECT ... FOR UPDATE does on PostgreSQL.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (pages render after the write)."""
    return sessionmaker(engine, expire_on_commit=False)
