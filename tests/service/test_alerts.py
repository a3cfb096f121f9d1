"""Alerts: the transactional outbox, cancel rules, evidence uploads."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.service.conftest import Account, register
from vocalis.service import alerts as svc
from vocalis.service.errors import ConflictError, InvalidInputError, NotFoundError
from vocalis.storage import repositories as repo
from vocalis.storage.tables import Alert, Delivery, Evidence


def _contacts(client: TestClient, acct: Account) -> list[dict]:
    a = client.post("/v1/contacts", headers=acct.headers,
                    json={"name": "Mum", "phone": "+33612345678", "email": "mum@example.org"}).json()
    b = client.post("/v1/contacts", headers=acct.headers,
                    json={"name": "Hook", "webhook_url": "https://hooks.example/x"}).json()
    return [a, b]


def _count(client: TestClient, table: type) -> int:
    with client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def test_panic_alert_is_confirmed_with_one_delivery_per_contact_per_channel(client: TestClient, ann: Account) -> None:
    mum, hook = _contacts(client, ann)
    r = client.post("/v1/alerts", headers=ann.headers,
                    json={"reason": "help", "risk": 0.9, "location": {"latitude": 48.85, "longitude": 2.35,
                                                                        "accuracy_m": 12}})
    assert r.status_code == 201
    alert = r.json()
    assert alert["status"] == "confirmed" and alert["confirmed_at"] is not None
    assert alert["location"] == {"latitude": 48.85, "longitude": 2.35, "accuracy_m": 12.0}
    got = sorted((d["contact_id"], d["channel"], d["status"]) for d in alert["deliveries"])
    assert got == sorted([(mum["id"], "sms", "pending"), (mum["id"], "email", "pending"),
                          (hook["id"], "webhook", "pending")])
    with client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        keys = set(s.scalars(select(Delivery.idempotency_key)).all())
    assert keys == {f"{alert['id']}:{mum['id']}:sms", f"{alert['id']}:{mum['id']}:email",
                    f"{alert['id']}:{hook['id']}:webhook"}
    assert client.get(f"/v1/alerts/{alert['id']}", headers=ann.headers).json()["deliveries"] == alert["deliveries"]
    listed = client.get("/v1/alerts", headers=ann.headers).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == alert["id"]
    r = client.post("/v1/alerts", headers=ann.headers, json={"risk": 2})
    assert r.status_code == 422
    for bad in ("Infinity", "NaN"):  # not silently stored as null
        r = client.post("/v1/alerts", headers={**ann.headers, "content-type": "application/json"},
                        content='{"location": {"latitude": 1, "longitude": 0, "accuracy_m": ' + bad + "}}")
        assert r.status_code == 422 and "accuracy_m" in r.json()["error"]["message"], r.text
        assert "finite" in r.json()["error"]["message"]
    for path in ("/v1/alerts", "/v1/history", "/v1/calls"):  # an offset past any integer is a 422, not a 500
        r = client.get(f"{path}?offset=99999999999999999999", headers=ann.headers)
        assert r.status_code == 422 and "offset" in r.json()["error"]["message"], (path, r.text)
    assert client.get("/v1/alerts", headers=ann.headers).json()["total"] == 1
    # no SMS or SMTP provider in these settings: the answer says those deliveries will fail
    assert sorted(alert["warnings"]) == ["channel=email is not configured on this server: its 1 delivery(ies) will fail",
                                         "channel=sms is not configured on this server: its 1 delivery(ies) will fail"]
    assert client.get("/healthz").json()["channels"] == ["webhook"]


def test_a_panic_without_contacts_says_it_reaches_nobody(client: TestClient, ann: Account) -> None:
    r = client.post("/v1/alerts", headers=ann.headers, json={})
    assert r.status_code == 201 and r.json()["deliveries"] == []
    assert r.json()["warnings"] == ["this alert reaches nobody: you have no contacts (add one with POST /v1/contacts)"]
    assert client.get(f"/v1/alerts/{r.json()['id']}", headers=ann.headers).json()["warnings"] == r.json()["warnings"]


def test_outbox_failure_rolls_back_the_alert(client: TestClient, ann: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    _contacts(client, ann)

    def boom(session: object, deliveries: object) -> None:
        raise RuntimeError("disk full while writing the outbox")

    monkeypatch.setattr(repo, "add_deliveries", boom)
    r = client.post("/v1/alerts", headers=ann.headers, json={})
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert _count(client, Alert) == 0 and _count(client, Delivery) == 0
    # and directly through the service function in one transaction
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError), factory() as s, s.begin():
        svc.create_alert(s, ann.id, "stream", 0.8, "scream", None, "confirmed")
    assert _count(client, Alert) == 0


def test_cancel_rules_and_confirm(client: TestClient, ann: Account) -> None:
    _contacts(client, ann)
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as s, s.begin():
        countdown = svc.create_alert(s, ann.id, "stream", 0.7, "scream detected", None, "countdown")
        pending = svc.create_alert(s, ann.id, "stream", 0.6, None, svc.Location(1.0, 2.0), "pending")
        assert countdown.deliveries == [] and pending.deliveries == []
    r = client.post(f"/v1/alerts/{countdown.id}/cancel", headers=ann.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["cancelled_at"]
    r = client.post(f"/v1/alerts/{countdown.id}/cancel", headers=ann.headers)
    assert r.status_code == 409
    with factory() as s, s.begin():
        confirmed = svc.confirm_alert(s, ann.id, pending.id)
        assert confirmed.status == "confirmed" and len(confirmed.deliveries) == 3
        with pytest.raises(ConflictError):
            svc.confirm_alert(s, ann.id, countdown.id)
        with pytest.raises(NotFoundError):
            svc.cancel_alert(s, "someone-else", pending.id)
        with pytest.raises(InvalidInputError):
            svc.create_alert(s, ann.id, "carrier-pigeon")
    r = client.post(f"/v1/alerts/{pending.id}/cancel", headers=ann.headers)
    assert r.status_code == 409 and "confirmed" in r.json()["error"]["message"]
    manual = client.post("/v1/alerts", headers=ann.headers, json={}).json()
    assert client.post(f"/v1/alerts/{manual['id']}/cancel", headers=ann.headers).status_code == 409


def test_countdowns_a_dead_server_left_are_confirmed_by_the_next_one(make_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A server killed during a stream's countdown leaves its alert in ``countdown``: nobody can cancel
    it any more, so the next server confirms it (outbox rows, a note in the reason) once its countdown
    and the slack are over. A recent one (its session may be alive elsewhere), a cancelled one and a
    client-side ``pending`` one are left alone."""
    from datetime import timedelta

    from vocalis.service.routes.stream import ABANDONED_SLACK_S
    from vocalis.storage.tables import utcnow

    first = make_client()
    ann = register(first)
    _contacts(first, ann)
    long_ago = utcnow() - timedelta(seconds=10 + ABANDONED_SLACK_S + 5)  # default countdown 10 s
    with first.app.state.session_factory() as s, s.begin():  # type: ignore[attr-defined]
        dead = svc.create_alert(s, ann.id, "stream", 0.8, "live stream: scream", None, "countdown", now=long_ago)
        recent = svc.create_alert(s, ann.id, "stream", 0.8, "live stream: scream", None, "countdown")
        gone = svc.create_alert(s, ann.id, "stream", 0.8, "live stream: scream", None, "countdown", now=long_ago)
        svc.cancel_alert(s, ann.id, gone.id)
        pending = svc.create_alert(s, ann.id, "stream", 0.6, None, None, "pending", now=long_ago)
    second = make_client()  # the restarted server on the same database
    deadline = time.monotonic() + 10
    while (body := second.get(f"/v1/alerts/{dead.id}", headers=ann.headers).json())["status"] == "countdown":
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    assert body["status"] == "confirmed" and len(body["deliveries"]) == 3
    assert body["reason"] == f"live stream: scream; {svc.ABANDONED_NOTE}"
    status = {a: second.get(f"/v1/alerts/{a}", headers=ann.headers).json()["status"]
              for a in (recent.id, gone.id, pending.id)}
    assert status == {recent.id: "countdown", gone.id: "cancelled", pending.id: "pending"}


