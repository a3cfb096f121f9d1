"""``/v1/wellbeing``: personal enrolment, mood check-ins, history, trend plot and reset.

Everything is scoped to the authenticated user: the service user id (encoded to the wellbeing
store's id rules by :func:`vocalis.wellbeing.service.store_user_id`) is the only key used, so
another user's enrolments, check-ins and model are never read or changed.

Data live in one SQLite file, ``<data_dir>/wellbeing/wellbeing.db``, with personal models next to
it under ``<data_dir>/wellbeing/models/``. Check-ins older than ``wellbeing_retention_days`` are
purged by the app's housekeeping; :func:`delete_service_user_data` erases one account's wellbeing
data (for ``DELETE /v1/users/me/data``). A personal model fitted with an earlier global model is
refitted from the stored embeddings, or answered 409 ``conflict`` when they cannot be reused.
Not a medical device: every answer that interprets mood carries
:data:`vocalis.wellbeing.insight.DISCLAIMER`.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import check_audible, load_audio
from vocalis.audio.vad import check_speech
from vocalis.errors import ConfigError
from vocalis.service.deps import ModelDep, SettingsDep, UserDep
from vocalis.service.errors import ConflictError, InvalidInputError
from vocalis.service.routes.predict import _BODY, _ERRORS
from vocalis.service.settings import Settings
from vocalis.service.uploads import read_audio_body
from vocalis.wellbeing import service as wb
from vocalis.wellbeing.insight import DISCLAIMER, parse_tz, plot_trend, tz_name
from vocalis.wellbeing.personal import StaleModelError
from vocalis.wellbeing.retention import delete_user_data
from vocalis.wellbeing.store import CheckIn, WellbeingStore

router = APIRouter(prefix="/v1/wellbeing", tags=["wellbeing"])

_user_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_plot_lock = threading.Lock()  # pyplot keeps global state


def _user_lock(user: str) -> threading.Lock:
    """Serialises one user's writes (an enrolment's refit must not interleave with a reset)."""
    with _locks_guard:
        return _user_locks.setdefault(user, threading.Lock())


T = TypeVar("T")

_TZ_DOC = "IANA time zone whose calendar days and ISO weeks group the check-ins, e.g. Europe/Berlin."


def store_path(settings: Settings) -> Path:
    """The wellbeing SQLite file of this service (personal models go next to it under ``models/``)."""
    return settings.wellbeing_db_path


def delete_service_user_data(settings: Settings, user_id: str) -> dict[str, Any]:
    """Erase every wellbeing record of the service account ``user_id`` (check-ins, enrolled clips,
    personal-model files) under that user's write lock; returns the counts (no file paths).

    The entry point for ``DELETE /v1/users/me/data``; wraps :func:`vocalis.wellbeing.delete_user_data`.
    """
    uid = wb.store_user_id(user_id)
    with _user_lock(uid):
        d = delete_user_data(store_path(settings), uid)
    return {"checkins": d.checkins, "enrolments": d.enrolments, "model_files": len(d.files)}


def _tz_or_422(name: str) -> dt.tzinfo:
    try:
        return parse_tz(name)
    except ConfigError as e:
        raise InvalidInputError(str(e)) from e


def _fresh(fn: Callable[[], T]) -> T:
    """Run ``fn``; a personal model that cannot serve the current global model becomes 409 ``conflict``."""
    try:
        return fn()
    except StaleModelError as e:
        raise ConflictError(str(e)) from e


def _store(settings: Settings) -> WellbeingStore:
    return WellbeingStore(store_path(settings))


def _checkin_out(c: CheckIn) -> dict[str, Any]:
    d = c.to_dict()
    d.pop("user", None)
    d.pop("source", None)
    return d


def _label_or_422(bundle: Any, label: str) -> str:
    try:
        return wb.check_label(wb.check_vector_bundle(bundle), label)
    except ConfigError as e:
        raise InvalidInputError(str(e)) from e


@router.get("/profile")
async def profile(user: UserDep, settings: SettingsDep, model: ModelDep) -> dict[str, Any]:
    """The labels you can enrol, your enrolled clips per label and whether check-ins are personalised."""
    uid = wb.store_user_id(user.id)

    def run() -> dict[str, Any]:
        bundle = model.get()
        with _user_lock(uid), _store(settings) as store:  # personal_model() may refit and save
            counts = store.enrolment_counts(uid)
            pm = wb.personal_model(store, bundle, uid) if counts else None
        weight = pm.weight if pm is not None else 0.0
        return {"labels": bundle.labels, "counts": counts, "weight": round(weight, 4), "personalised": weight > 0,
                "temperature": pm.temperature_ if pm is not None else 1.0, "disclaimer": DISCLAIMER}

    return await run_in_threadpool(_fresh, run)


def _speech(settings: Settings, x: np.ndarray) -> np.ndarray:
    """``x`` when it holds speech (or ``wellbeing_allow_no_speech``); else an AudioError (a 400)."""
    if settings.wellbeing_allow_no_speech:
        return x
    return check_speech(x, "recording", hint=" Record yourself talking; nothing was stored.")


@router.post("/enrol", openapi_extra=_BODY, responses=_ERRORS)
async def enrol(
    request: Request, user: UserDep, settings: SettingsDep, model: ModelDep,
    label: str = Query(..., min_length=1, max_length=64, description="The mood of this clip (one of the model's labels)."),
) -> dict[str, Any]:
    """Enrol one labelled clip of your voice and refit your personal model."""
    uid = wb.store_user_id(user.id)
    bundle = await run_in_threadpool(model.get)
    lab = _label_or_422(bundle, label)
    data, _ = await read_audio_body(request, settings.max_upload_bytes)

    def run() -> dict[str, Any]:
        x = _speech(settings, check_audible(load_audio(data, SAMPLE_RATE, max_duration=settings.max_audio_seconds)))
        emb = bundle.features(x, SAMPLE_RATE)
        with _user_lock(uid), _store(settings) as store:
            res = wb.enrol(store, bundle, uid, lab, [emb], ["upload"])
        out = res.to_dict()
        if len(res.counts) < 2:
            out["note"] = "enrol at least two moods before your personal model is used"
        return out

    return await run_in_threadpool(_fresh, run)


@router.post("/checkins", openapi_extra=_BODY, responses=_ERRORS)
async def checkin(request: Request, user: UserDep, settings: SettingsDep, model: ModelDep) -> dict[str, Any]:
    """Check in: mood, valence, arousal and confidence of a clip (personalised once enrolled); stored."""
    uid = wb.store_user_id(user.id)
    data, _ = await read_audio_body(request, settings.max_upload_bytes)

    def run() -> dict[str, Any]:
        bundle = wb.check_vector_bundle(model.get())
        x = _speech(settings, check_audible(load_audio(data, SAMPLE_RATE, max_duration=settings.max_audio_seconds)))
        emb = bundle.features(x, SAMPLE_RATE)
        with _user_lock(uid), _store(settings) as store:
            c, advice = wb.check_in(store, bundle, uid, emb, source="upload")
        out = _checkin_out(c)
        out["advice"] = {"triggered": advice.triggered, "reason": advice.reason}
        if advice.triggered:
            out["tips"] = [t.to_dict() for t in advice.tips]
        out["disclaimer"] = advice.disclaimer
        return out

    return await run_in_threadpool(_fresh, run)


@router.get("/history")
async def history(
    user: UserDep, settings: SettingsDep,
    period: Literal["day", "week"] = Query("day", description="Aggregate by calendar day or ISO week (in ``tz``)."),
    days: int = Query(30, ge=1, le=366, description="Only the last N days."),
    tz: str = Query("UTC", max_length=64, description=_TZ_DOC),
) -> dict[str, Any]:
    """Your check-ins of the last ``days`` days aggregated by day or week, with tips after sustained low mood."""
    uid = wb.store_user_id(user.id)
    zone = _tz_or_422(tz)

    def run() -> dict[str, Any]:
        with _store(settings) as store:
            cs, rows, advice = wb.history(store, uid, days=days, period=period, tz=zone)
        return {"period": period, "days": days, "tz": tz_name(zone), "n": len(cs), "rows": [r.to_dict() for r in rows],
                "checkins": [_checkin_out(c) for c in cs[-200:]], "advice": advice.to_dict(),
                "disclaimer": advice.disclaimer}

    return await run_in_threadpool(run)


@router.get("/trend.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "Daily and weekly mood trend"}})
async def trend(
    user: UserDep, settings: SettingsDep, days: int = Query(30, ge=1, le=366, description="Only the last N days."),
    tz: str = Query("UTC", max_length=64, description=_TZ_DOC),
) -> Response:
    """A PNG of your daily valence/arousal and weekly valence over the last ``days`` days."""
    uid = wb.store_user_id(user.id)
    zone = _tz_or_422(tz)

    def run() -> bytes:
        with _store(settings) as store:
            cs, _, _ = wb.history(store, uid, days=days, tz=zone)
        with tempfile.TemporaryDirectory(prefix="vocalis-trend-") as tmp, _plot_lock:
            path = plot_trend(cs, Path(tmp) / "trend.png", tz=zone,
                              title=f"Your mood trend (last {days} days, {tz_name(zone)})")
            return path.read_bytes()

    png = await run_in_threadpool(run)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.delete("")
async def reset(
    user: UserDep, settings: SettingsDep,
    delete_all: bool = Query(False, alias="all", description="Also delete all your check-ins (everything Vocalis keeps for wellbeing)."),
) -> dict[str, Any]:
    """Reset your personalisation (enrolled clips and personal model); ``?all=true`` deletes check-ins too."""
    uid = wb.store_user_id(user.id)

    def run() -> dict[str, Any]:
        if delete_all:
            d = delete_service_user_data(settings, user.id)
            return {"enrolments": d["enrolments"], "checkins": d["checkins"], "deleted": True}
        with _user_lock(uid), _store(settings) as store:
            return {"enrolments": store.reset_personalisation(uid), "checkins": 0, "deleted": False}

    return await run_in_threadpool(run)
