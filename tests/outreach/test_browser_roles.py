"""Each role's main flow in a real headless Chromium (issue 17, item 8), on a store that looks
like a working morning: 26 visits (more than a day's capacity) across territories and skills,
retention calls (one linked to a visit), reply tasks with contact details, all timed against a
pinned clock so due times are real. Plus the 390 px phone layout.

Screenshots go to a temporary folder; with ``FOREWARN_SCREENS_DIR=docs/screens`` they are
written there instead, for docs/screens.md.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from PIL import Image
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from forewarn.events import CustomerValue
from forewarn.lake import LakeWriter
from outreach.api.main import create_app
from outreach.config import OutreachSettings
from outreach.migrate import migrate
from outreach.rules import OutreachRules, in_holdout
from outreach.store import TaskStore
from tests.conftest import free_port_pair
from tests.outreach.test_browser import browser  # noqa: F401  (the headless Chromium fixture)
from tests.utils import factories

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PAGE_WAIT_S = 15  # seconds a page may take to load on a loaded CI machine
NAMES = [
    "Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov",
    "Donald Knuth", "Frances Allen", "John Backus", "Radia Perlman", "Ken Thompson",
    "Margaret Hamilton", "Niklaus Wirth", "Leslie Lamport", "Hedy Lamarr", "Tony Hoare",
    "Annie Easley", "Dennis Ritchie", "Karen Jones", "Alan Kay", "Joan Clarke",
    "Claude Shannon", "Mary Keller", "Jean Sammet", "Robin Milner", "Sophie Wilson",
    "Bjarne Stroustrup", "Adele Goldberg", "Fran Bilas", "Kathleen Booth", "Carl Petri",
]  # fmt: skip
TERRITORIES = ("north", "south", "east", "west")
DEVICES = ("heat_pump", "water_heater", "alarm_panel")
#: Per device type, faults as the detector words them (streams/device_faults/detector.py).
FAULTS = {
    "heat_pump": [
        ("drift:current_a", "current_a 4.2 sigma above this unit's baseline (7.9 seen, 6 "
         "expected at this hour) for {h} h; error E42 x3 in 24 h"),
        ("spikes:vibration_mm_s", "vibration_mm_s spiked beyond 4 sigma 5 times in 24 h "
         "(now 3.9, expected 2.1)"),
    ],
    "water_heater": [
        ("drift:tank_temp_c", "tank_temp_c 3.1 sigma below this unit's baseline (55.2 seen, "
         "60 expected at this hour) for {h} h"),
        ("drift:pressure_bar", "pressure_bar 5.0 sigma above this unit's baseline (3.4 seen, "
         "3 expected at this hour) for {h} h"),
    ],
    "alarm_panel": [
        ("drift:battery_v", "battery_v 6.3 sigma below this unit's baseline (12.2 seen, 12.6 "
         "expected at this hour) for {h} h"),
        ("silence", "no reading for {h} h (usually every 60 min): the unit may be down or "
         "offline"),
    ],
}  # fmt: skip
TIERS = ("platinum", "gold", "silver", "bronze")


def _customers() -> list[str]:
    rules = OutreachRules()
    return [f"C{i:05d}" for i in range(200) if not in_holdout(f"C{i:05d}", rules)][:30]


def _seed(store: TaskStore, lake: Path) -> dict[str, str]:
    customers = _customers()
    store.import_customers(
        [
            {
                "customer_id": c,
                "name": NAMES[i],
                "territory": TERRITORIES[i % 4],
                "preferred_channel": ("phone", "email", "chat")[i % 3],
                "phone": f"+49 30 5550 {1000 + i}",
                "email": f"{NAMES[i].split()[0].lower()}@example.org",
                "address": f"{10 + i} Lindenstrasse, Berlin",
            }
            for i, c in enumerate(customers)
        ]
    )
    for i, c in enumerate(customers):
        store.apply_customer_value(
            CustomerValue(
                event_id=f"value-{c}",
                event_time=NOW - timedelta(days=1),
                customer_id=c,
                p_alive=0.8,
                expected_purchases_90d=2.0,
                clv_90d=100.0 + 40 * (30 - i),
                clv_365d=400.0 + 160 * (30 - i),
                value_tier=TIERS[min(3, i // 6)],
            )
        )
    for i in range(26):
        c = customers[i]
        fault, why = FAULTS[DEVICES[i % 3]][(i // 3) % 2]
        hours = 6 + 7 * (i % 6)
        device = f"D{100 + i:05d}"
        store.upsert_alert(
            factories.alert(
                i,
                event_id=f"visit-{i}",
                alert_id=f"visit-{i}",
                event_time=NOW - timedelta(hours=1 + (i * 5) % 40),
                dedup_key=f"visit:{device}",
                customer_id=c,
                device_id=device,
                fault_kind=fault,
                severity=("critical", "high", "medium", "high", "low")[i % 5],
                confidence=round(0.55 + 0.04 * (i % 10), 2),
                explanation=why.format(h=hours),
                evidence={"device_type": DEVICES[i % 3]},
            ),
            now=NOW,
        )
    ids: dict[str, str] = {}
    for j, c in enumerate(customers[1:7]):
        task = store.upsert_alert(
            factories.alert(
                100 + j,
                event_id=f"risk-{j}",
                alert_id=f"risk-{j}",
                event_time=NOW - timedelta(hours=3 + j),
                kind="churn_risk",
                dedup_key=f"retention:{c}",
                customer_id=c,
                device_id=None,
                fault_kind=None,
                severity=("critical", "high", "high", "medium", "medium", "low")[j],
                confidence=0.8,
                explanation=f"churn risk 0.{80 - 5 * j}: 3 late orders, 2 low CSAT answers",
                evidence={"reasons": ["3 late orders in 30 days", "2 low CSAT answers (1-2)"]},
            ),
            now=NOW,
        )
        ids.setdefault("retention", task.task_id)
    for k, c in enumerate(customers[10:14]):
        task = store.upsert_alert(
            factories.alert(
                200 + k,
                event_id=f"fb-{k}",
                alert_id=f"fb-{k}",
                event_time=NOW - timedelta(minutes=10 + 12 * k),
                kind="negative_feedback",
                dedup_key=f"feedback:T{k}",
                customer_id=c,
                device_id=None,
                fault_kind=None,
                severity=("critical", "high", "high", "medium")[k],
                explanation=f"CSAT 1 on {('email', 'chat', 'phone', 'email')[k]}: "
                "“The technician never came and nobody called back.”",
                evidence={"ticket_id": f"T{k}"},
            ),
            now=NOW,
        )
        ids.setdefault("feedback", task.task_id)
    LakeWriter(lake).write(
        [
            factories.order(
                customer_id=customers[1],
                event_id="o1-late",
                order_id="O1",
                status="late",
                event_time=NOW - timedelta(days=4),
            ),
            factories.ticket(
                customer_id=customers[1],
                event_id="t1-1",
                ticket_id="T-old",
                channel="chat",
                category="delivery",
                status="resolved",
                event_time=NOW - timedelta(days=3),
                text="Where is my order? Third time I ask.",
            ),
        ]
    )
    return ids


@pytest.fixture
def server(tmp_path):
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    migrate(url)
    store = TaskStore(url)
    ids = _seed(store, tmp_path / "lake")
    tokens = {
        role: store.create_token(name, role)
        for name, role in (
            ("tom", "technician"),
            ("dana", "dispatcher"),
            ("rita", "retention"),
            ("sam", "support"),
        )
    }
    store.create_token("tara", "technician")
    settings = OutreachSettings(
        database_url=store.url, lake_dir=tmp_path / "lake", secure_cookies=False
    )
    app = create_app(settings, store, background=False, clock=lambda: NOW)
    port = free_port_pair()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if uv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", tokens, store, ids
    uv.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("FOREWARN_SCREENS_DIR") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _viewport(driver, width: int, mobile: bool = False) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile},
    )


def _shot(driver, folder: Path, name: str, width: int) -> Path:
    """The whole page at ``width``: the viewport is stretched to the page's height."""
    mobile = width < 500
    _viewport(driver, width, mobile)
    height = min(4000, driver.execute_script("return document.documentElement.scrollHeight"))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    path = folder / f"{name}-{width}.png"
    driver.save_screenshot(str(path))
    _viewport(driver, width, mobile)
    assert path.stat().st_size > 5000
    # 256 colours are plenty for a page and make docs/screens a fifth of the size.
    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path


