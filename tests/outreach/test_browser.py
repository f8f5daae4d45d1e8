"""A retention agent's morning, in a real headless Chromium: log in, see the ranked list,
open the top task with its cross-channel history, record the outcome."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import timedelta

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from forewarn.lake import LakeWriter
from outreach.api.main import create_app
from outreach.config import OutreachSettings
from outreach.migrate import migrate
from outreach.rules import OutreachRules, in_holdout
from outreach.store import TaskStore
from tests.conftest import free_port_pair
from tests.utils import factories
from tests.utils.factories import T0

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def server(tmp_path):
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    migrate(url)
    store = TaskStore(url)
    customers = [f"C{i:05d}" for i in range(40) if not in_holdout(f"C{i:05d}", OutreachRules())]
    for i, (customer, severity) in enumerate(
        zip(customers, ["medium", "critical", "high"], strict=False)
    ):
        store.upsert_alert(
            factories.alert(
                i,
                kind="churn_risk",
                dedup_key=f"retention:{customer}",
                customer_id=customer,
                device_id=None,
                severity=severity,
                explanation=f"churn risk for {customer}: 3 late orders <b>bold?</b>",
                evidence={
                    "reasons": ["3 late orders", "2 low CSAT answers (1-2)"],
                    "value_eur": 500.0 * (i + 1),
                    "value_tier": "gold",
                },
            )
        )
    top = customers[1]
    LakeWriter(tmp_path / "lake").write(
        [
            factories.order(customer_id=top, event_id="o1-late", order_id="o1", status="late"),
            factories.ticket(
                customer_id=top,
                event_id="t1-1",
                ticket_id="t1",
                channel="chat",
                event_time=T0 + timedelta(hours=3),
                text="Where is my order?",
            ),
        ]
    )
    token = store.create_token("rita", "retention")
    settings = OutreachSettings(
        database_url=store.url, lake_dir=tmp_path / "lake", secure_cookies=False
    )
    port = free_port_pair()
    app = create_app(settings, store, background=False)
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if uv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", token, store, top
    uv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail(
            "chromium and chromedriver are needed: apt-get install chromium "
            "chromium-driver (make test installs them)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_retention_agent_records_an_outcome(server, browser, tmp_path):
    url, token, store, top = server
    wait = WebDriverWait(browser, 15)
    browser.get(f"{url}/retention")
    wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys(token)
    browser.find_element(By.ID, "login").click()
    wait.until(ec.presence_of_element_located((By.ID, "tasks")))
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.task-row")
    assert len(rows) == 3
    assert "critical" in rows[0].text and top in rows[0].text, "highest priority first"

    rows[0].find_element(By.CSS_SELECTOR, "a.task-link").click()
    wait.until(ec.presence_of_element_located((By.ID, "timeline")))
    explanation = browser.find_element(By.ID, "explanation").text
    assert "<b>bold?</b>" in explanation, "customer text is shown as text, not markup"
    assert "3 late orders" in browser.find_element(By.ID, "reasons").text
    timeline = browser.find_element(By.ID, "timeline").text
    assert "Where is my order?" in timeline and "order o1 late" in timeline
    assert "chat" in timeline
    browser.find_element(By.ID, "outcome-customer_kept").click()
    browser.find_element(By.ID, "note").send_keys("Offered a goodwill credit; staying.")
    browser.find_element(By.ID, "record").click()
    message = wait.until(ec.presence_of_element_located((By.ID, "message")))
    assert "Recorded: customer kept" in message.text
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.task-row")) == 2
    browser.save_screenshot(str(tmp_path / "retention.png"))
    assert (tmp_path / "retention.png").stat().st_size > 5000

    (done,) = [t for t in store.tasks(kind="retention") if t.status == "done"]
    assert done.customer_id == top and done.outcome == "customer_kept"
    assert store.get(done.id).history[-1].actor == "rita"
