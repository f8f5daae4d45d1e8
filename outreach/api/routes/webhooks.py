"""Admin view of the webhook outbox: dead deliveries and re-driving them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from outreach.api.deps import AdminUser

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


def _deliverer(request: Request):  # type: ignore[no-untyped-def]
    deliverer = request.app.state.deliverer
    if deliverer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no webhook is configured")
    return deliverer


@router.get("/dead")
def dead(request: Request, _: AdminUser) -> list[dict[str, Any]]:
    return [
        {
            "id": d.id,
            "task_id": d.task_id,
            "event": d.event,
            "attempts": d.attempts,
            "last_error": d.last_error,
        }
        for d in _deliverer(request).dead()
    ]


@router.post("/{delivery_id}/redrive", status_code=status.HTTP_202_ACCEPTED)
def redrive(delivery_id: int, request: Request, _: AdminUser) -> dict[str, Any]:
    _deliverer(request).redrive(delivery_id)
    return {"id": delivery_id, "status": "pending"}
