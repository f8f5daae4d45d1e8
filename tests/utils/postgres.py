"""A throwaway PostgreSQL 15 server in a temporary folder, started and stopped at will.

The store tests share one per session; the fault tests stop and restart their own to see what
a database outage does to the pipeline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import free_port_pair

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DB_USER = ["-U", "forewarn"]
TRUST = ["-A", "trust", *DB_USER]


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root; CI runs as root, a developer may not.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PostgresServer:
    """``initdb`` once, then ``start``/``stop`` as often as a test likes; ``remove`` at the end."""

    def __init__(self, database: str = "outreach") -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(
                "PostgreSQL 15 server binaries are missing: apt-get install postgresql-15"
            )
        self.folder = Path(tempfile.mkdtemp(prefix="forewarn-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data, self.port, self.database = self.folder / "data", free_port_pair(), database
        init = subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "--no-sync", *TRUST]),
            capture_output=True,
            text=True,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        self._created = False

    @property
    def _log(self) -> list[str]:
        # -l: without a log file the server would hold our captured stdout open forever.
        return ["-l", str(self.folder / "pg.log"), "start"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://forewarn@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> PostgresServer:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-o", options, *self._log]
            ),
            check=True,
            capture_output=True,
        )
        for _ in range(50):
            ready = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                break
            time.sleep(0.2)
        if not self._created:
            host = ["-h", "127.0.0.1", "-p", str(self.port), *DB_USER]
            subprocess.run([str(PG_BIN / "createdb"), *host, self.database], check=True)
            self._created = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects every client at once, as a crashed or failed-over server does."""
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop"]),
            capture_output=True,
        )

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
