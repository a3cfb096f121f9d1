"""``POST /v1/predict``: emotion, valence and arousal of an uploaded clip; stored in the history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import load_audio
from vocalis.service.deps import MetricsDep, ModelDep, SettingsDep, UserDep, get_session_factory
from vocalis.service.schemas import ErrorBody, PredictionOut
from vocalis.service.uploads import read_audio_body
from vocalis.storage import repositories as repo
from vocalis.storage.tables import PredictionRecord

router = APIRouter(prefix="/v1", tags=["predict"])

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A multipart form with a `file` field, or the raw audio as the body "
                       "(Content-Type audio/*, e.g. audio/wav, audio/webm, audio/ogg, audio/mpeg).",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": d}
    for code, d in {
        400: "audio cannot be decoded or breaks a rule (empty, too short, too long)",
        401: "missing or bad credentials",
        413: "upload larger than max_upload_bytes",
        415: "unsupported content type",
        422: "missing `file` field",
    }.items()
}


@router.post("/predict", response_model=PredictionOut, openapi_extra=_BODY, responses=_ERRORS)
async def predict(
    request: Request, user: UserDep, settings: SettingsDep, model: ModelDep, metrics: MetricsDep
) -> PredictionOut:
    """Predict one clip (max ``max_upload_bytes`` bytes, ``max_audio_seconds`` decoded)."""
    data, _ = await read_audio_body(request, settings.max_upload_bytes)
    factory = get_session_factory(request)

    def infer_and_store() -> PredictionOut:
        x = load_audio(data, SAMPLE_RATE, max_duration=settings.max_audio_seconds)
        pred = model.get().predict(x, SAMPLE_RATE)
        with factory() as session, session.begin():
            rec = repo.add_prediction(session, PredictionRecord(
                user_id=user.id, label=pred.label, probabilities=pred.probabilities,
                valence=pred.valence, arousal=pred.arousal, source="upload",
                duration_s=round(x.size / SAMPLE_RATE, 3),
                speech_detected=None if pred.speech is None else pred.speech.detected,
                voiced_s=None if pred.speech is None else pred.speech.voiced_s_if_known,
            ))
            out = PredictionOut.model_validate(rec)
        return out

    out = await run_in_threadpool(infer_and_store)
    metrics.predictions.labels(out.label).inc()
    return out