def _submit(driver, button_id: str) -> None:
    """Click a button that posts a form, and wait until the page it leads to has loaded.

    Without the wait, a lookup right after the click can find an element of the old page (the
    task page shows ``#message`` before and after) and read it while it is unloaded: Chromium
    then fails with "Node with given id does not belong to the document" (CI, stop 22). The
    same error can come from any command sent mid-navigation, so the wait asks the page itself
    (a mark the old page carries and the new one does not) and lets that error pass.
    """
    driver.execute_script("window.forewarnLeaving = true")
    driver.find_element(By.ID, button_id).click()
    WebDriverWait(driver, PAGE_WAIT_S, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script(
            "return !window.forewarnLeaving && document.readyState === 'complete'"
        )
    )


def _login(driver, url: str, token: str) -> WebDriverWait:
    wait = WebDriverWait(driver, PAGE_WAIT_S)
    driver.get(f"{url}/login")
    wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys(token)
    driver.find_element(By.ID, "login").click()
    # The login page has a heading too: wait for the list the login leads to.
    wait.until(ec.presence_of_element_located((By.ID, "filters")))
    return wait


def test_technician_opens_todays_first_visit_and_records_fixed(server, browser, shots):  # noqa: F811
    url, tokens, store, _ = server
    _viewport(browser, 1400)
    wait = _login(browser, url, tokens["technician"])
    assert "more waiting beyond today's capacity" in browser.find_element(By.ID, "summary").text
    _shot(browser, shots, "board", 1400)
    first = browser.find_elements(By.CSS_SELECTOR, "tr.task-row")[0]
    title = first.find_element(By.CSS_SELECTOR, "a.task-link").text
    assert "sigma" not in title and ":" in title, "plain words"
    first.find_element(By.CSS_SELECTOR, "a.task-link").click()
    wait.until(ec.presence_of_element_located((By.ID, "outcome-form")))
    assert not browser.find_element(By.ID, "outcome-fixed").is_selected(), "nothing preselected"
    assert "+49 30" in browser.find_element(By.ID, "customer").text
    _shot(browser, shots, "task-visit", 1400)
    browser.find_element(By.ID, "outcome-fixed").click()
    if browser.find_elements(By.ID, "linked-outcomes"):  # one contact covers both
        browser.find_element(By.ID, "linked-customer_kept").click()
    browser.find_element(By.ID, "note").send_keys("Replaced the inverter fan; running quietly.")
    _submit(browser, "record")
    message = wait.until(ec.presence_of_element_located((By.ID, "message")))
    assert message.text.startswith("Recorded: fixed.")
    (done,) = [t for t in store.tasks(kind="visit") if t.status == "done"]
    assert done.title == title and store.get(done.id).history[-1].actor == "tom"


