"""Customer profiles: what routing needs (territory, value tier, channel), from the CRM."""

from __future__ import annotations

from sqlalchemy.orm import Session

from outreach.models import CustomerProfile


def import_customers(*, session: Session, rows: list[dict[str, str]]) -> int:
    """Insert or replace a profile per row; return how many rows there were."""
    for row in rows:
        session.merge(
            CustomerProfile(
                customer_id=row["customer_id"],
                territory=row.get("territory", ""),
                value_tier=row.get("value_tier", ""),
                preferred_channel=row.get("preferred_channel", ""),
            )
        )
    return len(rows)
