"""``/v1/wellbeing``: enrolment, check-ins, history, trend PNG, reset, owner scoping and errors."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.service.conftest import Account, wav_bytes

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

pytest.importorskip("matplotlib")

WAV = "audio/wav"


@pytest.fixture(autouse=True)
def _tones_stand_in_for_voices(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests use tones and noise as stand-ins for a voice: wellbeing clips without speech are
    accepted here (the refusal itself: tests/test_wellbeing.py, tests/service/test_wellbeing_api.py)."""
    monkeypatch.setenv("VOCALIS_WELLBEING_ALLOW_NO_SPEECH", "1")



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


def _store(client: TestClient) -> Any:
    from vocalis.service.routes.wellbeing import store_path
    from vocalis.wellbeing.store import WellbeingStore

    return WellbeingStore(store_path(client.app.state.settings))  # type: ignore[attr-defined]


def test_history_and_trend_in_a_time_zone(client: TestClient, ann: Account) -> None:
    from vocalis.wellbeing.service import store_user_id
    from vocalis.wellbeing.store import CheckIn

    day = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).date()
    with _store(client) as store:
        for h, m in ((12, 0), (23, 30)):  # 23:30 UTC is already the next day in Berlin
            ts = dt.datetime(day.year, day.month, day.day, h, m, tzinfo=dt.timezone.utc)
            store.add_checkin(CheckIn(store_user_id(ann.id), ts, "happy", 0.5, 0.1, 0.7))
    h = client.get("/v1/wellbeing/history", headers=ann.headers).json()
    assert h["tz"] == "UTC" and [(r["start"], r["n"]) for r in h["rows"]] == [(day.isoformat(), 2)]
    h = client.get("/v1/wellbeing/history", params={"tz": "Europe/Berlin"}, headers=ann.headers).json()
    assert h["tz"] == "Europe/Berlin"
    assert [(r["start"], r["n"]) for r in h["rows"]] == [(day.isoformat(), 1),
                                                         ((day + dt.timedelta(days=1)).isoformat(), 1)]
    assert h["n"] == 2 and all(c["ts"].endswith("+00:00") for c in h["checkins"])  # times stay UTC
    r = client.get("/v1/wellbeing/trend.png", params={"tz": "Europe/Berlin"}, headers=ann.headers)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    for path in ("/v1/wellbeing/history", "/v1/wellbeing/trend.png"):
        bad = client.get(path, params={"tz": "Mars/Olympus"}, headers=ann.headers)
        assert bad.status_code == 422, bad.text
        err = bad.json()["error"]
        assert err["code"] == "validation_error" and "tz='Mars/Olympus' must be an IANA time zone" in err["message"]


def test_personal_model_of_an_older_global_model(client: TestClient, ann: Account) -> None:
    import json

    from vocalis.wellbeing.service import store_user_id

    for freq, label in ((180.0, "happy"), (190.0, "happy"), (400.0, "sad")):
        assert _post_audio(client, ann, "/v1/wellbeing/enrol", wav_bytes(0.8, freq=freq), label=label)["status"] == 200
    with _store(client) as store:
        meta = store.models_dir / f"{store_user_id(ann.id)}.personal.json"
    current = json.loads(meta.read_text())["global_sha256"]
    assert len(current) == 64

    # fitted on another global model with the same feature extractor: refitted on the next use
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps({**doc, "global_sha256": "0" * 64}))
    r = _post_audio(client, ann, "/v1/wellbeing/checkins", wav_bytes(1.0, freq=185.0))
    assert r["status"] == 200 and r["json"]["personalised"] is True
    assert json.loads(meta.read_text())["global_sha256"] == current

    # ... and with embeddings of another extractor: 409, nothing mixed, nothing stored
    meta.write_text(json.dumps({**doc, "global_sha256": "1" * 64}))
    with _store(client) as store:
        store._db.execute("UPDATE wb_enrolments SET features_sha256 = ?", ("e" * 64,))
        store._db.commit()
    prof = client.get("/v1/wellbeing/profile", headers=ann.headers)
    for r2 in (_post_audio(client, ann, "/v1/wellbeing/checkins", wav_bytes(1.0, freq=185.0)),
               {"status": prof.status_code, "json": prof.json()}):
        assert r2["status"] == 409, r2
        err = r2["json"]["error"]
        assert err["code"] == "conflict"
        assert f"personal model was fitted on model sha256 111111111111, current model is {current[:12]}" in err["message"]
        assert "re-enrol" in err["message"]
    assert client.get("/v1/wellbeing/history", headers=ann.headers).json()["n"] == 1
    # resetting personalisation clears it
    assert client.delete("/v1/wellbeing", headers=ann.headers).status_code == 200
    r = _post_audio(client, ann, "/v1/wellbeing/checkins", wav_bytes(1.0, freq=185.0))
    assert r["status"] == 200 and r["json"]["personalised"] is False


