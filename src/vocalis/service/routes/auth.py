"""Bearer tokens: exchange a password or an API key for a short-lived signed token; renew one."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from fastapi import APIRouter

from vocalis.service.deps import SessionDep, SettingsDep, UserDep, authenticate
from vocalis.service.errors import AuthError
from vocalis.service.schemas import TokenOut, TokenRequest
from vocalis.service.security import api_key_prefix, hash_password, sign_token, verify_password
from vocalis.service.settings import Settings
from vocalis.storage import repositories as repo

router = APIRouter(prefix="/v1/auth", tags=["accounts"])

_DUMMY_HASH = hash_password("not a real password")


@router.post("/token", response_model=TokenOut,
             responses={401: {"description": "Wrong e-mail or password, or an invalid API key."}})
def token(body: TokenRequest, session: SessionDep, settings: SettingsDep) -> TokenOut:
    """A token valid ``token_ttl_seconds``; send it as ``Authorization: Bearer`` (or ``?token=`` on the WebSocket)."""
    key_id = None
    if body.api_key is not None:
        if api_key_prefix(body.api_key) is None:
            raise AuthError("api_key is not an API key (vk_...)")  # not a token: no token for a token
        caller = authenticate(session, settings, body.api_key)
        user_id, key_id = caller.id, caller.key_id
    else:
        assert body.email is not None and body.password is not None
        user = repo.get_user_by_email(session, body.email)
        # same work whether or not the e-mail exists (no timing oracle)
        ok = verify_password(body.password, user.password_hash if user else _DUMMY_HASH)
        if user is None or not ok:
            raise AuthError("email or password is incorrect")
        user_id = user.id
    return _issue(settings, user_id, key_id)


def _issue(settings: Settings, user_id: str, key_id: str | None, auth_time: int | None = None) -> TokenOut:
    """A new token valid ``token_ttl_seconds`` from now."""
    now = datetime.now(timezone.utc)
    ttl = settings.token_ttl_seconds
    tok = sign_token(user_id, settings.resolved_secret_key(), ttl, now.timestamp(), key_id=key_id,
                     auth_time=auth_time)
    return TokenOut(access_token=tok, expires_in=ttl,
                    expires_at=datetime.fromtimestamp(int(now.timestamp()) + ttl, timezone.utc))


@router.post("/refresh", response_model=TokenOut,
             responses={401: {"description": "Not a valid token, or its sign-in is older than token_max_age_seconds."}})
def refresh(user: UserDep, settings: SettingsDep) -> TokenOut:
    """A new token for the valid token in ``Authorization: Bearer`` (what keeps the web UI's live
    monitor signed in for hours), until ``token_max_age_seconds`` after the password or API key it
    descends from was given; then sign in again. An API key needs no renewal."""
    if user.via != "token" or user.auth_time is None:
        raise AuthError("refresh renews a token (vt...); an API key does not expire: exchange it at /v1/auth/token")
    age = int(time.time()) - user.auth_time
    if age > settings.token_max_age_seconds:
        raise AuthError(f"the sign-in this token descends from is {age} s old, more than "
                        f"token_max_age_seconds={settings.token_max_age_seconds}; sign in again")
    return _issue(settings, user.id, user.key_id, user.auth_time)
