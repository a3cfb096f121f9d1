"""``/v1/stream``: live monitoring over a WebSocket (protocol in :mod:`vocalis.service.ws`).

Per session: one predictor (``StreamingPredictor`` by default; ``app.state.stream_predictor_factory``
replaces it), one :class:`~vocalis.danger.policy.DangerPolicy`, one container decoder for
webm/ogg. Inference runs on the app's shared :class:`~vocalis.service.stream_engine.StreamEngine`
(a few threads for all sessions: scream detector batched across sessions, the emotion model under
a latency budget, keyword spotting on its own thread, a bounded audio queue per session that drops
the oldest audio with a ``warning`` when the server falls behind); the policy and the alert life
cycle run on the event loop under one lock, so ``Cancel`` and the countdown never race. Audio is
processed in memory and never stored; averaged predictions go to the history when
``store_history`` is set.

Alert life cycle: the policy's first ``countdown`` creates an alert in status ``countdown`` (no
deliveries); ``Cancel`` cancels it; ``alert`` confirms it, which writes the outbox rows the relay
delivers, and the session then reports ``alert.status`` as deliveries progress.

The user always gets the whole countdown on the wall clock to cancel. The policy counts in stream
time, and stream time runs faster than the wall clock whenever windows arrive in a burst (a
client sending faster than real time, or the server catching up after it fell behind), so the
policy's ``alert`` is held until ``countdown_s`` wall seconds after the first ``countdown`` message
was sent (``Cancel`` still cancels it), and every ``countdown`` message's ``remaining`` is the
larger of the policy's and the wall clock's. When the connection ends during a countdown (the
browser closed, the network lost, ``CloseStream``, a limit), nobody can cancel on this socket any
more: the countdown runs out on the wall clock and the alert is confirmed, unless it was cancelled
meanwhile with ``POST /v1/alerts/{id}/cancel`` (what the web UI's Cancel does without a socket).

Shutdown (:func:`close_streams`, called by ``vocalis serve`` on SIGTERM before the server closes its
connections): new sessions are refused with 503; a running countdown may finish within
``shutdown_grace_s`` (``Cancel`` still works) and is confirmed when the grace runs out, since nobody
could cancel it any more; then every session gets ``error {code: "going_away"}`` and a 1001 close.
The alerts are in the outbox by then, and the relay flushes it when the app stops. A server that
dies without a shutdown (killed, power lost) leaves its running countdowns in the database:
:func:`confirm_abandoned_countdowns` (the app runs it at start-up and every few seconds) confirms
each one ``ABANDONED_SLACK_S`` after its countdown would have ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
import numpy as np
from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from fastapi.security.utils import get_authorization_scheme_param
from starlette.websockets import WebSocketDisconnect, WebSocketState

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.danger.policy import DangerPolicy, Event, PolicyConfig
from vocalis.errors import VocalisError
from vocalis.labels import valence_arousal
from vocalis.service import alerts as svc
from vocalis.service import stream_engine as eng
from vocalis.service import ws
from vocalis.service.convert import alert_warnings
from vocalis.service.deps import CurrentUser, authenticate, configured_channels
from vocalis.service.errors import ConflictError
from vocalis.storage import repositories as repo
from vocalis.storage.tables import PredictionRecord, utcnow
from vocalis.streaming.gain import GainConfig
from vocalis.streaming.predictor import StreamConfig

log = logging.getLogger("vocalis.service.stream")
router = APIRouter(tags=["stream"])

FINAL_DELIVERY = ("sent", "failed", "cancelled")


class WindowLike(Protocol):
    """What the session reads from a predictor's window (``WindowResult`` provides it)."""

    t_start: float
    t_end: float
    probabilities: dict[str, float]
    voice: float
    scream: float
    keywords: list[str]


class PredictorLike(Protocol):
    """``push(samples, sample_rate) -> windows`` and ``flush() -> windows`` (``StreamingPredictor``)."""

    def push(self, samples: np.ndarray, sample_rate: int = ...) -> Sequence[Any]: ...

    def flush(self) -> Sequence[Any]: ...


PredictorFactory = Callable[[StreamConfig], PredictorLike]

_scream_cache: dict[tuple[Path | None, Path | None], Any] = {}


def scream_detector(app: Any) -> Any:
    """The streams' scream detector: ``scream_model_path`` (+ ``scream_confirm_model_path``) of the
    stream settings, or the packaged two stages; loaded once per process and pair of paths.
    Blocking (loads models): call it in a thread."""
    from vocalis.danger.detector import load_scream_detector

    s = _stream_settings(app)
    key = (s.scream_model_path, s.scream_confirm_model_path)
    if key not in _scream_cache:
        _scream_cache[key] = load_scream_detector(*key)
    return _scream_cache[key]


def default_predictor(app: Any, config: StreamConfig) -> PredictorLike:
    """The adapter to :mod:`vocalis.streaming`: a ``StreamingPredictor`` on the app's emotion model
    and :func:`scream_detector`. Blocking (loads models): call it in a thread.
    """
    from vocalis.streaming.predictor import StreamingPredictor

    emotion = app.state.model.get() if config.emotion_every else False
    return StreamingPredictor(config, emotion_model=emotion, scream_model=scream_detector(app))


