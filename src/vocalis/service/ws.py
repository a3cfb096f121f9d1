"""The ``/v1/stream`` WebSocket protocol: settings, close codes, messages and the per-session helpers.

Nothing here touches FastAPI or the database; :mod:`vocalis.service.routes.stream` wires it up.
The client's reference, with an example of every message, is ``docs/api.md``.

Protocol (JSON text messages with a ``type`` field; audio as binary frames):

* client -> server: binary audio (``encoding=pcm16``: little-endian int16 mono at ``sample_rate``;
  ``encoding=webm``/``ogg``: the MediaRecorder's Opus chunks, all decoded by one decoder per
  session); control messages ``KeepAlive``, ``Finalize``, ``CloseStream``, ``Cancel``, ``Panic``,
  ``Location {lat, lon, accuracy}``;
* server -> client: ``session.created``, ``prediction``, ``danger``, ``countdown``, ``alert``,
  ``cancelled``, ``danger.ended``, ``alert.status``, ``finalized``, ``warning {code, message}``
  (``audio_dropped``: the server fell behind and skipped ``dropped_s`` seconds of the oldest
  queued audio; the session goes on, stream times stay exact; ``mic_hot``: the stream's usual
  voiced level ``level_dbfs`` is at least ``hot_mic_warn_dbfs``, once per session), and
  ``error {code, message}`` before any error close.

Under load the emotion model runs less often than ``emotion_every`` asks: a ``prediction`` then
carries ``emotion_fresh: false``, ``emotion_deferred: true`` and ``emotion_age_s`` (how old its
probabilities are); when the server is behind, the VAD is skipped on late audio too
(``voice_deferred: true``, ``voice`` = the maximum over the window's scored frames, or the last
value); the danger path (scream, risk) is computed for every window. ``voice`` is Silero's speech
probability when ``voice_model`` is ``"silero"`` (below 0.5: no speech, so the emotion ``label`` is
a guess; the web UI shows "no speech"); ``"energy"`` (silero-vad not installed) hears any loud sound.
``scream_backbone`` is the second scream head's score, which rides on the emotion run (held over
the windows that overlap it; ``null`` when there is none or that run was shed).
``level_ref_db`` is the stream's usual voiced level so far (``null`` until 10 s of voice were heard);
``gain_db`` the gain the scream detector heard the window at (``VOCALIS_STREAM_LEVEL_GAIN``, a
slow gain from the stream's usual voiced level, :mod:`vocalis.streaming.gain`; 0 when off).

>>> error_message("bad_rate", "sample_rate=5 must be between 8000 and 48000")["type"]
'error'
>>> q = SendQueue(2)
>>> for i in range(3):
...     q.put({"type": "prediction", "i": i})
>>> q.put({"type": "alert"})
>>> [m.get("i", m["type"]) for m in q.items()]
[1, 2, 'alert']
"""

from __future__ import annotations

import asyncio
import io
import math
import queue
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vocalis.errors import AudioError

# close codes (RFC 6455 + application codes)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_POLICY = 1008  # authentication failed
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013  # the server cannot keep up
CLOSE_BAD_PARAMS = 4000
CLOSE_TOO_FAST = 4029
CLOSE_IDLE = 4031
CLOSE_TOO_LONG = 4033

ENCODINGS = ("pcm16", "webm", "ogg")
CONTAINER_BYTES_PER_S = 64 * 1024
"""Opus tops out at 510 kbit/s: a webm/ogg stream carrying more bytes than this per second of
decoded audio (after :data:`CONTAINER_SLACK_S`) is not the recorder's audio."""
CONTAINER_SLACK_S = 4.0
PCM_RATE_RANGE = (8000, 48000)
CONTROL_TYPES = ("KeepAlive", "Finalize", "CloseStream", "Cancel", "Panic", "Location")
PRIORITY_TYPES = frozenset({"danger", "countdown", "alert", "cancelled", "danger.ended", "alert.status", "error"})
"""Messages a full send queue never drops (only ``prediction`` messages are coalesced)."""


