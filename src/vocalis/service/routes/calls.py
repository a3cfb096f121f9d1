"""Emergency-call triage: ``POST /v1/calls`` analyses a recording into the caller's queue.

The audio is analysed in memory and not kept; the report (priority, reasons, signals,
caller-state timeline, transcript) is stored for the queue and purged with the retention period.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import load_audio
from vocalis.service.deps import ModelDep, SessionDep, SettingsDep, UserDep, get_session_factory
from vocalis.service.errors import NotFoundError
from vocalis.service.model import ModelHolder
from vocalis.service.routes.predict import _BODY, _ERRORS
from vocalis.service.schemas import MAX_OFFSET, CallOut, CallUpdate, Page
from vocalis.service.settings import Settings
from vocalis.service.uploads import read_audio_body
from vocalis.storage import repositories as repo
from vocalis.storage.tables import CallRecord

router = APIRouter(prefix="/v1/calls", tags=["calls"])

_analyzers: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def analyzer_for(settings: Settings, model: ModelHolder) -> Any:
    """One :class:`~vocalis.triage.CallAnalyzer` per configuration per process (built on first use)."""
    from vocalis.bundle.runtime import load_bundle
    from vocalis.triage import CallAnalyzer

    key = (str(settings.triage_model_path), str(model.path), settings.triage_asr_model, settings.triage_language,
           str(settings.triage_lexicon_path), settings.max_audio_seconds)
    with _lock:
        if key not in _analyzers:
            from vocalis.triage import TriageConfig

            bundle = load_bundle(settings.triage_model_path) if settings.triage_model_path else model.get()
            _analyzers[key] = CallAnalyzer(
                bundle, asr_model=settings.triage_asr_model or None, lexicon=settings.triage_lexicon_path,
                language=settings.triage_language, config=TriageConfig(max_call_s=settings.max_audio_seconds),
            )
        return _analyzers[key]


def _out(rec: CallRecord, full: bool) -> CallOut:
    r = rec.report
    return CallOut(
        id=rec.id, created_at=rec.created_at, filename=rec.filename, status=rec.status,  # type: ignore[arg-type]
        priority=rec.priority, level=rec.level, duration_s=rec.duration_s, reasons=r.get("reasons", []),
        signals=r.get("signals", []), transcript=r.get("transcript", {}).get("text", ""),
        report=r if full else None,
    )


@router.post("", response_model=CallOut, status_code=201, openapi_extra=_BODY, responses=_ERRORS)
async def triage_call(request: Request, user: UserDep, settings: SettingsDep, model: ModelDep) -> CallOut:
    """Analyse one call recording (max ``max_upload_bytes`` bytes, ``max_audio_seconds`` decoded) into the queue."""
    data, _ = await read_audio_body(request, settings.max_upload_bytes)
    filename = request.headers.get("x-filename")
    factory = get_session_factory(request)

    def analyse_and_store() -> CallOut:
        x = load_audio(data, SAMPLE_RATE, max_duration=settings.max_audio_seconds)
        report = analyzer_for(settings, model).analyse(x, SAMPLE_RATE, call_id=filename or "call").to_dict()
        with factory() as session, session.begin():
            rec = repo.add_call(session, CallRecord(
                user_id=user.id, filename=(filename or None) and filename[:300], status="waiting",
                priority=report["priority"], level=report["level"], duration_s=report["duration_s"], report=report,
            ))
            return _out(rec, full=True)

    return await run_in_threadpool(analyse_and_store)


@router.get("", response_model=Page[CallOut])
def queue(
    user: UserDep, session: SessionDep,
    status: str = Query("waiting", pattern="^(waiting|handled|all)$", description="waiting (the queue), handled, all"),
    limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> Page[CallOut]:
    """The call queue: highest priority first, then first come first served."""
    rows, total = repo.list_calls(session, user.id, status=None if status == "all" else status, limit=limit,
                                  offset=offset)
    return Page[CallOut](items=[_out(r, full=False) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{call_id}", response_model=CallOut)
def get_call(call_id: str, user: UserDep, session: SessionDep) -> CallOut:
    rec = repo.get_call(session, user.id, call_id)
    if rec is None:
        raise NotFoundError(f"call id={call_id!r} not found")
    return _out(rec, full=True)


@router.patch("/{call_id}", response_model=CallOut)
def update_call(call_id: str, body: CallUpdate, user: UserDep, session: SessionDep) -> CallOut:
    """Mark a call handled (off the queue) or waiting again."""
    rec = repo.get_call(session, user.id, call_id)
    if rec is None:
        raise NotFoundError(f"call id={call_id!r} not found")
    rec.status = body.status
    session.commit()
    return _out(rec, full=False)