def _blas_one_thread() -> None:
    """BLAS to one thread, for the whole process (OpenBLAS's setting is global), from the engine's threads.

    The per-window matrices are tiny: a multi-threaded OpenBLAS turned ~1 ms of scream features
    into ~25 ms under load (see the predictor). Set once instead of around every call:
    ``threadpool_limits()`` rescans the loaded libraries each time (~0.3 ms), and even a cached
    controller's set/restore pair showed in profiles at 200 streams.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return
    threadpool_limits(1, user_api="blas")


def _engine(app: Any) -> eng.StreamEngine:
    """The app's stream engine, started on first use (stopped by :func:`close_streams`)."""
    e: eng.StreamEngine | None = getattr(app.state, "stream_engine", None)
    if e is None or not e.running:
        c = _stream_settings(app)
        e = eng.StreamEngine(eng.EngineConfig(
            workers=c.engine_workers, max_batch=c.engine_max_batch, latency_target_s=c.latency_target_s,
            emotion_max_age_s=c.emotion_max_age_s, asr_queue=c.asr_queue), thread_setup=_blas_one_thread).start()
        if c.asr != "off" and getattr(app.state, "stream_predictor_factory", None) is None:
            e.prewarm_asr()
        app.state.stream_engine_watch = asyncio.get_running_loop().create_task(e.watch_loop(), name="stream-loop-lag")
        app.state.stream_engine = e
        metrics = getattr(app.state, "metrics", None)
        if metrics is not None:
            metrics.watch_stream_engine(lambda: getattr(app.state, "stream_engine", None))
    return e


@dataclass
class _PolicyWindow:
    """A window as the policy sees it, on the session's monotonic policy clock."""

    t_end: float
    scream: float
    probabilities: dict[str, float]
    keywords: list[str]
    scream_backbone: float | None = None


@dataclass
class _History:
    """Averages the emotion probabilities of the windows of ``every_s`` seconds of audio."""

    every_s: float
    sums: dict[str, float] = field(default_factory=dict)
    n: int = 0
    t0: float | None = None
    t1: float = 0.0

    def add(self, t_start: float, t_end: float, probs: dict[str, float]) -> dict[str, Any] | None:
        if not probs:
            return None
        if self.t0 is None:
            self.t0 = t_start
        self.t1 = t_end
        for k, v in probs.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.n += 1
        return self.take() if self.t1 - self.t0 >= self.every_s else None

    def take(self) -> dict[str, Any] | None:
        if not self.n or self.t0 is None:
            return None
        probs = {k: round(v / self.n, 6) for k, v in self.sums.items()}
        out = {"probabilities": probs, "duration_s": round(self.t1 - self.t0, 3)}
        self.sums, self.n, self.t0 = {}, 0, None
        return out


def _reason(e: Exception) -> str:
    """An FFmpeg error's text without its errno and file name (``Invalid data found ...``)."""
    return str(getattr(e, "strerror", None) or e)


def _label(probs: dict[str, float]) -> str | None:
    return max(probs, key=lambda k: probs[k]) if probs else None


class _Closing(Exception):
    """Raised inside the session to end it with ``close_code`` after sending ``error``."""

    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code, self.code, self.message = close_code, code, message


