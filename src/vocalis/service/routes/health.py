"""Liveness/readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vocalis.service.deps import MetricsDep, ModelDep, configured_channels
from vocalis.service.schemas import Health, ModelHealth
from vocalis.storage.db import ping

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(request: Request, model: ModelDep) -> JSONResponse:
    """200 when the database answers and the model is loaded, else 503 with the details."""
    db_ok = ping(request.app.state.engine)
    src = None
    if model.loaded:
        src = model.get().source
    h = Health(status="ok" if db_ok and model.loaded else "degraded", database=db_ok,
               model=ModelHealth(loaded=model.loaded, source=src), channels=configured_channels(request.app))
    return JSONResponse(h.model_dump(), status_code=200 if h.status == "ok" else 503)


@router.get("/metrics", response_class=Response, include_in_schema=True)
def metrics(m: MetricsDep) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
