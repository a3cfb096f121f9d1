"""``/v1/stream``: auth, limits, PCM16 and webm/ogg input, and the alert life cycle over a WebSocket.

Most tests inject a deterministic predictor (``app.state.stream_predictor_factory``): one window
per 0.5 s of audio whose scream score is high when the audio is loud. One test runs the real
``StreamingPredictor`` end to end.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from tests.service.conftest import Account, register
from vocalis.service import ws
from vocalis.storage.tables import Alert, Delivery, PredictionRecord

SR = 16_000
HOP = 0.5


@dataclass
class FakeWindow:
    t_start: float
    t_end: float
    probabilities: dict[str, float]
    voice: float
    scream: float
    keywords: list[str] = field(default_factory=list)


class FakePredictor:
    """A window per 0.5 s of audio (at the pushed rate); scream = 0.95 when the hop is loud."""

    def __init__(self) -> None:
        self.pushed = 0
        self.calls = 0
        self._buf = np.zeros(0, np.float32)
        self._rate = SR
        self._n = 0

    def push(self, samples: np.ndarray, sample_rate: int = SR) -> list[FakeWindow]:
        self.calls += 1
        self._rate = sample_rate
        self.pushed += samples.size
        self._buf = np.concatenate([self._buf, samples.astype(np.float32)])
        hop = int(HOP * sample_rate)
        out = []
        while self._buf.size >= hop:
            out.append(self._window(self._buf[:hop]))
            self._buf = self._buf[hop:]
        return out

    def _window(self, x: np.ndarray) -> FakeWindow:
        self._n += 1
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
        loud = rms > 0.1
        probs = {"fear": 0.7, "neutral": 0.3} if loud else {"fear": 0.05, "neutral": 0.95}
        return FakeWindow((self._n - 1) * HOP, self._n * HOP, probs, 1.0, 0.95 if loud else 0.01)

    def flush(self) -> list[FakeWindow]:
        out = [self._window(self._buf)] if self._buf.size else []
        self._buf = np.zeros(0, np.float32)
        self._n = 0
        return out


def pcm(seconds: float, amplitude: float, sr: int = SR) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    x = amplitude * np.sin(2 * np.pi * 330 * t)
    return (x * 32767).astype("<i2").tobytes()


def opus_container(x: np.ndarray, sr: int = 48_000, fmt: str = "webm") -> bytes:
    """Encode mono float audio as Opus in webm/ogg with PyAV (what MediaRecorder produces)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        s = c.add_stream("libopus", rate=sr)
        s.layout = "mono"  # type: ignore[union-attr]
        pts = 0
        for i in range(0, x.size, 960):
            blk = x[i : i + 960].astype(np.float32)
            fr = av.AudioFrame.from_ndarray(blk[None], format="flt", layout="mono")
            fr.sample_rate, fr.pts = sr, pts
            pts += blk.size
            for p in s.encode(fr):  # type: ignore[union-attr]
                c.mux(p)
        for p in s.encode(None):  # type: ignore[union-attr]
            c.mux(p)
    return buf.getvalue()


@pytest.fixture
def setup(make_client: Callable[..., TestClient]) -> Callable[..., tuple[TestClient, Account, list[FakePredictor]]]:
    def _setup(fake: bool = True, **stream: Any) -> tuple[TestClient, Account, list[FakePredictor]]:
        client = make_client()
        acct = register(client)
        opts: dict[str, Any] = {"burst_s": 6.0, "idle_timeout_s": 5.0, "status_poll_s": 0.05, "status_watch_s": 2.0}
        opts.update(stream)
        client.app.state.stream_settings = ws.StreamSettings(**opts)  # type: ignore[attr-defined]
        made: list[FakePredictor] = []
        if fake:
            def factory(config: Any) -> FakePredictor:
                made.append(FakePredictor())
                return made[-1]

            client.app.state.stream_predictor_factory = factory  # type: ignore[attr-defined]
        return client, acct, made

    return _setup


