"""FastAPI dependencies (``Annotated`` aliases): settings, database session, current user, model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from vocalis.service.errors import AuthError
from vocalis.service.metrics import Metrics
from vocalis.service.model import ModelHolder
from vocalis.service.security import api_key_prefix, check_api_key, token_claims
from vocalis.service.settings import Settings
from vocalis.storage import repositories as repo
from vocalis.storage.db import SessionFactory
from vocalis.storage.tables import utcnow

_bearer = HTTPBearer(auto_error=False, description="An API key (vk_...) or a token from POST /v1/auth/token")


@dataclass(frozen=True)
class CurrentUser:
    """The authenticated user (a plain record, usable after the session closed)."""

    id: str
    email: str
    name: str | None
    via: str  # "api_key" or "token"
    key_id: str | None = None  # the API key used, or the one the token was exchanged for
    auth_time: int | None = None  # a token's: when the password or API key it descends from was given


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session_factory(request: Request) -> SessionFactory:
    return request.app.state.session_factory  # type: ignore[no-any-return]


def get_session(factory: Annotated[SessionFactory, Depends(get_session_factory)]) -> Iterator[Session]:
    """A session per request; routes commit explicitly, anything uncommitted is rolled back."""
    with factory() as session:
        yield session


def get_model(request: Request) -> ModelHolder:
    return request.app.state.model  # type: ignore[no-any-return]


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


def authenticate(session: Session, settings: Settings, credential: str) -> CurrentUser:
    """Resolve an API key or a bearer token to its user; :class:`AuthError` otherwise.

    Also what the WebSocket route uses for ``?token=``.
    """
    prefix = api_key_prefix(credential)
    if prefix is not None:
        now = utcnow()
        for key in repo.active_api_keys_by_prefix(session, prefix):
            if check_api_key(credential, key.key_hash):
                user = repo.get_user(session, key.user_id)
                if user is None:
                    break
                if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
                    key.last_used_at = now
                    session.commit()
                return CurrentUser(user.id, user.email, user.name, "api_key", key.id)
        raise AuthError("API key is invalid or revoked")
    claims = token_claims(credential, settings.resolved_secret_key())
    user = repo.get_user(session, claims["sub"])
    if user is None:
        raise AuthError("token's user no longer exists")
    kid = claims.get("kid")
    if kid is not None:
        issuer = repo.get_api_key(session, user.id, str(kid))
        if issuer is None or issuer.revoked_at is not None:
            raise AuthError("token was issued for an API key that has been revoked")
    auth_time = claims.get("auth_time", claims.get("iat"))
    return CurrentUser(user.id, user.email, user.name, "token", None if kid is None else str(kid),
                       int(auth_time) if isinstance(auth_time, (int, float)) else None)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ModelDep = Annotated[ModelHolder, Depends(get_model)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def get_current_user(
    session: SessionDep,
    settings: SettingsDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> CurrentUser:
    if creds is None or not creds.credentials:
        raise AuthError("missing credentials: send 'Authorization: Bearer <api key or token>'")
    return authenticate(session, settings, creds.credentials)


UserDep = Annotated[CurrentUser, Depends(get_current_user)]


def wake_relay(request: Request) -> None:
    """Ask the outbox relay for an immediate pass (no-op when it is not running)."""
    worker: Any = getattr(request.app.state, "relay", None)
    if worker is not None:
        worker.wake()


def configured_channels(app: Any) -> list[str] | None:
    """The alert channels this server can deliver on (a provider is configured), sorted; ``None``
    before the lifespan has built its notifiers."""
    notifiers = getattr(app.state, "notifiers", None)
    return None if notifiers is None else sorted(notifiers)
