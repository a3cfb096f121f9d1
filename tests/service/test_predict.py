"""``POST /v1/predict``: multipart and raw bodies, limits enforced while streaming, clean 4xx errors."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from tests.service.conftest import SR, Account, register, wav_bytes
from vocalis.audio.vad import silero_onnx_path


def _raw(client: TestClient, acct: Account, body: bytes, ctype: str = "audio/wav") -> Any:
    return client.post("/v1/predict", headers={**acct.headers, "content-type": ctype}, content=body)


def test_multipart_and_raw_body_predict_and_store_history(client: TestClient, ann: Account) -> None:
    r1 = client.post("/v1/predict", headers=ann.headers, files={"file": ("clip.wav", wav_bytes(1.5), "audio/wav")})
    assert r1.status_code == 200, r1.text
    p = r1.json()
    assert abs(sum(p["probabilities"].values()) - 1) < 1e-3
    assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
    assert -1 <= p["valence"] <= 1 and -1 <= p["arousal"] <= 1 and p["duration_s"] == pytest.approx(1.5)
    r2 = _raw(client, ann, wav_bytes(1.0, sr=8000))
    assert r2.status_code == 200 and r2.json()["duration_s"] == pytest.approx(1.0)
    hist = client.get("/v1/history", headers=ann.headers).json()
    assert hist["total"] == 2 and [h["id"] for h in hist["items"]] == [r2.json()["id"], p["id"]]
    # a tone is not speech: labelled, but marked (null where no speech model is installed), and kept
    heard = None if silero_onnx_path() is None else False
    assert p["speech_detected"] is heard and p["voiced_s"] == (None if heard is None else 0.0)
    assert [(h["speech_detected"], h["voiced_s"]) for h in hist["items"]] == [(heard, p["voiced_s"])] * 2
    page = client.get("/v1/history?limit=1&offset=1", headers=ann.headers).json()
    assert [h["id"] for h in page["items"]] == [p["id"]] and page["limit"] == 1


def test_415_for_unsupported_media_types(client: TestClient, ann: Account) -> None:
    r = _raw(client, ann, b"hello", "text/plain")
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    assert "text/plain" in r.json()["error"]["message"]
    r = client.post("/v1/predict", headers=ann.headers, files={"file": ("a.txt", b"hello", "text/plain")})
    assert r.status_code == 415
    assert _raw(client, ann, b"{}", "application/json").status_code == 415


def test_400_for_undecodable_or_rule_breaking_audio(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(max_audio_seconds=1.0)
    ann = register(client)
    r = _raw(client, ann, b"RIFF\x00\x00garbage" * 20)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_audio" and "cannot decode" in err["message"]
    r = _raw(client, ann, wav_bytes(2.0))
    assert r.status_code == 400 and "max_duration=1s" in r.json()["error"]["message"]
    r = _raw(client, ann, b"")
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]
    r = _raw(client, ann, wav_bytes(0.01))
    assert r.status_code == 400 and "at least" in r.json()["error"]["message"]
    silence = io.BytesIO()
    sf.write(silence, np.zeros(SR // 2, np.float32), SR, format="WAV")
    r = _raw(client, ann, silence.getvalue())  # a silent clip gets no made-up emotion
    assert r.status_code == 400 and "no audible sound" in r.json()["error"]["message"]
    assert "Traceback" not in r.text


def test_422_without_file_field(client: TestClient, ann: Account) -> None:
    r = client.post("/v1/predict", headers=ann.headers, data={"other": "x"},
                    files={"not_file": ("a.wav", wav_bytes(), "audio/wav")})
    assert r.status_code == 422 and "'file'" in r.json()["error"]["message"]


def test_413_when_declared_or_buffered_body_is_too_large(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(max_upload_bytes=20_000)
    ann = register(client)
    r = _raw(client, ann, wav_bytes(1.0))  # 32 kB
    assert r.status_code == 413 and "max_bytes=20000" in r.json()["error"]["message"]
    r = client.post("/v1/predict", headers=ann.headers, files={"file": ("a.wav", wav_bytes(1.0), "audio/wav")})
    assert r.status_code == 413
    assert _raw(client, ann, wav_bytes(0.5)).status_code == 200  # 16 kB fits


def _drive(client: TestClient, ctype: bytes, key: str, n_chunks: int, chunk: int,
           declared: int | None = None, first: bytes = b"") -> tuple[int, int]:
    """Send a body chunk by chunk straight into the ASGI app; return (status, chunks it pulled)."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled < n_chunks:
            pulled += 1
            body = first if pulled == 1 and first else b"\x01" * chunk
            return {"type": "http.request", "body": body, "more_body": pulled < n_chunks}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"host", b"testserver"), (b"content-type", ctype), (b"authorization", f"Bearer {key}".encode())]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 1234), "server": ("testserver", 80),
    }
    client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr, arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    return int(start["status"]), pulled


def test_413_is_raised_while_streaming_not_after_buffering(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(max_upload_bytes=10_000)
    ann = register(client)
    # 1 MB offered in 1 kB chunks, no Content-Length: the app stops after ~10 kB
    status, pulled = _drive(client, b"audio/wav", ann.api_key, n_chunks=1000, chunk=1000)
    assert status == 413 and pulled == 11
    # multipart: the cap (+ the 64 KiB envelope allowance) is enforced on the raw stream too
    head = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n")
    status, pulled = _drive(client, b"multipart/form-data; boundary=xyz", ann.api_key, n_chunks=1000, chunk=1000,
                            first=head)
    assert status == 413 and pulled <= 1 + 10 + 66
    # a declared Content-Length over the cap is refused before reading anything
    status, pulled = _drive(client, b"audio/wav", ann.api_key, n_chunks=1000, chunk=1000, declared=1_000_000)
    assert status == 413 and pulled == 0


def test_speech_in_a_corpus_clip_is_reported_and_stored(client: TestClient, ann: Account) -> None:
    from tests.conftest import corpus_dir

    if silero_onnx_path() is None:
        pytest.skip("silero-vad is not installed: the service cannot tell speech from other sound")
    clip = next(iter(sorted((corpus_dir("ravdess") / "Actor_01").glob("*.flac"))))
    r = _raw(client, ann, clip.read_bytes(), "audio/flac")
    assert r.status_code == 200, r.text
    assert r.json()["speech_detected"] is True and r.json()["voiced_s"] > 0.3
    hist = client.get("/v1/history", headers=ann.headers).json()["items"]
    assert (hist[0]["speech_detected"], hist[0]["voiced_s"]) == (True, r.json()["voiced_s"])