class StreamSettings(BaseSettings):
    """Limits and model options of ``/v1/stream`` (env prefix ``VOCALIS_STREAM_``).

    Kept apart from :class:`~vocalis.service.settings.Settings`; the app reads
    ``app.state.stream_settings`` (tests replace it).
    """

    model_config = SettingsConfigDict(env_prefix="VOCALIS_STREAM_", env_file=None, extra="ignore")

    max_sessions: int = Field(default=32, ge=1, description="Concurrent sessions; more are refused with 503.")
    max_session_s: float = Field(default=3600.0, gt=0, description="A session longer than this is closed (4033).")
    idle_timeout_s: float = Field(default=10.0, gt=0, description="No message for this long closes (4031).")
    max_frame_bytes: int = Field(default=1024 * 1024, ge=1024, description="A larger frame closes (1009).")
    realtime_factor: float = Field(default=1.5, gt=0, description="Audio faster than this x real time closes (4029).")
    burst_s: float = Field(default=3.0, ge=0, description="Seconds of audio allowed ahead of the real-time budget.")
    max_backlog_s: float = Field(
        default=3.0, gt=0,
        description="Audio waiting for analysis per session is bounded by this: when the server falls behind, "
                    "the oldest audio is dropped and the client gets warning {code: 'audio_dropped'}.")
    send_queue: int = Field(default=64, ge=1, description="Outgoing messages buffered per session.")
    window_s: float = Field(default=2.0, description="Analysis window (StreamConfig.window_s).")
    hop_s: float = Field(default=0.5, description="Hop between windows (StreamConfig.hop_s).")
    emotion_every: int = Field(default=2, ge=0, description="Emotion model every n-th hop (0 = never).")
    asr: str = Field(default="auto", description="Keyword spotting: off, auto, always.")
    countdown_s: float | None = Field(default=None, ge=0, description="Overrides PolicyConfig.countdown_s.")
    policy: dict[str, Any] = Field(default_factory=dict, description="Other PolicyConfig overrides.")
    store_history: bool = Field(default=True, description="Store an averaged prediction in the history.")
    history_every_s: float = Field(default=30.0, gt=0, description="Seconds of audio per stored prediction.")
    status_poll_s: float = Field(default=1.0, gt=0, description="How often alert delivery statuses are checked.")
    status_watch_s: float = Field(default=300.0, gt=0, description="How long delivery statuses are followed.")
    engine_workers: int = Field(default=2, ge=1, le=64,
                                description="Threads running the models for all sessions (the shared stream engine).")
    engine_max_batch: int = Field(default=64, ge=1, description="Sessions one engine cycle takes at most.")
    latency_target_s: float = Field(
        default=0.15, gt=0,
        description="Window latency the engine keeps: the emotion model runs less often when it is exceeded "
                    "(prediction.emotion_deferred), and audio that has already waited this long skips the VAD "
                    "(prediction.voice_deferred); the danger path (scream detector, policy) always runs.")
    emotion_max_age_s: float = Field(default=20.0, gt=0,
                                     description="A session's emotion is refreshed at least this often, whatever the load.")
    asr_queue: int = Field(default=2, ge=0,
                           description="Sessions waiting for keyword spotting at most; beyond, it is skipped "
                                       "(prediction.asr_skipped).")
    shutdown_grace_s: float = Field(
        default=15.0, ge=0,
        description="On shutdown (SIGTERM), a running countdown may finish (Cancel still works) for this long; "
                    "then its alert is raised and every stream is closed with 1001.")
    scream_model_path: Path | None = Field(
        default=None, description="First-stage scream detector bundle (scripts/train_scream.py makes one); None = the "
        "packaged two-stage detector. Its metrics.operating_point (the deciding stage's) becomes the policy's "
        "on_threshold unless policy names one.")
    scream_confirm_model_path: Path | None = Field(
        default=None, description="Second-stage scream bundle, scored where the first stage reaches its gate; "
        "only together with scream_model_path.")
    level_gain: bool = Field(
        default=False, description="A slow gain in front of the scream detector (vocalis.streaming.gain): the "
        "stream's usual voiced level is turned down to -18 dBFS. For microphones that run very hot (held out, "
        "speech at -8.5 dBFS: 10.0 -> 3.2 false alerts per hour); off by default (benchmarks/notes.md, session 15).")

    hot_mic_warn_dbfs: float | None = Field(
        default=-15.0, le=0.0, description="Once the stream's usual voiced level (median active level of the voiced "
        "windows of the last 2 min) reaches this, the client gets warning {code: 'mic_hot'} once per session: speech "
        "that loud sets off false alarms (held out: ~10 per hour at -12 dBFS, none at -25). None = never.")

    @model_validator(mode="after")
    def _scream_models(self) -> StreamSettings:
        if self.scream_confirm_model_path is not None and self.scream_model_path is None:
            raise ValueError(f"scream_confirm_model_path={str(self.scream_confirm_model_path)!r} needs "
                             "scream_model_path (a second stage is gated on its own first stage's scores)")
        return self


