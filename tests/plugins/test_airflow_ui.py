"""A real Airflow 3.3 API server with Forewarn's DAG and plugin: generated admin password,
the DAG listed, and the plugin's pages behind Airflow's login."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from forewarn.settings import Settings
from tests.conftest import free_port_pair

ROOT = Path(__file__).parents[2]
AIRFLOW = Path(sys.executable).parent / "airflow"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    """One Airflow API server for this module's tests (it takes a while to start)."""
    tmp_path = tmp_path_factory.mktemp("airflow-ui")
    port = free_port_pair()
    home = tmp_path / "airflow"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "FOREWARN_HOME": str(tmp_path / "forewarn"),
        "PYTHONPATH": str(ROOT),
    }
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        subprocess.run([str(AIRFLOW), *args], env=env, check=True, capture_output=True)
    log = (tmp_path / "api.log").open("w")
    proc = subprocess.Popen(
        [str(AIRFLOW), "api-server", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail(
                f"the API server did not start: {(tmp_path / 'api.log').read_text()[-2000:]}"
            )
        yield url, home, tmp_path / "forewarn"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def test_airflow_with_generated_password_dag_and_plugin(api_server):
    url, home, forewarn_home = api_server
    passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
    password = passwords["admin"]
    assert password != "admin" and len(password) >= 8
    assert httpx.post(
        f"{url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=10
    ).status_code in (400, 401, 403)
    token = httpx.post(
        f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=10
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    dags = httpx.get(f"{url}/api/v2/dags", headers=headers, timeout=10).json()
    assert "forewarn_nightly" in {d["dag_id"] for d in dags["dags"]}
    plugins = httpx.get(f"{url}/api/v2/plugins", headers=headers, timeout=10).json()
    assert "forewarn" in {p["name"] for p in plugins["plugins"]}

    assert httpx.get(f"{url}/forewarn/", timeout=10).status_code == 401, "login required"
    assert "At-risk list" in httpx.get(f"{url}/forewarn/", headers=headers, timeout=10).text
    missing = httpx.get(f"{url}/forewarn/at-risk", headers=headers, timeout=10)
    assert missing.status_code == 404 and "forewarn_nightly" in missing.text
    assert missing.headers["content-type"].startswith("text/html"), "a page, not JSON"
    lists = forewarn_home / "nightly" / "lists"
    lists.mkdir(parents=True)
    (lists / "at-risk-2026-02-28.csv").write_text(
        "rank,customer_id,value_at_risk,reasons\n1,C00042,650.5,<b>3 late orders</b>\n"
    )
    page = httpx.get(f"{url}/forewarn/at-risk", headers=headers, timeout=10).text
    assert "C00042" in page and "&lt;b&gt;3 late orders&lt;/b&gt;" in page


def _admin_headers(url: str, home: Path) -> dict[str, str]:
    passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
    token = httpx.post(
        f"{url}/auth/token",
        json={"username": "admin", "password": passwords["admin"]},
        timeout=10,
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_every_plugin_route_refuses_an_anonymous_request(api_server, tmp_path):
    """Issue 13: the Data Docs mount and FastAPI's docs pages were served without login."""
    from starlette.routing import Mount, Route

    url, home, forewarn_home = api_server
    sys.path.insert(0, str(ROOT / "plugins"))
    try:
        from forewarn_ui import create_app
    finally:
        sys.path.remove(str(ROOT / "plugins"))
    app = create_app(Settings().with_home(tmp_path), protect=False)
    paths = []
    for route in app.routes:
        assert isinstance(route, Route | Mount), route
        path = route.path.replace("{path:path}", "index.html").replace("{version}", "v1")
        paths.append(path + "/index.html" if isinstance(route, Mount) else path)
    assert "/data-docs/index.html" in paths and len(paths) >= 7
    docs = forewarn_home / "nightly" / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "index.html").write_text("<p>expectation suites</p>")
    for path in paths:
        answer = httpx.get(f"{url}/forewarn{path}", timeout=10)
        assert answer.status_code in (401, 403), (path, answer.status_code)
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        answer = httpx.get(f"{url}/forewarn{path}", timeout=10)
        assert answer.status_code in (401, 403, 404), (path, answer.status_code)
    admin = _admin_headers(url, home)
    shown = httpx.get(f"{url}/forewarn/data-docs/index.html", headers=admin, timeout=10)
    assert shown.status_code == 200 and "expectation suites" in shown.text
    outside = httpx.get(f"{url}/forewarn/data-docs/..%2F..%2Fpasswd", headers=admin, timeout=10)
    assert outside.status_code == 404
