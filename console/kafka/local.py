"""A real single-node Kafka 4 broker (KRaft) for laptops, tests and the demo.

The broker is assembled from Maven Central: ``pom.xml`` beside this file lists ``kafka_2.13``
and a log4j2 backend; ``mvn dependency:copy-dependencies`` puts the jars in a machine-wide cache
keyed by the pom's hash, so every checkout and every second run reuse them. Data and logs live
under ``<home>/kafka`` (git-ignored). ``start`` returns only after a real produce and consume.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from console import prereqs

HERE = Path(__file__).parent
POM = HERE / "pom.xml"
PROBE_TOPIC = "__forewarn_probe"


class KafkaError(RuntimeError):
    """A broker problem stated with its cause and the fix."""


def jars_dir(cache_dir: Path) -> Path:
    """Where the jars for the current ``pom.xml`` are cached."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return Path(cache_dir) / f"kafka-{digest}" / "libs"


def fetch_jars(cache_dir: Path) -> Path:
    """Download the broker's jars once; later calls return the cached folder at once."""
    libs = jars_dir(cache_dir)
    if (libs / ".complete").exists():
        return libs
    missing = prereqs.problems()
    if missing:
        raise KafkaError("; ".join(missing))
    tmp = libs.with_name(f"libs.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    print(
        f"forewarn: fetching the Kafka broker from Maven Central into {libs.parent} ...", flush=True
    )
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not list(tmp.glob("kafka_2.13-*.jar")):
        raise KafkaError(
            "could not fetch the Kafka jars with Maven (is Maven Central reachable?):\n"
            + (done.stdout + done.stderr)[-2000:]
        )
    (tmp / ".complete").touch()
    shutil.rmtree(libs, ignore_errors=True)
    os.replace(tmp, libs)
    return libs


def new_cluster_id() -> str:
    """A KRaft cluster id in Kafka's own format (URL-safe base64 of 16 random bytes).

    Like Kafka's ``Uuid.randomUuid``, never one starting with '-': the storage tool's argument
    parser would read it as an option (CI met one: "--cluster-id: expected one argument").
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port p such that p and p + 1 (a broker's controller) are both free."""
    for _ in range(50):
        port = free_port(host)
        if port_free(port + 1, host):
            return port
    raise RuntimeError(f"no free pair of ports on {host}")


