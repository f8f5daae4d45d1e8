"""Airflow for one home: ``forewarn airflow`` (the UI, ``make airflow``) and the demo's nightly
run (``airflow dags test``), both with the same ``AIRFLOW_HOME=<home>/airflow`` and
``FOREWARN_HOME=<home>`` as every other command.

Airflow lives in its own environment (``.venv/airflow``, docs/architecture.md), so this module
only builds its environment and runs its command line; it never imports Airflow.

Sized for a laptop: ``airflow standalone`` otherwise starts one LocalExecutor worker per
``core.parallelism`` (32), four API workers and two DAG parsers, about 40 processes; here
parallelism follows the machine's cores (``FOREWARN_AIRFLOW_PARALLELISM``) and the API server
and the DAG processor run one process each.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from console import home as stack_home
from forewarn.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PORT = 8080
PASSWORDS = "simple_auth_manager_passwords.json.generated"


class AirflowError(RuntimeError):
    """An Airflow problem stated with its cause and the fix."""


def airflow_bin() -> Path:
    """The Airflow environment's ``airflow`` (``FOREWARN_AIRFLOW_BIN``, else ``.venv/airflow``
    beside this checkout, else one on PATH)."""
    configured = os.environ.get("FOREWARN_AIRFLOW_BIN")
    candidates = [Path(configured)] if configured else []
    candidates += [ROOT / ".venv" / "airflow" / "bin" / "airflow"]
    found = shutil.which("airflow")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.exists():
            return path
    raise AirflowError(
        "no Airflow found: build its environment with `make envs` (it lands in "
        f"{ROOT / '.venv' / 'airflow'}), or set FOREWARN_AIRFLOW_BIN to an `airflow` 3.3"
    )


def parallelism() -> int:
    """LocalExecutor worker processes: one per core unless ``FOREWARN_AIRFLOW_PARALLELISM``."""
    value = os.environ.get("FOREWARN_AIRFLOW_PARALLELISM", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise AirflowError(
                f"FOREWARN_AIRFLOW_PARALLELISM is {value!r}; expected a whole number >= 1 "
                "(tasks run at once)"
            )
        return int(value)
    return max(1, os.cpu_count() or 1)


def airflow_env(settings: Settings, *, port: int = DEFAULT_PORT) -> dict[str, str]:
    """The environment of every Airflow process of ``settings.home``."""
    home = Path(settings.home).resolve()
    env = dict(os.environ)
    # `airflow standalone` starts its parts as `airflow ...` found on PATH: this environment's.
    bin_dir = str(airflow_bin().parent)
    env.update(
        {
            "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")]),
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism()),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "FOREWARN_HOME": str(home),
            "FOREWARN_LAKE_DIR": str(Path(settings.lake_dir).resolve()),
            "FOREWARN_DATABASE_URL": _absolute_sqlite(settings.database_url),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
    )
    return env


def _absolute_sqlite(url: str) -> str:
    """Airflow's processes run elsewhere: a relative SQLite path must not move with them."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str(Path(url[len(prefix) :]).resolve())
    return url


def ensure_database(env: dict[str, str], log: Path) -> None:
    """Create or upgrade Airflow's metadata database once (``airflow db migrate``)."""
    stamp = Path(env["AIRFLOW_HOME"]) / ".forewarn-migrated"
    if stamp.exists():
        return
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    done = _run([str(airflow_bin()), "db", "migrate"], env, log, timeout=600)
    if done != 0:
        raise AirflowError(_explain("airflow db migrate", log))
    stamp.touch()


def _run(args: list[str], env: dict[str, str], log: Path, timeout: float) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AirflowError(
                f"`{' '.join(args[1:])}` took more than {timeout:.0f} s; see {log}"
            ) from None
        except BaseException:
            proc.terminate()
            proc.wait()
            raise


