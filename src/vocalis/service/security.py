"""Passwords (scrypt), API keys (stored as sha256) and signed bearer tokens (HMAC-SHA256).

FastAPI-free, so the WebSocket route and the CLI can use it too.

>>> h = hash_password("correct horse")
>>> verify_password("correct horse", h), verify_password("wrong", h)
(True, False)
>>> t = sign_token("u1", "k", ttl_seconds=60)
>>> verify_token(t, "k")
'u1'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from vocalis.service.errors import AuthError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
API_KEY_PREFIX = "vk_"
TOKEN_PREFIX = "vt."


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` with a random 16-byte salt per user."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64e(salt)}${_b64e(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=_b64d(salt), n=int(n), r=int(r), p=int(p), dklen=32,
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _b64d(digest))


def hash_api_key(key: str) -> str:
    """The sha256 hex digest of an API key: the only form stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    """A freshly generated key: ``key`` is shown to the user once, only ``key_hash`` is stored."""

    key: str
    prefix: str
    key_hash: str


def generate_api_key() -> NewApiKey:
    """``vk_<prefix>_<secret>``; the prefix finds the row, the hash of the whole key proves it."""
    prefix = secrets.token_hex(6)
    key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key=key, prefix=prefix, key_hash=hash_api_key(key))


def api_key_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed API key, else ``None``."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    prefix, sep, rest = key[len(API_KEY_PREFIX):].partition("_")
    if not sep or not rest or len(prefix) != 12:
        return None
    return prefix


def check_api_key(key: str, key_hash: str) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(hash_api_key(key), key_hash)


def sign_token(user_id: str, secret_key: str, ttl_seconds: int, now: float | None = None,
               key_id: str | None = None, auth_time: int | None = None) -> str:
    """A bearer token ``vt.<payload>.<signature>``; payload ``{"sub", "iat", "exp", "auth_time"}``
    (``auth_time``: when the password or API key was given, kept by renewals; default ``iat``), plus
    ``kid`` (the API key it was exchanged for: revoking that key revokes the token)."""
    iat = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": user_id, "iat": iat, "exp": iat + int(ttl_seconds),
                                 "auth_time": iat if auth_time is None else int(auth_time)}
    if key_id is not None:
        claims["kid"] = key_id
    payload = _b64e(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret_key.encode(), f"{TOKEN_PREFIX}{payload}".encode(), hashlib.sha256).digest()
    return f"{TOKEN_PREFIX}{payload}.{_b64e(sig)}"


def verify_token(token: str, secret_key: str, now: float | None = None) -> str:
    """The user id inside a valid, unexpired token; :class:`AuthError` otherwise."""
    sub: str = token_claims(token, secret_key, now)["sub"]
    return sub


def token_claims(token: str, secret_key: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid, unexpired token (``sub`` a non-empty string); :class:`AuthError` otherwise."""
    if not token.startswith(TOKEN_PREFIX):
        raise AuthError("token is malformed")
    payload, sep, sig = token[len(TOKEN_PREFIX):].partition(".")
    if not sep:
        raise AuthError("token is malformed")
    want = hmac.new(secret_key.encode(), f"{TOKEN_PREFIX}{payload}".encode(), hashlib.sha256).digest()
    try:
        ok = hmac.compare_digest(want, _b64d(sig))
        claims = json.loads(_b64d(payload)) if ok else None
    except (ValueError, TypeError):
        raise AuthError("token is malformed") from None
    if not ok or not isinstance(claims, dict):
        raise AuthError("token signature is invalid")
    if float(claims.get("exp", 0)) <= (time.time() if now is None else now):
        raise AuthError("token has expired")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError("token has no subject")
    return claims
