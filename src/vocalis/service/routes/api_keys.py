"""API keys: create (shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from vocalis.service.deps import SessionDep, UserDep
from vocalis.service.errors import NotFoundError
from vocalis.service.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from vocalis.service.security import generate_api_key
from vocalis.storage import repositories as repo
from vocalis.storage.tables import utcnow

router = APIRouter(prefix="/v1/api-keys", tags=["accounts"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
def create_key(user: UserDep, session: SessionDep, body: ApiKeyCreate | None = None) -> ApiKeyCreated:
    """A new key; ``key`` is in this answer only (the server keeps its sha256)."""
    new = generate_api_key()
    row = repo.create_api_key(session, user.id, prefix=new.prefix, key_hash=new.key_hash,
                              name=body.name if body else None)
    session.commit()
    return ApiKeyCreated(key=new.key, **ApiKeyOut.model_validate(row).model_dump())


@router.get("", response_model=list[ApiKeyOut])
def list_keys(user: UserDep, session: SessionDep) -> list[ApiKeyOut]:
    """Your keys (prefixes and dates, never the keys)."""
    return [ApiKeyOut.model_validate(k) for k in repo.list_api_keys(session, user.id)]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(key_id: str, user: UserDep, session: SessionDep) -> Response:
    """Revoke a key: it stops working at once."""
    key = repo.get_api_key(session, user.id, key_id)
    if key is None:
        raise NotFoundError(f"api key={key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
