"""Service KPIs against values computed by hand."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from forewarn.lake import LakeWriter, read_events
from models.kpis import kpis_of_day, service_kpis
from simulator import build_world
from simulator.render import customer_events

T = pd.Timestamp("2026-01-05T09:00:00Z")
H = pd.Timedelta(hours=1)


def _ticket(
    tid,
    customer,
    at,
    channel="phone",
    status="resolved",
    csat=None,
    nps=None,
    ces=None,
    fcr=None,
    category="question",
):
    return {
        "ticket_id": tid,
        "customer_id": customer,
        "event_time": at,
        "channel": channel,
        "status": status,
        "csat": csat,
        "nps": nps,
        "ces_agree": ces,
        "first_contact_resolution": fcr,
        "category": category,
    }


@pytest.fixture
def kpis():
    tickets = pd.DataFrame(
        [
            # Day 1, phone: A solved at once (CSAT 5, NPS 10, easy); B opened at 9, solved at 13.
            _ticket("A", "c1", T, csat=5, nps=10, ces=True, fcr=True),
            _ticket("B", "c2", T, status="opened"),
            _ticket("B", "c2", T + 4 * H, csat=2, nps=3, ces=False, fcr=False),
            # Day 1, email: C solved at once, NPS 8 (passive), CSAT 4.
            _ticket("C", "c3", T + 2 * H, channel="email", csat=4, nps=8, fcr=True),
            # Day 2: c2 cancels.
            _ticket("D", "c2", T + 24 * H, status="resolved", fcr=True, category="cancellation"),
        ]
    )
    orders = pd.DataFrame(
        [
            {"customer_id": "c4", "event_time": T - 48 * H},
            {"customer_id": "c5", "event_time": T + 25 * H},
        ]
    )
    return service_kpis(tickets, orders)


def _row(kpis, day, channel):
    (row,) = kpis[(kpis["date"] == day) & (kpis["channel"] == channel)].to_dict("records")
    return row


def test_ticket_kpis_per_channel(kpis):
    phone = _row(kpis, date(2026, 1, 5), "phone")
    assert phone["csat"] == 50  # one of two answers is 4-5
    assert phone["nps"] == 0  # one promoter, one detractor of two
    assert phone["fcr"] == 50 and phone["ces"] == 50
    assert phone["avg_resolution_hours"] == 2  # (0 h + 4 h) / 2
    email = _row(kpis, date(2026, 1, 5), "email")
    assert email["csat"] == 100 and email["nps"] == 0 and np.isnan(email["ces"])


def test_all_channels_row(kpis):
    day1 = _row(kpis, date(2026, 1, 5), "all")
    assert day1["csat"] == pytest.approx(200 / 3)
    assert day1["nps"] == pytest.approx(0)  # 1 promoter, 1 detractor, 1 passive
    assert day1["fcr"] == pytest.approx(200 / 3)
    assert day1["tickets_resolved"] == 3


def test_customer_rates(kpis):
    day1 = _row(kpis, date(2026, 1, 5), "all")
    assert day1["active_customers"] == 1  # only c4 existed before day 1
    assert day1["new_customer_rate"] == 300  # c1, c2, c3 joined: 3 / 1
    day2 = _row(kpis, date(2026, 1, 6), "all")
    assert day2["active_customers"] == 4
    assert day2["churn_rate"] == 25 and day2["retention_rate"] == 75
    assert day2["new_customer_rate"] == 25  # c5


def test_one_day_from_the_lake_equals_that_day_of_the_whole_history(tmp_path):
    # The nightly reads one day whole and ids and times of the rest (Arrow): same rows as the
    # in-memory computation over every event, on a simulated lake with cancellations.
    start = pd.Timestamp("2026-01-05", tz="UTC").to_pydatetime()
    world = build_world(n_customers=300, days=40, start=start, seed=5)
    LakeWriter(tmp_path).write(e for c in world.customers for e in customer_events(c, world))
    tickets = read_events(tmp_path, "tickets").to_pandas()
    orders = read_events(tmp_path, "orders", columns=["customer_id", "event_time"]).to_pandas()
    whole = service_kpis(tickets, orders)
    assert (whole["churn_rate"] > 0).any() and whole["avg_resolution_hours"].gt(0).any()
    for day in (date(2026, 1, 5), date(2026, 1, 20), date(2026, 2, 10)):
        expected = whole[whole["date"] == day].reset_index(drop=True)
        assert len(expected) >= 2, day
        got = kpis_of_day(tmp_path, day)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    # A day with no events has no rows either way.
    assert kpis_of_day(tmp_path, date(2027, 1, 1)).empty
