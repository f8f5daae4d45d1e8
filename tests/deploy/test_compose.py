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

from forewarn.cli import main as forewarn_cli

ROOT = Path(__file__).resolve().parents[2]
SECRETS = (
    "POSTGRES_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
)
CODE_DIRS = ("forewarn", "streams", "outreach", "models", "expectations", "dags", "plugins")


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
    done = _compose(env_file, "--profile", "sim", "config")
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