def test_purge_wellbeing_function(tmp_path: Path) -> None:
    from vocalis.service.retention import purge_wellbeing
    from vocalis.wellbeing.store import CheckIn, WellbeingStore

    db = tmp_path / "wellbeing" / "wellbeing.db"
    assert purge_wellbeing(db, 30) == 0 and not db.parent.exists()  # nothing there: nothing created
    now = dt.datetime.now(dt.timezone.utc)
    with WellbeingStore(db) as store:
        for age in (1, 31, 200):
            store.add_checkin(CheckIn("u1", now - dt.timedelta(days=age), "sad", -0.5, -0.2, 0.6))
    assert purge_wellbeing(db, 30) == 2
    with WellbeingStore(db) as store:
        assert [round((now - c.ts).total_seconds() / 86400) for c in store.checkins("u1")] == [1]


def test_housekeeping_purges_expired_wellbeing_checkins(tmp_path: Path, make_client: Callable[..., TestClient]) -> None:
    from vocalis.service.settings import Settings
    from vocalis.wellbeing.store import CheckIn, WellbeingStore

    db = Settings(data_dir=tmp_path / "data").wellbeing_db_path
    now = dt.datetime.now(dt.timezone.utc)
    with WellbeingStore(db) as store:
        for age in (2, 20, 45):
            store.add_checkin(CheckIn("u1", now - dt.timedelta(days=age), "sad", -0.5, -0.2, 0.6))
    make_client(wellbeing_retention_days=10)  # housekeeping runs once at start-up, then every few hours
    deadline = time.monotonic() + 20
    while True:
        with WellbeingStore(db) as store:
            left = len(store.checkins("u1"))
        if left == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert left == 1


def test_delete_service_user_data_erases_one_account(client: TestClient, ann: Account, bob: Account) -> None:
    from vocalis.service.routes.wellbeing import delete_service_user_data, store_path

    for acc in (ann, bob):
        for freq, label in ((180.0, "happy"), (400.0, "sad")):
            assert _post_audio(client, acc, "/v1/wellbeing/enrol", wav_bytes(0.6, freq=freq), label=label)["status"] == 200
        assert _post_audio(client, acc, "/v1/wellbeing/checkins", wav_bytes(0.6))["status"] == 200
    settings = client.app.state.settings  # type: ignore[attr-defined]
    models = store_path(settings).parent / "models"
    assert len(list(models.iterdir())) == 4  # .npz + .json for each

    out = delete_service_user_data(settings, ann.id)
    assert out == {"checkins": 1, "enrolments": 2, "model_files": 2}
    assert len(list(models.iterdir())) == 2  # Bob's files stay
    assert client.get("/v1/wellbeing/history", headers=ann.headers).json()["n"] == 0
    assert client.get("/v1/wellbeing/profile", headers=ann.headers).json()["counts"] == {}
    assert client.get("/v1/wellbeing/history", headers=bob.headers).json()["n"] == 1
    assert client.get("/v1/wellbeing/profile", headers=bob.headers).json()["personalised"] is True
    assert delete_service_user_data(settings, ann.id) == {"checkins": 0, "enrolments": 0, "model_files": 0}


def test_clips_without_speech_are_refused_unless_allowed(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tone has no mood: 400 naming the rule, nothing stored; a spoken clip is taken; the setting
    ``wellbeing_allow_no_speech`` takes anything audible."""
    from tests.conftest import corpus_dir
    from tests.service.conftest import register
    from vocalis.audio.vad import silero_onnx_path

    if silero_onnx_path() is None:
        pytest.skip("silero-vad is not installed: nothing can tell speech from other sound")
    monkeypatch.delenv("VOCALIS_WELLBEING_ALLOW_NO_SPEECH")
    client = make_client()
    ann = register(client)
    for path, params in (("/v1/wellbeing/checkins", {}), ("/v1/wellbeing/enrol", {"label": "happy"})):
        r = _post_audio(client, ann, path, wav_bytes(1.0, freq=200.0), **params)
        assert r["status"] == 400 and r["json"]["error"]["code"] == "invalid_audio", r
        assert "recording: no speech heard: voice activity peaked at" in r["json"]["error"]["message"]
        assert "nothing was stored" in r["json"]["error"]["message"]
    assert client.get("/v1/wellbeing/history", headers=ann.headers).json()["n"] == 0
    assert client.get("/v1/wellbeing/profile", headers=ann.headers).json()["counts"] == {}
    voice = sorted((corpus_dir("ravdess") / "Actor_01").glob("03-01-03-*.flac"))[0]
    r = client.post("/v1/wellbeing/checkins", headers={**ann.headers, "content-type": "audio/flac"},
                    content=voice.read_bytes())
    assert r.status_code == 200, r.text
    lenient = make_client(wellbeing_allow_no_speech=True)
    bob = register(lenient, "bob@example.org")
    assert _post_audio(lenient, bob, "/v1/wellbeing/checkins", wav_bytes(1.0, freq=200.0))["status"] == 200