class StreamSession:
    """One WebSocket session: reader (this coroutine), sender, inference worker, countdown ticker."""

    def __init__(self, websocket: WebSocket, user: CurrentUser, settings: ws.StreamSettings,
                 encoding: str, sample_rate: int) -> None:
        self.ws, self.user, self.cfg = websocket, user, settings
        self.app = websocket.app
        self.encoding, self.rate = encoding, sample_rate
        self.id = uuid.uuid4().hex
        self.out = ws.SendQueue(settings.send_queue)
        self.guard = ws.RealTimeGuard(settings.realtime_factor, settings.burst_s)
        self.lock = asyncio.Lock()  # policy + alert life cycle
        self._results: deque[eng.Output] = deque()
        self._results_ready = asyncio.Event()
        self._commands: set[asyncio.Future[None]] = set()
        self.engine_session: eng.EngineSession | None = None
        self.dropped_s = 0.0
        self._warned_mono = 0.0
        self._warn_pending_s = 0.0
        self.push_rate = sample_rate if encoding == "pcm16" else SAMPLE_RATE
        self.audio_offset = 0.0  # seconds of audio before the last predictor flush
        self.audio_in_predictor = 0  # samples pushed since the last flush
        self.policy_offset = 0.0
        self.last_window_mono = time.monotonic()
        self.pending_alert: str | None = None
        self.countdown_end_mono: float | None = None  # wall-clock end of the running countdown
        self.held_alert: Event | None = None  # the policy's alert, held until countdown_end_mono
        self.location: svc.Location | None = None
        self.alert_ids: list[str] = []
        self.history = _History(settings.history_every_s)
        self.warned_hot = False  # warning mic_hot sent
        self.tasks: list[asyncio.Task[Any]] = []
        self.fatal: _Closing | None = None
        self.decoder: ws.ContainerDecoder | None = None
        self.container_bytes = 0
        self.predictor: PredictorLike | None = None
        self.policy: DangerPolicy | None = None
        self.stream_config: StreamConfig | None = None
        self._reader: asyncio.Task[Any] | None = None  # the task in _read, while it awaits a message
        self._interrupted: str | None = None

    # -- setup ----------------------------------------------------------------------------------

    async def setup(self) -> None:
        c = self.cfg
        try:
            self.stream_config = StreamConfig(window_s=c.window_s, hop_s=c.hop_s, emotion_every=c.emotion_every,
                                              asr=c.asr, level_gain=GainConfig() if c.level_gain else None)
            self.policy = DangerPolicy(policy_config(c))
        except VocalisError as e:
            raise _Closing(ws.CLOSE_INTERNAL, "config_error", str(e)) from e
        factory: PredictorFactory | None = getattr(self.app.state, "stream_predictor_factory", None)
        cfg = self.stream_config
        try:
            if factory is not None:
                self.predictor = await anyio.to_thread.run_sync(factory, cfg)
            else:
                self.predictor = await anyio.to_thread.run_sync(default_predictor, self.app, cfg)
        except VocalisError as e:
            raise _Closing(ws.CLOSE_TRY_AGAIN, "model_unavailable", str(e)) from e
        # the threshold belongs to the detector: its operating point, unless the settings name one
        op = getattr(getattr(self.predictor, "scream", None), "operating_point", None)
        if op is not None and "on_threshold" not in c.policy:
            self.policy = DangerPolicy(self.policy.config.at_threshold(op))
        loop = asyncio.get_running_loop()
        self.engine_session = _engine(self.app).open(
            self.predictor, self.push_rate, self._deliver, loop, round(c.max_backlog_s * self.push_rate))
        if self.encoding in ("webm", "ogg"):
            self.decoder = ws.ContainerDecoder(
                self.encoding,
                on_audio=lambda x: loop.call_soon_threadsafe(self._decoded, x),
                on_error=lambda e: loop.call_soon_threadsafe(
                    self._fail, ws.CLOSE_BAD_PARAMS, "invalid_audio",
                    f"{self.encoding} stream cannot be decoded: {_reason(e)}"),
            )

    # -- helpers --------------------------------------------------------------------------------

    def send(self, msg: dict[str, Any]) -> None:
        self.out.put(msg)

    def _fail(self, close_code: int, code: str, message: str) -> None:
        """Ask the reader to end the session with an error (from a task or a callback)."""
        if self.fatal is None:
            self.fatal = _Closing(close_code, code, message)
            self._interrupt("fatal")

    def _interrupt(self, why: str) -> None:
        """Stop the reader's wait for a message (``fatal``: end the session; ``timeout``: idle)."""
        if self._reader is not None and self._interrupted is None:
            self._interrupted = why
            self._reader.cancel()

    def _decoded(self, x: np.ndarray) -> None:
        self._enqueue_audio(x)

    def _enqueue_audio(self, x: np.ndarray) -> None:
        if self.fatal is not None or not x.size:
            return
        if not self.guard.add(x.size / self.push_rate, now=time.monotonic()):
            self._fail(ws.CLOSE_TOO_FAST, "too_fast",
                       f"audio arrives faster than {self.cfg.realtime_factor:g}x real time "
                       f"(after a {self.cfg.burst_s:g} s burst); send it as it is recorded")
            return
        assert self.engine_session is not None
        self.engine_session.submit(x)  # drops the oldest queued audio if the server is far behind (a Gap)

    def _deliver(self, outputs: list[eng.Output]) -> None:
        """The engine's results for this session, in order (called on the event loop)."""
        self._results.extend(outputs)
        self._results_ready.set()

    async def _command(self, name: str) -> None:
        """Queue ``name`` (``finalize``) behind the audio already received and wait until it is done."""
        assert self.engine_session is not None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commands.add(fut)
        try:
            self.engine_session.flush(fut)
            await fut
        finally:
            self._commands.discard(fut)

    # -- tasks ----------------------------------------------------------------------------------

    async def sender(self) -> None:
        while True:
            msg = await self.out.get()
            if msg is None:
                return
            try:
                await self.ws.send_text(json.dumps(msg))
            except (WebSocketDisconnect, RuntimeError, OSError, anyio.ClosedResourceError, anyio.BrokenResourceError):
                self.out.close()  # the client is gone (an alert may still be raised: finish_countdown)
                return

    async def worker(self) -> None:
        """Consumes the engine's outputs for this session, in order."""
        while True:
            while not self._results:
                self._results_ready.clear()
                await self._results_ready.wait()
            out = self._results.popleft()
            if isinstance(out, eng.Windows):
                await self._windows(out.windows, out.arrivals)
                self.audio_in_predictor += out.pushed
            elif isinstance(out, eng.Gap):
                self._gap(out.samples)
            elif isinstance(out, eng.Flushed):
                try:
                    await self._flushed(out.windows)
                except Exception as e:
                    if not out.token.done():
                        out.token.set_exception(e)
                else:
                    if not out.token.done():
                        out.token.set_result(None)
            elif isinstance(out, eng.Failed):
                err = out.error
                if isinstance(err, VocalisError):
                    self._fail(ws.CLOSE_BAD_PARAMS, "invalid_audio", str(err))
                else:
                    log.error("stream session %s: inference failed: %r", self.id, err)
                    self._fail(ws.CLOSE_INTERNAL, "internal_error", "analysis failed; reconnect")
                for fut in list(self._commands):
                    if not fut.done():
                        fut.set_result(None)
                return

    def _check_level(self, ref: float | None, t: float) -> None:
        """Warn once per session when the stream's usual voiced level reaches ``hot_mic_warn_dbfs``."""
        limit = self.cfg.hot_mic_warn_dbfs
        if ref is None or limit is None or self.warned_hot or ref < limit:
            return
        self.warned_hot = True
        self.send({"type": "warning", "code": "mic_hot", "level_dbfs": round(float(ref), 1), "t": t,
                   "message": f"the microphone is very loud (speech at about {ref:.0f} dBFS): ordinary speech this "
                              "loud can set off false alarms; hold the phone further away or lower its input volume"})

    def _gap(self, samples: int) -> None:
        """The engine dropped ``samples`` of the oldest queued audio (overload): keep stream times, tell the client."""
        seconds = samples / self.push_rate
        self.audio_offset += seconds
        self.dropped_s += seconds
        self._warn_pending_s += seconds
        now = time.monotonic()
        if now - self._warned_mono >= 1.0:  # at most one warning a second; it carries what was dropped since
            self._warned_mono = now
            self.send({"type": "warning", "code": "audio_dropped",
                       "message": f"the server is overloaded: {self._warn_pending_s:.2f} s of audio were not "
                                  "analysed (the oldest queued); analysis goes on with the newest",
                       "dropped_s": round(self._warn_pending_s, 3), "dropped_total_s": round(self.dropped_s, 3),
                       "t": round(self.audio_offset + self.audio_in_predictor / self.push_rate, 3)})
            self._warn_pending_s = 0.0

    async def _flushed(self, windows: Sequence[Any]) -> None:
        await self._windows(windows)
        self.audio_offset += self.audio_in_predictor / self.push_rate
        self.audio_in_predictor = 0
        await self._store_history(final=True)
        self.send({"type": "finalized", "t": round(self.audio_offset, 3)})

    async def ticker(self) -> None:
        """Runs the countdown on the wall clock when no window arrives (the sound stopped)."""
        assert self.policy is not None
        while True:
            await asyncio.sleep(0.5)
            stalled = time.monotonic() - self.last_window_mono
            if not self.policy.counting_down or stalled < 1.0:
                continue
            if self.engine_session is not None and self.engine_session.queued > 0:
                continue  # audio is waiting: the server is behind, the sound has not stopped
            async with self.lock:
                t = max(self.policy.clock, 0.0) + stalled
                self.last_window_mono = time.monotonic()
                self.policy_offset += stalled
                await self._events(self.policy.tick(t))

    # -- windows and events ---------------------------------------------------------------------

    async def _windows(self, windows: Sequence[Any], arrivals: Sequence[float] | None = None) -> None:
        assert self.policy is not None
        if windows and arrivals:
            now = time.monotonic()
            engine = _engine_of(self.app)
            metrics = getattr(self.app.state, "metrics", None)
            for arrival in arrivals:
                engine.observe(now - arrival)
                if metrics is not None:
                    metrics.stream_latency.observe(now - arrival)
        for w in windows:
            t_start = round(float(w.t_start) + self.audio_offset, 3)
            t_end = round(float(w.t_end) + self.audio_offset, 3)
            probs = {k: float(v) for k, v in dict(w.probabilities).items()}
            async with self.lock:
                t_pol = t_end + self.policy_offset
                if t_pol < self.policy.clock:
                    self.policy_offset += self.policy.clock - t_pol
                    t_pol = self.policy.clock
                backbone = getattr(w, "scream_backbone", None)
                events = self.policy.push(_PolicyWindow(t_pol, float(w.scream), probs, list(w.keywords), backbone))
                self.last_window_mono = time.monotonic()
                msg: dict[str, Any] = {
                    "type": "prediction", "t_start": t_start, "t_end": t_end,
                    "probabilities": {k: round(v, 4) for k, v in probs.items()}, "label": _label(probs),
                    "voice": round(float(w.voice), 4), "voice_model": str(getattr(w, "voice_model", "silero")),
                    "scream": round(float(w.scream), 4),
                    "risk": round(self.policy.last_risk, 4), "keywords": list(w.keywords),
                    "scream_backbone": None if backbone is None else round(float(backbone), 4),
                    "gain_db": round(float(getattr(w, "gain_db", 0.0)), 2),
                    "level_ref_db": getattr(w, "level_ref_db", None),
                }
                if probs:
                    v, a = valence_arousal(probs)
                    msg["valence"], msg["arousal"] = round(v, 4), round(a, 4)
                if getattr(w, "partial", False):  # the zero-padded last window of a Finalize/CloseStream
                    msg["partial"] = True
                fresh = getattr(w, "emotion_fresh", None)
                if fresh is not None:
                    age = getattr(w, "emotion_age_s", None)
                    msg["emotion_fresh"] = bool(fresh)
                    msg["emotion_age_s"] = None if age is None else round(float(age), 3)
                    msg["emotion_deferred"] = bool(getattr(w, "emotion_deferred", False))
                    msg["voice_deferred"] = bool(getattr(w, "voice_deferred", False))
                    msg["asr_pending"] = bool(getattr(w, "asr_pending", False))
                    msg["asr_skipped"] = bool(getattr(w, "asr_skipped", False))
                    heard = getattr(w, "keywords_t_end", None)
                    if heard is not None:  # keywords spotted in an earlier window (ASR runs off the hot path)
                        msg["keywords_t_end"] = round(float(heard) + self.audio_offset, 3)
                self.send(msg)
                self._check_level(msg["level_ref_db"], t_end)
                await self._events(events)
            if self.cfg.store_history:
                rec = self.history.add(t_start, t_end, probs)
                if rec is not None:
                    await self._save_prediction(rec)

    async def _events(self, events: Sequence[Event]) -> None:
        """Act on policy events (the caller holds :attr:`lock`)."""
        for ev in events:
            d = ev.to_dict()
            kind = d.pop("type")
            if kind == "danger.started":
                self.send({"type": "danger", "event": kind, **d})
            elif kind == "danger.ended":
                self.send({"type": "danger.ended", **d})
            elif kind == "countdown":
                if self.pending_alert is None:
                    self.pending_alert = await self._db(self._create, "stream", ev, "countdown")
                    self.countdown_end_mono = time.monotonic() + float(ev.remaining or 0.0)
                d["remaining"] = round(max(float(ev.remaining or 0.0), self._wall_left()), 3)
                self.send({"type": "countdown", "alert_id": self.pending_alert, **d})
            elif kind == "alert":
                if ev.reason != "panic" and self.pending_alert is not None and self._wall_left() > 0:
                    self.held_alert = ev  # the user still has wall-clock time to cancel
                    self.tasks.append(asyncio.create_task(self._release_held(), name=f"stream-hold-{self.id}"))
                else:
                    await self._raise_alert(ev)
            elif kind == "cancelled":
                self.held_alert, self.countdown_end_mono = None, None
                alert_id, self.pending_alert = self.pending_alert, None
                if alert_id is not None:
                    with contextlib.suppress(ConflictError):  # already cancelled through the REST API
                        await self._db(self._cancel, alert_id)
                d.pop("cooldown", None)
                # the episode goes on without a new countdown for cooldown_s (Panic still alerts)
                self.send({"type": "cancelled", "alert_id": alert_id, **d,
                           "cooldown_s": self.policy.config.cooldown_s if self.policy is not None else 0.0})

    def _wall_left(self) -> float:
        """Wall-clock seconds left of the running countdown (0 when none runs)."""
        end = self.countdown_end_mono
        return 0.0 if end is None else max(0.0, end - time.monotonic())

    async def _release_held(self) -> None:
        """Raise the held alert once the countdown's wall-clock time is over (unless cancelled)."""
        while self.held_alert is not None:
            left = self._wall_left()
            if left > 0:
                await asyncio.sleep(left)
                continue
            async with self.lock:
                ev, self.held_alert = self.held_alert, None
                if ev is not None:
                    await self._raise_alert(ev)

    async def finish_countdown(self) -> None:
        """The session ends during a countdown: run it out on the wall clock, then confirm the alert.

        Nobody can send ``Cancel`` on a closed socket; ``POST /v1/alerts/{id}/cancel`` still can,
        and then nothing is sent.
        """
        if self.policy is None or self.pending_alert is None:
            return
        if self.engine_session is not None:
            self.engine_session.close()  # no more audio comes: free the engine's share now
        while self._wall_left() > 0 and self.pending_alert is not None:
            await asyncio.sleep(self._wall_left())
        await self.confirm_countdown("connection closed during the countdown")

    async def confirm_countdown(self, reason: str) -> None:
        """Confirm the running countdown's alert now (the policy's held alert, or one for ``reason``).

        The policy is told too (:meth:`DangerPolicy.confirm`): its countdown ends with this alert and
        its cooldown starts, so windows still queued behind the confirmation (or the wall-clock
        ticker) cannot open a second alert that nobody would confirm."""
        assert self.policy is not None
        async with self.lock:
            if self.pending_alert is None:
                return
            t = max(self.policy.clock, 0.0)
            raised = [e for e in self.policy.confirm(t, reason) if e.type == "alert"]
            await self._raise_alert(self.held_alert or (raised[0] if raised else Event(
                "alert", t, round(self.policy.last_risk, 4), reason)))

    async def _raise_alert(self, ev: Event) -> None:
        manual = ev.reason == "panic"
        alert_id = self.pending_alert
        self.pending_alert = None
        self.held_alert, self.countdown_end_mono = None, None
        if alert_id is not None and not manual:
            try:
                n, warnings = await self._db(self._confirm, alert_id)
            except ConflictError:  # cancelled through the REST API meanwhile
                self.send({"type": "cancelled", "alert_id": alert_id, "t": ev.t, "reason": "user",
                           "cooldown_s": self.policy.config.cooldown_s if self.policy is not None else 0.0})
                return
        else:
            if alert_id is not None:  # a panic during a countdown replaces it
                with contextlib.suppress(ConflictError):
                    await self._db(self._cancel, alert_id)
            alert_id = await self._db(self._create, "manual" if manual else "stream", ev, "confirmed")
            n, warnings = await self._db(self._summary, alert_id)
        self.alert_ids.append(alert_id)
        relay = getattr(self.app.state, "relay", None)
        if relay is not None:
            relay.wake()
        metrics = getattr(self.app.state, "metrics", None)
        if metrics is not None:
            metrics.alerts.labels("manual" if manual else "stream").inc()
        d = ev.to_dict()
        d.pop("type")
        msg = {"type": "alert", "alert_id": alert_id, "deliveries": n, **d}
        if warnings:  # said at once: the user must not believe someone was told
            msg["warnings"] = warnings
        self.send(msg)
        self.tasks.append(asyncio.create_task(self._watch(alert_id), name=f"stream-watch-{alert_id}"))

    async def _watch(self, alert_id: str) -> None:
        """Send ``alert.status`` whenever the deliveries of ``alert_id`` change, until all are final."""
        last: Any = None
        deadline = time.monotonic() + self.cfg.status_watch_s
        while time.monotonic() < deadline:
            status = await self._db(self._status, alert_id)
            if status != last:
                last = status
                self.send({"type": "alert.status", **status})
            if status["deliveries"] and all(d["status"] in FINAL_DELIVERY for d in status["deliveries"]):
                return
            if not status["deliveries"]:
                return
            await asyncio.sleep(self.cfg.status_poll_s)

    # -- database (worker threads) ------------------------------------------------------------

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    def _create(self, source: str, ev: Event, status: str) -> str:
        with self.app.state.session_factory() as s, s.begin():
            reason = ev.reason or ("panic" if source == "manual" else "danger detected")
            alert = svc.create_alert(s, self.user.id, source, ev.risk, f"live stream: {reason}",
                                     self.location, status)
            return str(alert.id)

    def _confirm(self, alert_id: str) -> tuple[int, list[str]]:
        """Confirm ``alert_id``: its number of deliveries and its warnings (:func:`alert_warnings`)."""
        with self.app.state.session_factory() as s, s.begin():
            alert = svc.confirm_alert(s, self.user.id, alert_id)
            return len(alert.deliveries), alert_warnings(alert, configured_channels(self.app))

    def _cancel(self, alert_id: str) -> None:
        with self.app.state.session_factory() as s, s.begin():
            svc.cancel_alert(s, self.user.id, alert_id)

    def _summary(self, alert_id: str) -> tuple[int, list[str]]:
        """The number of deliveries of ``alert_id`` and its warnings."""
        with self.app.state.session_factory() as s:
            alert = svc.get_alert(s, self.user.id, alert_id)
            return len(alert.deliveries), alert_warnings(alert, configured_channels(self.app))

    def _status(self, alert_id: str) -> dict[str, Any]:
        with self.app.state.session_factory() as s:
            alert = svc.get_alert(s, self.user.id, alert_id)
            names = {c.id: c.name for c in repo.list_contacts(s, self.user.id)}
            return {
                "alert_id": alert.id, "status": alert.status,
                "deliveries": [
                    {"contact_id": d.contact_id, "contact": names.get(d.contact_id or ""),
                     "channel": d.channel, "status": d.status, "attempts": d.attempts,
                     "error": d.last_error}
                    for d in sorted(alert.deliveries, key=lambda d: (d.contact_id or "", d.channel))
                ],
            }

    def _set_location(self, alert_ids: list[str], loc: svc.Location) -> None:
        with self.app.state.session_factory() as s, s.begin():
            for alert_id in alert_ids:
                alert = repo.get_alert(s, self.user.id, alert_id)
                if alert is not None:
                    alert.latitude, alert.longitude, alert.accuracy_m = loc.latitude, loc.longitude, loc.accuracy_m

    async def _save_prediction(self, rec: dict[str, Any]) -> None:
        probs = rec["probabilities"]
        v, a = valence_arousal(probs)

        def save() -> None:
            with self.app.state.session_factory() as s, s.begin():
                repo.add_prediction(s, PredictionRecord(
                    user_id=self.user.id, label=_label(probs) or "neutral", probabilities=probs,
                    valence=v, arousal=a, source="stream", duration_s=rec["duration_s"]))

        try:
            await self._db(save)
        except Exception:  # the history is best effort; the live session goes on
            log.exception("could not store a stream prediction")

    async def _store_history(self, final: bool = False) -> None:
        if self.cfg.store_history and final:
            rec = self.history.take()
            if rec is not None:
                await self._save_prediction(rec)

    # -- control messages ---------------------------------------------------------------------

    async def control(self, msg: dict[str, Any]) -> bool:
        """Handle one control message; ``True`` when the session should end normally."""
        assert self.policy is not None
        kind = msg["type"]
        if kind == "KeepAlive":
            return False
        if kind == "Finalize":
            await self._command("finalize")
            return False
        if kind == "CloseStream":
            if self.decoder is not None:
                await anyio.to_thread.run_sync(self.decoder.close)
                await asyncio.sleep(0)  # let the decoder's last callbacks run
                if self.decoder.error is not None:
                    raise _Closing(ws.CLOSE_BAD_PARAMS, "invalid_audio",
                                   f"{self.encoding} stream cannot be decoded: {_reason(self.decoder.error)}")
            if self.fatal is not None:
                raise self.fatal
            await self._command("finalize")
            return True
        if kind == "Panic":
            async with self.lock:
                await self._events(self.policy.panic(max(self.policy.clock, 0.0), reason="panic"))
            return False
        if kind == "Cancel":
            if not await self.cancel_countdown():
                self.send(ws.error_message("no_countdown", "Cancel: no countdown is running"))
            return False
        if kind == "Location":
            acc = msg.get("accuracy")
            self.location = svc.Location(float(msg["lat"]), float(msg["lon"]),
                                         None if acc is None else float(acc))
            targets = [a for a in [self.pending_alert, *self.alert_ids[-1:]] if a]
            if targets:
                await self._db(self._set_location, targets, self.location)
            return False
        return False  # pragma: no cover

    async def cancel_countdown(self, alert_id: str | None = None) -> bool:
        """Cancel the running countdown (``Cancel`` on the socket, or ``alert_id`` cancelled through
        ``POST /v1/alerts/{id}/cancel``): the policy stops it and the client gets ``cancelled`` at
        once. ``False`` when no countdown (for ``alert_id``) runs."""
        async with self.lock:
            if self.policy is None or (alert_id is not None and alert_id != self.pending_alert):
                return False
            t = max(self.policy.clock, 0.0)
            events = self.policy.cancel(t)
            if self.held_alert is not None or alert_id is not None:
                # over in stream time but not yet on the wall clock, or already cancelled in the
                # database: no alert may come of it
                events = [e for e in events if e.type != "alert"]
                if not any(e.type == "cancelled" for e in events):
                    events.append(Event("cancelled", t, reason="user"))
            await self._events(events)
            return any(e.type == "cancelled" for e in events)

    # -- main loop ----------------------------------------------------------------------------

    async def go_away(self, deadline: float) -> None:
        """Server shutdown: let a running countdown end until ``deadline`` (``time.monotonic()``),
        confirm its alert if it still runs then, and end the session with 1001."""
        while (self.fatal is None and self.policy is not None and self.pending_alert is not None
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        if self.fatal is None and self.policy is not None:
            await self.confirm_countdown("server shutting down during the countdown")
        self._fail(ws.CLOSE_GOING_AWAY, "going_away", "the server is shutting down; reconnect in a moment")

    async def run(self) -> tuple[int, str | None]:
        """Read until the client closes or a limit is hit; returns the close code and reason."""
        self.tasks += [asyncio.create_task(self.sender(), name=f"stream-send-{self.id}")]
        try:
            await self.setup()
            assert self.stream_config is not None
            self.send({"type": "session.created", "session_id": self.id, "sample_rate": self.rate,
                       "encoding": self.encoding, "window_s": self.stream_config.window_s,
                       "hop_s": self.stream_config.hop_s,
                       "countdown_s": self.policy.config.countdown_s if self.policy else None})
            self.tasks += [asyncio.create_task(self.worker(), name=f"stream-work-{self.id}"),
                           asyncio.create_task(self.ticker(), name=f"stream-tick-{self.id}")]
            return await self._read()
        except _Closing as e:
            return await self._close_with_error(e)

    async def _read(self) -> tuple[int, str | None]:
        c = self.cfg
        started = time.monotonic()
        while True:
            if self.fatal is not None:
                return await self._close_with_error(self.fatal)
            now = time.monotonic()
            left = c.max_session_s - (now - started)
            if left <= 0:
                return await self._close_with_error(_Closing(
                    ws.CLOSE_TOO_LONG, "session_too_long", f"sessions last at most {c.max_session_s:g} s"))
            message = await self._receive(min(c.idle_timeout_s, left))
            if message is None:  # interrupted: an error to send, the idle timeout or the session cap
                if self.fatal is not None:
                    continue
                if left <= c.idle_timeout_s:  # the wait was the session cap's (a timer may fire a hair early:
                    continue  # the loop's own check closes with 4033, never as idle)
                return await self._close_with_error(_Closing(
                    ws.CLOSE_IDLE, "idle", f"no message for {c.idle_timeout_s:g} s (send KeepAlive)"))
            if message["type"] == "websocket.disconnect":
                return int(message.get("code") or 1000), None
            data = message.get("bytes")
            text = message.get("text")
            size = len(data) if data is not None else len((text or "").encode())
            if size > c.max_frame_bytes:
                return await self._close_with_error(_Closing(
                    ws.CLOSE_TOO_BIG, "frame_too_large", f"frame of {size} bytes must be at most {c.max_frame_bytes}"))
            if data is not None:
                if self.decoder is not None:
                    self.container_bytes += len(data)
                    decoded_s = self.decoder.decoded_samples / SAMPLE_RATE
                    if self.container_bytes > ws.CONTAINER_BYTES_PER_S * (decoded_s + ws.CONTAINER_SLACK_S):
                        return await self._close_with_error(_Closing(
                            ws.CLOSE_BAD_PARAMS, "invalid_audio",
                            f"{self.container_bytes} bytes of {self.encoding} decoded to {decoded_s:.1f} s of audio; "
                            f"the stream must be the recorder's Opus (at most {ws.CONTAINER_BYTES_PER_S} bytes/s)"))
                    self.decoder.feed(data)
                    continue
                try:
                    x = ws.pcm16_to_float(data)
                except VocalisError as e:
                    return await self._close_with_error(_Closing(ws.CLOSE_BAD_PARAMS, "invalid_audio", str(e)))
                self._enqueue_audio(x)
                continue
            try:
                msg = ws.parse_control(text or "")
            except ValueError as e:
                self.send(ws.error_message("bad_message", str(e)))
                continue
            if await self.control(msg):
                await self._drain()
                return ws.CLOSE_NORMAL, None

    async def _receive(self, timeout: float) -> Any:
        """The next ASGI message, or ``None`` after ``timeout`` or a :meth:`_fail`.

        One await per message: no task, no ``asyncio.wait`` (at 200 streams x 10 frames/s those were
        a visible share of the event loop); the timeout and a failure interrupt the wait by cancelling it.
        """
        task = asyncio.current_task()
        assert task is not None
        self._interrupted = None
        timer = asyncio.get_running_loop().call_later(timeout, self._interrupt, "timeout")
        self._reader = task
        try:
            return await self.ws.receive()
        except asyncio.CancelledError:
            if self._interrupted is None:
                raise  # cancelled from outside
            uncancel = getattr(task, "uncancel", None)  # Python >= 3.11: pending cancellations count
            if uncancel is not None and uncancel() > 0:
                raise  # cancelled from outside as well
            return None
        finally:
            self._reader = None
            timer.cancel()

    async def _drain(self, timeout: float = 3.0) -> None:
        self.out.close()
        sender = self.tasks[0]
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(sender), timeout)

    async def _close_with_error(self, e: _Closing) -> tuple[int, str | None]:
        self.out.put(ws.error_message(e.code, e.message))
        await self._drain()
        return e.close_code, e.code

    async def shutdown(self) -> None:
        """Stop the tasks, end the decoder, store the last history record."""
        if self.engine_session is not None:
            self.engine_session.close()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.decoder is not None and not self.decoder.done:
            await anyio.to_thread.run_sync(self.decoder.close, 2.0)
        await self._store_history(final=True)


