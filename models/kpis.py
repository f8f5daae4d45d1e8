"""Service KPIs per day and channel, as MISSION.md defines them.

* CSAT = share of survey answers that are 4 or 5 (on 1-5), in %.
* NPS = % promoters (9-10) minus % detractors (0-6).
* FCR = tickets resolved at the first contact / tickets resolved, x 100.
* CES = share of effort answers that agree the interaction was easy, in %.
* Average resolution time = total time to resolve / tickets resolved (hours, from the
  ticket's first contact to its resolution).
* Churn rate = customers who cancelled that day / customers active at the start of the day,
  in %; retention rate = 100 - churn rate; new-customer rate = customers whose first event is
  that day / customers active at the start of the day, in %.

Ticket KPIs are per day (UTC, by the resolving contact or the survey answer) and channel, plus
an ``all`` row per day; customer rates are on the ``all`` row. Missing answers give NaN, not 0.

:func:`service_kpis` computes every day from event tables in memory; the nightly needs one day
of a lake that holds all history, and :func:`kpis_of_day` reads for it only that day's tickets
whole, the first contacts of those tickets, and customer ids and times of the rest (Arrow
group-bys, no Python objects per event): the same rows for that day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

TICKET_KPIS = ("csat", "nps", "fcr", "ces", "avg_resolution_hours", "tickets_resolved")
CUSTOMER_KPIS = ("active_customers", "churn_rate", "retention_rate", "new_customer_rate")


def _ticket_kpis(t: pd.DataFrame) -> pd.Series:
    csat = t["csat"].dropna()
    nps = t["nps"].dropna()
    ces = t["ces_agree"].dropna()
    resolved = t[t["status"] == "resolved"]
    return pd.Series(
        {
            "csat": 100 * (csat >= 4).mean() if len(csat) else np.nan,
            "nps": 100 * ((nps >= 9).mean() - (nps <= 6).mean()) if len(nps) else np.nan,
            "fcr": 100 * resolved["first_contact_resolution"].fillna(False).astype(bool).mean()
            if len(resolved)
            else np.nan,
            "ces": 100 * ces.astype(bool).mean() if len(ces) else np.nan,
            "avg_resolution_hours": resolved["resolution_hours"].mean()
            if len(resolved)
            else np.nan,
            "tickets_resolved": float(len(resolved)),
        }
    )


def service_kpis(tickets: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """KPIs from ticket and order events (lake columns); one row per day and channel."""
    t = tickets.copy()
    t["event_time"] = pd.to_datetime(t["event_time"], utc=True)
    first_contact = t.groupby("ticket_id")["event_time"].transform("min")
    return _kpi_rows(_ticket_kpi_rows(t, first_contact), customer_rates(t, orders))


def kpis_of_day(lake: Path, day: date) -> pd.DataFrame:
    """:func:`service_kpis`' rows for ``day`` (UTC) from the lake's tickets and orders up to
    its end, reading whole only that day's tickets."""
    from forewarn.lake import read_events

    start = datetime.combine(day, time(), UTC)
    end = start + timedelta(days=1)
    t = read_events(lake, "tickets", start=day, end=day + timedelta(days=1)).to_pandas()
    t = t[(t["event_time"] >= start) & (t["event_time"] < end)]
    if t.empty:
        tickets = pd.DataFrame(columns=["date", "channel", *TICKET_KPIS])
    else:
        # A ticket's first contact may be days before: its events before, ids and times only.
        ids = pa.array(t["ticket_id"].unique())
        contacts = read_events(
            lake,
            "tickets",
            end=day + timedelta(days=1),
            columns=["ticket_id", "event_time"],
            rows=ds.field("ticket_id").isin(ids),
        )
        first = contacts.group_by("ticket_id").aggregate([("event_time", "min")]).to_pandas()
        first_contact = t["ticket_id"].map(first.set_index("ticket_id")["event_time_min"])
        tickets = _ticket_kpi_rows(t, first_contact)
    return _kpi_rows(tickets, _rates_of_day(lake, day, start, end))


