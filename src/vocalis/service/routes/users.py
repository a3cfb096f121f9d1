"""Registration and the current user."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.exc import IntegrityError

from vocalis.service.deps import SessionDep, UserDep
from vocalis.service.errors import ConflictError, NotFoundError
from vocalis.service.schemas import ApiKeyCreated, ApiKeyOut, Registered, UserCreate, UserOut
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