def _engine_of(app: Any) -> eng.StreamEngine:
    e: eng.StreamEngine = app.state.stream_engine
    return e


def policy_config(settings: ws.StreamSettings) -> PolicyConfig:
    """The danger policy's config of a session (before its detector's operating point): the settings'
    ``policy`` overrides, ``countdown_s`` over them. :class:`ConfigError` when they are invalid."""
    overrides = dict(settings.policy)
    if settings.countdown_s is not None:
        overrides["countdown_s"] = settings.countdown_s
    return PolicyConfig.from_dict(overrides)


def _stream_settings(app: Any) -> ws.StreamSettings:
    s = getattr(app.state, "stream_settings", None)
    if s is None:
        s = app.state.stream_settings = ws.StreamSettings()
    return s  # type: ignore[no-any-return]


def _active(app: Any) -> dict[str, StreamSession | None]:
    """The live sessions of ``app`` by connection token (``None`` until the session is built)."""
    s = getattr(app.state, "stream_sessions", None)
    if s is None:
        s = app.state.stream_sessions = {}
    return s  # type: ignore[no-any-return]


async def cancelled_elsewhere(app: Any, user_id: str, alert_id: str) -> bool:
    """``alert_id`` was cancelled through the REST API: stop the countdown of the live session that
    runs it, so its socket says ``cancelled`` now instead of counting down to nothing."""
    for session in list(_active(app).values()):
        if session is not None and session.user.id == user_id and session.pending_alert == alert_id:
            return await session.cancel_countdown(alert_id)
    return False


