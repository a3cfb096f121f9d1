"""``/v1/calls``: upload a call, get it triaged into the caller's queue, mark it handled."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
from fastapi.testclient import TestClient

from tests.service.conftest import Account, register, wav_bytes
from tests.speech import say

SR = 16000


def _wav(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_calls_are_queued_by_priority_and_scoped_to_their_owner(client: TestClient, ann: Account,
                                                                 bob: Account, tmp_path: Path) -> None:
    quiet = np.random.default_rng(0).standard_normal(8 * SR).astype(np.float32) * 0.0005
    urgent = np.concatenate([say("Help, there is a fire and my son is trapped inside", tmp_path), quiet])
    r_quiet = client.post("/v1/calls", headers={**ann.headers, "content-type": "audio/wav", "x-filename": "pocket.wav"},
                          content=_wav(quiet))
    r_urgent = client.post("/v1/calls", headers=ann.headers, files={"file": ("u.wav", _wav(urgent), "audio/wav")})
    assert r_quiet.status_code == 201 and r_urgent.status_code == 201, r_urgent.text
    u = r_urgent.json()
    assert u["status"] == "waiting" and u["priority"] > r_quiet.json()["priority"]
    assert "fire" in u["transcript"].lower() and any("'fire'" in r["text"] for r in u["reasons"])
    assert u["report"]["timeline"] and r_quiet.json()["signals"][0]["name"] == "silent_call"
    assert r_quiet.json()["filename"] == "pocket.wav"

    q = client.get("/v1/calls", headers=ann.headers).json()
    assert [c["id"] for c in q["items"]] == [u["id"], r_quiet.json()["id"]] and q["total"] == 2
    assert q["items"][0]["report"] is None  # the queue is light; the full report is one GET away
    assert client.get(f"/v1/calls/{u['id']}", headers=ann.headers).json()["report"]["call_id"]

    assert client.get(f"/v1/calls/{u['id']}", headers=bob.headers).status_code == 404
    assert client.patch(f"/v1/calls/{u['id']}", headers=bob.headers, json={"status": "handled"}).status_code == 404
    assert client.get("/v1/calls", headers=bob.headers).json()["total"] == 0

    r = client.patch(f"/v1/calls/{u['id']}", headers=ann.headers, json={"status": "handled"})
    assert r.status_code == 200 and r.json()["status"] == "handled"
    assert [c["id"] for c in client.get("/v1/calls", headers=ann.headers).json()["items"]] == [r_quiet.json()["id"]]
    assert client.get("/v1/calls?status=all", headers=ann.headers).json()["total"] == 2


def test_bad_calls_get_clean_4xx(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(max_audio_seconds=2.0)
    ann = register(client)
    h = {**ann.headers, "content-type": "audio/wav"}
    r = client.post("/v1/calls", headers=h, content=b"RIFF\x00\x00garbage" * 20)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_audio"
    r = client.post("/v1/calls", headers=h, content=wav_bytes(3.0))
    assert r.status_code == 400 and "max_duration=2s" in r.json()["error"]["message"]
    assert client.post("/v1/calls", content=wav_bytes(1.0), headers={"content-type": "audio/wav"}).status_code == 401
    r = client.patch("/v1/calls/nope", headers=ann.headers, json={"status": "done"})
    assert r.status_code == 422
    assert client.get("/v1/calls?status=other", headers=ann.headers).status_code == 422
    assert client.get("/v1/calls", headers=ann.headers).json()["total"] == 0  # nothing half-stored


def test_call_reports_expire_with_the_retention_period(client: TestClient, ann: Account) -> None:
    from datetime import timedelta

    from vocalis.service.retention import purge_expired
    from vocalis.storage.tables import utcnow

    r = client.post("/v1/calls", headers={**ann.headers, "content-type": "audio/wav"}, content=wav_bytes(2.0))
    assert r.status_code == 201
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    purge_expired(factory, Path(client.app.state.settings.evidence_dir), 30, now=utcnow())  # type: ignore[attr-defined]
    assert client.get("/v1/calls", headers=ann.headers).json()["total"] == 1  # fresh: kept
    purge_expired(factory, Path(client.app.state.settings.evidence_dir), 30,  # type: ignore[attr-defined]
                  now=utcnow() + timedelta(days=31))
    assert client.get("/v1/calls", headers=ann.headers).json()["total"] == 0
    assert client.get(f"/v1/calls/{r.json()['id']}", headers=ann.headers).status_code == 404
