"""Admin view of the webhook outbox: dead deliveries and re-driving them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from outreach.api.deps import ERRORS, AdminUser, SessionDep, SettingsDep
from outreach.crud import webhooks as crud
from outreach.schemas import DeadDelivery

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"], responses=ERRORS)


def _configured(settings: SettingsDep) -> None:
    if not settings.webhook_url:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no webhook is configured")


@router.get("/dead", response_model=list[DeadDelivery])
def dead(session: SessionDep, settings: SettingsDep, _: AdminUser) -> list[DeadDelivery]:
    _configured(settings)
    return [DeadDelivery.model_validate(d) for d in crud.dead_deliveries(session=session)]


@router.post("/{delivery_id}/redrive", status_code=status.HTTP_202_ACCEPTED)
def redrive(
    delivery_id: int, session: SessionDep, settings: SettingsDep, _: AdminUser
) -> dict[str, Any]:
    _configured(settings)
    if not crud.redrive(session=session, delivery_id=delivery_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no delivery {delivery_id}")
    session.commit()
    return {"id": delivery_id, "status": "pending"}
