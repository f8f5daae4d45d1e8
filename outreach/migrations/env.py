"""Alembic environment: runs on the connection ``outreach.migrate.upgrade`` hands over, or on
``sqlalchemy.url`` / ``FOREWARN_DATABASE_URL`` when called from the alembic command line."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from outreach.models import Base

target_metadata = Base.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ["FOREWARN_DATABASE_URL"]
    engine = create_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