ABANDONED_SLACK_S = 30.0
"""Seconds past its countdown's end after which a ``countdown`` alert no session decided is abandoned
(a live session decides within the countdown; the slack covers a busy server's lag)."""


async def confirm_abandoned_countdowns(app: Any) -> list[str]:
    """Confirm the ``countdown`` alerts that no live session will decide (their server died without a
    shutdown): :func:`vocalis.service.alerts.confirm_abandoned` for those created more than this
    server's countdown plus :data:`ABANDONED_SLACK_S` ago, except those its own live sessions run.
    Wakes the relay; returns the confirmed alert ids."""
    countdown_s = policy_config(_stream_settings(app)).countdown_s
    cutoff = utcnow() - timedelta(seconds=countdown_s + ABANDONED_SLACK_S)
    live = {s.pending_alert for s in list(_active(app).values()) if s is not None and s.pending_alert is not None}

    def confirm() -> list[str]:
        with app.state.session_factory() as s, s.begin():
            return [str(a.id) for a in svc.confirm_abandoned(s, cutoff, live)]

    ids = await anyio.to_thread.run_sync(confirm)
    if ids:
        log.warning("confirmed %d abandoned countdown alert(s) (their stream ended without a decision): %s",
                    len(ids), ", ".join(ids))
        relay = getattr(app.state, "relay", None)
        if relay is not None:
            relay.wake()
        metrics = getattr(app.state, "metrics", None)
        if metrics is not None:
            metrics.alerts.labels("stream").inc(len(ids))
    return ids


