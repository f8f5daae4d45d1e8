"""Schema migrations with Alembic: ``upgrade(engine)`` brings any database to the latest
revision (idempotent); ``alembic -c outreach/alembic.ini revision --autogenerate`` makes new
ones after a change to ``outreach/models.py``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

HERE = Path(__file__).parent


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
