"""Settings read from the environment, with embedded defaults for a laptop.

Every variable is ``FOREWARN_<NAME>``; docs/operations.md lists them. Constructor arguments are
the only configuration: the worker, the CLI and the tests build a ``Settings`` and pass it down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_HOME = Path("var")
#: Retention calls a day: the nightly's at-risk list is cut there (FOREWARN_RETENTION_CAPACITY).
RETENTION_CAPACITY = 25
#: Customers per chunk of the nightly's feature build (FOREWARN_FEATURE_CHUNK_CUSTOMERS): a
#: shard of 100,000 customers, its two workers included, peaked at 1.5 GiB at the simulator's
#: ~17 events per customer (docs/benchmarks.md).
FEATURE_CHUNK_CUSTOMERS = 25_000
#: Customers per mapped task of the nightly's feature build (FOREWARN_NIGHTLY_SHARD_CUSTOMERS):
#: each task reads only its customers' events, so its memory is bounded by this.
NIGHTLY_SHARD_CUSTOMERS = 100_000


def _env(name: str, default: str) -> str:
    return os.environ.get(f"FOREWARN_{name}", default)


def _secret(name: str) -> str:
    """A secret from ``FOREWARN_<NAME>`` or the file named by ``FOREWARN_<NAME>_FILE``."""
    path = os.environ.get(f"FOREWARN_{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(f"FOREWARN_{name}", "")


#: Kafka security protocols the clients speak (docs/operations.md, "Kafka authentication").
KAFKA_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")


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
    kafka_security_protocol : str
        ``PLAINTEXT`` (the local demo broker), ``SASL_PLAINTEXT`` or ``SASL_SSL``.
    kafka_sasl_mechanism : str
        ``SCRAM-SHA-512`` (docker-compose.yml's broker), ``SCRAM-SHA-256`` or ``PLAIN``.
    kafka_username, kafka_password : str
        This process's Kafka user; the password may come from ``FOREWARN_KAFKA_PASSWORD_FILE``.
    kafka_ssl_cafile : str
        CA bundle for ``SASL_SSL`` (empty: the system's).
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
    kafka_security_protocol: str = field(
        default_factory=lambda: _env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    )
    kafka_sasl_mechanism: str = field(
        default_factory=lambda: _env("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    )
    kafka_username: str = field(default_factory=lambda: _env("KAFKA_USERNAME", ""))
    # repr=False: Settings are logged and printed; the password must not be.
    kafka_password: str = field(default_factory=lambda: _secret("KAFKA_PASSWORD"), repr=False)
    kafka_ssl_cafile: str = field(default_factory=lambda: _env("KAFKA_SSL_CAFILE", ""))
    #: How long the worker's fetches wait for data, ms: the floor of an alert's latency when
    #: the input is quiet (Faust's own 1500 ms is replaced, streams/transport.py).
    fetch_wait_ms: int = field(default_factory=lambda: int(_env("FETCH_WAIT_MS", "100")))
    #: Seconds the device agent's scored readings wait for their checkpoint at most (lake,
    #: states, then the commit): what a crash reads again, never what an alert waits for.
    checkpoint_s: float = field(default_factory=lambda: float(_env("CHECKPOINT_S", "1.0")))
    #: Seconds a worker's stop may take (store what was scored, commit, leave the group) before
    #: it exits anyway: with its broker away the final commit is retried without end. What it
    #: had not stored is not acknowledged, and the next worker reads it again.
    stop_timeout_s: float = field(default_factory=lambda: float(_env("STOP_TIMEOUT_S", "30")))
    #: The nightly: Kafka to announce models and customer values to (empty: files only), the
    #: at-risk list's length, the feature build's chunk and shard sizes, each task's retries.
    publish_bootstrap: str = field(default_factory=lambda: _env("PUBLISH_BOOTSTRAP", ""))
    retention_capacity: int = field(
        default_factory=lambda: int(_env("RETENTION_CAPACITY", str(RETENTION_CAPACITY)))
    )
    feature_chunk_customers: int = field(
        default_factory=lambda: int(_env("FEATURE_CHUNK_CUSTOMERS", str(FEATURE_CHUNK_CUSTOMERS)))
    )
    nightly_shard_customers: int = field(
        default_factory=lambda: int(_env("NIGHTLY_SHARD_CUSTOMERS", str(NIGHTLY_SHARD_CUSTOMERS)))
    )
    nightly_retries: int = field(default_factory=lambda: int(_env("NIGHTLY_RETRIES", "2")))

    def __post_init__(self) -> None:
        # Derived defaults follow ``home`` so one variable moves the whole local stack.
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'outreach.db'}")
        if not str(self.lake_dir) or str(self.lake_dir) == ".":
            object.__setattr__(self, "lake_dir", self.home / "lake")
        if self.kafka_security_protocol not in KAFKA_PROTOCOLS:
            raise ValueError(
                f"FOREWARN_KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol!r}; "
                f"expected one of {', '.join(KAFKA_PROTOCOLS)}"
            )

    @property
    def models_dir(self) -> Path:
        """The model registry: one folder per model name (``forewarn.registry``), written by
        the nightly and the only place workers load models from."""
        return self.home / "models"

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.rsplit(":", 1)[1])

    def kafka_client_options(self) -> dict[str, Any]:
        """Keyword arguments for every aiokafka client (producer, consumer, admin), so all of
        them authenticate the same way: none on an open broker, SASL otherwise.

        >>> Settings(kafka_security_protocol="PLAINTEXT").kafka_client_options()
        {}
        >>> options = Settings(
        ...     kafka_security_protocol="SASL_PLAINTEXT",
        ...     kafka_username="worker",
        ...     kafka_password="pw",
        ... ).kafka_client_options()
        >>> options["sasl_mechanism"], options["sasl_plain_username"]
        ('SCRAM-SHA-512', 'worker')
        """
        if self.kafka_security_protocol == "PLAINTEXT":
            return {}
        # Checked here, not in __post_init__: processes that never talk to Kafka (the outreach
        # service) share the compose settings but have no Kafka user.
        if not (self.kafka_username and self.kafka_password):
            raise ValueError(
                f"FOREWARN_KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol} but "
                "FOREWARN_KAFKA_USERNAME or FOREWARN_KAFKA_PASSWORD (or _FILE) is empty: set "
                "both to this process's Kafka user (docs/operations.md)"
            )
        options: dict[str, Any] = {
            "security_protocol": self.kafka_security_protocol,
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "sasl_plain_username": self.kafka_username,
            "sasl_plain_password": self.kafka_password,
        }
        if self.kafka_security_protocol == "SASL_SSL":
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(cafile=self.kafka_ssl_cafile or None)
        return options

    def faust_credentials(self) -> Any:
        """The same user as :meth:`kafka_client_options` for Faust's ``broker_credentials``
        (None on an open broker)."""
        options = self.kafka_client_options()
        if not options:
            return None
        import faust

        return faust.SASLCredentials(
            username=self.kafka_username,
            password=self.kafka_password,
            mechanism=self.kafka_sasl_mechanism,
            ssl_context=options.get("ssl_context"),
        )

    def with_home(self, home: Path) -> Settings:
        """A copy whose derived paths (database, lake) live under ``home``."""
        return replace(self, home=home, database_url="", lake_dir=Path(""))


#: Files Forewarn's processes create are the owner's alone (0600, folders 0700): the store,
#: the lake (ticket texts), logs and counters hold personal data.
PRIVATE_UMASK = 0o077


def keep_files_private() -> None:
    """Make every file this process creates from now on private to its user. Called first
    by each entry point (the CLI, the worker); a deployment's umask may be stricter."""
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)
