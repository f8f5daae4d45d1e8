"""The local broker: real readiness, clear errors, clean stop."""

from __future__ import annotations

import asyncio
import socket

import pytest

from console.kafka.local import KafkaError, LocalKafka, probe
from forewarn.settings import Settings
from tests.conftest import free_port_pair

pytestmark = pytest.mark.kafka


def test_running_broker_answers_a_real_round_trip(kafka_broker):
    assert asyncio.run(probe(kafka_broker.bootstrap))
    status = kafka_broker.status()
    assert status["running"] and status["ready"]


def test_start_is_idempotent(kafka_broker):
    pid = kafka_broker.pid()
    kafka_broker.start()
    assert kafka_broker.pid() == pid


def test_occupied_port_gets_a_clear_message(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = LocalKafka(home=tmp_path, cache_dir=Settings().cache_dir, port=port)
        with pytest.raises(KafkaError, match=f"port {port} is in use.*FOREWARN_KAFKA_BOOTSTRAP"):
            broker.start()


def test_nothing_listening_is_not_ready():
    assert not asyncio.run(probe(f"127.0.0.1:{free_port_pair()}", timeout=2))


def test_second_broker_starts_and_stops_cleanly(tmp_path):
    broker = LocalKafka(home=tmp_path, cache_dir=Settings().cache_dir, port=free_port_pair())
    broker.start()
    pid = broker.pid()
    assert pid is not None
    assert broker.stop()
    assert broker.pid() is None
    assert not broker.stop(), "stopping a stopped broker is a no-op"


def test_broker_that_cannot_start_says_why(tmp_path):
    broker = LocalKafka(home=tmp_path, cache_dir=Settings().cache_dir, port=free_port_pair())
    # Storage from another cluster, as after copying a data folder: the broker refuses it.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("version=1\ncluster.id=x\nnode.id=9\n")
    with pytest.raises(KafkaError, match=r"exited with code .* while starting") as info:
        broker.start(timeout=60)
    assert "last lines of" in str(info.value)
    assert broker.pid() is None


def test_storage_that_cannot_be_formatted_says_why(tmp_path):
    broker = LocalKafka(
        home=tmp_path, cache_dir=Settings().cache_dir, port=free_port_pair(), heap="1k"
    )  # the JVM refuses to start with this heap
    with pytest.raises(KafkaError, match=r"formatting the broker storage .* failed"):
        broker.start(timeout=60)


def test_cluster_ids_never_look_like_options(monkeypatch):
    from console.kafka import local

    dashed = iter([b"\xfb" + bytes(15), bytes(16)])  # the first encodes to "-wAA..."
    monkeypatch.setattr(local.uuid, "uuid4", lambda: type("U", (), {"bytes": next(dashed)}))
    cluster_id = local.new_cluster_id()
    assert not cluster_id.startswith("-") and len(cluster_id) == 22