def recv_until(sock: Any, kind: str, limit: int = 200) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Receive messages until one of type ``kind``; returns it and everything before it."""
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        msg = sock.receive_json()
        if msg["type"] == kind:
            return msg, seen
        seen.append(msg)
    raise AssertionError(f"no {kind!r} message in {limit}: {[m['type'] for m in seen]}")


def expect_close(sock: Any, code: int, error: str | None = None) -> list[dict[str, Any]]:
    """Receive until the server closes with ``code``; the last text message must be ``error``."""
    seen: list[dict[str, Any]] = []
    with pytest.raises(WebSocketDisconnect) as info:
        for _ in range(500):
            seen.append(sock.receive_json())
    assert info.value.code == code, (info.value.code, seen[-3:])
    if error is not None:
        assert seen and seen[-1]["type"] == "error" and seen[-1]["code"] == error, seen[-3:]
    return seen


def url(acct: Account, **q: Any) -> str:
    params = {"token": acct.api_key, **q}
    return "/v1/stream?" + "&".join(f"{k}={v}" for k, v in params.items())


def _rows(client: TestClient, table: type) -> list[Any]:
    with client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        return list(s.scalars(select(table)).all())


def _contact(client: TestClient, acct: Account) -> dict[str, Any]:
    r = client.post("/v1/contacts", headers=acct.headers,
                    json={"name": "Mum", "phone": "+33612345678", "channels": ["sms", "call"]})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


# -- auth and parameters --------------------------------------------------------------------------


def test_auth_failure_is_a_401_with_the_reason_before_accept(setup: Callable[..., Any]) -> None:
    client, _acct, made = setup()
    for q, why in (("", "missing credentials"), ("?token=vk_notakey", ""), ("?token=garbage.token", "")):
        with pytest.raises(WebSocketDenialResponse) as info, client.websocket_connect("/v1/stream" + q):
            pass
        assert info.value.status_code == 401
        err = info.value.json()["error"]
        assert err["code"] == "unauthorized" and why in err["message"] and err["message"]
    with pytest.raises(WebSocketDenialResponse) as info, client.websocket_connect(
            "/v1/stream", headers={"Authorization": "Bearer vk_notakey"}):
        pass
    assert info.value.status_code == 401
    assert made == []  # nothing was built for an unauthenticated client


def test_a_bearer_header_authenticates_like_the_query_token(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup()
    with client.websocket_connect("/v1/stream", headers={"Authorization": f"Bearer {acct.api_key}"}) as sock:
        created, _ = recv_until(sock, "session.created")
        assert created["sample_rate"] == SR


def test_session_created_with_token_and_api_key(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup()
    tok = client.post("/v1/auth/token", json={"api_key": acct.api_key}).json()["access_token"]
    for cred in (acct.api_key, tok):
        with client.websocket_connect(f"/v1/stream?token={cred}&sample_rate=16000") as sock:
            msg = sock.receive_json()
            assert msg["type"] == "session.created"
            assert msg["sample_rate"] == 16000 and msg["window_s"] == 2.0 and msg["hop_s"] == 0.5
            assert len(msg["session_id"]) == 32
            sock.send_json({"type": "CloseStream"})
            recv_until(sock, "finalized")


@pytest.mark.parametrize("query", [{"sample_rate": 4000}, {"sample_rate": 96000}, {"sample_rate": "abc"},
                                   {"encoding": "mp3"}])
def test_bad_parameters_send_error_then_close_4000(setup: Callable[..., Any], query: dict[str, Any]) -> None:
    client, acct, _ = setup()
    with client.websocket_connect(url(acct, **query)) as sock:
        msg = sock.receive_json()
        assert msg["type"] == "error" and msg["code"] == "bad_params"
        assert "must be" in msg["message"]
        with pytest.raises(WebSocketDisconnect) as info:
            sock.receive_json()
        assert info.value.code == 4000


# -- audio in, predictions out --------------------------------------------------------------------


def test_pcm16_frames_produce_predictions(setup: Callable[..., Any]) -> None:
    client, acct, made = setup()
    with client.websocket_connect(url(acct, sample_rate=8000)) as sock:
        recv_until(sock, "session.created")
        frame = pcm(0.25, 0.02, sr=8000)
        for _ in range(8):  # 2 s in 250 ms frames
            sock.send_bytes(frame)
        preds = [recv_until(sock, "prediction")[0] for _ in range(4)]
        assert [p["t_end"] for p in preds] == [0.5, 1.0, 1.5, 2.0]
        p = preds[0]
        assert set(p) >= {"t_start", "t_end", "probabilities", "label", "voice", "scream", "risk", "keywords"}
        assert p["label"] == "neutral" and p["scream"] < 0.1 and p["risk"] < 0.15
        assert -1 <= p["valence"] <= 1
        sock.send_json({"type": "KeepAlive"})
        sock.send_json({"type": "CloseStream"})
        recv_until(sock, "finalized")
    assert made[0].pushed == 16000  # at the declared 8 kHz
    assert not [m for m in _rows(client, Alert)]


def test_finalize_flushes_and_time_continues(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup()
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        sock.send_bytes(pcm(0.75, 0.02))
        sock.send_json({"type": "Finalize"})
        fin, before = recv_until(sock, "finalized")
        ends = [m["t_end"] for m in before if m["type"] == "prediction"]
        assert ends == [0.5, 1.0] and fin["t"] == 0.75  # the partial last window is flushed
        sock.send_bytes(pcm(0.5, 0.02))
        nxt, _ = recv_until(sock, "prediction")
        assert nxt["t_start"] == 0.75 and nxt["t_end"] == 1.25
    # the averaged prediction went to the history
    rows = _rows(client, PredictionRecord)
    assert rows and rows[0].source == "stream" and rows[0].label == "neutral"


@pytest.mark.parametrize("fmt", ["webm", "ogg"])
def test_container_chunks_are_decoded_by_one_decoder(setup: Callable[..., Any], fmt: str) -> None:
    client, acct, made = setup()
    t = np.arange(3 * 48_000) / 48_000
    data = opus_container(0.3 * np.sin(2 * np.pi * 440 * t), fmt=fmt)
    with client.websocket_connect(url(acct, encoding=fmt)) as sock:
        assert recv_until(sock, "session.created")[0]["encoding"] == fmt
        step = max(1, len(data) // 12)  # MediaRecorder-like chunks: only the first has the header
        for i in range(0, len(data), step):
            sock.send_bytes(data[i : i + step])
        sock.send_json({"type": "CloseStream"})
        fin, before = recv_until(sock, "finalized")
    preds = [m for m in before if m["type"] == "prediction"]
    assert [p["t_end"] for p in preds][:6] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert preds[0]["scream"] > 0.9  # loud tone -> the fake's "scream"
    assert abs(made[0].pushed - 3 * SR) < 0.05 * SR  # decoded to 16 kHz, nothing lost
    assert fin["t"] == pytest.approx(3.0, abs=0.05)


def test_undecodable_container_is_an_error(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup()
    with client.websocket_connect(url(acct, encoding="webm")) as sock:
        recv_until(sock, "session.created")
        sock.send_bytes(b"this is not a webm file" * 100)
        sock.send_json({"type": "CloseStream"})
        expect_close(sock, 4000, "invalid_audio")


def test_real_predictor_end_to_end(setup: Callable[..., Any]) -> None:
    """The real StreamingPredictor (scream detector + default emotion model) behind the socket."""
    client, acct, _ = setup(fake=False, asr="off")
    with client.websocket_connect(url(acct, sample_rate=16000)) as sock:
        recv_until(sock, "session.created")
        for _ in range(10):
            sock.send_bytes(pcm(0.25, 0.1))
        preds = [recv_until(sock, "prediction")[0] for _ in range(2)]
    assert preds[0]["t_end"] == 2.0 and preds[1]["t_end"] == 2.5
    p = preds[0]
    assert p["probabilities"] and abs(sum(p["probabilities"].values()) - 1) < 0.01
    assert p["label"] in p["probabilities"] and 0 <= p["scream"] <= 1 and 0 <= p["risk"] <= 1
    assert p["scream_backbone"] is None  # no backbone scream head by default


def _live_session(client: TestClient) -> Any:
    from vocalis.service.routes.stream import _active

    sessions = [v for v in _active(client.app).values() if v is not None]
    assert len(sessions) == 1
    return sessions[0]


@pytest.mark.parametrize(("policy", "expected"), [({}, 0.7), ({"on_threshold": 0.5}, 0.5)])
def test_a_configured_scream_detector_brings_its_operating_point(
        setup: Callable[..., Any], tmp_path: Any, policy: dict[str, Any], expected: float) -> None:
    """VOCALIS_STREAM_SCREAM_MODEL_PATH: the streams score with that bundle, and the policy's threshold
    is its operating point unless the settings' policy names one."""
    from tests.test_streaming import tiny_bundle

    scream = tiny_bundle(tmp_path / "scream.vocalis", ["non_scream", "scream"], metrics={"operating_point": 0.7})
    client, acct, _ = setup(fake=False, asr="off", emotion_every=0, policy=policy,
                            scream_model_path=tmp_path / "scream.vocalis")
    with client.websocket_connect(url(acct, sample_rate=16000)) as sock:
        recv_until(sock, "session.created")
        session = _live_session(client)
        for _ in range(10):
            sock.send_bytes(pcm(0.25, 0.5))
        pred = recv_until(sock, "prediction")[0]
    assert session.predictor.scream.first.source == scream.source and session.predictor.scream.confirm is None
    assert session.policy.config.on_threshold == expected
    assert session.policy.config.off_threshold <= expected
    assert pred["gain_db"] == 0.0  # no level gain unless configured


