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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
    t["resolution_hours"] = (t["event_time"] - first_contact).dt.total_seconds() / 3600
    t["date"] = t["event_time"].dt.date
    per_channel = t.groupby(["date", "channel"]).apply(_ticket_kpis, include_groups=False)
    overall = t.groupby("date").apply(_ticket_kpis, include_groups=False)
    overall["channel"] = "all"
    ticket_kpis = pd.concat([per_channel.reset_index(), overall.reset_index()], ignore_index=True)
    customers = customer_rates(t, orders)
    out = ticket_kpis.merge(customers.assign(channel="all"), on=["date", "channel"], how="outer")
    return out.sort_values(["date", "channel"]).reset_index(drop=True)


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
