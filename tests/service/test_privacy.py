"""Privacy: audio is analysed in memory and never stored unless the user uploads evidence;
``DELETE /v1/users/me/data`` erases one user's data (rows and files on disk) and nobody else's;
retention (``retention_days``) is enforced by the app's housekeeping.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.service.conftest import Account, register, wav_bytes
from vocalis.storage.tables import Alert, Delivery, Evidence, PredictionRecord, utcnow

pytest.importorskip("matplotlib")  # the wellbeing routes


@pytest.fixture(autouse=True)
def _tones_stand_in_for_voices(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests use tones and noise as stand-ins for a voice: wellbeing clips without speech are
    accepted here (the refusal itself: tests/test_wellbeing.py, tests/service/test_wellbeing_api.py)."""
    monkeypatch.setenv("VOCALIS_WELLBEING_ALLOW_NO_SPEECH", "1")



def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def test_audio_is_analysed_in_memory_and_not_stored(client: TestClient, ann: Account,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1.5 MB multipart upload (over Starlette's 1 MiB spool) and a raw body leave no file behind."""
    data_dir = client.app.state.settings.data_dir  # type: ignore[attr-defined]
    before = _files(data_dir)
    opened: list[Any] = []
    real = tempfile.TemporaryFile

    def spy(*a: Any, **kw: Any) -> Any:
        opened.append((a, kw))
        return real(*a, **kw)

    monkeypatch.setattr(tempfile, "TemporaryFile", spy)
    big = wav_bytes(48.0)
    assert len(big) > 1.4 * 1024 * 1024
    r = client.post("/v1/predict", headers=ann.headers, files={"file": ("long.wav", big, "audio/wav")})
    assert r.status_code == 200, r.text
    r = client.post("/v1/predict", headers={**ann.headers, "content-type": "audio/wav"}, content=wav_bytes(1.0))
    assert r.status_code == 200, r.text
    r = client.post("/v1/wellbeing/checkins", headers=ann.headers,
                    files={"file": ("c.wav", wav_bytes(1.0), "audio/wav")})
    assert r.status_code == 200, r.text
    assert opened == []  # nothing spooled to a temporary file
    new = {p for p in _files(data_dir) - before if not p.name.startswith("vocalis.db")}
    assert {p.parts[0] for p in new} <= {"wellbeing"}  # the check-in's scores, no audio
    assert not [p for p in new if p.suffix in (".wav", ".webm", ".ogg", ".bin", "")]
    assert not (data_dir / "evidence").exists() or _files(data_dir / "evidence") == set()


def _seed(client: TestClient, acct: Account, receiver_url: str | None = None) -> dict[str, Any]:
    """History, a finished alert with evidence, wellbeing check-in, enrolments and personal model."""
    h = acct.headers
    assert client.post("/v1/predict", headers={**h, "content-type": "audio/wav"}, content=wav_bytes(1.0)).status_code == 200
    done = client.post("/v1/alerts", headers=h, json={"reason": "test"}).json()  # no contact: nothing to deliver
    r = client.post(f"/v1/alerts/{done['id']}/evidence", headers={**h, "content-type": "audio/webm"},
                    content=b"\x1a\x45\xdf\xa3 recorded evidence")
    assert r.status_code == 201, r.text
    for freq, label in ((180.0, "happy"), (400.0, "sad")):
        r = client.post("/v1/wellbeing/enrol", params={"label": label}, headers={**h, "content-type": "audio/wav"},
                        content=wav_bytes(0.6, freq=freq))
        assert r.status_code == 200, r.text
    r = client.post("/v1/wellbeing/checkins", headers={**h, "content-type": "audio/wav"}, content=wav_bytes(0.6))
    assert r.status_code == 200, r.text
    return {"done": done["id"], "evidence": r.json()}


def test_delete_my_data_erases_rows_and_files_of_that_user_only(client: TestClient, ann: Account,
                                                                bob: Account) -> None:
    settings = client.app.state.settings  # type: ignore[attr-defined]
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    evidence_root, models = settings.evidence_root, settings.wellbeing_db_path.parent / "models"
    seeded = {a.id: _seed(client, a) for a in (ann, bob)}
    # Ann also has an alert whose delivery is still pending (the relay is off here): it must survive
    client.post("/v1/contacts", headers=ann.headers, json={"name": "Mum", "email": "mum@example.org"})
    open_alert = client.post("/v1/alerts", headers=ann.headers, json={"reason": "in flight"}).json()["id"]
    r = client.post(f"/v1/alerts/{open_alert}/evidence", headers={**ann.headers, "content-type": "audio/ogg"},
                    content=b"OggS evidence of the open alert")
    assert r.status_code == 201
    ann_files = _files(evidence_root / ann.id)
    bob_files = _files(evidence_root / bob.id)
    assert len(ann_files) == 2 and len(bob_files) == 1
    assert len(list(models.glob("*"))) == 4  # .npz + .json per user
    bob_models = {p.name for p in models.glob("*") if p.read_bytes() and bob.id in p.name}

    r = client.delete("/v1/users/me/data", headers=ann.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "predictions": 1, "calls": 0, "alerts": 1, "alerts_kept": 1, "evidence": 2, "evidence_files": 2,
        "wellbeing": {"checkins": 1, "enrolments": 2, "model_files": 2},
    }
    # Ann: files on disk gone, rows gone, the in-flight alert kept (without its evidence)
    assert not (evidence_root / ann.id).exists()
    assert client.get("/v1/history", headers=ann.headers).json()["total"] == 0
    alerts = client.get("/v1/alerts", headers=ann.headers).json()
    assert [a["id"] for a in alerts["items"]] == [open_alert]
    assert client.get(f"/v1/alerts/{open_alert}/evidence", headers=ann.headers).json() == []
    assert client.get(f"/v1/alerts/{seeded[ann.id]['done']}", headers=ann.headers).status_code == 404
    assert client.get("/v1/wellbeing/history", headers=ann.headers).json()["n"] == 0
    assert client.get("/v1/wellbeing/profile", headers=ann.headers).json()["counts"] == {}
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Evidence).where(Evidence.user_id == ann.id)) == 0
        assert [d.status for d in s.scalars(select(Delivery).where(Delivery.alert_id == open_alert))] == ["pending"]
    # the account itself and its contacts stay
    assert client.get("/v1/users/me", headers=ann.headers).status_code == 200
    assert len(client.get("/v1/contacts", headers=ann.headers).json()) == 1

    # Bob: untouched, on disk and in the database
    assert _files(evidence_root / bob.id) == bob_files
    assert {p.name for p in models.glob("*")} == bob_models and len(bob_models) == 2
    assert client.get("/v1/history", headers=bob.headers).json()["total"] == 1
    assert client.get("/v1/alerts", headers=bob.headers).json()["total"] == 1
    assert client.get("/v1/wellbeing/history", headers=bob.headers).json()["n"] == 1
    assert client.get("/v1/wellbeing/profile", headers=bob.headers).json()["personalised"] is True

    # idempotent; and it needs authentication
    again = client.delete("/v1/users/me/data", headers=ann.headers).json()
    assert again["predictions"] == again["alerts"] == again["evidence_files"] == 0 and again["alerts_kept"] == 1
    assert client.delete("/v1/users/me/data").status_code == 401