def test_confirm_abandoned_skips_the_live_sessions_alerts(client: TestClient, ann: Account) -> None:
    from datetime import timedelta

    from vocalis.storage.tables import utcnow

    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    old = utcnow() - timedelta(hours=1)
    with factory() as s, s.begin():
        a = svc.create_alert(s, ann.id, "stream", 0.8, None, None, "countdown", now=old)
        b = svc.create_alert(s, ann.id, "stream", 0.8, None, None, "countdown", now=old)
    with factory() as s, s.begin():
        done = svc.confirm_abandoned(s, utcnow(), live={b.id})
        assert [x.id for x in done] == [a.id] and done[0].reason == svc.ABANDONED_NOTE
    with factory() as s:
        assert s.get(Alert, b.id).status == "countdown"  # type: ignore[union-attr]
        assert svc.confirm_abandoned(s, utcnow(), live={b.id}) == []  # nothing left to do


def test_evidence_is_streamed_to_disk_with_sha256(make_client) -> None:  # type: ignore[no-untyped-def]
    from tests.service.conftest import register

    client = make_client(max_evidence_bytes=50_000)
    ann = register(client)
    alert = client.post("/v1/alerts", headers=ann.headers, json={}).json()
    data = bytes(range(256)) * 100  # 25.6 kB
    r = client.post(f"/v1/alerts/{alert['id']}/evidence", headers={**ann.headers, "content-type": "video/webm"},
                    content=data)
    assert r.status_code == 201, r.text
    ev = r.json()
    assert ev["sha256"] == hashlib.sha256(data).hexdigest() and ev["bytes"] == len(data)
    root: Path = client.app.state.settings.evidence_root  # type: ignore[attr-defined]
    files = list((root / ann.id / alert["id"]).iterdir())
    assert len(files) == 1 and files[0].read_bytes() == data and files[0].name.startswith(ev["id"])
    r = client.post(f"/v1/alerts/{alert['id']}/evidence", headers=ann.headers,
                    files={"file": ("clip.ogg", b"OggS" + data[:1000], "audio/ogg")})
    assert r.status_code == 201 and r.json()["content_type"] == "audio/ogg"
    assert len(client.get(f"/v1/alerts/{alert['id']}/evidence", headers=ann.headers).json()) == 2
    dl = client.get(f"/v1/alerts/{alert['id']}/evidence/{ev['id']}", headers=ann.headers)
    assert dl.status_code == 200 and dl.content == data

    # over the cap (raw and multipart): 413, nothing left on disk, no row
    big = b"\x00" * 60_000
    r = client.post(f"/v1/alerts/{alert['id']}/evidence", headers={**ann.headers, "content-type": "video/mp4"},
                    content=big)
    assert r.status_code == 413
    r = client.post(f"/v1/alerts/{alert['id']}/evidence", headers=ann.headers,
                    files={"file": ("big.mp4", big, "video/mp4")})
    assert r.status_code == 413
    r = client.post(f"/v1/alerts/{alert['id']}/evidence", headers={**ann.headers, "content-type": "text/html"},
                    content=b"<p>")
    assert r.status_code == 415
    assert len(list((root / ann.id / alert["id"]).iterdir())) == 2
    assert _count(client, Evidence) == 2