def test_a_configured_two_stage_detector_takes_the_second_stages_operating_point(
        setup: Callable[..., Any], tmp_path: Any) -> None:
    from tests.test_streaming import tiny_bundle

    tiny_bundle(tmp_path / "first.vocalis", ["non_scream", "scream"], metrics={"operating_point": 0.7})
    tiny_bundle(tmp_path / "confirm.vocalis", ["non_scream", "scream"],
                metrics={"operating_point": 0.6, "cascade_gate": 0.05})
    client, acct, _ = setup(fake=False, asr="off", emotion_every=0, scream_model_path=tmp_path / "first.vocalis",
                            scream_confirm_model_path=tmp_path / "confirm.vocalis")
    with client.websocket_connect(url(acct, sample_rate=16000)) as sock:
        recv_until(sock, "session.created")
        session = _live_session(client)
        sock.send_bytes(pcm(0.25, 0.1))
    det = session.predictor.scream
    assert det.confirm is not None and det.gate == 0.05
    assert session.policy.config.on_threshold == 0.6


def test_level_gain_setting_reaches_the_predictor(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup(fake=False, asr="off", emotion_every=0, level_gain=True)
    with client.websocket_connect(url(acct, sample_rate=16000)) as sock:
        recv_until(sock, "session.created")
        session = _live_session(client)
        sock.send_bytes(pcm(0.25, 0.1))
    assert session.predictor.config.level_gain is not None
    assert session.predictor.config.level_gain.target_dbfs == -18.0


def test_the_engine_scores_the_scream_detector_behind_the_level_gain(setup: Callable[..., Any], tmp_path: Any) -> None:
    """VOCALIS_STREAM_LEVEL_GAIN: after 10 s of voice the engine's batched scream scoring hears the window
    turned down (gain_db < 0), and its score is the detector's on that quieter copy."""
    import dataclasses

    from tests.test_streaming import tiny_bundle
    from vocalis.streaming.predictor import StreamingPredictor

    scream = tiny_bundle(tmp_path / "scream.vocalis", ["non_scream", "scream"])
    client, acct, _ = setup(fake=False, asr="off", emotion_every=0, level_gain=True, realtime_factor=100.0,
                            burst_s=60.0, max_backlog_s=30.0)
    client.app.state.stream_predictor_factory = lambda cfg: StreamingPredictor(  # type: ignore[attr-defined]
        dataclasses.replace(cfg, vad="energy"), emotion_model=False, scream_model=scream, keyword_spotter=False)
    with client.websocket_connect(url(acct, sample_rate=16000)) as sock:
        recv_until(sock, "session.created")
        for _ in range(14):
            sock.send_bytes(pcm(1.0, 0.7))
        preds = [recv_until(sock, "prediction")[0] for _ in range(25)]
    gains = [q["gain_db"] for q in preds]
    assert gains[0] == 0.0 and gains[-1] < -10.0
    x = np.frombuffer(pcm(2.0, 0.7), "<i2").astype(np.float32) / 32768
    quiet = float(np.ravel(scream.predict_proba(x * np.float32(10 ** (gains[-1] / 20))))[1])
    assert preds[-1]["scream"] == pytest.approx(quiet, abs=2e-3)
    assert preds[-1]["scream"] < preds[0]["scream"]


@pytest.mark.parametrize(("amplitude", "limit", "warned"), [(0.7, -15.0, True), (0.02, -15.0, False),
                                                          (0.7, None, False)])
def test_a_hot_microphone_is_warned_about_once(setup: Callable[..., Any], tmp_path: Any, amplitude: float,
                                               limit: float | None, warned: bool) -> None:
    """warning mic_hot: once the stream's usual voiced level reaches hot_mic_warn_dbfs, once per session."""
    import dataclasses

    from tests.test_streaming import tiny_bundle
    from vocalis.streaming.predictor import StreamingPredictor

    scream = tiny_bundle(tmp_path / "scream.vocalis", ["non_scream", "scream"])
    client, acct, _ = setup(fake=False, asr="off", emotion_every=0, realtime_factor=100.0, burst_s=60.0,
                            max_backlog_s=30.0, hot_mic_warn_dbfs=limit)
    client.app.state.stream_predictor_factory = lambda cfg: StreamingPredictor(  # type: ignore[attr-defined]
        dataclasses.replace(cfg, vad="energy"), emotion_model=False, scream_model=scream, keyword_spotter=False)
    with client.websocket_connect(url(acct, sample_rate=16000)) as sock:
        recv_until(sock, "session.created")
        for _ in range(20):
            sock.send_bytes(pcm(1.0, amplitude))
        sock.send_json({"type": "Finalize"})
        _, seen = recv_until(sock, "finalized")
    warnings = [m for m in seen if m["type"] == "warning" and m["code"] == "mic_hot"]
    refs = [m["level_ref_db"] for m in seen if m["type"] == "prediction"]
    assert refs[0] is None and refs[-1] is not None
    assert len(warnings) == (1 if warned else 0)
    if warned:
        w = warnings[0]
        assert w["level_dbfs"] >= -15.0 and "hold the phone further away" in w["message"]
        first_loud = next(m for m in seen if m["type"] == "prediction" and m["level_ref_db"] is not None)
        assert w["t"] == first_loud["t_end"]  # as soon as the level is known


def test_a_missing_scream_model_closes_with_its_path(setup: Callable[..., Any], tmp_path: Any) -> None:
    client, acct, _ = setup(fake=False, asr="off", emotion_every=0, scream_model_path=tmp_path / "nope.vocalis")
    with client.websocket_connect(url(acct, sample_rate=16000)) as sock:
        seen = expect_close(sock, ws.CLOSE_TRY_AGAIN, "model_unavailable")
    assert "nope.vocalis" in seen[-1]["message"]


def test_a_second_stage_needs_its_first_stage(tmp_path: Any) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"scream_confirm_model_path=.* needs scream_model_path"):
        ws.StreamSettings(scream_confirm_model_path=tmp_path / "confirm.vocalis")