def error_message(code: str, message: str) -> dict[str, Any]:
    """The ``error`` message sent before an error close."""
    return {"type": "error", "code": code, "message": message}


def parse_control(text: str) -> dict[str, Any]:
    """Parse a client text message; :class:`ValueError` with a clear message when it is not valid."""
    import json

    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        msg = json.loads(text, parse_constant=no_constant)
    except ValueError as e:
        raise ValueError(f"text message must be JSON ({e})") from None
    if not isinstance(msg, dict) or msg.get("type") not in CONTROL_TYPES:
        got = msg.get("type") if isinstance(msg, dict) else type(msg).__name__
        raise ValueError(f"type={got!r} must be one of {', '.join(CONTROL_TYPES)}")
    if msg["type"] == "Location":
        for k in ("lat", "lon", "accuracy"):
            v = msg.get(k)
            if v is None and k == "accuracy":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"Location.{k}={v!r} must be a finite number")
        if not -90 <= msg["lat"] <= 90 or not -180 <= msg["lon"] <= 180:
            raise ValueError(f"Location lat={msg['lat']}, lon={msg['lon']} must be within [-90, 90] x [-180, 180]")
        acc = msg.get("accuracy")
        if acc is not None and acc < 0:  # a finite number: checked above
            raise ValueError(f"Location.accuracy={acc!r} must be a number >= 0")
    return msg


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian int16 mono bytes -> float32 in [-1, 1); an odd byte count is :class:`AudioError`."""
    if len(data) % 2:
        raise AudioError(f"pcm16 frame of {len(data)} bytes must hold whole 16-bit samples (an even byte count)")
    # one pass (int16 -> float32 and the scale together); x / 32768 == x * 2**-15 exactly
    return np.multiply(np.frombuffer(data, dtype="<i2"), np.float32(1.0 / 32768.0), dtype=np.float32)


class SendQueue:
    """Bounded outgoing queue: when full, the oldest ``prediction`` is dropped; events are never dropped.

    Only predictions can fill it, so its size stays bounded by ``maxsize`` plus the (rare) events.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._q: deque[dict[str, Any]] = deque()
        self._event = asyncio.Event() if _has_loop() else None
        self.dropped = 0
        self.closed = False

    def _ready(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def put(self, msg: Mapping[str, Any]) -> None:
        if self.closed:
            return
        if msg.get("type") not in PRIORITY_TYPES and len(self._q) >= self.maxsize:
            for i, old in enumerate(self._q):
                if old.get("type") not in PRIORITY_TYPES:
                    del self._q[i]
                    self.dropped += 1
                    break
            else:
                self.dropped += 1
                return
        self._q.append(dict(msg))
        if self._event is not None:
            self._event.set()

    def items(self) -> list[dict[str, Any]]:
        return list(self._q)

    def __len__(self) -> int:
        return len(self._q)

    async def get(self) -> dict[str, Any] | None:
        """The next message; ``None`` once closed and drained."""
        ev = self._ready()
        while not self._q:
            if self.closed:
                return None
            ev.clear()
            await ev.wait()
        return self._q.popleft()

    def close(self) -> None:
        self.closed = True
        self._ready().set()


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class RealTimeGuard:
    """Says when audio arrives faster than ``factor`` x real time after a ``burst_s`` allowance.

    >>> g = RealTimeGuard(1.5, 1.0)
    >>> g.add(0.5, now=0.0), g.add(0.5, now=0.0), g.add(0.2, now=0.0), g.add(1.0, now=1.0)
    (True, True, False, True)
    """

    def __init__(self, factor: float, burst_s: float) -> None:
        self.factor, self.burst_s = factor, burst_s
        self.start: float | None = None
        self.received_s = 0.0

    def add(self, seconds: float, *, now: float) -> bool:
        """Count ``seconds`` of audio received at ``now``; ``False`` when over budget."""
        if self.start is None:
            self.start = now
        self.received_s += seconds
        return self.received_s <= self.burst_s + self.factor * (now - self.start) + 1e-9


class _Pipe(io.RawIOBase):
    """A blocking byte pipe PyAV reads from: ``write`` appends, ``read`` waits for data or EOF."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._eof = False

    def readable(self) -> bool:
        return True

    def write_bytes(self, data: bytes) -> None:
        with self._cond:
            self._buf += data
            self._cond.notify_all()

    def close_input(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def readinto(self, b: Any) -> int:
        with self._cond:
            while not self._buf and not self._eof:
                self._cond.wait()
            n = min(len(b), len(self._buf))
            b[:n] = self._buf[:n]
            del self._buf[:n]
            return n


class ContainerDecoder:
    """One PyAV decoder for a whole webm/ogg (Opus) stream fed in pieces; 16 kHz mono float32 out.

    MediaRecorder chunks after the first are not decodable alone (they continue the container),
    so the bytes go into a pipe that a background thread demuxes and decodes with ``av.open``.
    ``on_audio(samples)`` is called from that thread for every decoded block; ``on_error(exc)``
    once if the stream cannot be decoded.
    """

    def __init__(self, fmt: str, on_audio: Callable[[np.ndarray], object],
                 on_error: Callable[[Exception], object] | None = None, rate: int = 16000) -> None:
        if fmt not in ("webm", "ogg"):
            raise AudioError(f"format={fmt!r} must be 'webm' or 'ogg'")
        self.fmt, self.rate = fmt, rate
        self._pipe = _Pipe()
        self._on_audio, self._on_error = on_audio, on_error
        self.error: Exception | None = None
        self.decoded_samples = 0
        self._thread = threading.Thread(target=self._run, name=f"vocalis-{fmt}-decoder", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        """Add the next bytes of the container (never blocks)."""
        self._pipe.write_bytes(data)

    def close(self, timeout: float | None = 10.0) -> None:
        """End of input: decode what is left and wait for the thread (blocking; call from a worker thread)."""
        self._pipe.close_input()
        self._thread.join(timeout)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        import av

        try:
            container = av.open(self._pipe, mode="r", format="matroska" if self.fmt == "webm" else "ogg")
            try:
                stream = container.streams.audio[0]
                resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
                for packet in container.demux(stream):
                    for frame in packet.decode():
                        self._emit(resampler.resample(frame))
                self._emit(resampler.resample(None))
            finally:
                container.close()
        except Exception as e:  # a corrupt stream: reported once, the session decides
            self.error = e
            if self._on_error is not None:
                self._on_error(e)

    def _emit(self, frames: Any) -> None:
        for f in frames:
            x = np.ascontiguousarray(f.to_ndarray().reshape(-1), dtype=np.float32)
            if x.size:
                self.decoded_samples += x.size
                self._on_audio(x)


class AudioInbox:
    """Thread-safe FIFO of decoded audio blocks (for tests and for the decoder's callback)."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()

    def put(self, x: np.ndarray) -> None:
        self._q.put(x)

    def drain(self) -> np.ndarray:
        parts = []
        while True:
            try:
                parts.append(self._q.get_nowait())
            except queue.Empty:
                break
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
