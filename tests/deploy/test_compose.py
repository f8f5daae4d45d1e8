"""docker-compose.yml checked without a Docker engine (none runs here or on CI).

Debian's ``docker-compose`` validates and resolves the file; the rest is read from its resolved
output: every command names an entry point that exists, every file a Dockerfile or a bind mount
needs exists, every variable is documented, and no secret has a default. Runs in the Airflow
environment so Airflow's own CLI can be asked which commands it has.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from console.cli import main as forewarn_cli

ROOT = Path(__file__).resolve().parents[2]
SECRETS = (
    "POSTGRES_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "KAFKA_ADMIN_PASSWORD",
    "KAFKA_WORKER_PASSWORD",
    "KAFKA_AIRFLOW_PASSWORD",
    "KAFKA_PRODUCER_PASSWORD",
    "REDIS_PASSWORD",
)
CODE_DIRS = (
    "forewarn",
    "console",
    "simulator",
    "streams",
    "outreach",
    "models",
    "expectations",
    "dags",
    "plugins",
)


def _compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is missing: `make system-deps` installs Debian's")
    return subprocess.run(
        [binary, "--project-directory", str(ROOT), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    """.env.example with its empty secrets filled in, as a user is told to do."""
    text = (ROOT / ".env.example").read_text()
    for name in SECRETS:
        text = re.sub(rf"^{name}=$", f"{name}=test-{name.lower()}", text, flags=re.M)
    path = tmp_path_factory.mktemp("compose") / ".env"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def resolved(env_file) -> dict:
    done = _compose(env_file, "--profile", "sim", "--profile", "celery", "config")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_every_part_the_design_names_is_there(resolved):
    services = resolved["services"]
    expected = {
        "kafka",
        "postgres",
        "topics",
        "worker",
        "outreach",
        "simulator",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "kafka-init",
    }
    assert expected <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["postgres"]["image"] == "postgres:16"
    assert services["simulator"]["profiles"] == ["sim"]
    for name in ("kafka", "postgres", "worker", "outreach", "airflow-apiserver"):
        assert "healthcheck" in services[name], name
    # --scale worker=N needs a worker without a fixed name or a published host port.
    assert "container_name" not in services["worker"]
    assert not services["worker"].get("ports")
    assert services["airflow-apiserver"]["depends_on"]["airflow-init"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["worker"]["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully"
    )


def test_the_celery_profile_shares_the_nightly_over_workers(env_file, tmp_path):
    """`--profile celery` with AIRFLOW_EXECUTOR=CeleryExecutor: every Airflow service uses the
    Celery executor through the profile's Redis, and the workers run the same image with the
    same /data (the lake the feature shards read); by default, the LocalExecutor."""
    celery_env = tmp_path / "celery.env"
    celery_env.write_text(
        re.sub(
            r"^AIRFLOW_EXECUTOR=.*$",
            "AIRFLOW_EXECUTOR=CeleryExecutor",
            env_file.read_text(),
            flags=re.M,
        )
    )
    done = _compose(celery_env, "--profile", "celery", "config")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    worker, redis = services["airflow-worker"], services["redis"]
    assert worker["command"] == ["celery", "worker"] and worker["profiles"] == ["celery"]
    assert worker["image"] == services["airflow-scheduler"]["image"]
    assert worker["volumes"] == services["airflow-scheduler"]["volumes"]
    assert "forewarn-data:/data:rw" in worker["volumes"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert not redis.get("ports"), "Redis is reached inside the compose network only"
    assert "test-redis_password" in redis["command"]
    for name in ("airflow-scheduler", "airflow-worker", "airflow-apiserver"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:test-redis_password@redis:6379/0"
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    default = _compose(env_file, "config")
    assert default.returncode == 0, default.stderr
    plain = yaml.safe_load(default.stdout)["services"]
    # Compose 1.x's `config` lists every profile's services; `up` starts them only with it.
    assert plain["redis"]["profiles"] == plain["airflow-worker"]["profiles"] == ["celery"]
    assert plain["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_secrets_have_no_default(env_file, tmp_path):
    """Without the user's own secrets compose refuses to start, naming what is missing."""
    for name in SECRETS:
        text = re.sub(rf"^{name}=.*$", f"{name}=", env_file.read_text(), flags=re.M)
        bare = tmp_path / f"{name}.env"
        bare.write_text(text)
        done = _compose(bare, "config", "-q")
        assert done.returncode != 0 and name in done.stderr, name
    committed = (ROOT / "docker-compose.yml").read_text() + (ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert not re.search(rf"{name}[=:]-?\S", committed.replace(f"{name}:?", "")), name


def _airflow_commands() -> set[str]:
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_every_command_names_an_entry_point_that_exists(resolved):
    airflow_commands = _airflow_commands()
    runner = CliRunner()
    for name, service in resolved["services"].items():
        image = service.get("image", "")
        command = service.get("command") or []
        if image.startswith("forewarn-streams"):
            # --help after the command's own options: click parses them (unknown ones fail)
            # and then stops, so this checks the command path and every option name.
            result = runner.invoke(forewarn_cli, [*command, "--help"])
            assert result.exit_code == 0, f"{name}: forewarn {command}: {result.output}"
        elif image.startswith("forewarn-airflow"):
            assert command[0] in airflow_commands, f"{name}: airflow {command[0]}"


def _dockerfiles(resolved) -> list[Path]:
    files = {
        ROOT / s["build"].get("dockerfile", "Dockerfile")
        for s in resolved["services"].values()
        if "build" in s
    }
    return sorted(files)


def test_dockerfiles_copy_files_that_exist(resolved):
    dockerfiles = _dockerfiles(resolved)
    assert {p.relative_to(ROOT).as_posix() for p in dockerfiles} == {
        "streams/Dockerfile",
        "deploy/airflow.Dockerfile",
    }
    for dockerfile in dockerfiles:
        for line in dockerfile.read_text().splitlines():
            parts = line.split()
            if not parts or parts[0] != "COPY":
                continue
            sources = [p for p in parts[1:-1] if not p.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}"


def test_airflow_image_matches_the_locked_airflow(resolved):
    pinned = re.search(r"apache-airflow==([\d.]+)", (ROOT / "requirements/airflow.in").read_text())
    base = re.search(
        r"FROM apache/airflow:([\d.]+)", (ROOT / "deploy/airflow.Dockerfile").read_text()
    )
    assert pinned and base and pinned.group(1) == base.group(1)


def test_bind_mounts_exist(resolved):
    for name, service in resolved["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict) and volume.get("type") == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']}"


def _variables_read_by_code() -> set[str]:
    found: set[str] = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            found.update(re.findall(r"\b(FOREWARN_[A-Z0-9_]*[A-Z0-9])\b", text))
            # Settings and secrets are read by suffix: _env("HOME") is FOREWARN_HOME.
            found.update(f"FOREWARN_{n}" for n in re.findall(r'_env\("([A-Z0-9_]+)"', text))
            for n in re.findall(r'_secret\("([A-Z0-9_]+)"\)', text):
                found.update({f"FOREWARN_{n}", f"FOREWARN_{n}_FILE"})
    return found


def test_every_variable_the_code_reads_is_documented():
    variables = _variables_read_by_code()
    assert {
        "FOREWARN_HOME",
        "FOREWARN_KAFKA_BOOTSTRAP",
        "FOREWARN_WEBHOOK_SECRET_FILE",
    } <= variables
    operations = (ROOT / "docs/operations.md").read_text()
    missing = sorted(v for v in variables if f"`{v}`" not in operations)
    assert not missing, f"not in docs/operations.md: {missing}"


def test_every_compose_variable_is_in_env_example():
    compose = (ROOT / "docker-compose.yml").read_text()
    # $${X} is the container's own variable, escaped from compose.
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", compose))
    example = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= example, sorted(used - example)


def _kafka_properties() -> dict[str, str]:
    """The secured broker's settings as deploy/kafka/start.sh writes them (later keys win)."""
    start = (ROOT / "deploy/kafka/start.sh").read_text()
    written = re.search(r"<<EOF\n(.*?)\nEOF", start, re.S)
    assert written, "deploy/kafka/start.sh: no server.properties here-document"
    lines = written.group(1) + "\n" + (ROOT / "deploy/kafka/security.properties").read_text()
    pairs = (line.split("=", 1) for line in lines.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.startswith("#")}


def test_the_broker_authenticates_every_client_and_authorizes_every_action(resolved):
    kafka = resolved["services"]["kafka"]
    assert kafka["command"] == ["bash", "/forewarn/kafka/start.sh"]
    assert not kafka.get("ports"), "the broker is reached inside the compose network only"
    props = _kafka_properties()
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    listeners = dict(
        re.match(r"(\w+)://(.*)", listener).groups() for listener in props["listeners"].split(",")
    )
    assert set(listeners) == set(protocols)
    for name, address in listeners.items():
        # Nothing unauthenticated that another container could reach.
        assert protocols[name].startswith("SASL_"), name
        if name == props["controller.listener.names"]:
            assert address.startswith("localhost:"), "the controller listens on loopback only"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"


def test_users_and_acls_are_made_before_any_client_starts(resolved):
    services = resolved["services"]
    init = services["kafka-init"]
    assert init["image"] == services["kafka"]["image"]
    assert init["command"] == ["bash", "/forewarn/kafka/init.sh"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    done = {"condition": "service_completed_successfully"}
    assert services["topics"]["depends_on"]["kafka-init"] == done
    assert services["airflow-scheduler"]["depends_on"]["kafka-init"] == done
    script = (ROOT / "deploy/kafka/init.sh").read_text()
    for user in ("worker", "airflow", "producer"):
        assert f"user {user} " in script and f"allow {user} " in script, user


def test_each_service_connects_as_its_own_kafka_user(resolved):
    """The producer user (real sources, the simulator) cannot write alerts or model updates;
    only the one-shot topics service has the admin password."""
    expected = {
        "worker": "worker",
        "simulator": "producer",
        "topics": "admin",
        "airflow-scheduler": "airflow",
        "airflow-apiserver": "airflow",
    }
    for name, service in resolved["services"].items():
        env = service.get("environment") or {}
        if "FOREWARN_KAFKA_BOOTSTRAP" not in env:
            continue
        assert env["FOREWARN_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
        if name in expected:
            assert env["FOREWARN_KAFKA_USERNAME"] == expected[name], name
            assert env["FOREWARN_KAFKA_PASSWORD"].startswith("test-kafka_"), name
    passwords = {
        name: s["environment"].get("FOREWARN_KAFKA_PASSWORD")
        for name, s in resolved["services"].items()
        if s.get("environment")
    }
    admin = passwords["topics"]
    assert [name for name, password in passwords.items() if password == admin] == ["topics"]


def test_kafka_scripts_parse():
    for script in ("start.sh", "init.sh"):
        done = subprocess.run(["bash", "-n", str(ROOT / "deploy/kafka" / script)])
        assert done.returncode == 0, script