def test_a_backbone_scream_head_rides_on_the_engines_emotion_runs(setup: Callable[..., Any], tmp_path: Any) -> None:
    """A predictor with a second scream head on the emotion features, through the stream engine:
    the head's score comes with each emotion run, is held on the windows after it and is fused."""
    from tests.test_streaming import tiny_bundle
    from vocalis.streaming.predictor import StreamingPredictor

    emo = tiny_bundle(tmp_path / "emo.vocalis", ["neutral", "angry", "fear"])
    scream = tiny_bundle(tmp_path / "scream.vocalis", ["non_scream", "scream"])
    head = tiny_bundle(tmp_path / "head.vocalis", ["non_scream", "scream"])  # the emotion bundle's features
    client, acct, _ = setup(fake=False, asr="off", emotion_every=4, max_backlog_s=10.0, policy={"w_backbone": 0.4})
    client.app.state.stream_predictor_factory = lambda cfg: StreamingPredictor(  # type: ignore[attr-defined]
        cfg, emotion_model=emo, scream_model=scream, keyword_spotter=False, backbone_scream_model=head)
    with client.websocket_connect(url(acct, sample_rate=16000)) as sock:
        recv_until(sock, "session.created")
        for _ in range(16):
            sock.send_bytes(pcm(0.25, 0.02))
        preds = [recv_until(sock, "prediction")[0] for _ in range(5)]
    assert [q["emotion_fresh"] for q in preds] == [True, False, False, False, True]
    first = preds[0]["scream_backbone"]
    assert isinstance(first, float) and 0 <= first <= 1
    assert [q["scream_backbone"] for q in preds[:4]] == [first] * 4
    for q in preds:
        assert q["risk"] == pytest.approx(1 - (1 - q["scream"]) * (1 - 0.4 * q["scream_backbone"]), abs=2e-4)