async def close_streams(app: Any, grace_s: float | None = None) -> int:
    """Close every live session for a shutdown (see the module docstring); returns how many there were.

    Waits at most ``grace_s`` (default ``shutdown_grace_s``) for running countdowns, then a few
    seconds for the sessions to send their last messages and close.
    """
    app.state.stream_closing = True
    grace = _stream_settings(app).shutdown_grace_s if grace_s is None else grace_s
    deadline = time.monotonic() + grace
    sessions = [s for s in _active(app).values() if s is not None]
    if sessions:
        log.info("closing %d live stream(s) for shutdown", len(sessions))
    results = await asyncio.gather(*(s.go_away(deadline) for s in sessions), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            log.error("stream shutdown failed: %r", r)
    end = time.monotonic() + 5.0
    while _active(app) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    engine: eng.StreamEngine | None = getattr(app.state, "stream_engine", None)
    if engine is not None:
        await anyio.to_thread.run_sync(engine.stop)
    return len(sessions)


def _params(websocket: WebSocket) -> tuple[str, int] | tuple[None, str]:
    q = websocket.query_params
    encoding = (q.get("encoding") or "pcm16").lower()
    if encoding not in ws.ENCODINGS:
        return None, f"encoding={encoding!r} must be one of {', '.join(ws.ENCODINGS)}"
    raw = q.get("sample_rate")
    if encoding == "pcm16":
        lo, hi = ws.PCM_RATE_RANGE
        try:
            rate = int(raw) if raw is not None else SAMPLE_RATE
        except ValueError:
            return None, f"sample_rate={raw!r} must be an integer number of Hz between {lo} and {hi}"
        if not lo <= rate <= hi:
            return None, f"sample_rate={rate} must be between {lo} and {hi} Hz for pcm16"
        return encoding, rate
    return encoding, SAMPLE_RATE  # webm/ogg carry their own rate; decoded to 16 kHz


async def _deny(websocket: WebSocket, status: int, code: str, message: str, close_code: int,
                headers: dict[str, str] | None = None) -> None:
    """Refuse the upgrade with an HTTP ``status`` and the one error body; a server without the
    denial-response extension closes with ``close_code`` instead."""
    body = {"error": {"code": code, "message": message}}
    try:
        await websocket.send_denial_response(JSONResponse(body, status_code=status, headers=headers))
    except RuntimeError:
        await websocket.close(code=close_code, reason=message[:120])


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    """Live monitoring: ``?token=<token or API key>&encoding=pcm16|webm|ogg&sample_rate=16000``.

    Non-browser clients may send ``Authorization: Bearer <token or key>`` instead of ``?token=``
    (browsers cannot set headers on a WebSocket). Prefer a short-lived token from
    ``POST /v1/auth/token`` in the URL: URLs end up in logs (this server redacts ``token=`` in its
    own). A refused upgrade is an HTTP 401/503 with the error body."""
    app = websocket.app
    settings = _stream_settings(app)
    scheme, bearer = get_authorization_scheme_param(websocket.headers.get("authorization"))
    credential = websocket.query_params.get("token") or (bearer if scheme.lower() == "bearer" else "")
    if not credential:
        await _deny(websocket, 401, "unauthorized",
                    "missing credentials: ?token=<token> (browsers) or an Authorization: Bearer header",
                    ws.CLOSE_POLICY)
        return

    def auth() -> CurrentUser:
        with app.state.session_factory() as s:
            return authenticate(s, app.state.settings, credential)

    try:
        user = await anyio.to_thread.run_sync(auth)
    except VocalisError as e:
        await _deny(websocket, 401, "unauthorized", str(e), ws.CLOSE_POLICY)
        return
    active = _active(app)
    closing = bool(getattr(app.state, "stream_closing", False))
    if closing or len(active) >= settings.max_sessions:
        await _deny(websocket, 503, "going_away" if closing else "overloaded",
                    "the server is shutting down; reconnect in a moment" if closing else
                    f"{settings.max_sessions} live sessions are running; try again later",
                    ws.CLOSE_TRY_AGAIN, {"Retry-After": "5"})
        return
    token = uuid.uuid4().hex
    active[token] = None
    try:
        await websocket.accept()
        encoding, rate_or_msg = _params(websocket)
        if encoding is None:
            await websocket.send_text(json.dumps(ws.error_message("bad_params", str(rate_or_msg))))
            await websocket.close(code=ws.CLOSE_BAD_PARAMS)
            return
        assert isinstance(rate_or_msg, int)
        session = StreamSession(websocket, user, settings, encoding, rate_or_msg)
        active[token] = session
        if getattr(app.state, "stream_closing", False):  # shutdown began while this one was connecting
            session._fail(ws.CLOSE_GOING_AWAY, "going_away", "the server is shutting down; reconnect in a moment")
        code: int = ws.CLOSE_INTERNAL
        reason: str | None = "internal_error"
        try:
            code, reason = await session.run()
        except WebSocketDisconnect as e:
            code, reason = e.code, None
        except Exception:
            log.exception("stream session %s failed", session.id)
            with contextlib.suppress(Exception):
                await websocket.send_text(json.dumps(ws.error_message("internal_error", "internal server error")))
        finally:
            try:
                await session.finish_countdown()
            except Exception:
                log.exception("stream session %s: the countdown's alert could not be raised", session.id)
            await session.shutdown()
        if websocket.application_state == WebSocketState.CONNECTED and \
                websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(code=code, reason=reason or "")
    finally:
        active.pop(token, None)
