"""One Kafka broker per test (topics are shared by name, so tests cannot share one) and
workers started against it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from console.kafka.local import LocalKafka
from console.stack import WorkerProcess
from forewarn.kafka.admin import ensure_topics
from forewarn.settings import Settings
from tests.conftest import free_port_pair


@pytest.fixture
def broker(tmp_path):
    broker = LocalKafka(
        home=tmp_path / "kafka", cache_dir=Settings().cache_dir, port=free_port_pair()
    )
    broker.start()
    asyncio.run(ensure_topics(broker.bootstrap))
    yield broker
    broker.stop()


@pytest.fixture
def stack(tmp_path, broker):
    """``(settings, start_worker)``; ``start_worker(other_settings)`` for another database."""
    settings = replace(
        Settings().with_home(tmp_path), kafka_bootstrap=broker.bootstrap, group_id="forewarn-test"
    )
    workers: list[WorkerProcess] = []

    def start_worker(use: Settings | None = None) -> WorkerProcess:
        log = tmp_path / f"worker-{len(workers)}.log"
        worker = WorkerProcess(use or settings, log).start()
        workers.append(worker)
        return worker

    yield settings, start_worker
    for worker in workers:
        worker.kill()
