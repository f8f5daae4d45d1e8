"""Kafka with authentication where it matters (issue 13): only the workers and Airflow may write
alerts, model-updates and customer-values.

One local broker secured as docker-compose.yml's is (deploy/kafka/security.properties:
SASL/SCRAM-SHA-512, StandardAuthorizer, nothing allowed without an ACL), with the users and ACLs
that deploy/kafka/init.sh grants, run here exactly as compose's kafka-init service runs it. The
clients are real aiokafka clients configured through ``Settings.kafka_client_options()``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from console.kafka.local import LocalKafka, fetch_jars, free_port_pair
from console.stack import WorkerProcess
from forewarn.events import ModelUpdated
from forewarn.kafka.admin import ensure_topics, group_lag
from forewarn.publish import produce
from forewarn.settings import Settings
from tests.utils.factories import order, telemetry, ticket

pytestmark = pytest.mark.kafka

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
GROUP = "forewarn-auth"
USERS = ("admin", "worker", "airflow", "producer")
PROTECTED = ("alerts", "model-updates", "customer-values")
TOOLS = {
    "kafka-acls.sh": "org.apache.kafka.tools.AclCommand",
    "kafka-configs.sh": "kafka.admin.ConfigCommand",
}


def _jaas(password: str) -> str:
    """The admin user's JAAS lines, as deploy/kafka/start.sh writes them."""
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    return (
        f"listener.name.client.scram-sha-512.sasl.jaas.config={scram} required "
        f'username="admin" password="{password}";\n'
        f"listener.name.controller.plain.sasl.jaas.config={plain} required "
        f'username="admin" password="{password}" user_admin="{password}";\n'
    )


def _user(bootstrap: str, name: str, password: str) -> Settings:
    return replace(
        Settings(),
        kafka_bootstrap=bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_username=name,
        kafka_password=password,
    )


def _env(user: Settings) -> dict[str, str]:
    """What compose gives a service that connects as ``user``."""
    return {
        "FOREWARN_KAFKA_SECURITY_PROTOCOL": user.kafka_security_protocol,
        "FOREWARN_KAFKA_USERNAME": user.kafka_username,
        "FOREWARN_KAFKA_PASSWORD": user.kafka_password,
    }


def _tools(bin_dir: Path, libs: Path) -> Path:
    """kafka-acls.sh and kafka-configs.sh as the image has them, from the cached jars."""
    bin_dir.mkdir()
    for script, main_class in TOOLS.items():
        # A small client JVM: C1 only and the serial collector start fastest.
        java = ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        command = shlex.join([*java, "-cp", f"{libs}/*", main_class])
        (bin_dir / script).write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        (bin_dir / script).chmod(0o755)
    return bin_dir


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> tuple[LocalKafka, dict[str, Settings]]:
    """A secured broker with deploy/kafka/init.sh's users and ACLs, and Forewarn's topics;
    the broker and the Settings of each user."""
    home = tmp_path_factory.mktemp("kafka-auth")
    port = free_port_pair()
    bootstrap = f"127.0.0.1:{port}"
    passwords = {name: secrets.token_urlsafe(24) for name in USERS}
    admin = _user(bootstrap, "admin", passwords["admin"])
    broker = LocalKafka(
        home=home / "kafka",
        cache_dir=admin.cache_dir,
        port=port,
        extra_properties=(
            f"listeners=CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}\n"
            f"advertised.listeners=CLIENT://127.0.0.1:{port}\n"
            + (DEPLOY / "security.properties").read_text()
            + _jaas(passwords["admin"])
        ),
        scram_users={"admin": passwords["admin"]},
        client_options=admin.kafka_client_options(),
    )
    broker.start()
    try:
        env = {
            **os.environ,
            "KAFKA_BIN": str(_tools(home / "bin", fetch_jars(admin.cache_dir))),
            "KAFKA_BOOTSTRAP": bootstrap,
            "FOREWARN_GROUP_ID": GROUP,
            **{f"KAFKA_{name.upper()}_PASSWORD": passwords[name] for name in USERS},
        }
        done = subprocess.run(
            ["bash", str(DEPLOY / "init.sh")], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        with mock.patch.dict(os.environ, _env(admin)):
            asyncio.run(ensure_topics(bootstrap))
        yield broker, {name: _user(bootstrap, name, passwords[name]) for name in USERS}
    finally:
        broker.stop()


async def _send(user: Settings, topic: str, **options) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=user.kafka_bootstrap,
        request_timeout_ms=10_000,
        **{**user.kafka_client_options(), **options},
    )
    try:
        async with asyncio.timeout(20):
            await producer.start()
            await producer.send_and_wait(topic, b"{}", key=b"probe")
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def users(secured) -> dict[str, Settings]:
    return secured[1]


