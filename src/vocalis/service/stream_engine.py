"""One inference executor shared by every live stream of an app: micro-batching, load shedding, backpressure.

Each ``/v1/stream`` session owns a predictor (a pure state machine) and hands its audio to the
engine through an :class:`EngineSession`; a few worker threads (``workers``, default 2) run the
models for all sessions and post the results back to the event loop in batches.

A worker's **cycle**:

1. claim up to ``max_batch`` sessions that have audio waiting (FIFO, so no session starves; a
   session is in at most one cycle at a time, so its windows stay in order);
2. per session, :meth:`~vocalis.streaming.predictor.StreamingPredictor.advance` (resampling, ring
   buffer, Silero VAD) -> the windows that audio completed;
3. the **danger path**, never skipped: the scream detector's features per window and one batched
   onnxruntime run of its head over every window of the cycle;
4. the **emotion** model where it is due (``emotion_every``), under a budget: an AIMD controller
   sets how many emotion runs per second fit while the windows' latency stays under
   ``latency_target_s`` (it halves-ish when the p95 goes over, grows when well under); sessions
   whose emotion is stalest go first, and one that has had none for ``emotion_max_age_s`` gets
   one regardless. A due window left out repeats the last probabilities and says
   ``emotion_deferred``; the next window is due again. The windows without an emotion run are
   posted before the emotion runs start, so they do not wait for them;
5. keyword spotting (ASR, ~0.3-1 s a call) runs on its own thread with a queue of ``asr_queue``
   sessions: the session's windows wait for it (the keywords belong to that window), the other
   sessions do not; when the queue is full the window says ``asr_skipped``.

Backpressure: a session's inbox holds at most ``max_queue_samples`` of audio. When it overflows
(the server is behind), the **oldest** audio is dropped and a :class:`Gap` goes to the session in
its place, so stream times stay exact and the client is told; memory per session stays bounded.

Predictors without ``advance``/``complete`` (test fakes) are run with ``push`` in the worker.
Nothing here knows about WebSockets or FastAPI; :mod:`vocalis.service.routes.stream` wires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vocalis.errors import ConfigError

log = logging.getLogger("vocalis.service.stream_engine")


# -- outputs (engine -> session, in order) ---------------------------------------------------------


@dataclass
class Windows:
    """Window results of ``pushed`` samples of audio; ``arrival`` = when the oldest of it arrived (monotonic)."""

    windows: list[Any]
    pushed: int
    arrival: float


@dataclass
class Gap:
    """``samples`` of audio (at the session's rate) were dropped here because the server was behind."""

    samples: int


@dataclass
class Flushed:
    """The predictor was flushed (``windows`` = its last windows); ``token`` is the caller's handle."""

    windows: list[Any]
    token: Any


@dataclass
class Failed:
    """The predictor raised; the session ends (nothing more comes)."""

    error: BaseException


Output = Windows | Gap | Flushed | Failed


# -- inbox items ------------------------------------------------------------------------------------


@dataclass
class _Audio:
    x: np.ndarray
    arrival: float


@dataclass
class _Gap:
    samples: int


@dataclass
class _Flush:
    token: Any


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of :class:`StreamEngine` (the service reads them from ``VOCALIS_STREAM_ENGINE_*``)."""

    workers: int = 2
    max_batch: int = 64
    linger_s: float = 0.003
    latency_target_s: float = 0.15
    emotion_max_age_s: float = 20.0
    emotion_rate: float = 20.0
    asr_queue: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"workers={self.workers} must be between 1 and 64")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch={self.max_batch} must be at least 1")
        if not 0 <= self.linger_s <= 0.1:
            raise ConfigError(f"linger_s={self.linger_s} must be between 0 and 0.1 s")
        if self.latency_target_s <= 0:
            raise ConfigError(f"latency_target_s={self.latency_target_s} must be > 0")
        if self.emotion_max_age_s <= 0 or self.emotion_rate <= 0:
            raise ConfigError("emotion_max_age_s and emotion_rate must be > 0")
        if self.asr_queue < 0:
            raise ConfigError(f"asr_queue={self.asr_queue} must be >= 0")


class EmotionBudget:
    """How many emotion runs per second fit: a token bucket whose rate follows the latency (AIMD).

    Every ``period_s``: p95 of the observed window latencies above ``target_s`` -> rate x 0.7;
    below ``0.6 x target_s`` while the demand exceeds the rate -> rate x 1.15 + 1. The rate never
    exceeds 1.5 x the demand (so a quiet server does not bank a burst).

    >>> b = EmotionBudget(0.1, rate=10.0)
    >>> b.grant(5, now=0.0)  # a fresh bucket holds half a second of tokens
    5
    >>> b.grant(5, now=0.0)
    0
    """

    def __init__(self, target_s: float, rate: float = 20.0, *, min_rate: float = 0.5, max_rate: float = 2000.0,
                 period_s: float = 1.0) -> None:
        self.target_s, self.rate = target_s, rate
        self.min_rate, self.max_rate, self.period_s = min_rate, max_rate, period_s
        self.tokens = rate * 0.5
        self._lock = threading.Lock()
        self._lat: deque[float] = deque(maxlen=8192)
        self._t_fill: float | None = None
        self._t_adapt: float | None = None
        self._demand = 0
        self.last_p95: float | None = None

    def observe(self, latency_s: float) -> None:
        with self._lock:
            self._lat.append(latency_s)

    def grant(self, want: int, now: float) -> int:
        """Take up to ``want`` tokens; returns how many were granted."""
        with self._lock:
            self._adapt(now)
            if self._t_fill is not None:
                self.tokens = min(max(1.0, self.rate * 0.5), self.tokens + (now - self._t_fill) * self.rate)
            self._t_fill = now
            self._demand += want
            k = min(want, int(self.tokens))
            self.tokens -= k
            return k

    def _adapt(self, now: float) -> None:
        if self._t_adapt is None:
            self._t_adapt = now
            return
        dt = now - self._t_adapt
        if dt < self.period_s:
            return
        lat = sorted(self._lat)
        self._lat.clear()
        demand = self._demand / dt
        self._demand, self._t_adapt = 0, now
        if lat:
            p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
            self.last_p95 = p95
            if p95 > self.target_s:
                self.rate *= 0.7
            elif p95 < 0.6 * self.target_s and demand > self.rate:
                self.rate = self.rate * 1.15 + 1.0
        self.rate = max(self.min_rate, min(self.max_rate, self.rate, 1.5 * demand + 1.0))


class EngineSession:
    """The engine's view of one stream. ``submit``/``flush``/``close`` are called from the event loop."""

    def __init__(self, engine: StreamEngine, predictor: Any, rate: int, deliver: Callable[[list[Output]], None],
                 loop: asyncio.AbstractEventLoop, max_queue_samples: int) -> None:
        self.engine, self.predictor, self.rate = engine, predictor, rate
        self.deliver, self.loop = deliver, loop
        self.max_queue_samples = max(1, int(max_queue_samples))
        self.split = all(hasattr(predictor, n) for n in ("advance", "complete", "emotion_due", "asr_due"))
        self.inbox: deque[_Audio | _Gap | _Flush] = deque()
        self.queued = 0  # samples in the inbox
        self.max_queued = 0
        self.dropped = 0  # samples dropped, in all
        self.scheduled = False  # in the engine's ready queue
        self.busy = False  # claimed by a worker (or waiting for ASR)
        self.closed = False
        self.opened = time.monotonic()
        self.last_emotion = -math.inf  # monotonic time of the last emotion run

    # called on the event loop -------------------------------------------------------------------

    def submit(self, x: np.ndarray, arrival: float | None = None) -> int:
        """Queue audio; returns the samples dropped to keep the inbox bounded (0 normally)."""
        now = time.monotonic() if arrival is None else arrival
        e = self.engine
        with e._cv:
            if self.closed:
                return 0
            self.inbox.append(_Audio(x, now))
            self.queued += x.size
            dropped = self._shed() if self.queued > self.max_queue_samples else 0
            self.max_queued = max(self.max_queued, self.queued)
            e._schedule(self)
        return dropped

    def flush(self, token: Any) -> None:
        """Queue a flush behind the audio already submitted; ``Flushed(token)`` comes back."""
        e = self.engine
        with e._cv:
            if self.closed:
                return
            self.inbox.append(_Flush(token))
            e._schedule(self)

    def close(self) -> None:
        """Forget this stream: queued audio is dropped and nothing more is delivered."""
        with self.engine._cv:
            self.closed = True
            self.inbox.clear()
            self.queued = 0
            self.engine._sessions.discard(self)

    # under the engine lock --------------------------------------------------------------------

    def _shed(self) -> int:
        """Drop the oldest audio (never the newest block) until the inbox fits; a gap marks the place."""
        items = list(self.inbox)
        last_audio = max(i for i, it in enumerate(items) if isinstance(it, _Audio))
        out: list[_Audio | _Gap | _Flush] = []
        dropped = 0
        for i, it in enumerate(items):
            if isinstance(it, _Audio) and i != last_audio and self.queued > self.max_queue_samples:
                self.queued -= it.x.size
                dropped += it.x.size
                if out and isinstance(out[-1], _Gap):
                    out[-1].samples += it.x.size
                else:
                    out.append(_Gap(it.x.size))
                continue
            if isinstance(it, _Gap) and out and isinstance(out[-1], _Gap):
                out[-1].samples += it.samples
                continue
            out.append(it)
        self.inbox = deque(out)
        self.dropped += dropped
        self.engine._count("dropped_samples", dropped)
        return dropped

    def _take(self) -> tuple[int, list[_Audio], _Flush | None]:
        """The next unit of work: leading gaps plus the run of audio before any flush, or one flush."""
        gap = 0
        while self.inbox and isinstance(self.inbox[0], _Gap):
            g = self.inbox.popleft()
            assert isinstance(g, _Gap)
            gap += g.samples
        if self.inbox and isinstance(self.inbox[0], _Flush) and not gap:
            f = self.inbox.popleft()
            assert isinstance(f, _Flush)
            return 0, [], f
        audio: list[_Audio] = []
        while self.inbox and isinstance(self.inbox[0], _Audio):
            a = self.inbox.popleft()
            assert isinstance(a, _Audio)
            self.queued -= a.x.size
            audio.append(a)
        return gap, audio, None


@dataclass
class _Work:
    """One session's share of a cycle."""

    session: EngineSession
    gap: int = 0
    audio: list[_Audio] = field(default_factory=list)
    flush: _Flush | None = None
    pending: list[Any] = field(default_factory=list)
    screams: list[float] = field(default_factory=list)
    scream_ms: float = 0.0
    pushed: int = 0
    arrival: float = 0.0
    outputs: list[Output] = field(default_factory=list)
    held: bool = False  # waiting for the ASR thread
    resume: tuple[int, np.ndarray | None, float | None] = (0, None, None)  # (window, emotion, emotion ms)
    released: bool = False


class StreamEngine:
    """The shared executor (see the module docstring). Thread-safe; start it with :meth:`start`."""

    def __init__(self, config: EngineConfig | None = None, *, thread_limit: Callable[[], Any] | None = None) -> None:
        self.config = config or EngineConfig()
        self._cv = threading.Condition()
        self._ready: deque[EngineSession] = deque()
        self._sessions: set[EngineSession] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._limit = thread_limit or contextlib.nullcontext
        self.budget = EmotionBudget(self.config.latency_target_s, self.config.emotion_rate)
        self._asr_q: deque[_Work] = deque()
        self._asr_cv = threading.Condition()
        self._counts: Counter[str] = Counter()
        self.scream_batches: Counter[int] = Counter()
        self._stat_lock = threading.Lock()
        self._emotion_ms = 20.0  # running estimate of one emotion run

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> StreamEngine:
        with self._cv:
            if self._threads:
                return self
            self._stopping = False
            for i in range(self.config.workers):
                t = threading.Thread(target=self._worker, name=f"vocalis-stream-engine-{i}", daemon=True)
                t.start()
                self._threads.append(t)
            t = threading.Thread(target=self._asr_worker, name="vocalis-stream-asr", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads (after their current cycle); sessions still open get nothing more."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        with self._asr_cv:
            self._asr_cv.notify_all()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stopping

    def open(self, predictor: Any, rate: int, deliver: Callable[[list[Output]], None],
             loop: asyncio.AbstractEventLoop, max_queue_samples: int) -> EngineSession:
        """Register a stream; ``deliver(outputs)`` is called on ``loop`` with its outputs, in order."""
        s = EngineSession(self, predictor, rate, deliver, loop, max_queue_samples)
        with self._cv:
            self._sessions.add(s)
        return s

    def observe(self, latency_s: float) -> None:
        """A window's latency (arrival of its audio -> result on the loop), for the emotion budget."""
        self.budget.observe(latency_s)

    def stats(self) -> dict[str, Any]:
        """Counters since start: windows, cycles, batch sizes, emotion runs/deferrals, ASR, drops, queues."""
        with self._cv:
            sessions = list(self._sessions)
        with self._stat_lock:
            counts = dict(self._counts)
            batches = dict(self.scream_batches)
        n_b = sum(batches.values())
        return {
            "sessions": len(sessions),
            "queued_samples": sum(s.queued for s in sessions),
            "max_queued_samples": max((s.max_queued for s in sessions), default=0),
            "queue_limit_samples": max((s.max_queue_samples for s in sessions), default=0),
            "scream_batches": n_b,
            "scream_batch_mean": round(sum(k * v for k, v in batches.items()) / n_b, 3) if n_b else 0.0,
            "scream_batch_max": max(batches, default=0),
            "scream_batch_sizes": {str(k): v for k, v in sorted(batches.items())},
            "emotion_rate": round(self.budget.rate, 3),
            "emotion_ms": round(self._emotion_ms, 3),
            "latency_p95_s": self.budget.last_p95,
            **counts,
        }

    def _count(self, key: str, n: int = 1) -> None:
        if n:
            with self._stat_lock:
                self._counts[key] += n

    # -- scheduling (under the lock) -----------------------------------------------------------------

    def _schedule(self, s: EngineSession) -> None:
        if not s.scheduled and not s.busy and not s.closed and s.inbox:
            s.scheduled = True
            self._ready.append(s)
            self._cv.notify()

    def _release(self, w: _Work) -> None:
        if w.released or w.held:
            return
        w.released = True
        with self._cv:
            w.session.busy = False
            self._schedule(w.session)

    def _claim(self) -> list[_Work] | None:
        with self._cv:
            while not self._ready and not self._stopping:
                self._cv.wait()
            if self._stopping:
                return None
            if self.config.linger_s and len(self._ready) < 2:
                self._cv.wait(self.config.linger_s)  # let a few more sessions join the batch
            work: list[_Work] = []
            while self._ready and len(work) < self.config.max_batch:
                s = self._ready.popleft()
                s.scheduled = False
                if s.closed or not s.inbox:
                    continue
                s.busy = True
                gap, audio, flush = s._take()
                work.append(_Work(s, gap=gap, audio=audio, flush=flush))
            return work

    # -- the worker ------------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            work = self._claim()
            if work is None:
                return
            try:
                with self._limit():
                    self._cycle(work)
            except Exception as e:  # a bug: fail the sessions of this cycle, keep the engine alive
                log.exception("stream engine cycle failed")
                for w in work:
                    if not w.released and not w.held:
                        w.outputs.append(Failed(e))
                        self._post([w])
                        self._release(w)

    def _cycle(self, work: list[_Work]) -> None:
        self._count("cycles", 1)
        split: list[_Work] = []
        done: list[_Work] = []
        for w in work:
            s = w.session
            if w.gap:
                w.outputs.append(Gap(w.gap))
            try:
                if w.flush is not None:
                    w.outputs.append(Flushed(list(s.predictor.flush()), w.flush.token))
                elif w.audio:
                    x = w.audio[0].x if len(w.audio) == 1 else np.concatenate([a.x for a in w.audio])
                    w.pushed, w.arrival = x.size, w.audio[0].arrival
                    if s.split:
                        w.pending = list(s.predictor.advance(x, s.rate))
                        split.append(w)
                        continue
                    ws = list(s.predictor.push(x, s.rate))
                    self._count("windows", len(ws))
                    w.outputs.append(Windows(ws, w.pushed, w.arrival))
            except Exception as e:
                w.outputs.append(Failed(e))
            done.append(w)
        self._screams([w for w in split if w.pending])
        # the emotion model: who is due, who gets it (stalest first; overdue ones regardless)
        now = time.monotonic()
        due = [w for w in split if w.pending and w.session.predictor.emotion_due(w.pending[-1])]
        forced: list[_Work] = []
        chosen: list[_Work] = []
        if due:
            max_age = self.config.emotion_max_age_s
            forced = [w for w in due if now - max(w.session.last_emotion, w.session.opened) >= max_age]
            rest = sorted((w for w in due if w not in forced), key=lambda w: w.session.last_emotion)
            k = self.budget.grant(len(rest), now) if rest else 0
            chosen = forced + rest[:k]
            self._count("emotion_forced", len(forced))
        chosen_ids = {id(w) for w in chosen}
        for w in split:
            if id(w) not in chosen_ids:
                self._finish(w, None, None)
                done.append(w)
        self._post(done)  # these do not wait for the emotion runs
        for w in done:
            self._release(w)
        if not chosen:
            return
        forced_ids = {id(w) for w in forced}
        oldest = min(w.arrival for w in chosen)
        for w in chosen:
            probs, dt = None, None
            t0 = time.monotonic()
            first = w.session.last_emotion == -math.inf  # a new session shows an emotion at once
            if id(w) in forced_ids or first or t0 - oldest < 0.6 * self.config.latency_target_s:
                try:
                    probs = w.session.predictor.score_emotion(w.pending[-1])
                except Exception as e:
                    w.outputs.append(Failed(e))
                    self._post([w])
                    self._release(w)
                    continue
                dt = (time.monotonic() - t0) * 1e3
                self._emotion_ms = 0.9 * self._emotion_ms + 0.1 * dt
                w.session.last_emotion = time.monotonic()
                self._count("emotion_runs", 1)
            else:
                self._count("emotion_late", 1)  # the cycle is already late: shed it after all
            self._finish(w, probs, dt)
            self._post([w])
            self._release(w)

    def _screams(self, work: list[_Work]) -> None:
        """Scream features per window, then one batched run of each scream bundle's head."""
        groups: dict[int, list[_Work]] = {}
        for w in work:
            groups.setdefault(id(w.session.predictor.scream_bundle), []).append(w)
        for ws in groups.values():
            bundle = ws[0].session.predictor.scream_bundle
            t0 = time.perf_counter()
            feats = np.stack([bundle.features(p.audio) for w in ws for p in w.pending])
            proba = bundle.predict_proba_features(feats)
            per = (time.perf_counter() - t0) * 1e3 / len(feats)
            i = 0
            for w in ws:
                idx = w.session.predictor.scream_index
                w.screams = [float(v) for v in proba[i : i + len(w.pending), idx]]
                w.scream_ms = per
                i += len(w.pending)
            with self._stat_lock:
                self.scream_batches[len(feats)] += 1
            self._count("windows", len(feats))

    def _finish(self, w: _Work, emotion: np.ndarray | None, emotion_ms: float | None, start: int = 0,
                in_asr: bool = False) -> None:
        """Complete ``w``'s windows from ``start``, in order, into ``w.outputs``; when one needs the
        keyword spotter, hand the rest to the ASR thread (``w.held``) or, if its queue is full, skip it."""
        pred = w.session.predictor
        results: list[Any] = []
        last = len(w.pending) - 1
        for i in range(start, len(w.pending)):
            pw, scream = w.pending[i], w.screams[i]
            probs = emotion if i == last else None
            timings = {"scream": round(w.scream_ms, 3)}
            if probs is not None and emotion_ms is not None:
                timings["emotion"] = round(emotion_ms, 3)
            asr = True
            if not in_asr and pred.asr_due(pw, scream) and getattr(pred, "_spotter_arg", None) is not False:
                if self._asr_offer(w):
                    w.held, w.resume = True, (i, emotion, emotion_ms)
                    if results:
                        w.outputs.append(Windows(results, w.pushed, w.arrival))
                        w.pushed = 0
                    return
                asr = False
            try:
                r = pred.complete(pw, scream, probs, asr=asr, timings_ms=timings)
            except Exception as e:
                w.outputs.append(Failed(e))
                return
            if r.emotion_deferred:
                self._count("emotion_deferred", 1)
            if r.asr_skipped:
                self._count("asr_skipped", 1)
            if "asr" in r.timings_ms:
                self._count("asr_runs", 1)
            results.append(r)
        w.outputs.append(Windows(results, w.pushed, w.arrival))

    # -- ASR thread ----------------------------------------------------------------------------------

    def _asr_offer(self, w: _Work) -> bool:
        with self._asr_cv:
            if len(self._asr_q) >= self.config.asr_queue:
                return False
            self._asr_q.append(w)
            self._asr_cv.notify()
            return True

    def _asr_worker(self) -> None:
        while True:
            with self._asr_cv:
                while not self._asr_q and not self._stopping:
                    self._asr_cv.wait()
                if self._stopping:
                    return
                w = self._asr_q.popleft()
            start, emotion, emotion_ms = w.resume
            try:
                with self._limit():
                    self._finish(w, emotion, emotion_ms, start=start, in_asr=True)
            except Exception as e:
                log.exception("stream keyword spotting failed")
                w.outputs.append(Failed(e))
            w.held = False
            self._post([w])
            self._release(w)

    # -- delivery ------------------------------------------------------------------------------------

    def _post(self, work: Sequence[_Work]) -> None:
        """Hand each session its outputs on its event loop (one callback per loop)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[EngineSession, list[Output]]]] = {}
        for w in work:
            outs, w.outputs = w.outputs, []
            if outs and not w.session.closed:
                by_loop.setdefault(w.session.loop, []).append((w.session, outs))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: the sessions are gone
                loop.call_soon_threadsafe(_dispatch, items)


def _dispatch(items: list[tuple[EngineSession, list[Output]]]) -> None:
    for s, outs in items:
        if not s.closed:
            try:
                s.deliver(outs)
            except Exception:  # pragma: no cover - a session's callback must not break the others
                log.exception("stream delivery failed")


def iter_windows(outputs: Sequence[Output]) -> Iterator[Any]:
    """All window results in ``outputs`` (tests and tools)."""
    for o in outputs:
        if isinstance(o, (Windows, Flushed)):
            yield from o.windows