async def probe(
    bootstrap: str, timeout: float = 10.0, options: dict[str, Any] | None = None
) -> bool:
    """Produce one message and read it back: the only honest readiness check.

    ``options`` are extra aiokafka arguments, such as a secured broker's SASL user.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.errors import KafkaError as ClientError

    # While a broker starts, aiokafka logs every refused connection; the caller reports instead.
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    token = uuid.uuid4().hex.encode()
    options = options or {}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **options
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=int(timeout * 1000),
        **options,
    )
    try:
        async with asyncio.timeout(timeout):
            await producer.start()
            meta = await producer.send_and_wait(PROBE_TOPIC, token, partition=0)
            await consumer.start()
            tp = TopicPartition(PROBE_TOPIC, 0)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            msg = await consumer.getone()
            return msg.value == token
    except (TimeoutError, ClientError, OSError):
        return False
    finally:
        await producer.stop()
        await consumer.stop()
        client_log.setLevel(level)


#: The broker's garbage collector as Kafka's own start script sets it (``kafka-run-class.sh``:
#: G1 with 20 ms pauses) and a fixed heap, with the region size Kafka's operations guide
#: gives: with Java's defaults (1 MiB regions, 200 ms pauses) a request of 512 KiB or more
#: (the worker sends changelog batches of up to 512 KiB) is a "humongous" object, and the
#: broker paused 51-66 times in a 5,000 events/s run (0.7-1.0 s in all), 18-27 of them for
#: humongous allocations, against 25 (0.4 s, none) with these (docs/benchmarks.md, fifth pass).
BROKER_JVM_OPTIONS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:G1HeapRegionSize=16M",
)


@dataclass
class LocalKafka:
    """One local broker: ``fetch``, ``start``, ``status``, ``stop``.

    Parameters
    ----------
    home : Path
        Folder for data (``data/``), logs and the pid file.
    cache_dir : Path
        Machine-wide jar cache.
    port : int
        Client port; the controller listens on ``port + 1``.
    partitions : int
        Default partitions of auto-created topics.
    extra_properties : str
        Appended to ``server.properties`` (a later key wins): a secured broker's listeners,
        SASL and authorizer settings (tests/integration/test_kafka_auth.py). Empty by default:
        the demo broker is open, and listens on 127.0.0.1 only.
    scram_users : dict
        SCRAM-SHA-512 users (name: password) created when the storage is formatted: a broker
        that authenticates to itself with SCRAM needs its user before it starts (KIP-900).
    client_options : dict
        aiokafka arguments of the readiness probe (``Settings.kafka_client_options()``).
    """

    home: Path
    cache_dir: Path
    port: int = 9092
    partitions: int = 4
    heap: str = "768m"
    extra_properties: str = field(default="", repr=False)
    scram_users: dict[str, str] = field(default_factory=dict, repr=False)
    client_options: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    def pid(self) -> int | None:
        """The broker's pid if it is running."""
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        return pid

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-cp",
            f"{libs}/*",
            f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home}",
            *args,
        ]

    def _configure(self, libs: Path) -> Path:
        data = self.home / "data"
        config = self.home / "server.properties"
        text = (
            (HERE / "server.properties")
            .read_text()
            .format(
                port=self.port,
                controller_port=self.port + 1,
                data_dir=data,
                partitions=self.partitions,
            )
        )
        if self.extra_properties:
            text += "\n" + self.extra_properties
        # The file may hold passwords (a secured broker's JAAS settings): owner only.
        config.touch(mode=0o600)
        config.write_text(text)
        if not (data / "meta.properties").exists():
            data.mkdir(parents=True, exist_ok=True)
            cluster_id = new_cluster_id()
            done = subprocess.run(
                self._java(
                    libs,
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",
                    "--config",
                    str(config),
                    *(
                        arg
                        for name, password in self.scram_users.items()
                        for arg in (
                            "--add-scram",
                            f"SCRAM-SHA-512=[name={name},password={password}]",
                        )
                    ),
                ),
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise KafkaError(
                    f"formatting the broker storage in {data} failed (java exit code "
                    f"{done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}"
                )
        return config

    def start(self, timeout: float = 90.0) -> None:
        """Start the broker (or find it running) and wait until a message round-trips."""
        if self.pid() is not None:
            if asyncio.run(probe(self.bootstrap, options=self.client_options)):
                return
            raise KafkaError(
                f"a broker is running (pid {self.pid()}) but does not answer on "
                f"{self.bootstrap}: see {self.log_file}, or 'forewarn kafka stop'"
            )
        for port in (self.port, self.port + 1):
            if not port_free(port):
                raise KafkaError(
                    f"port {port} is in use by another program: stop it, or choose another port "
                    f"(FOREWARN_KAFKA_BOOTSTRAP=127.0.0.1:<port>, the controller uses port + 1)"
                )
        libs = fetch_jars(self.cache_dir)
        self.home.mkdir(parents=True, exist_ok=True)
        config = self._configure(libs)
        with (self.home / "console.log").open("ab") as console:
            proc = subprocess.Popen(
                self._java(
                    libs, f"-Xms{self.heap}", *BROKER_JVM_OPTIONS, "kafka.Kafka", str(config)
                ),
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise KafkaError(
                    f"the broker exited with code {proc.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self._tail()}"
                )
            if asyncio.run(probe(self.bootstrap, timeout=5, options=self.client_options)):
                return
            time.sleep(0.5)
        self.stop()
        raise KafkaError(
            f"the broker did not answer on {self.bootstrap} within {timeout:.0f} s; "
            f"last lines of {self.log_file}:\n{self._tail()}"
        )

    def _tail(self, lines: int = 15) -> str:
        for path in (self.log_file, self.home / "console.log"):
            if path.exists():
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log written)"

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout``); False if none ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> dict[str, object]:
        pid = self.pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "ready": pid is not None
            and asyncio.run(probe(self.bootstrap, timeout=5, options=self.client_options)),
            "bootstrap": self.bootstrap,
            "data": str(self.home / "data"),
            "log": str(self.log_file),
        }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child (we started it in this process) counts as gone.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return waited == 0
