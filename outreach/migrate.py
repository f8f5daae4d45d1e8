"""Schema migrations with Alembic, and the one place they run.

:func:`migrate` brings the database at a URL to the latest revision (idempotent). It runs from
``forewarn outreach migrate``, once when the service starts (its lifespan), and from the
writers that may start before the service (the streams sink, the nightly, the CLI's token and
import commands). Opening a :class:`~outreach.store.TaskStore` or a session never migrates.

``alembic -c outreach/alembic.ini revision --autogenerate`` makes new revisions after a change
to ``outreach/models.py``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from outreach.db import make_engine

HERE = Path(__file__).parent
#: PostgreSQL advisory lock key held while migrating, so that replicas starting together
#: migrate one after the other instead of racing on the same DDL (any constant will do).
MIGRATION_LOCK = 0x466F7265  # "Fore"


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` to ``revision``, in one transaction."""
    cfg = config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (the latest by default)."""
    engine = make_engine(url)
    try:
        upgrade(engine, revision)
    finally:
        engine.dispose()