def test_retention_days_is_enforced_by_the_housekeeping(tmp_path: Path,
                                                        make_client: Callable[..., TestClient]) -> None:
    """Data older than ``retention_days`` is gone after a (re)start; newer data and alerts in flight stay."""
    client = make_client()
    ann = register(client)
    seeded = _seed(client, ann)
    client.post("/v1/contacts", headers=ann.headers, json={"name": "Mum", "email": "mum@example.org"})
    in_flight = client.post("/v1/alerts", headers=ann.headers, json={}).json()["id"]
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    old = utcnow() - timedelta(days=10)
    with factory() as s, s.begin():  # age everything but one new prediction
        for table in (PredictionRecord, Alert, Evidence):
            for row in s.scalars(select(table)):
                row.created_at = old
        s.add(PredictionRecord(user_id=ann.id, label="calm", probabilities={"calm": 1.0}, valence=0.5,
                               arousal=-0.5))
    root = client.app.state.settings.evidence_root  # type: ignore[attr-defined]
    assert len(_files(root)) == 1
    client.__exit__(None, None, None)

    client = make_client(retention_days=7)  # same data dir: the housekeeping runs at start-up
    deadline = time.monotonic() + 20
    while client.get("/v1/history", headers=ann.headers).json()["total"] != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get("/v1/history", headers=ann.headers).json()["total"] == 1
    assert _files(root) == set()
    assert client.get(f"/v1/alerts/{seeded['done']}", headers=ann.headers).status_code == 404
    assert client.get(f"/v1/alerts/{in_flight}", headers=ann.headers).status_code == 200  # still to deliver
