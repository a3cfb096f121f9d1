"""Many live streams at once on the shared stream engine: every session served, queues bounded, batching real.

A real uvicorn server in a thread (the production app, temp SQLite) and an asyncio client with 20
concurrent WebSocket sessions of speech-like audio at real time. Behaviour is asserted, not timings:
the machine is shared. The long measurement is ``benchmarks/load_streams.py``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.service.conftest import make_settings
from tests.service.fakes import free_port
from tests.service.test_stream import FakePredictor

websockets = pytest.importorskip("websockets", reason="needs the websockets client (uvicorn[standard])")

SR = 16_000
CHUNK_S = 0.25


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal (pitch glides, 4 Hz envelope) as int16."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 60 * rng.random() + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.random() * 6)
    x = 0.2 * x * env / np.max(np.abs(x)) + 0.003 * rng.standard_normal(t.size)
    return (x * 32767).astype("<i2")


class Server:
    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.app, self.port = app, port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="load-uvicorn", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def engine(self) -> Any:
        return self.app.state.stream_engine


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    from vocalis.service.app import create_app
    from vocalis.service.ws import StreamSettings

    made: list[Server] = []

    def _make(fake: bool = False, **stream: Any) -> tuple[Server, str]:
        app = create_app(make_settings(tmp_path / f"s{len(made)}"))
        opts: dict[str, Any] = {"asr": "off", "store_history": False, "max_sessions": 64, "idle_timeout_s": 10.0}
        opts.update(stream)
        app.state.stream_settings = StreamSettings(**opts)
        if fake:
            app.state.stream_predictor_factory = lambda config: SlowFake()
        srv = Server(app, free_port()).__enter__()
        made.append(srv)
        import httpx

        r = httpx.post(f"http://127.0.0.1:{srv.port}/v1/users",
                       json={"email": "load@example.org", "password": "correct horse"}, timeout=30)
        assert r.status_code == 201, r.text
        return srv, r.json()["api_key"]["key"]

    yield _make
    for s in made:
        s.__exit__()


async def stream_session(url: str, audio: np.ndarray, burst: bool = False) -> list[dict[str, Any]]:
    """Send ``audio`` (real time, or all at once with ``burst``), close, return every message received."""
    msgs: list[dict[str, Any]] = []
    async with websockets.connect(url, open_timeout=30, ping_interval=None) as sock:
        msgs.append(json.loads(await sock.recv()))
        assert msgs[0]["type"] == "session.created", msgs[0]

        async def receive() -> None:
            async for raw in sock:
                msgs.append(json.loads(raw))
                if msgs[-1]["type"] == "finalized":
                    return

        rx = asyncio.create_task(receive())
        n = int(CHUNK_S * SR)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k, i in enumerate(range(0, audio.size, n)):
            if not burst:
                await asyncio.sleep(max(0.0, t0 + k * CHUNK_S - loop.time()))
            await sock.send(audio[i : i + n].tobytes())
        await sock.send(json.dumps({"type": "CloseStream"}))
        await asyncio.wait_for(rx, 60)
    return msgs


def run_sessions(url: str, audios: list[np.ndarray], burst: bool = False) -> list[list[dict[str, Any]]]:
    async def main() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(*(stream_session(url, a, burst) for a in audios)))

    return asyncio.run(main())


def predictions(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in msgs if m["type"] == "prediction"]


def test_twenty_concurrent_sessions_are_all_served_in_batches(make_server: Any) -> None:
    srv, key = make_server(emotion_every=2)
    url = f"ws://127.0.0.1:{srv.port}/v1/stream?token={key}&sample_rate={SR}"
    n_sessions, seconds = 20, 4.25
    results = run_sessions(url, [speechlike(seconds, seed) for seed in range(n_sessions)])
    expected = [2.0, 2.5, 3.0, 3.5, 4.0]  # one window per 0.5 s hop once 2 s are there, none missing
    for msgs in results:
        preds = predictions(msgs)
        assert [p["t_end"] for p in preds if not p.get("partial")][:5] == expected, [p["t_end"] for p in preds]
        assert not [m for m in msgs if m["type"] == "error"]
        for p in preds:  # the danger path is computed on every window
            assert 0 <= p["scream"] <= 1 and 0 <= p["voice"] <= 1 and 0 <= p["risk"] <= 1
            assert isinstance(p["emotion_fresh"], bool) and isinstance(p["emotion_deferred"], bool)
        assert preds[0]["emotion_fresh"] and preds[0]["probabilities"]  # a new session shows an emotion at once
        assert msgs[-1]["type"] == "finalized" and msgs[-1]["t"] == pytest.approx(seconds)
        assert [p["t_end"] for p in preds if p.get("partial")] == [4.25]  # CloseStream flushed the last piece
    st = srv.engine.stats()
    assert st["windows"] >= n_sessions * len(expected)
    sizes = {int(k): v for k, v in st["scream_batch_sizes"].items()}
    assert max(sizes) > 1, sizes  # the scream head ran on windows of several sessions at once
    assert sum(k * v for k, v in sizes.items()) == st["windows"]  # every window went through a batch
    assert st["queued_s_max"] <= srv.app.state.stream_settings.max_backlog_s  # bounded memory per session
    # closed sessions leave nothing behind: the server releases each one after its client has seen
    # 'finalized' and gone, so the last may still be closing when the clients return (a busy machine)
    deadline = time.monotonic() + 10
    while srv.engine.stats()["sessions"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.engine.stats()["sessions"] == 0


class SlowFake(FakePredictor):
    """The deterministic fake of test_stream, 0.4 s per push: the server falls behind a burst."""

    def push(self, samples: np.ndarray, sample_rate: int = SR) -> list[Any]:
        time.sleep(0.4)
        return super().push(samples, sample_rate)


def test_backlog_is_bounded_by_dropping_the_oldest_audio_with_a_warning(make_server: Any) -> None:
    srv, key = make_server(fake=True, max_backlog_s=1.0, burst_s=10.0)
    url = f"ws://127.0.0.1:{srv.port}/v1/stream?token={key}&sample_rate={SR}"
    audio = speechlike(6.0, 1)
    (msgs,) = run_sessions(url, [audio], burst=True)
    warnings = [m for m in msgs if m["type"] == "warning"]
    assert warnings and warnings[0]["code"] == "audio_dropped" and "overloaded" in warnings[0]["message"]
    dropped = sum(w["dropped_s"] for w in warnings)
    assert 0 < dropped <= 6.0 - 1.0 + 1e-6
    assert not [m for m in msgs if m["type"] == "error"]  # the session goes on
    ends = [p["t_end"] for p in predictions(msgs)]
    assert ends == sorted(ends) and len(ends) < 12  # fewer windows: audio was skipped, never reordered
    assert all(abs(e * 4 - round(e * 4)) < 1e-6 for e in ends)  # stream times stay on the 0.25 s chunk grid
    assert msgs[-1]["type"] == "finalized" and msgs[-1]["t"] == pytest.approx(6.0)  # time counts dropped audio
    assert srv.engine.stats()["queued_s_max"] <= 1.0 + CHUNK_S  # never more than the bound (+ the newest block)


def test_emotion_is_shed_under_load_and_the_danger_path_is_not(make_server: Any) -> None:
    """A latency target nobody can meet: emotion runs only on the first window, every window says so."""
    srv, key = make_server(emotion_every=1, latency_target_s=0.0001, emotion_max_age_s=60.0)
    url = f"ws://127.0.0.1:{srv.port}/v1/stream?token={key}&sample_rate={SR}"
    (msgs,) = run_sessions(url, [speechlike(4.0, 2)])
    preds = [p for p in predictions(msgs) if not p.get("partial")]
    assert len(preds) == 5
    assert preds[0]["emotion_fresh"] and preds[0]["emotion_age_s"] == 0.0
    later = preds[1:]
    assert all(p["emotion_deferred"] and not p["emotion_fresh"] for p in later)
    assert [p["emotion_age_s"] for p in later] == [0.5, 1.0, 1.5, 2.0]
    assert all(p["probabilities"] == preds[0]["probabilities"] for p in later)  # the last ones, repeated
    assert all(0 <= p["scream"] <= 1 and "risk" in p for p in preds)
    # the audio of every window has waited longer than the target: the VAD is shed too, the scream detector not
    assert all(p["voice_deferred"] and p["voice"] == 0.0 for p in preds)  # no frame scored: the initial 0 held
    st = srv.engine.stats()
    assert st.get("emotion_deferred", 0) >= 4 and st.get("emotion_runs", 0) >= 1
    assert st.get("vad_shed", 0) >= 5 and st["windows"] >= 5


def test_the_vad_runs_on_every_window_while_the_server_keeps_up(make_server: Any) -> None:
    srv, key = make_server(emotion_every=2, latency_target_s=30.0)
    url = f"ws://127.0.0.1:{srv.port}/v1/stream?token={key}&sample_rate={SR}"
    (msgs,) = run_sessions(url, [speechlike(4.0, 3)])
    preds = predictions(msgs)
    assert len(preds) >= 5 and not any(p["voice_deferred"] for p in preds)
    assert srv.engine.stats().get("vad_shed", 0) == 0


def test_engine_session_queue_drops_oldest_keeps_order_and_counts() -> None:
    """The inbox on its own (no worker): bounded, oldest audio out, one gap marker in its place."""
    from vocalis.service import stream_engine as eng

    e = eng.StreamEngine(eng.EngineConfig(workers=1))  # not started: nothing is consumed
    loop = asyncio.new_event_loop()
    try:
        s = e.open(FakePredictor(), SR, lambda outs: None, loop, max_queue_samples=SR)
        blocks = [np.full(SR // 4, i, np.float32) for i in range(12)]
        dropped = sum(s.submit(b) for b in blocks)  # 3 s into a 1 s queue
        assert dropped == 2 * SR and s.queued == SR and s.dropped == 2 * SR
        gap, audio, flush = s._take()
        assert gap == 2 * SR and flush is None and s.queued == 0
        assert [int(a.x[0]) for a in audio] == [8, 9, 10, 11]  # the newest second, in order
        s.submit(blocks[0])
        s.flush("token")
        s.submit(blocks[1])
        assert [int(a.x[0]) for a in s._take()[1]] == [0]
        gap, audio, flush = s._take()
        assert (gap, audio, flush and flush.token) == (0, [], "token")  # a flush stays behind the audio before it
        assert [int(a.x[0]) for a in s._take()[1]] == [1]
        assert e.stats()["dropped_samples"] == 2 * SR
    finally:
        loop.close()