# -- limits ---------------------------------------------------------------------------------------


def test_frame_over_limit_closes_1009(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup()
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        sock.send_bytes(b"\0" * (1024 * 1024 + 2))
        expect_close(sock, 1009, "frame_too_large")


def test_faster_than_real_time_closes_4029(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup(burst_s=1.0)
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        for _ in range(20):  # 10 s of audio at once
            sock.send_bytes(pcm(0.5, 0.02))
        expect_close(sock, 4029, "too_fast")


def test_real_time_audio_is_accepted(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup(burst_s=0.3)
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        for _ in range(6):
            sock.send_bytes(pcm(0.1, 0.02))
            time.sleep(0.1)
        recv_until(sock, "prediction")
        sock.send_json({"type": "CloseStream"})
        recv_until(sock, "finalized")


def test_idle_closes_4031(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup(idle_timeout_s=0.3)
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        t0 = time.monotonic()
        expect_close(sock, 4031, "idle")
        assert time.monotonic() - t0 < 3


def test_session_length_cap_closes_4033(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup(max_session_s=0.8, idle_timeout_s=5.0)
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        t0 = time.monotonic()
        sock.send_json({"type": "KeepAlive"})
        sock.send_bytes(pcm(0.5, 0.01))
        seen = expect_close(sock, 4033, "session_too_long")
        assert time.monotonic() - t0 < 3 and any(m["type"] == "prediction" for m in seen)


def test_a_timer_firing_early_at_the_session_cap_is_not_idle(setup: Callable[..., Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio may fire a timer a little early: the wait for the session cap ending just before the cap
    closed a busy session as idle (4031; seen in the real-browser test), not as too long (4033)."""
    import asyncio

    from vocalis.service.routes import stream as route

    real = route.StreamSession._receive

    async def early(self: Any, timeout: float) -> Any:
        if timeout < self.cfg.idle_timeout_s:  # the cap's wait: its timer fires 10 ms early
            await asyncio.sleep(max(0.0, timeout - 0.01))
            return None
        return await real(self, timeout)

    monkeypatch.setattr(route.StreamSession, "_receive", early)
    client, acct, _ = setup(max_session_s=0.8, idle_timeout_s=5.0)
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        expect_close(sock, 4033, "session_too_long")


def test_concurrency_cap_refuses_with_503(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup(max_sessions=1)
    with client.websocket_connect(url(acct)) as first:
        recv_until(first, "session.created")
        with pytest.raises(WebSocketDenialResponse) as info, client.websocket_connect(url(acct)):
            pass
        assert info.value.status_code == 503
        assert info.value.json()["error"]["code"] == "overloaded"
    with client.websocket_connect(url(acct)) as again:  # the slot is free again
        recv_until(again, "session.created")


def test_bad_control_message_is_an_error_not_a_close(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup()
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        sock.send_text("not json")
        assert recv_until(sock, "error")[0]["code"] == "bad_message"
        sock.send_json({"type": "Dance"})
        assert "must be one of" in recv_until(sock, "error")[0]["message"]
        sock.send_json({"type": "Location", "lat": 500, "lon": 0})
        assert recv_until(sock, "error")[0]["code"] == "bad_message"
        for bad in ('"accuracy": Infinity', '"accuracy": NaN', '"accuracy": 1e999'):  # JSON's non-numbers too
            sock.send_text('{"type": "Location", "lat": 48.85, "lon": 2.35, ' + bad + "}")
            err = recv_until(sock, "error")[0]
            assert err["code"] == "bad_message" and ("finite" in err["message"] or "JSON allows" in err["message"])
        sock.send_json({"type": "Cancel"})
        assert recv_until(sock, "error")[0]["code"] == "no_countdown"


# -- the alert life cycle -------------------------------------------------------------------------


@contextmanager
def _countdown(setup: Callable[..., Any], countdown_s: float, scream_s: float) -> Iterator[tuple[Any, Any, Any, dict]]:
    """A session of a user with one contact that screams for ``scream_s`` seconds, at its first
    ``countdown`` message: yields (client, account, socket, that message); the socket closes after."""
    client, acct, _ = setup(countdown_s=countdown_s)
    _contact(client, acct)
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        sock.send_bytes(pcm(scream_s, 0.5))
        countdown, _ = recv_until(sock, "countdown")
        yield client, acct, sock, countdown


def test_danger_sequence_creates_alert_with_deliveries(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup(countdown_s=1.0)
    mum = _contact(client, acct)
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        sock.send_json({"type": "Location", "lat": 48.85, "lon": 2.35, "accuracy": 20})
        sock.send_bytes(pcm(3.0, 0.5))
        danger, before = recv_until(sock, "danger")
        assert danger["event"] == "danger.started" and danger["risk"] >= 0.3
        assert any(m["type"] == "prediction" and m["risk"] > 0.9 for m in before)
        countdown, _ = recv_until(sock, "countdown")
        assert countdown["remaining"] == 1.0 and countdown["alert_id"]
        alert, _ = recv_until(sock, "alert")
        assert alert["alert_id"] == countdown["alert_id"] and alert["deliveries"] == 2
        # this test server has no Twilio: the live alert says its SMS and call will fail
        assert [w.split(" is ")[0] for w in alert["warnings"]] == ["channel=call", "channel=sms"]
        status, _ = recv_until(sock, "alert.status")
        assert status["alert_id"] == alert["alert_id"] and status["status"] == "confirmed"
        assert sorted((d["channel"], d["contact"]) for d in status["deliveries"]) == [("call", "Mum"), ("sms", "Mum")]
    rows = _rows(client, Alert)
    assert len(rows) == 1 and rows[0].status == "confirmed" and rows[0].source == "stream"
    assert (rows[0].latitude, rows[0].longitude, rows[0].accuracy_m) == (48.85, 2.35, 20.0)
    deliveries = _rows(client, Delivery)
    assert sorted(d.channel for d in deliveries) == ["call", "sms"]
    assert {d.contact_id for d in deliveries} == {mum["id"]}


def test_cancel_during_countdown_prevents_the_alert(setup: Callable[..., Any]) -> None:
    with _countdown(setup, 30.0, 2.0) as (client, _, sock, countdown):
        alert_id = countdown["alert_id"]
        assert _rows(client, Alert)[0].status == "countdown" and not _rows(client, Delivery)
        sock.send_json({"type": "Cancel"})
        cancelled, _ = recv_until(sock, "cancelled")
        assert cancelled["alert_id"] == alert_id
        sock.send_bytes(pcm(2.0, 0.5))  # still screaming: cooldown, no new countdown
        sock.send_json({"type": "CloseStream"})
        _, rest = recv_until(sock, "finalized")
        assert not [m for m in rest if m["type"] in ("countdown", "alert")]
    rows = _rows(client, Alert)
    assert [(a.id, a.status) for a in rows] == [(alert_id, "cancelled")]
    assert _rows(client, Delivery) == []


def test_countdown_runs_on_when_the_audio_stops(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup(countdown_s=1.0, idle_timeout_s=5.0)
    _contact(client, acct)
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        sock.send_bytes(pcm(1.0, 0.5))  # danger starts at t=1.0; then silence on the wire
        recv_until(sock, "countdown")
        alert, _ = recv_until(sock, "alert")
    assert alert["alert_id"] and _rows(client, Alert)[0].status == "confirmed"


def test_a_burst_of_audio_does_not_shorten_the_countdown(setup: Callable[..., Any]) -> None:
    # 6 s of screaming at once: the policy's 2 s countdown is over in stream time within the burst,
    # but the user must still get 2 s on the wall clock to cancel
    with _countdown(setup, 2.0, 6.0) as (client, _, sock, countdown):
        shown = time.monotonic()
        assert countdown["remaining"] == 2.0
        alert, between = recv_until(sock, "alert")
        waited = time.monotonic() - shown
        assert any(m["type"] == "prediction" and m["t_end"] >= 5.0 for m in between)  # the burst was scored
        assert waited >= 1.8, f"the alert came {waited:.2f} s after the countdown"
        assert alert["alert_id"] == countdown["alert_id"] and alert["deliveries"] == 2
    assert [a.status for a in _rows(client, Alert)] == ["confirmed"]


def test_cancel_works_until_the_wall_clock_countdown_ends(setup: Callable[..., Any]) -> None:
    with _countdown(setup, 5.0, 6.0) as (client, _, sock, countdown):  # the policy's ends at t = 6.0 s
        seen: list[dict[str, Any]] = []
        while not any(m["type"] == "prediction" and m["t_end"] >= 6.0 for m in seen):
            seen.append(sock.receive_json())
        assert not [m for m in seen if m["type"] == "alert"]
        assert [m["remaining"] for m in seen if m["type"] == "countdown"][-1] > 0  # wall-clock time left
        sock.send_json({"type": "Cancel"})
        cancelled, rest = recv_until(sock, "cancelled")
        assert cancelled["alert_id"] == countdown["alert_id"] and cancelled["reason"] == "user"
        assert not [m for m in rest if m["type"] == "alert"]
        sock.send_json({"type": "CloseStream"})
        _, rest = recv_until(sock, "finalized")
        assert not [m for m in rest if m["type"] == "alert"]
    assert [a.status for a in _rows(client, Alert)] == ["cancelled"] and _rows(client, Delivery) == []


def test_the_countdown_finishes_when_the_connection_is_lost(setup: Callable[..., Any]) -> None:
    with _countdown(setup, 1.0, 1.5) as (client, _, _sock, countdown):
        pass
    # the socket is gone: nobody cancelled, so the alert goes out when the countdown ends
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [a.status for a in _rows(client, Alert)] != ["confirmed"]:
        time.sleep(0.05)
    rows = _rows(client, Alert)
    assert [(a.id, a.status) for a in rows] == [(countdown["alert_id"], "confirmed")]
    assert sorted(d.channel for d in _rows(client, Delivery)) == ["call", "sms"]


def test_a_countdown_confirmed_early_opens_no_second_alert(setup: Callable[..., Any]) -> None:
    """A shutdown (or a lost connection) confirms the running countdown early; the audio still queued
    behind it and the wall-clock ticker must not open a second alert that nobody would ever confirm
    (it was left in ``countdown`` in the database: a real CI failure of ``test_shutdown``)."""
    with _countdown(setup, 30.0, 1.5) as (client, _, sock, countdown):
        session = _live_session(client)
        client.portal.call(session.confirm_countdown, "server shutting down during the countdown")  # type: ignore[union-attr]
        alert, _ = recv_until(sock, "alert")
        assert alert["alert_id"] == countdown["alert_id"] and "shutting down" in alert["reason"]
        sock.send_bytes(pcm(3.0, 0.5))  # still screaming: the old countdown's ticks would fall in here
        sock.send_json({"type": "CloseStream"})
        _, rest = recv_until(sock, "finalized")
        assert [m for m in rest if m["type"] in ("countdown", "alert")] == []
        assert not session.policy.counting_down
    assert [(a.id, a.status) for a in _rows(client, Alert)] == [(countdown["alert_id"], "confirmed")]


def test_a_countdown_cancelled_over_rest_sends_nothing(setup: Callable[..., Any]) -> None:
    with _countdown(setup, 1.0, 1.5) as (client, acct, sock, countdown):
        r = client.post(f"/v1/alerts/{countdown['alert_id']}/cancel", headers=acct.headers)
        assert r.status_code == 200, r.text
        sock.send_bytes(pcm(2.0, 0.5))  # the policy's countdown runs out in stream time
        cancelled, before = recv_until(sock, "cancelled")
        assert cancelled["alert_id"] == countdown["alert_id"]
        assert not [m for m in before if m["type"] == "alert"]
    assert [a.status for a in _rows(client, Alert)] == ["cancelled"] and _rows(client, Delivery) == []


def test_a_rest_cancel_stops_the_live_countdown_at_once(setup: Callable[..., Any]) -> None:
    """The web UI cancels over REST: the socket must stop counting down now, not when the countdown ends."""
    with _countdown(setup, 30.0, 1.5) as (client, acct, sock, countdown):
        asked = time.monotonic()
        r = client.post(f"/v1/alerts/{countdown['alert_id']}/cancel", headers=acct.headers)
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        cancelled, before = recv_until(sock, "cancelled")  # no more audio sent: only the cancel can cause it
        assert time.monotonic() - asked < 5.0
        assert cancelled["alert_id"] == countdown["alert_id"] and cancelled["reason"] == "user"
        assert cancelled["cooldown_s"] == 60.0 and "cooldown" not in cancelled
        assert not [m for m in before if m["type"] == "alert"]
        sock.send_bytes(pcm(2.0, 0.5))  # still screaming: the cooldown opens no new countdown
        sock.send_json({"type": "CloseStream"})
        _, rest = recv_until(sock, "finalized")
        assert not [m for m in rest if m["type"] in ("countdown", "alert", "cancelled")]
        sock.send_json({"type": "Cancel"})  # nothing left to cancel on the socket either
    assert [a.status for a in _rows(client, Alert)] == ["cancelled"] and _rows(client, Delivery) == []


def test_panic_raises_a_confirmed_alert_at_once(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup()
    _contact(client, acct)
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        sock.send_json({"type": "Panic"})
        alert, _ = recv_until(sock, "alert")
        assert alert["deliveries"] == 2 and alert["reason"] == "panic"
    rows = _rows(client, Alert)
    assert len(rows) == 1 and rows[0].source == "manual" and rows[0].status == "confirmed"


def test_slow_client_queue_is_bounded_and_keeps_events() -> None:
    q = ws.SendQueue(4)
    for i in range(100):
        q.put({"type": "prediction", "i": i})
        if i == 50:
            q.put({"type": "countdown", "remaining": 5})
    items = q.items()
    assert len(items) == 5 and q.dropped == 96
    assert [m["type"] for m in items].count("countdown") == 1
    assert [m["i"] for m in items if m["type"] == "prediction"] == [96, 97, 98, 99]


def test_pcm16_frames_decode_to_the_exact_scaled_samples() -> None:
    from vocalis.errors import AudioError

    every = np.arange(-32768, 32768, dtype="<i2")
    y = ws.pcm16_to_float(every.tobytes())
    assert y.dtype == np.float32 and y[0] == -1.0 and y[-1] == np.float32(32767 / 32768)
    assert np.array_equal(y, every.astype(np.float32) / np.float32(32768.0))
    assert ws.pcm16_to_float(b"").size == 0
    with pytest.raises(AudioError, match="3 bytes"):
        ws.pcm16_to_float(b"\x00\x01\x02")


def test_a_live_alert_without_contacts_says_it_reaches_nobody(setup: Callable[..., Any]) -> None:
    client, acct, _ = setup()
    with client.websocket_connect(url(acct)) as sock:
        recv_until(sock, "session.created")
        sock.send_json({"type": "Panic"})
        alert, _ = recv_until(sock, "alert")
    assert alert["deliveries"] == 0
    assert alert["warnings"] == ["this alert reaches nobody: you have no contacts (add one with POST /v1/contacts)"]
