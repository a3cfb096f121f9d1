"""Contacts CRUD and validation (E.164 phone, e-mail, http(s) webhook, channels need their field)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import Account


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"name": "A", "phone": "0612345678"}, "E.164"),
        ({"name": "A", "phone": "+0612345678"}, "E.164"),
        ({"name": "A", "phone": "+1234567890123456"}, "E.164"),
        ({"name": "A", "email": "nope"}, "email"),
        ({"name": "A", "webhook_url": "ftp://example.org/x"}, "http"),
        ({"name": "A", "webhook_url": "https://"}, "host"),
        ({"name": "A", "email": "a@example.org", "channels": ["sms"]}, "needs phone"),
        ({"name": "A", "phone": "+33612345678", "channels": ["webhook"]}, "needs webhook_url"),
        ({"name": "A", "phone": "+33612345678", "channels": ["pigeon"]}, "channels"),
        ({"name": "A"}, "at least one channel"),
        ({"name": "", "email": "a@example.org"}, "name"),
    ],
)
def test_invalid_contacts_are_422_with_the_rule(client: TestClient, ann: Account, body: dict, needle: str) -> None:
    r = client.post("/v1/contacts", headers=ann.headers, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error"
    assert needle in r.json()["error"]["message"]


def test_contact_crud_defaults_and_normalisation(client: TestClient, ann: Account) -> None:
    r = client.post("/v1/contacts", headers=ann.headers, json={
        "name": "Mum", "phone": "+33 6 12 34 56 78", "email": "Mum@Example.org", "webhook_url": "https://hooks.example/x",
    })
    assert r.status_code == 201
    c = r.json()
    assert c["phone"] == "+33612345678" and c["email"] == "mum@example.org"
    assert c["channels"] == ["sms", "email", "webhook"]  # default: every channel its fields allow (no call)
    assert c["webhook_secret"].startswith("whsec_")
    # this test server has no SMS or SMTP provider: saving says so, the webhook is fine
    assert [w.split(" is ")[0] for w in c["warnings"]] == ["channel=sms", "channel=email"]
    r = client.post("/v1/contacts", headers=ann.headers, json={"name": "Dad", "phone": "+14155550100",
                                                               "channels": ["call", "sms", "call"]})
    assert r.json()["channels"] == ["call", "sms"] and r.json()["webhook_secret"] is None
    assert [x["name"] for x in client.get("/v1/contacts", headers=ann.headers).json()] == ["Mum", "Dad"]

    r = client.patch(f"/v1/contacts/{c['id']}", headers=ann.headers, json={"name": "Mother", "channels": ["email"]})
    assert r.status_code == 200 and r.json()["name"] == "Mother" and r.json()["channels"] == ["email"]
    assert r.json()["phone"] == "+33612345678"
    # a patch that would break a rule is refused and changes nothing
    r = client.patch(f"/v1/contacts/{c['id']}", headers=ann.headers, json={"email": None})
    assert r.status_code == 422 and "needs email" in r.json()["error"]["message"]
    assert client.get(f"/v1/contacts/{c['id']}", headers=ann.headers).json()["email"] == "mum@example.org"

    assert client.delete(f"/v1/contacts/{c['id']}", headers=ann.headers).status_code == 204
    assert client.get(f"/v1/contacts/{c['id']}", headers=ann.headers).status_code == 404
    assert client.delete(f"/v1/contacts/{c['id']}", headers=ann.headers).status_code == 404