def _explain(what: str, log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    if "database is locked" in text:
        return (
            f"{what} failed: Airflow's SQLite database in {log.parent} is locked by another "
            "Airflow process (is `make airflow` running on this home? `forewarn status` names "
            f"it; stop it with `forewarn stop`). Log: {log}"
        )
    tail = "\n".join(text.splitlines()[-25:])
    return f"{what} failed; last lines of {log}:\n{tail}"


def prepare(settings: Settings, log: Path) -> None:
    """Airflow's database for ``settings.home``, created once (the demo does it in the
    background while it streams)."""
    ensure_database(airflow_env(settings), log)


def dags_test(settings: Settings, day_after: str, log: Path, *, publish_bootstrap: str) -> float:
    """Run the nightly DAG for the day before ``day_after`` in real Airflow (``airflow dags
    test``: every task, in this process tree, recorded in Airflow's database so the UI shows
    the run). Models and customer values are announced to ``publish_bootstrap``. Returns the
    seconds it took; AirflowError with the failed task's lines if the run fails."""
    env = airflow_env(settings)
    env["FOREWARN_PUBLISH_BOOTSTRAP"] = publish_bootstrap
    ensure_database(env, log)
    started = time.monotonic()
    code = _run(
        [str(airflow_bin()), "dags", "test", "forewarn_nightly", day_after], env, log, timeout=1800
    )
    text = log.read_text(errors="replace")
    if code != 0 or "state=success" not in text.split("dags test", 1)[-1]:
        failed = [
            line for line in text.splitlines() if "DataQualityError" in line or "ERROR" in line
        ]
        raise AirflowError(
            f"the nightly DAG run for {day_after} failed (log {log}):\n"
            + "\n".join(failed[-8:] or text.splitlines()[-20:])
        )
    return time.monotonic() - started


def task_states(log: Path) -> dict[str, str]:
    """Each task's final state as ``airflow dags test`` logged it: the last ``new_state=``
    before its ``[DAG TEST] end task task_id=...`` line. A mapped task's instances are named
    by their index (``build_features[0]``): one failed shard must not hide behind another."""
    states: dict[str, str] = {}
    state = "unknown"
    for line in log.read_text(errors="replace").splitlines():
        if "new_state=" in line:
            state = _field(line, "new_state=")
        elif "[DAG TEST] end task" in line:
            task, index = _field(line, "task_id="), _field(line, "map_index=")
            if task:
                mapped = index.lstrip("-").isdigit() and int(index) >= 0
                states[f"{task}[{index}]" if mapped else task] = state
    return states


def _field(line: str, key: str) -> str:
    if key not in line:
        return ""
    return line.split(key, 1)[1].split(maxsplit=1)[0].strip(",'\"")


def admin_password(env: dict[str, str]) -> str | None:
    path = Path(env["AIRFLOW_HOME"]) / PASSWORDS
    try:
        return json.loads(path.read_text()).get("admin")
    except (OSError, ValueError):
        return None


def serve(settings: Settings, port: int = DEFAULT_PORT, say=print) -> int:  # type: ignore[no-untyped-def]
    """``airflow standalone`` for this home until Ctrl-C (one is enough): prints the URL and
    the login once the API answers, records itself in the stack's state file."""
    import httpx

    from console.kafka.local import port_free

    env = airflow_env(settings, port=port)
    home = Path(settings.home)
    running = stack_home.running(home).get("airflow")
    if running:
        raise AirflowError(
            f"Airflow already runs for {home} (pid {running['pid']}, {running.get('url')}); "
            f"stop it with `forewarn --home {home} stop`"
        )
    if not port_free(port):
        raise AirflowError(
            f"port {port} is in use by another program: stop it, or pick another port "
            f"(`forewarn airflow --port 8081`, or `make airflow AIRFLOW_PORT=8081`)"
        )
    log = home / "airflow" / "standalone.log"
    say(f"preparing Airflow's database in {env['AIRFLOW_HOME']} (once) ...")
    ensure_database(env, log)
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(airflow_bin()), "standalone"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us alone; we stop the whole group once
        )
    stack_home.record(
        home, "airflow", pid=proc.pid, url=url, health=f"{url}/api/v2/monitor/health", log=str(log)
    )
    stopping = False  # asked to stop (Ctrl-C, SIGTERM), or cleaning up after Airflow exited

    def stop(*_: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            say("stopping Airflow (all of its processes) ...")
            stack_home.stop_pid(proc.pid, timeout=30)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    say(
        f"starting Airflow (API server, scheduler, DAG processor, triggerer; "
        f"{env['AIRFLOW__CORE__PARALLELISM']} task slots); log {log} ..."
    )
    try:
        announced, waiting_since = False, time.monotonic()
        while proc.poll() is None:
            if not announced and time.monotonic() - waiting_since > 180:
                say(f"Airflow has not answered on {url} for 3 minutes; see {log}")
                waiting_since = time.monotonic()
            if not announced:
                try:
                    up = httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200
                except httpx.HTTPError:
                    up = False
                password = admin_password(env)
                if up and password:
                    say(
                        f"Airflow is up: {url}/  user admin, password {password}\n"
                        f"  (kept in {Path(env['AIRFLOW_HOME']) / PASSWORDS})\n"
                        f"  Forewarn's pages: {url}/forewarn/ (at-risk list, model card, KPIs, "
                        "Data Docs)\n"
                        f"  DAG forewarn_nightly reads FOREWARN_HOME={env['FOREWARN_HOME']}\n"
                        "  Ctrl-C (once) or `forewarn stop` stops it"
                    )
                    announced = True
            time.sleep(1.0)
    finally:
        asked = stopping
        stop()
        stack_home.forget(home, "airflow")
    if not asked and proc.returncode and proc.returncode > 0:
        raise AirflowError(f"Airflow exited with code {proc.returncode}; see {log}")
    # A negative code: a signal from outside, such as `forewarn stop`; a clean stop too.
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m console.airflow` for make
    sys.exit(serve(Settings()))
