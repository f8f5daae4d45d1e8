"""Shared fixtures. The Kafka broker is real (started once per session on free ports)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from console.kafka.local import free_port_pair
from forewarn.settings import Settings

#: Fixtures that start a real service, and the marker a test using one gets: ``make test-fast``
#: (the unit tier) runs what needs none of them (``-m "not kafka and not postgres and not
#: browser and not slow"``).
SERVICE_FIXTURES = {
    "kafka_broker": "kafka",
    "stack_settings": "kafka",
    "broker": "kafka",
    "stack": "kafka",
    "postgres_url": "postgres",
    "browser": "browser",
}


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture, marker in SERVICE_FIXTURES.items():
            if fixture in fixtures:
                item.add_marker(marker)
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("any_store") == "postgresql":
            item.add_marker("postgres")


def shared_dir() -> Path:
    """The reference data beside the repository (``../shared``), or ``FOREWARN_SHARED_DIR``."""
    path = Path(os.environ.get("FOREWARN_SHARED_DIR", Path(__file__).parents[2] / "shared"))
    if not (path / "data" / "cdnow").exists():
        # A user's clone has no shared/ beside it: the tests on reference data say so and skip.
        pytest.skip(
            f"reference data not found at {path}/data/cdnow: put shared/ beside the "
            "repository or set FOREWARN_SHARED_DIR",
            allow_module_level=True,
        )
    return path


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A real single-node Kafka 4 broker for the whole test session."""
    import asyncio

    from console.kafka.local import LocalKafka
    from forewarn.kafka.admin import ensure_topics

    broker = LocalKafka(
        home=tmp_path_factory.mktemp("kafka"), cache_dir=Settings().cache_dir, port=free_port_pair()
    )
    broker.start()
    asyncio.run(ensure_topics(broker.bootstrap))
    yield broker
    broker.stop()


@pytest.fixture
def stack_settings(tmp_path, kafka_broker, request):
    """Settings for one test: its own lake, store and consumer group on the shared broker."""
    group = "test-" + request.node.name.replace("[", "-").replace("]", "")[:60]
    return replace(
        Settings().with_home(tmp_path), kafka_bootstrap=kafka_broker.bootstrap, group_id=group
    )
