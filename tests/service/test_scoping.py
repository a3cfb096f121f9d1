"""Every read and write is scoped to its owner: another user's ids answer 404, never 403."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.conftest import Account, wav_bytes


def test_user_b_cannot_see_or_touch_user_a_data(client: TestClient, ann: Account, bob: Account) -> None:
    contact = client.post("/v1/contacts", headers=ann.headers,
                          json={"name": "Mum", "email": "mum@example.org"}).json()
    alert = client.post("/v1/alerts", headers=ann.headers, json={}).json()
    ev = client.post(f"/v1/alerts/{alert['id']}/evidence", headers={**ann.headers, "content-type": "audio/ogg"},
                     content=b"\x00" * 100).json()
    pred = client.post("/v1/predict", headers={**ann.headers, "content-type": "audio/wav"}, content=wav_bytes())
    assert pred.status_code == 200
    key_id = client.get("/v1/api-keys", headers=ann.headers).json()[0]["id"]

    h = bob.headers
    checks = [
        client.get(f"/v1/contacts/{contact['id']}", headers=h),
        client.patch(f"/v1/contacts/{contact['id']}", headers=h, json={"name": "x"}),
        client.delete(f"/v1/contacts/{contact['id']}", headers=h),
        client.get(f"/v1/alerts/{alert['id']}", headers=h),
        client.post(f"/v1/alerts/{alert['id']}/cancel", headers=h),
        client.post(f"/v1/alerts/{alert['id']}/evidence", headers={**h, "content-type": "audio/ogg"}, content=b"1"),
        client.get(f"/v1/alerts/{alert['id']}/evidence", headers=h),
        client.get(f"/v1/alerts/{alert['id']}/evidence/{ev['id']}", headers=h),
        client.delete(f"/v1/api-keys/{key_id}", headers=h),
    ]
    for r in checks:
        assert r.status_code == 404, (r.request.method, r.request.url, r.text)
        assert r.json()["error"]["code"] == "not_found"
    # same answer as for an id that does not exist at all
    assert client.get("/v1/alerts/0123456789abcdef0123456789abcdef", headers=h).json()["error"]["code"] == "not_found"
    # B's lists are empty; A's data is intact
    assert client.get("/v1/contacts", headers=h).json() == []
    assert client.get("/v1/alerts", headers=h).json()["total"] == 0
    assert client.get("/v1/history", headers=h).json()["total"] == 0
    assert client.get(f"/v1/contacts/{contact['id']}", headers=ann.headers).json()["name"] == "Mum"
    assert client.get("/v1/history", headers=ann.headers).json()["total"] == 1
    got = client.get(f"/v1/alerts/{alert['id']}/evidence/{ev['id']}", headers=ann.headers)
    assert got.status_code == 200 and got.content == b"\x00" * 100
    assert client.get("/v1/api-keys", headers=ann.headers).json()[0]["revoked_at"] is None