def _logged(broker: LocalKafka, text: str, timeout: float = 5.0) -> bool:
    """Whether the broker logged ``text`` (it may log a refusal just after the client sees it)."""
    deadline = time.monotonic() + timeout
    while text not in broker.log_file.read_text(errors="replace"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_the_broker_denies_what_no_acl_allows(secured):
    broker, _ = secured
    assert _logged(broker, "set super.users=User:admin, default result=DENIED")


def test_a_client_without_a_user_is_refused(secured):
    broker, users = secured
    producer = users["producer"]
    asyncio.run(_send(producer, "device-telemetry"))  # the broker is up, the user may write
    with pytest.raises(KafkaConnectionError):
        asyncio.run(
            _send(
                producer,
                "device-telemetry",
                security_protocol="PLAINTEXT",
                sasl_mechanism="PLAIN",
                sasl_plain_username=None,
                sasl_plain_password=None,
            )
        )
    assert _logged(broker, "Unexpected Kafka request of type METADATA during SASL handshake")


def test_a_wrong_password_is_refused(secured):
    broker, users = secured
    wrong = replace(users["producer"], kafka_password=secrets.token_urlsafe(24))
    with pytest.raises(KafkaConnectionError):
        asyncio.run(_send(wrong, "device-telemetry"))
    assert _logged(broker, "due to invalid credentials with SASL mechanism SCRAM-SHA-512")


def test_the_producer_writes_only_source_topics(users):
    # customers and maintenance: `forewarn import` of a CRM export or a field-service log.
    for topic in ("device-telemetry", "orders", "tickets", "customers", "maintenance"):
        asyncio.run(_send(users["producer"], topic))
    for topic in PROTECTED:
        with pytest.raises(TopicAuthorizationFailedError):
            asyncio.run(_send(users["producer"], topic))


def test_the_worker_writes_alerts_but_not_models(users):
    asyncio.run(_send(users["worker"], "alerts"))
    for topic in ("model-updates", "customer-values"):
        with pytest.raises(TopicAuthorizationFailedError):
            asyncio.run(_send(users["worker"], topic))


def test_the_worker_consumes_in_its_group(users):
    async def consume() -> int:
        consumer = AIOKafkaConsumer(
            "device-telemetry",
            bootstrap_servers=users["worker"].kafka_bootstrap,
            group_id=GROUP,
            auto_offset_reset="earliest",
            **users["worker"].kafka_client_options(),
        )
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                batch = await consumer.getmany(timeout_ms=10_000)
                await consumer.commit()
                return sum(len(records) for records in batch.values())
        finally:
            await consumer.stop()

    asyncio.run(_send(users["producer"], "device-telemetry"))
    assert asyncio.run(consume()) >= 1


def test_airflow_publishes_a_model_through_the_nightlys_producer(users):
    """models.nightly publishes with forewarn.publish, which reads the user from the
    environment, as the Airflow services get it from compose."""
    update = ModelUpdated(
        event_id="churn-auth-test",
        event_time=datetime(2026, 1, 5, tzinfo=UTC),
        model_name="churn",
        version="auth-test",
        sha256="0" * 64,
    )
    airflow = users["airflow"]
    with mock.patch.dict(os.environ, _env(airflow)):
        assert asyncio.run(produce([update], airflow.kafka_bootstrap, progress=False)) == 1
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_send(airflow, "alerts"))


def imported() -> list:
    """A CRM record and a recorded visit, as `forewarn import` sends them (the worker's
    outreach sink reads both topics)."""
    from forewarn.events import CustomerAttributes, MaintenanceVisit
    from forewarn.events_doc import examples

    return [e for e in examples() if isinstance(e, CustomerAttributes | MaintenanceVisit)]


@pytest.mark.slow
def test_a_faust_worker_runs_with_only_the_worker_users_acls(secured, tmp_path):
    """The ACLs are enough for a real worker: it joins its group, creates its table changelogs
    and consumes what the producer user sends (compose's worker gets nothing more)."""
    _, users = secured
    worker = replace(users["worker"].with_home(tmp_path), group_id=GROUP)
    with mock.patch.dict(os.environ, _env(users["producer"])):
        asyncio.run(
            produce(
                [*(telemetry(i) for i in range(20)), order(), ticket(), *imported()],
                worker.kafka_bootstrap,
                progress=False,
            )
        )
    # WorkerProcess passes this process's environment on: the worker's user, as compose does.
    with mock.patch.dict(os.environ, _env(worker)):
        process = WorkerProcess(worker, tmp_path / "worker.log").start()
    try:
        process.wait_consuming(timeout=120)
        sources = ["device-telemetry", "orders", "tickets", "customers", "maintenance"]
        deadline = time.monotonic() + 60
        with mock.patch.dict(os.environ, _env(worker)):
            while sum(
                (lag := asyncio.run(group_lag(worker.kafka_bootstrap, GROUP, sources))).values()
            ):
                assert time.monotonic() < deadline, f"lag {lag}:\n{process.tail()}"
                time.sleep(1)
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert "AuthorizationFailed" not in log and "AuthorizationException" not in log, log[-3000:]
        assert process.alive()
    finally:
        process.kill()
