"""The user's prediction history, newest first."""

from __future__ import annotations

from fastapi import APIRouter, Query

from vocalis.service.deps import SessionDep, UserDep
from vocalis.service.schemas import MAX_OFFSET, Page, PredictionOut
from vocalis.storage import repositories as repo

router = APIRouter(prefix="/v1/history", tags=["history"])


@router.get("", response_model=Page[PredictionOut])
def history(
    user: UserDep, session: SessionDep,
    limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> Page[PredictionOut]:
    rows, total = repo.list_predictions(session, user.id, limit=limit, offset=offset)
    return Page[PredictionOut](items=[PredictionOut.model_validate(r) for r in rows], total=total,
                               limit=limit, offset=offset)
