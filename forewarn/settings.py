"""Settings read from the environment, with embedded defaults for a laptop.

Every variable is ``FOREWARN_<NAME>``; docs/operations.md lists them. Constructor arguments are
the only configuration: the worker, the CLI and the tests build a ``Settings`` and pass it down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_HOME = Path("var")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"FOREWARN_{name}", default)


@dataclass(frozen=True)
class Settings:
    """Where things live and how to reach them.

    Attributes
    ----------
    home : Path
        Root of everything the local stack writes (lake, database, broker data, reports).
    kafka_bootstrap : str
        ``host:port`` of a Kafka broker.
    database_url : str
        SQLAlchemy URL of the outreach store; SQLite under ``home`` by default.
    lake_dir : Path
        Root of the event lake (Parquet, ``topic=<t>/date=<YYYY-MM-DD>/``).
    cache_dir : Path
        Machine-wide download cache (Kafka jars), shared by every checkout.
    group_id : str
        Kafka consumer group of the workers; workers sharing it share the partitions.
    worker_host, worker_port : str, int
        Where a worker serves ``/metrics`` and ``/healthz`` (port 0: not at all).
    """

    home: Path = field(default_factory=lambda: Path(_env("HOME", str(DEFAULT_HOME))))
    kafka_bootstrap: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    database_url: str = field(default_factory=lambda: _env("DATABASE_URL", ""))
    lake_dir: Path = field(default_factory=lambda: Path(_env("LAKE_DIR", "")))
    cache_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("FOREWARN_CACHE", str(Path.home() / ".cache" / "forewarn"))
        )
    )
    group_id: str = field(default_factory=lambda: _env("GROUP_ID", "forewarn"))
    #: The worker's HTTP endpoints (/metrics, /healthz); port 0 turns them off.
    worker_host: str = field(default_factory=lambda: _env("WORKER_HOST", "127.0.0.1"))
    worker_port: int = field(default_factory=lambda: int(_env("WORKER_PORT", "6066")))

    def __post_init__(self) -> None:
        # Derived defaults follow ``home`` so one variable moves the whole local stack.
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'outreach.db'}")
        if not str(self.lake_dir) or str(self.lake_dir) == ".":
            object.__setattr__(self, "lake_dir", self.home / "lake")

    @property
    def models_dir(self) -> Path:
        """The model registry: one folder per model name (``forewarn.registry``), written by
        the nightly and the only place workers load models from."""
        return self.home / "models"

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.rsplit(":", 1)[1])

    def with_home(self, home: Path) -> Settings:
        """A copy whose derived paths (database, lake) live under ``home``."""
        return replace(self, home=home, database_url="", lake_dir=Path(""))
