"""The local stack as objects: a Faust worker process, and waiting for it to drain.

Used by ``forewarn demo``, the integration tests and the benchmarks, so all three start,
stop and kill workers the same way.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from forewarn.events import INPUT_TOPICS
from forewarn.kafka.admin import group_lag
from forewarn.settings import Settings

DRAIN_TOPICS = [*INPUT_TOPICS, "alerts"]


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment for a worker process that shares ``settings``."""
    env = dict(os.environ)
    env.update(
        {
            "FOREWARN_HOME": str(settings.home),
            "FOREWARN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "FOREWARN_DATABASE_URL": settings.database_url,
            "FOREWARN_LAKE_DIR": str(settings.lake_dir),
            "FOREWARN_GROUP_ID": settings.group_id,
        }
    )
    return env


class WorkerProcess:
    """A Faust worker in a child process, logging to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker", "-l", "info"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=worker_env(self.settings),
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int | None:
        """Stop cleanly (SIGTERM: Faust flushes buffers and commits), SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9: no flush, no commit; what a crash looks like."""
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no worker log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_drained(
    settings: Settings,
    worker: WorkerProcess | None = None,
    *,
    timeout: float = 900.0,
    stable_checks: int = 2,
    interval: float = 1.0,
    on_progress=None,  # type: ignore[no-untyped-def]
) -> float:
    """Block until the worker group has committed every message of the source and alert
    topics (``stable_checks`` times in a row); return the seconds waited.

    Raises ``RuntimeError`` if the worker dies or ``timeout`` passes, with the log's tail.
    """
    started = time.monotonic()
    zero_in_a_row = 0
    while True:
        if worker is not None and not worker.alive():
            raise RuntimeError(
                f"the worker exited with code {worker.proc.returncode if worker.proc else None}; "
                f"last lines of {worker.log_path}:\n{worker.tail()}"
            )
        lag = asyncio.run(group_lag(settings.kafka_bootstrap, settings.group_id, DRAIN_TOPICS))
        if on_progress is not None:
            on_progress(lag)
        zero_in_a_row = zero_in_a_row + 1 if sum(lag.values()) == 0 else 0
        if zero_in_a_row >= stable_checks:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            tail = worker.tail() if worker else ""
            raise RuntimeError(
                f"the stream did not drain within {timeout:.0f} s (lag {lag})\n{tail}"
            )
        time.sleep(interval)


class OutreachProcess:
    """``forewarn outreach serve`` in a child process (the demo's web service)."""

    def __init__(
        self, settings: Settings, port: int, log_path: Path, *, insecure_cookies: bool = False
    ) -> None:
        self.settings, self.port, self.log_path = settings, port, log_path
        self.insecure_cookies = insecure_cookies
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> OutreachProcess:
        import httpx

        env = worker_env(self.settings)
        if self.insecure_cookies:
            env["FOREWARN_INSECURE_COOKIES"] = "1"  # plain http on localhost only
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "forewarn.cli",
                    "outreach",
                    "serve",
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the outreach service exited; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the outreach service did not answer on {self.url}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