def test_dispatcher_filters_reassigns_and_reschedules(server, browser, shots):  # noqa: F811
    url, tokens, _, _ = server
    _viewport(browser, 1400)
    wait = _login(browser, url, tokens["dispatcher"])
    Select(browser.find_element(By.ID, "f-territory")).select_by_value("north")
    Select(browser.find_element(By.ID, "f-severity")).select_by_value("critical")
    _submit(browser, "apply")
    wait.until(ec.presence_of_element_located((By.ID, "clear")))
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.task-row")
    assert rows and all("north/" in r.text and "critical" in r.text for r in rows)
    _shot(browser, shots, "board-filtered", 1400)
    rows[0].find_element(By.CSS_SELECTOR, "a.task-link").click()
    wait.until(ec.presence_of_element_located((By.ID, "assign-form")))
    Select(browser.find_element(By.ID, "assignee")).select_by_value("tara")
    _submit(browser, "assign")
    assert (
        "Assigned to tara." in wait.until(ec.presence_of_element_located((By.ID, "message"))).text
    )
    Select(browser.find_element(By.ID, "assignee")).select_by_value("tom")
    browser.find_element(By.ID, "assign-note").send_keys("tara is on another call-out")
    _submit(browser, "assign")
    wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "Assigned to tom."))
    due = browser.find_element(By.ID, "due_at")
    browser.execute_script("arguments[0].value = '2026-12-01T10:30'", due)
    browser.find_element(By.ID, "reschedule-reason").send_keys("customer at work until Tuesday")
    _submit(browser, "reschedule")
    wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "Rescheduled to"))
    history = browser.find_element(By.ID, "history").text
    assert "dana · assigned → tara" in history and "dana · assigned → tom" in history
    assert "rescheduled to 2026-12-01 10:30 UTC (customer at work until Tuesday)" in history
    _shot(browser, shots, "task-dispatch", 1400)


