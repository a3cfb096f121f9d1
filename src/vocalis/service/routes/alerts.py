"""Alerts: manual panic (confirmed at once, outbox rows in the same transaction), read, cancel, evidence."""

from __future__ import annotations

import mimetypes
from typing import Any

import anyio
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from vocalis.service import alerts as svc
from vocalis.service.convert import alert_out, evidence_out
from vocalis.service.deps import (
    MetricsDep,
    SessionDep,
    SettingsDep,
    UserDep,
    configured_channels,
    get_session_factory,
    wake_relay,
)
from vocalis.service.errors import NotFoundError
from vocalis.service.schemas import MAX_OFFSET, AlertCreate, AlertOut, ErrorBody, EvidenceOut, Page
from vocalis.service.uploads import store_body
from vocalis.storage import repositories as repo
from vocalis.storage.tables import Evidence, new_id

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

_EVIDENCE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A multipart form with a `file` field, or the raw audio/video as the body.",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "video/*": {"schema": {"type": "string", "format": "binary"}},
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AlertOut)
def create_alert(
    body: AlertCreate, request: Request, user: UserDep, session: SessionDep, metrics: MetricsDep
) -> AlertOut:
    """Panic button: a confirmed alert plus one delivery per contact per channel, in one transaction."""
    loc = None if body.location is None else svc.Location(
        body.location.latitude, body.location.longitude, body.location.accuracy_m
    )
    alert = svc.create_alert(session, user.id, "manual", body.risk, body.reason, loc, "confirmed")
    session.commit()
    metrics.alerts.labels("manual").inc()
    wake_relay(request)
    return alert_out(alert, configured_channels(request.app), warn=True)


@router.get("", response_model=Page[AlertOut])
def list_alerts(
    user: UserDep, session: SessionDep,
    limit: int = Query(50, ge=1, le=200), offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> Page[AlertOut]:
    """Your alerts, newest first, with their deliveries."""
    rows, total = repo.list_alerts(session, user.id, limit=limit, offset=offset)
    return Page[AlertOut](items=[alert_out(a) for a in rows], total=total, limit=limit, offset=offset)


@router.get("/{alert_id}", response_model=AlertOut, responses={404: {"model": ErrorBody}})
def get_alert(alert_id: str, user: UserDep, session: SessionDep, request: Request) -> AlertOut:
    """One alert with the status of each delivery (and ``warnings`` when it may reach nobody)."""
    return alert_out(svc.get_alert(session, user.id, alert_id), configured_channels(request.app), warn=True)


@router.post("/{alert_id}/cancel", response_model=AlertOut,
             responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
def cancel_alert(alert_id: str, user: UserDep, session: SessionDep, request: Request) -> AlertOut:
    """Cancel a pending or countdown alert; a confirmed one cannot be cancelled (409).

    A live stream counting down to this alert stops at once and sends ``cancelled`` on its socket."""
    alert = svc.cancel_alert(session, user.id, alert_id)
    session.commit()
    from vocalis.service.routes.stream import cancelled_elsewhere

    anyio.from_thread.run(cancelled_elsewhere, request.app, user.id, alert_id)
    return alert_out(alert)


@router.post("/{alert_id}/evidence", status_code=status.HTTP_201_CREATED, response_model=EvidenceOut,
             openapi_extra=_EVIDENCE_BODY,
             responses={404: {"model": ErrorBody}, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}})
async def upload_evidence(alert_id: str, request: Request, user: UserDep, settings: SettingsDep) -> EvidenceOut:
    """Attach a recording to an alert: streamed to disk (at most ``max_evidence_bytes``), sha256 recorded."""
    factory = get_session_factory(request)

    def check_owner() -> None:
        with factory() as session:
            svc.get_alert(session, user.id, alert_id)

    await run_in_threadpool(check_owner)
    evidence_id = new_id()
    ext = mimetypes.guess_extension((request.headers.get("content-type") or "").split(";")[0].strip()) or ".bin"
    if ext == ".bin" or "multipart" in (request.headers.get("content-type") or ""):
        ext = ""
    rel_dir = f"{user.id}/{alert_id}"
    stored = await store_body(request, settings.evidence_root / rel_dir, f"{evidence_id}{ext}",
                              settings.max_evidence_bytes)

    def save() -> EvidenceOut:
        try:
            with factory() as session, session.begin():
                row = repo.add_evidence(session, Evidence(
                    id=evidence_id, alert_id=alert_id, user_id=user.id,
                    path=f"{rel_dir}/{stored.path.name}", content_type=stored.content_type,
                    size_bytes=stored.size, sha256=stored.sha256,
                ))
                return evidence_out(row)
        except BaseException:
            stored.path.unlink(missing_ok=True)
            raise

    return await run_in_threadpool(save)


@router.get("/{alert_id}/evidence", response_model=list[EvidenceOut])
def list_evidence(alert_id: str, user: UserDep, session: SessionDep) -> list[EvidenceOut]:
    svc.get_alert(session, user.id, alert_id)
    return [evidence_out(e) for e in repo.list_evidence(session, user.id, alert_id)]


@router.get("/{alert_id}/evidence/{evidence_id}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, 404: {"model": ErrorBody}})
def download_evidence(
    alert_id: str, evidence_id: str, user: UserDep, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """The stored file."""
    row = repo.get_evidence(session, user.id, evidence_id)
    if row is None or row.alert_id != alert_id:
        raise NotFoundError(f"evidence={evidence_id} not found")
    path = settings.evidence_root / row.path
    if not path.is_file():
        raise NotFoundError(f"evidence={evidence_id} file is gone (retention)")
    return FileResponse(path, media_type=row.content_type, filename=path.name)
