"""One router per resource. A new resource (e.g. ``stream.py``) adds itself to :data:`ROUTERS`."""

from __future__ import annotations

from fastapi import APIRouter

from vocalis.service.routes import (
    alerts,
    api_keys,
    auth,
    calls,
    contacts,
    health,
    history,
    predict,
    stream,
    users,
    wellbeing,
)

ROUTERS: list[APIRouter] = [
    users.router,
    auth.router,
    api_keys.router,
    predict.router,
    contacts.router,
    alerts.router,
    history.router,
    health.router,
    stream.router,
    wellbeing.router,
    calls.router,
]

__all__ = ["ROUTERS"]
