"""Accounts: registration, API keys (hash only), tokens, bad credentials."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.service.conftest import Account, register
from vocalis.service.security import hash_api_key, sign_token, verify_token
from vocalis.storage.tables import ApiKey, User


def _me(client: TestClient, credential: str) -> int:
    return client.get("/v1/users/me", headers={"Authorization": f"Bearer {credential}"}).status_code


def test_register_returns_user_and_a_first_key_stored_only_as_hash(client: TestClient) -> None:
    r = client.post("/v1/users", json={"email": "Ann@Example.org", "password": "correct horse", "name": "Ann"})
    assert r.status_code == 201
    body = r.json()
    assert body["user"]["email"] == "ann@example.org" and body["user"]["name"] == "Ann"
    key = body["api_key"]["key"]
    assert key.startswith("vk_") and body["api_key"]["prefix"] in key
    assert _me(client, key) == 200
    with client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        row = s.scalars(select(ApiKey)).one()
        user = s.scalars(select(User)).one()
    assert row.key_hash == hash_api_key(key) and key not in row.key_hash
    assert user.password_hash.startswith("scrypt$") and "correct horse" not in user.password_hash
    listed = client.get("/v1/api-keys", headers={"Authorization": f"Bearer {key}"}).json()
    assert len(listed) == 1 and "key" not in listed[0] and "key_hash" not in listed[0]


def test_duplicate_email_is_409_and_short_password_422(client: TestClient, ann: Account) -> None:
    r = client.post("/v1/users", json={"email": "ANN@example.org", "password": "another pass"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    r = client.post("/v1/users", json={"email": "c@example.org", "password": "short"})
    assert r.status_code == 422 and "password" in r.json()["error"]["message"]
    r = client.post("/v1/users", json={"email": "not-an-email", "password": "long enough"})
    assert r.status_code == 422 and "email" in r.json()["error"]["message"]


def test_token_from_password_and_from_api_key(client: TestClient, ann: Account) -> None:
    r = client.post("/v1/auth/token", json={"email": "ann@example.org", "password": "correct horse"})
    assert r.status_code == 200
    tok = r.json()
    assert tok["token_type"] == "bearer" and tok["expires_in"] == 3600
    assert _me(client, tok["access_token"]) == 200
    assert verify_token(tok["access_token"], "test-secret-key") == ann.id
    r = client.post("/v1/auth/token", json={"api_key": ann.api_key})
    assert r.status_code == 200 and _me(client, r.json()["access_token"]) == 200


def test_bad_credentials_are_401_json(client: TestClient, ann: Account) -> None:
    for body in ({"email": "ann@example.org", "password": "wrong password"},
                 {"email": "nobody@example.org", "password": "correct horse"},
                 {"api_key": "vk_000000000000_nope"}):
        r = client.post("/v1/auth/token", json=body)
        assert r.status_code == 401, body
        assert r.json()["error"]["code"] == "unauthorized"
    assert client.post("/v1/auth/token", json={"email": "ann@example.org"}).status_code == 422
    assert client.get("/v1/users/me").status_code == 401
    assert "Bearer" in client.get("/v1/users/me").json()["error"]["message"]
    assert _me(client, "garbage") == 401
    assert _me(client, ann.api_key + "x") == 401


def test_expired_and_tampered_tokens_are_refused(client: TestClient, ann: Account) -> None:
    old = sign_token(ann.id, "test-secret-key", ttl_seconds=60, now=time.time() - 3600)
    r = client.get("/v1/users/me", headers={"Authorization": f"Bearer {old}"})
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    other = sign_token(ann.id, "another-secret", ttl_seconds=60)
    assert _me(client, other) == 401
    good = sign_token(ann.id, "test-secret-key", ttl_seconds=60)
    _payload, sig = good[3:].split(".")
    forged = sign_token("someone-else", "x", 60)[3:].split(".")[0]
    assert _me(client, f"vt.{forged}.{sig}") == 401
    assert _me(client, good) == 200


def test_api_keys_create_list_revoke(client: TestClient, ann: Account) -> None:
    r = client.post("/v1/api-keys", headers=ann.headers, json={"name": "phone"})
    assert r.status_code == 201
    second = r.json()
    assert _me(client, second["key"]) == 200
    keys = client.get("/v1/api-keys", headers=ann.headers).json()
    assert {k["name"] for k in keys} == {"first key", "phone"}
    assert client.delete(f"/v1/api-keys/{second['id']}", headers=ann.headers).status_code == 204
    assert _me(client, second["key"]) == 401
    assert _me(client, ann.api_key) == 200
    revoked = [k for k in client.get("/v1/api-keys", headers=ann.headers).json() if k["id"] == second["id"]]
    assert revoked[0]["revoked_at"] is not None


def test_revoking_a_key_revokes_the_tokens_exchanged_for_it(client: TestClient, ann: Account) -> None:
    phone = client.post("/v1/api-keys", headers=ann.headers, json={"name": "phone"}).json()
    tok = client.post("/v1/auth/token", json={"api_key": phone["key"]}).json()["access_token"]
    by_password = client.post("/v1/auth/token", json={"email": ann.email, "password": "correct horse"}).json()
    assert _me(client, tok) == 200
    assert client.delete(f"/v1/api-keys/{phone['id']}", headers=ann.headers).status_code == 204
    r = client.get("/v1/users/me", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert _me(client, by_password["access_token"]) == 200  # other credentials are unaffected
    r = client.post("/v1/auth/token", json={"api_key": by_password["access_token"]})  # a token is not a key
    assert r.status_code == 401 and "not an API key" in r.json()["error"]["message"]


def _refresh(client: TestClient, credential: str) -> tuple[int, dict]:
    r = client.post("/v1/auth/refresh", headers={"Authorization": f"Bearer {credential}"})
    return r.status_code, r.json()


def test_a_token_is_renewed_until_its_sign_in_is_too_old(client: TestClient, ann: Account) -> None:
    """The web UI's live monitor runs for hours on 1-hour tokens: /v1/auth/refresh gives a new token
    with the same sign-in time, up to token_max_age_seconds (24 h) after that sign-in."""
    from vocalis.service.security import token_claims

    first = client.post("/v1/auth/token", json={"email": ann.email, "password": "correct horse"}).json()
    code, renewed = _refresh(client, first["access_token"])
    assert code == 200 and renewed["expires_in"] == 3600 and _me(client, renewed["access_token"]) == 200
    a, b = (token_claims(t, "test-secret-key") for t in (first["access_token"], renewed["access_token"]))
    assert b["sub"] == ann.id and b["auth_time"] == a["auth_time"] == a["iat"]
    # signed in 23 h ago, renewed since: still renewable; 25 h ago: sign in again
    day = time.time() - 23 * 3600
    recent = sign_token(ann.id, "test-secret-key", 3600, now=time.time() - 60, auth_time=int(day))
    code, body = _refresh(client, recent)
    assert code == 200 and token_claims(body["access_token"], "test-secret-key")["auth_time"] == int(day)
    stale = sign_token(ann.id, "test-secret-key", 3600, now=time.time() - 60, auth_time=int(time.time()) - 25 * 3600)
    assert _me(client, stale) == 200  # still a valid token until it expires ...
    code, body = _refresh(client, stale)  # ... but not renewable
    assert code == 401 and "token_max_age_seconds=86400" in body["error"]["message"]
    code, body = _refresh(client, ann.api_key)  # a key does not expire
    assert code == 401 and "API key does not expire" in body["error"]["message"]
    expired = sign_token(ann.id, "test-secret-key", 60, now=time.time() - 3600)
    assert _refresh(client, expired)[0] == 401  # an expired token cannot be renewed
    assert client.post("/v1/auth/refresh").status_code == 401


def test_renewing_keeps_a_revoked_keys_tokens_revoked(client: TestClient, ann: Account) -> None:
    phone = client.post("/v1/api-keys", headers=ann.headers, json={"name": "phone"}).json()
    tok = client.post("/v1/auth/token", json={"api_key": phone["key"]}).json()["access_token"]
    code, renewed = _refresh(client, tok)
    assert code == 200
    assert client.delete(f"/v1/api-keys/{phone['id']}", headers=ann.headers).status_code == 204
    assert _me(client, renewed["access_token"]) == 401 and _refresh(client, renewed["access_token"])[0] == 401


def test_secret_key_is_created_once_when_not_configured(make_client) -> None:  # type: ignore[no-untyped-def]
    c = make_client(secret_key=None)
    a = register(c)
    tok = c.post("/v1/auth/token", json={"api_key": a.api_key}).json()["access_token"]
    settings = c.app.state.settings  # type: ignore[attr-defined]
    key_file = settings.data_dir / "secret.key"
    assert key_file.is_file() and oct(key_file.stat().st_mode)[-3:] == "600"
    assert verify_token(tok, key_file.read_text()) == a.id
