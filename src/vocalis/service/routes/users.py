"""Registration, the current user, and erasure of the user's data.

Privacy: audio sent to ``/v1/predict``, ``/v1/wellbeing`` and ``/v1/stream`` is decoded and analysed
in memory and never written anywhere (a multipart upload is not even spooled to a temporary file);
only the results are kept (history, check-ins, enrolled embeddings). Recordings are stored only
when the user uploads evidence to an alert, an explicit action (the web UI records evidence only
when its "Record ... evidence" box is ticked or its button pressed). ``DELETE /v1/users/me/data``
erases all of it; retention (``VOCALIS_RETENTION_DAYS``) expires it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from vocalis.service.deps import SessionDep, SettingsDep, UserDep, get_session_factory
from vocalis.service.errors import ConflictError, NotFoundError
from vocalis.service.schemas import (
    ApiKeyCreated,
    ApiKeyOut,
    DataDeleted,
    ErrorBody,
    Registered,
    UserCreate,
    UserOut,
    WellbeingDeleted,
)
from vocalis.service.security import generate_api_key, hash_password
from vocalis.storage import repositories as repo

router = APIRouter(prefix="/v1/users", tags=["accounts"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Registered)
def register(body: UserCreate, session: SessionDep) -> Registered:
    """Create an account; the answer holds a first API key, shown this once."""
    if repo.get_user_by_email(session, body.email) is not None:
        raise ConflictError(f"email={body.email} is already registered")
    user = repo.create_user(session, email=body.email, password_hash=hash_password(body.password), name=body.name)
    new = generate_api_key()
    key = repo.create_api_key(session, user.id, prefix=new.prefix, key_hash=new.key_hash, name="first key")
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"email={body.email} is already registered") from None
    return Registered(
        user=UserOut.model_validate(user),
        api_key=ApiKeyCreated(key=new.key, **ApiKeyOut.model_validate(key).model_dump()),
    )


@router.get("/me", response_model=UserOut)
def me(user: UserDep, session: SessionDep) -> UserOut:
    """The authenticated user."""
    row = repo.get_user(session, user.id)
    if row is None:
        raise NotFoundError("user not found")
    return UserOut.model_validate(row)


@router.delete("/me/data", response_model=DataDeleted, responses={401: {"model": ErrorBody}})
async def delete_my_data(request: Request, user: UserDep, settings: SettingsDep) -> DataDeleted:
    """Erase your data: history, call reports, finished alerts, evidence (rows and files on disk),
    wellbeing check-ins, enrolled clips and personal models. Your account, API keys and contacts stay.

    Alerts still being delivered are kept (with their location) until they are done; the answer
    counts them in ``alerts_kept``. Idempotent: a second call removes nothing more.
    """
    from vocalis.service.retention import delete_user_files
    from vocalis.service.routes.wellbeing import delete_service_user_data

    factory = get_session_factory(request)

    def run() -> DataDeleted:
        with factory() as session, session.begin():
            rows: dict[str, Any] = repo.delete_user_data(session, user.id)
        files = delete_user_files(settings.evidence_root, user.id, rows.pop("paths"))
        wellbeing = delete_service_user_data(settings, user.id)
        return DataDeleted(**rows, evidence_files=files, wellbeing=WellbeingDeleted(**wellbeing))

    return await run_in_threadpool(run)
