"""``/v1/wellbeing``: enrolment, check-ins, history, trend PNG, reset, owner scoping and errors."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest

from tests.service.conftest import Account, wav_bytes

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

pytest.importorskip("matplotlib")

WAV = "audio/wav"


def _post_audio(client: TestClient, acc: Account, path: str, data: bytes, **params: str) -> dict:
    r = client.post(path, params=params, content=data, headers={**acc.headers, "Content-Type": WAV})
    return {"status": r.status_code, "json": r.json()}


def test_enrol_checkin_history_flow(client: TestClient, ann: Account) -> None:
    prof = client.get("/v1/wellbeing/profile", headers=ann.headers).json()
    assert "happy" in prof["labels"] and prof["counts"] == {} and prof["personalised"] is False

    # before any enrolment: the global model, stored
    r = _post_audio(client, ann, "/v1/wellbeing/checkins", wav_bytes(1.0, freq=200.0))
    assert r["status"] == 200, r
    c = r["json"]
    assert c["personalised"] is False and c["weight"] == 0.0
    assert c["label"] in prof["labels"] and 0 < c["confidence"] <= 1
    assert -1 <= c["valence"] <= 1 and -1 <= c["arousal"] <= 1
    assert "not a medical device" in c["disclaimer"] and "user" not in c

    # enrol two moods (form upload and raw body both work)
    for freq in (180.0, 190.0):
        r = _post_audio(client, ann, "/v1/wellbeing/enrol", wav_bytes(0.8, freq=freq), label="happy")
        assert r["status"] == 200, r
    assert r["json"]["counts"] == {"happy": 2} and r["json"]["personalised"] is False and "note" in r["json"]
    r2 = client.post("/v1/wellbeing/enrol", params={"label": "Sad"}, headers=ann.headers,
                     files={"file": ("s.wav", wav_bytes(0.8, freq=400.0), WAV)})
    assert r2.status_code == 200, r2.text
    body = r2.json()
    assert body["label"] == "sad" and body["counts"] == {"happy": 2, "sad": 1}
    assert body["personalised"] is True and 0 < body["weight"] < 1

    r = _post_audio(client, ann, "/v1/wellbeing/checkins", wav_bytes(1.0, freq=185.0))
    assert r["status"] == 200 and r["json"]["personalised"] is True and r["json"]["weight"] == pytest.approx(
        body["weight"], abs=1e-3)

    for period in ("day", "week"):
        h = client.get("/v1/wellbeing/history", params={"period": period, "days": 7}, headers=ann.headers)
        assert h.status_code == 200, h.text
        hj = h.json()
        assert hj["n"] == 2 and len(hj["rows"]) == 1 and hj["rows"][0]["n"] == 2
        assert hj["advice"]["triggered"] is False and "not a medical device" in hj["disclaimer"]
        assert len(hj["checkins"]) == 2

    prof = client.get("/v1/wellbeing/profile", headers=ann.headers).json()
    assert prof["counts"] == {"happy": 2, "sad": 1} and prof["personalised"] is True

    # reset personalisation keeps check-ins; ?all=true deletes them too
    r3 = client.delete("/v1/wellbeing", headers=ann.headers)
    assert r3.status_code == 200 and r3.json()["enrolments"] == 3 and r3.json()["deleted"] is False
    assert client.get("/v1/wellbeing/profile", headers=ann.headers).json()["counts"] == {}
    assert client.get("/v1/wellbeing/history", headers=ann.headers).json()["n"] == 2
    r4 = client.delete("/v1/wellbeing", params={"all": "true"}, headers=ann.headers)
    assert r4.status_code == 200 and r4.json()["checkins"] == 2 and r4.json()["deleted"] is True
    assert client.get("/v1/wellbeing/history", headers=ann.headers).json()["n"] == 0


def test_tips_after_sustained_low_mood(client: TestClient, ann: Account) -> None:
    from vocalis.service.routes.wellbeing import store_path
    from vocalis.wellbeing.service import store_user_id
    from vocalis.wellbeing.store import CheckIn, WellbeingStore

    now = dt.datetime.now(dt.timezone.utc)
    with WellbeingStore(store_path(client.app.state.settings)) as store:  # type: ignore[attr-defined]
        for d in (1, 2, 3):
            store.add_checkin(CheckIn(store_user_id(ann.id), now - dt.timedelta(days=d), "sad", -0.7, -0.5, 0.8))
    h = client.get("/v1/wellbeing/history", headers=ann.headers).json()
    assert h["advice"]["triggered"] is True and h["advice"]["tips"]
    assert all({"key", "text", "source"} <= set(t) for t in h["advice"]["tips"])
    r = _post_audio(client, ann, "/v1/wellbeing/checkins", wav_bytes(0.6))
    assert r["status"] == 200 and r["json"]["tips"] and r["json"]["advice"]["triggered"] is True


def test_owner_scoping(client: TestClient, ann: Account, bob: Account) -> None:
    assert _post_audio(client, ann, "/v1/wellbeing/enrol", wav_bytes(0.6), label="happy")["status"] == 200
    assert _post_audio(client, ann, "/v1/wellbeing/checkins", wav_bytes(0.6))["status"] == 200

    hb = client.get("/v1/wellbeing/history", headers=bob.headers).json()
    assert hb["n"] == 0 and hb["rows"] == [] and hb["checkins"] == []
    assert client.get("/v1/wellbeing/profile", headers=bob.headers).json()["counts"] == {}
    # Bob's reset (even ?all=true) touches only Bob's (empty) data
    rb = client.delete("/v1/wellbeing", params={"all": "true"}, headers=bob.headers).json()
    assert rb["enrolments"] == 0 and rb["checkins"] == 0
    assert client.get("/v1/wellbeing/history", headers=ann.headers).json()["n"] == 1
    assert client.get("/v1/wellbeing/profile", headers=ann.headers).json()["counts"] == {"happy": 1}
    # no credentials: 401 JSON
    r = client.get("/v1/wellbeing/history")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_bad_audio_and_bad_label(client: TestClient, ann: Account) -> None:
    r = _post_audio(client, ann, "/v1/wellbeing/checkins", b"this is not audio at all" * 10)
    assert r["status"] == 400 and r["json"]["error"]["code"] == "invalid_audio"
    r = _post_audio(client, ann, "/v1/wellbeing/enrol", b"garbage" * 20, label="happy")
    assert r["status"] == 400 and r["json"]["error"]["code"] == "invalid_audio"

    r = _post_audio(client, ann, "/v1/wellbeing/enrol", wav_bytes(0.5), label="ecstatic")
    assert r["status"] == 422 and r["json"]["error"]["code"] == "validation_error"
    assert "must be one of the model's labels" in r["json"]["error"]["message"]
    r = _post_audio(client, ann, "/v1/wellbeing/enrol", wav_bytes(0.5))
    assert r["status"] == 422 and "label" in r["json"]["error"]["message"]
    # nothing was stored by the failures
    assert client.get("/v1/wellbeing/profile", headers=ann.headers).json()["counts"] == {}
    assert client.get("/v1/wellbeing/history", headers=ann.headers).json()["n"] == 0

    r2 = client.get("/v1/wellbeing/history", params={"period": "month"}, headers=ann.headers)
    assert r2.status_code == 422 and r2.json()["error"]["code"] == "validation_error"


def test_trend_png(client: TestClient, ann: Account) -> None:
    empty = client.get("/v1/wellbeing/trend.png", headers=ann.headers)
    assert empty.status_code == 200 and empty.headers["content-type"] == "image/png"
    assert empty.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert _post_audio(client, ann, "/v1/wellbeing/checkins", wav_bytes(0.6))["status"] == 200
    r = client.get("/v1/wellbeing/trend.png", params={"days": 7}, headers=ann.headers)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG\r\n\x1a\n") and len(r.content) > 1000