def test_retention_agent_works_the_top_customer(server, browser, shots):  # noqa: F811
    url, tokens, store, _ = server
    _viewport(browser, 1400)
    wait = _login(browser, url, tokens["retention"])
    assert "Not enough outcomes yet" in browser.find_element(By.ID, "uplift").text
    _shot(browser, shots, "retention", 1400)
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.task-row")
    assert "Alan Turing" in rows[0].text and "Linked visit" in rows[0].text, "top customer"
    rows[0].find_element(By.CSS_SELECTOR, "a.task-link").click()
    wait.until(ec.presence_of_element_located((By.ID, "timeline")))
    assert "Where is my order?" in browser.find_element(By.ID, "timeline").text
    browser.find_element(By.ID, "outcome-customer_kept").click()
    if browser.find_elements(By.ID, "linked-outcomes"):
        browser.find_element(By.ID, "linked-not_discussed").click()
    browser.find_element(By.ID, "note").send_keys("Goodwill credit of 30 EUR; staying.")
    _submit(browser, "record")
    assert (
        "Recorded: customer kept."
        in wait.until(ec.presence_of_element_located((By.ID, "message"))).text
    )
    kept = [t for t in store.tasks(kind="retention") if t.outcome == "customer_kept"]
    assert len(kept) == 1 and store.get(kept[0].id).history[-1].actor == "rita"


def test_support_agent_replies_within_the_sla(server, browser, shots):  # noqa: F811
    url, tokens, store, _ = server
    _viewport(browser, 1400)
    wait = _login(browser, url, tokens["support"])
    first = browser.find_elements(By.CSS_SELECTOR, "tr.task-row")[0]
    assert "due in" in first.text and "@example.org" not in first.text
    _shot(browser, shots, "support", 1400)
    first.find_element(By.CSS_SELECTOR, "a.task-link").click()
    wait.until(ec.presence_of_element_located((By.ID, "outcome-form")))
    assert "due in" in browser.find_element(By.ID, "countdown").text
    assert "@example.org" in browser.find_element(By.ID, "customer").text
    browser.find_element(By.ID, "note").send_keys(
        "Sorry: the visit was missed. A technician comes tomorrow at 9; I will call you first."
    )
    browser.find_element(By.ID, "outcome-replied").click()
    _shot(browser, shots, "task-support", 1400)
    _submit(browser, "record")
    assert (
        "Recorded: replied." in wait.until(ec.presence_of_element_located((By.ID, "message"))).text
    )
    (replied,) = [t for t in store.tasks(kind="feedback") if t.status == "done"]
    assert replied.closed_at < replied.due_at, "answered within the hour"


def test_the_board_and_a_task_work_on_a_390_px_phone(server, browser, shots):  # noqa: F811
    url, tokens, _, _ = server
    _viewport(browser, 390, mobile=True)
    wait = _login(browser, url, tokens["technician"])
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the board is {width} px wide on a 390 px screen"
    row = browser.find_elements(By.CSS_SELECTOR, "tr.task-row")[0]
    due = row.find_element(By.CSS_SELECTOR, "td[data-label='Due']")
    box = due.rect
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, "Due is on the screen"
    assert "due" in due.text.lower() or "overdue" in due.text.lower()
    _shot(browser, shots, "board", 390)
    row.find_element(By.CSS_SELECTOR, "a.task-link").click()
    wait.until(ec.presence_of_element_located((By.ID, "outcome-form")))
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the task page is {width} px wide on a 390 px screen"
    record = browser.find_element(By.ID, "record").rect
    assert record["x"] + record["width"] <= 390
    _shot(browser, shots, "task-visit", 390)


def test_swagger_ui_works_offline_under_the_docs_policy(server, browser):  # noqa: F811
    """Headless Chromium here has no internet: the UI renders only if the service serves it."""
    url, tokens, _, _ = server
    _login(browser, url, tokens["dispatcher"])
    browser.get(f"{url}/docs")
    wait = WebDriverWait(browser, 20)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    assert "/api/tasks/{task_id}/assign" in browser.find_element(By.ID, "swagger-ui").text
    assert browser.find_elements(By.CSS_SELECTOR, ".btn.authorize"), "the bearer scheme"