def _ticket_kpi_rows(t: pd.DataFrame, first_contact: pd.Series) -> pd.DataFrame:
    """Ticket KPIs per day and channel and ``all`` per day, from ticket events (``event_time``
    UTC) and each event's ticket's first contact."""
    t = t.assign(
        resolution_hours=(t["event_time"] - first_contact).dt.total_seconds() / 3600,
        date=t["event_time"].dt.date,
    )
    per_channel = t.groupby(["date", "channel"]).apply(_ticket_kpis, include_groups=False)
    overall = t.groupby("date").apply(_ticket_kpis, include_groups=False)
    overall["channel"] = "all"
    return pd.concat([per_channel.reset_index(), overall.reset_index()], ignore_index=True)


def _kpi_rows(tickets: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    out = tickets.merge(customers.assign(channel="all"), on=["date", "channel"], how="outer")
    return out.sort_values(["date", "channel"]).reset_index(drop=True)


def _rates_of_day(lake: Path, day: date, start: datetime, end: datetime) -> pd.DataFrame:
    """:func:`customer_rates`' row for ``day`` (none if no order or ticket falls on it)."""
    from forewarn.lake import read_events

    until = day + timedelta(days=1)
    # Copies of an event change no first time and no count of customers: not sought.
    columns = ["customer_id", "event_time", "category"]
    tickets = read_events(lake, "tickets", end=until, columns=columns, deduplicate=False)
    orders = read_events(lake, "orders", end=until, columns=columns[:2], deduplicate=False)
    times = pa.concat_tables(
        [tb.select(["customer_id", "event_time"]) for tb in (tickets, orders)]
    ).filter(pc.less(pc.field("event_time"), pa.scalar(end)))
    if not pc.any(pc.greater_equal(times["event_time"], pa.scalar(start))).as_py():
        return pd.DataFrame(columns=["date", *CUSTOMER_KPIS])
    first = times.group_by("customer_id").aggregate([("event_time", "min")])["event_time_min"]
    cancels = tickets.filter(pc.equal(tickets["category"], "cancellation"))
    cancelled = cancels.group_by("customer_id").aggregate([("event_time", "min")])["event_time_min"]

    def count(times: pa.ChunkedArray, low: datetime | None, high: datetime) -> int:
        keep = pc.less(times, pa.scalar(high))
        if low is not None:
            keep = pc.and_(keep, pc.greater_equal(times, pa.scalar(low)))
        return int(pc.sum(pc.cast(keep, pa.int64())).as_py() or 0)

    # A cancellation is an event, so everyone gone before the day had joined before it.
    active = count(first, None, start) - count(cancelled, None, start)
    churned, new = count(cancelled, start, end), count(first, start, end)
    churn_rate = 100 * churned / active if active else np.nan
    row = {
        "date": day,
        "active_customers": float(active),
        "churn_rate": churn_rate,
        "retention_rate": 100 - churn_rate if active else np.nan,
        "new_customer_rate": 100 * new / active if active else np.nan,
    }
    return pd.DataFrame([row], columns=["date", *CUSTOMER_KPIS])


def customer_rates(tickets: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """Active customers at the start of each day, and churn/retention/new-customer rates."""
    events = pd.concat(
        [
            tickets[["customer_id", "event_time", "category"]],
            orders[["customer_id", "event_time"]].assign(category="order"),
        ],
        ignore_index=True,
    )
    events["event_time"] = pd.to_datetime(events["event_time"], utc=True)
    events["date"] = events["event_time"].dt.date
    first = events.groupby("customer_id")["date"].min()
    cancelled = events[events["category"] == "cancellation"].groupby("customer_id")["date"].min()
    rows = []
    for day in sorted(events["date"].unique()):
        joined_before = first[first < day].index
        gone_before = cancelled[cancelled < day].index
        active = len(joined_before.difference(gone_before))
        churned = int((cancelled == day).sum())
        new = int((first == day).sum())
        churn_rate = 100 * churned / active if active else np.nan
        rows.append(
            {
                "date": day,
                "active_customers": float(active),
                "churn_rate": churn_rate,
                "retention_rate": 100 - churn_rate if active else np.nan,
                "new_customer_rate": 100 * new / active if active else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["date", *CUSTOMER_KPIS])
