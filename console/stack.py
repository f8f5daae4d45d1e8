"""The local stack as objects: a Faust worker process, and waiting for it to drain.

Used by ``forewarn demo``, the integration tests and the benchmarks, so all three start,
stop and kill workers the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from console.kafka.local import free_port
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
            "FOREWARN_WORKER_HOST": settings.worker_host,
            "FOREWARN_WORKER_PORT": str(settings.worker_port),
        }
    )
    return env


class ChildProcess:
    """A command of ours in its own process group, logging to ``log_path``."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = args, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int | None:
        """Stop cleanly (SIGTERM), SIGKILL after ``timeout``; return the exit code."""
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
            return f"(no log at {self.log_path})"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class WorkerProcess(ChildProcess):
    """A Faust worker; SIGTERM lets it flush its buffers and commit."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        web_port: int | None = None,
        module: str = "streams",
    ) -> None:
        # Each worker of a group on one machine needs its own port for /metrics and /healthz.
        web_port = free_port() if web_port is None else web_port
        settings = replace(settings, worker_port=web_port)
        super().__init__(
            # ``module``: the worker's entry point, or a benchmark's variant of it
            # (bench/ceiling_worker.py).
            [sys.executable, "-m", module, "worker", "-l", "info"],
            worker_env(settings),
            log_path,
        )
        self.settings = settings

    @property
    def web_url(self) -> str:
        return f"http://{self.settings.worker_host}:{self.settings.worker_port}"

    def health(self) -> dict:
        """The worker's /healthz body, or {} while it does not answer."""
        import httpx

        try:
            return httpx.get(f"{self.web_url}/healthz", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return {}

    def wait_consuming(self, timeout: float = 120.0) -> None:
        """Block until /healthz reports assigned partitions; RuntimeError with the log's tail
        if the worker dies or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"the worker died; last lines of {self.log_path}:\n{self.tail()}"
                )
            health = self.health()
            if health.get("status") == "ok" and health.get("assigned_partitions", 0) > 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the worker did not consume within {timeout:.0f} s:\n{self.tail()}")


def worker_counters(settings: Settings) -> dict[str, int]:
    """The counters of every worker of ``settings.home``, summed (each worker writes its own
    file under ``<home>/workers``, streams/dead_letters.py)."""
    total: dict[str, int] = {}
    for path in (settings.home / "workers").glob("*.json"):
        for key, value in json.loads(path.read_text()).items():
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value
    return total


def wait_balanced(workers: list[WorkerProcess], timeout: float = 180.0) -> None:
    """Block until every worker holds partitions and none is rebalancing, twice in a row;
    RuntimeError with a log's tail if a worker dies or ``timeout`` passes."""
    deadline, calm = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        dead = [worker for worker in workers if not worker.alive()]
        if dead:
            raise RuntimeError(
                f"a worker died; last lines of {dead[0].log_path}:\n{dead[0].tail()}"
            )
        states = [worker.health() for worker in workers]
        ok = all(s.get("assigned_partitions", 0) > 0 and not s.get("rebalancing") for s in states)
        calm = calm + 1 if ok else 0
        if calm >= 2:
            return
        time.sleep(1.0)
    raise RuntimeError(f"the group of {len(workers)} workers did not balance in {timeout:.0f} s")


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


class OutreachProcess(ChildProcess):
    """``forewarn outreach serve`` (the demo's web service); ``start`` waits for /healthz."""

    def __init__(
        self, settings: Settings, port: int, log_path: Path, *, insecure_cookies: bool = False
    ) -> None:
        env = worker_env(settings)
        if insecure_cookies:
            env["FOREWARN_INSECURE_COOKIES"] = "1"  # plain http on localhost only
        super().__init__(
            [sys.executable, "-m", "console.cli", "outreach", "serve", "--port", str(port)],
            env,
            log_path,
        )
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> OutreachProcess:
        import httpx

        super().start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the outreach service exited:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the outreach service did not answer on {self.url}")
