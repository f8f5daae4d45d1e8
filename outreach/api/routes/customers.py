"""A customer's cross-channel timeline, the retention uplift report, and how proactive each
team was (misses)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from outreach.api.deps import (
    ERRORS,
    ROLE_KINDS,
    CurrentUser,
    SessionDep,
    SettingsDep,
    require_kind,
)
from outreach.crud import customers as customer_crud
from outreach.crud import tasks as crud
from outreach.timeline import customer_timeline
from outreach.uplift import churn_times, uplift_report

router = APIRouter(prefix="/api", tags=["customers"], responses=ERRORS)


@router.get("/customers/{customer_id}/timeline")
def timeline(
    customer_id: str, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> list[dict[str, Any]]:
    """The customer's orders, tickets and tasks across channels, newest first. Visible to a
    role only for customers it has a task for (need to know)."""
    mine = ROLE_KINDS.get(user.role, frozenset())
    tasks = crud.list_tasks(session=session, customer_id=customer_id)
    if not tasks and customer_crud.get_profile(session=session, customer_id=customer_id) is None:
        # Whoever asks: an unknown customer is a 404 for admins too, never a 403 (issue 17).
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id}")
    if not any(t.kind in mine for t in tasks):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"role {user.role} has no task for customer {customer_id}"
        )
    # The database part is done: end its transaction before reading the lake, so that SQLite's
    # write lock (BEGIN IMMEDIATE) is not held while Parquet files are read.
    session.commit()
    return customer_timeline(settings.lake_dir, customer_id, tasks)


@router.get("/uplift")
def uplift(session: SessionDep, settings: SettingsDep, user: CurrentUser) -> dict[str, Any]:
    require_kind(user, "retention")
    tasks = crud.list_tasks(session=session, kind="retention")
    # The database part is done: end its transaction before reading the lake, so that SQLite's
    # write lock (BEGIN IMMEDIATE) is not held while Parquet files are read.
    session.commit()
    return uplift_report(tasks, churn_times(settings.lake_dir))


@router.get("/kpis")
def kpis(session: SessionDep, user: CurrentUser) -> list[dict[str, Any]]:
    """For each kind of task you work on: how many were worked before the customer acted and
    how many were misses (the customer left or complained first, or the task expired)."""
    return [
        crud.proactive_kpis(session=session, kind=kind)
        for kind in sorted(ROLE_KINDS.get(user.role, frozenset()))
    ]
