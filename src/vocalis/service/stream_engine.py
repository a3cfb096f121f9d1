"""One inference executor shared by every live stream of an app: micro-batching, load shedding, backpressure.

Each ``/v1/stream`` session owns a predictor (a pure state machine) and hands its audio to the
engine through an :class:`EngineSession`; a few worker threads (``workers``, default 2) run the
models for all sessions and post the results back to the event loop in batches.

A worker's **cycle**:

1. claim up to ``max_batch`` sessions whose audio completes a window (FIFO, so no session
   starves; a session is in at most one cycle at a time, so its windows stay in order), and no
   more than ``max_claim_s`` seconds of audio in all, so that a cycle stays short under overload;
2. per session, :meth:`~vocalis.streaming.predictor.StreamingPredictor.advance` (resampling, ring
   buffer, Silero VAD) -> the windows that audio completed. When the newest of that audio has
   already waited ``latency_target_s`` (the server is behind), the VAD model is **shed** on it
   (``advance(..., vad=False)``: the windows say ``voice_deferred`` and keep the last voice
   score): Silero is ~40 % of the work per window and nothing in the default danger policy reads
   it, so an overloaded server keeps the scream detector on every window instead of falling
   further behind and dropping audio (measured: ``benchmarks/notes.md``);
3. the **danger path**, never skipped: the scream detector's features per window and one batched
   onnxruntime run of its head over every window of the cycle;
4. the **emotion** model where it is due (``emotion_every``), under a budget: an AIMD controller
   sets how many emotion runs per second fit while the windows' latency stays under
   ``latency_target_s`` (it halves-ish when the p95 goes over, grows when well under); sessions
   whose emotion is stalest go first, and one that has had none for ``emotion_max_age_s`` gets
   one regardless. A due window left out repeats the last probabilities and says
   ``emotion_deferred``; the next window is due again. The windows without an emotion run are
   posted before the emotion runs start, so they do not wait for them. The backbone scream head
   (``scream_backbone``) reads the emotion run's features, so it is shed with it: the cheap
   detector of step 3 stays the danger path that is never skipped;
5. keyword spotting (ASR, ~0.3-1 s of CPU a call) never holds a window: a window that needs it
   goes out with ``asr_pending`` and its audio to a queue of ``asr_queue`` jobs, run by the
   packaged spotter in a child process at low CPU priority; the keywords come with the session's
   next window (``keywords_t_end`` says where they were heard). A full queue: ``asr_skipped``.

Backpressure: a session's inbox holds at most ``max_queue_samples`` of audio. When it overflows
(the server is behind), the **oldest** audio is dropped and a :class:`Gap` goes to the session in
its place, so stream times stay exact and the client is told; memory per session stays bounded.

Predictors without ``advance``/``complete`` (test fakes) are run with ``push`` in the worker.
Nothing here knows about WebSockets or FastAPI; :mod:`vocalis.service.routes.stream` wires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
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
    """Window results of ``pushed`` samples of audio; ``arrivals[i]`` = when the chunk that completed
    ``windows[i]`` arrived (``time.monotonic()``), for latency."""

    windows: list[Any]
    pushed: int
    arrivals: list[float]


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
    arrival: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of :class:`StreamEngine` (the service reads them from ``VOCALIS_STREAM_ENGINE_*``)."""

    workers: int = 2
    max_batch: int = 64
    max_claim_s: float = 16.0
    linger_s: float = 0.003
    latency_target_s: float = 0.15
    emotion_max_age_s: float = 20.0
    emotion_rate: float = 20.0
    asr_queue: int = 2
    asr_process: bool = True
    loop_lag_s: float = 0.1

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
        self.need = 1  # input samples that complete the next window (the predictor says; 1 = unknown)
        self.markers = 0  # gaps and flushes in the inbox
        self.scheduled = False  # in the engine's ready queue
        self.busy = False  # claimed by a worker (or waiting for ASR)
        self.closed = False
        self.opened = time.monotonic()
        self.last_emotion = -math.inf  # monotonic time of the last emotion run
        advance = getattr(predictor, "advance", None)  # may the engine shed its VAD (advance(..., vad=False))?
        self.sheddable = advance is not None and "vad" in inspect.signature(advance).parameters
        self.spotted: Any = None  # a keyword-spotting result waiting for the session's next window

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
            e._max_queued_s = max(e._max_queued_s, self.queued / self.rate)
            e._schedule(self)
        return dropped

    def flush(self, token: Any) -> None:
        """Queue a flush behind the audio already submitted; ``Flushed(token)`` comes back."""
        e = self.engine
        with e._cv:
            if self.closed:
                return
            self.inbox.append(_Flush(token))
            self.markers += 1
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
        """Drop the oldest audio until the inbox fits (never the newest block, never past a flush);
        one gap at the front marks the place. Costs O(blocks dropped)."""
        dropped = gap = 0
        while self.queued > self.max_queue_samples and len(self.inbox) > 1:
            head = self.inbox[0]
            if isinstance(head, _Flush):
                break
            self.inbox.popleft()
            if isinstance(head, _Gap):
                gap += head.samples
                self.markers -= 1
            else:
                self.queued -= head.x.size
                dropped += head.x.size
        if dropped or gap:
            self.inbox.appendleft(_Gap(gap + dropped))
            self.markers += 1
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
            self.markers -= 1
        if self.inbox and isinstance(self.inbox[0], _Flush) and not gap:
            f = self.inbox.popleft()
            assert isinstance(f, _Flush)
            self.markers -= 1
            return 0, [], f
        audio: list[_Audio] = []
        while self.inbox and isinstance(self.inbox[0], _Audio):
            a = self.inbox.popleft()
            assert isinstance(a, _Audio)
            self.queued -= a.x.size
            audio.append(a)
        return gap, audio, None


@dataclass
class _AsrJob:
    session: EngineSession
    audio: np.ndarray
    t_end: float  # seconds of predictor time
    run: Callable[[np.ndarray], tuple[list[str], str]]


class _AsrProcess:
    """The packaged keyword spotter in a child process at low CPU priority (nice 10), started on first use.

    ASR costs ~0.3-1 s of CPU a call (CTranslate2 runs it in threads of its own); in the server's
    process it competed with the windows' latency for CPU and the GIL. In a niced child it takes
    what CPU is left, and a late keyword only comes with a later window. One request at a time (the
    engine's ASR thread); the child is a daemon: it is terminated with the server, whatever it is doing.
    """

    def __init__(self, nice: int = 10, timeout_s: float = 60.0) -> None:
        self.nice, self.timeout_s = nice, timeout_s
        self._proc: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else int(self._proc.pid)

    def warm(self) -> None:
        with contextlib.suppress(Exception):
            self.spot(np.zeros(16000, np.float32))

    def spot(self, audio: np.ndarray) -> tuple[list[str], str]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the keyword-spotting process is closed")
            if self._proc is None or not self._proc.is_alive():
                import multiprocessing

                ctx = multiprocessing.get_context("spawn")
                self._conn, child = ctx.Pipe()
                self._proc = ctx.Process(target=_asr_child_main, args=(child, self.nice), daemon=True,
                                         name="vocalis-asr")
                self._proc.start()
                child.close()
            self._conn.send(np.ascontiguousarray(audio, np.float32))
            if not self._conn.poll(self.timeout_s):
                self._kill()
                raise TimeoutError(f"keyword spotting took more than {self.timeout_s:g} s")
            ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"keyword spotting failed: {value}")
        hits, text = value
        return list(hits), str(text)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            proc.join(2.0)

    def close(self) -> None:
        self._closed = True
        if self._lock.acquire(timeout=0.1):  # not waiting for a spot in flight: the kill ends it
            try:
                self._kill()
            finally:
                self._lock.release()
        else:
            proc = self._proc
            if proc is not None:
                proc.terminate()


def _asr_child_main(conn: Any, nice: int) -> None:  # pragma: no cover - runs in the child process
    with contextlib.suppress(AttributeError, OSError):
        os.nice(nice)
    from vocalis.danger.keywords import AsrKeywordSpotter

    spotter = AsrKeywordSpotter()
    while True:
        try:
            audio = conn.recv()
        except (EOFError, OSError):
            return
        try:
            hits, text = spotter.spot(audio)
            conn.send((True, (list(hits), str(text))))
        except Exception as e:
            conn.send((False, repr(e)))


@dataclass(eq=False)  # identity: a cycle's works are dict keys
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
    arrivals: list[float] = field(default_factory=list)  # per pending window: its completing chunk's arrival

    @property
    def arrival(self) -> float:
        """The oldest completing-chunk arrival of this work's windows (how late the cycle is for it)."""
        return min(self.arrivals) if self.arrivals else math.inf
    outputs: list[Output] = field(default_factory=list)
    emotions: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict)  # window -> (probs, ms)
    backbone: dict[int, float] = field(default_factory=dict)  # window -> the backbone scream head's P(scream)
    released: bool = False


class StreamEngine:
    """The shared executor (see the module docstring). Thread-safe; start it with :meth:`start`."""

    def __init__(self, config: EngineConfig | None = None, *, thread_setup: Callable[[], Any] | None = None) -> None:
        self.config = config or EngineConfig()
        self._cv = threading.Condition()
        self._ready: deque[EngineSession] = deque()
        self._sessions: set[EngineSession] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._setup = thread_setup  # called once in each worker thread (e.g. BLAS to one thread)
        self.budget = EmotionBudget(self.config.latency_target_s, self.config.emotion_rate)
        self._asr_q: deque[_AsrJob] = deque()
        self._asr_cv = threading.Condition()
        self._asr_pool: _AsrProcess | None = _AsrProcess() if self.config.asr_process else None
        self._counts: Counter[str] = Counter()
        self.scream_batches: Counter[int] = Counter()
        self._stat_lock = threading.Lock()
        self._emotion_ms = 20.0  # running estimate of one emotion run
        self._max_queued_s = 0.0  # the longest any session's inbox has been (seconds of audio)
        self.loop_lag = 0.0  # how late the event loop's timers run (set by watch_loop)

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

    def prewarm_asr(self) -> None:
        """Start the keyword-spotting process and load its model now (in the background), not at the first
        scream-like window; a no-op without ``asr_process``."""
        if self._asr_pool is not None:
            threading.Thread(target=self._asr_pool.warm, name="vocalis-asr-warm", daemon=True).start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads (after their current cycle); sessions still open get nothing more."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        with self._asr_cv:
            self._asr_cv.notify_all()
        if self._asr_pool is not None:
            self._asr_pool.close()
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

    async def watch_loop(self, period_s: float = 0.1) -> None:
        """Run on the event loop: measures how late its timers fire (``loop_lag``). When the loop is
        behind (``loop_lag_s``), the workers pause between cycles, so under overload the loop keeps
        reading the sockets (connections live, memory bounded) and the audio queues drop the oldest
        audio instead."""
        loop = asyncio.get_running_loop()
        while self.running:
            t = loop.time()
            await asyncio.sleep(period_s)
            late = max(0.0, loop.time() - t - period_s)
            self.loop_lag = late if late > self.loop_lag else 0.7 * self.loop_lag + 0.3 * late

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
            "queued_s_max": round(self._max_queued_s, 3),
            "scream_batches": n_b,
            "scream_batch_mean": round(sum(k * v for k, v in batches.items()) / n_b, 3) if n_b else 0.0,
            "scream_batch_max": max(batches, default=0),
            "scream_batch_sizes": {str(k): v for k, v in sorted(batches.items())},
            "emotion_rate": round(self.budget.rate, 3),
            "emotion_ms": round(self._emotion_ms, 3),
            "latency_p95_s": self.budget.last_p95,
            "loop_lag_s": round(self.loop_lag, 4),
            **counts,
        }

    def _count(self, key: str, n: int = 1) -> None:
        if n:
            with self._stat_lock:
                self._counts[key] += n

    # -- scheduling (under the lock) -----------------------------------------------------------------

    def _schedule(self, s: EngineSession) -> None:
        """Queue ``s`` for a worker once its audio completes a window (or a flush/gap waits): running the
        VAD once per hop instead of once per 100 ms chunk is cheaper and no window comes out later."""
        if s.scheduled or s.busy or s.closed or not s.inbox:
            return
        if s.markers or s.queued >= s.need:
            s.scheduled = True
            self._ready.append(s)
            self._cv.notify()

    def _release(self, w: _Work) -> None:
        if w.released:
            return
        w.released = True
        s = w.session
        need = 1
        with contextlib.suppress(Exception):
            if s.split and hasattr(s.predictor, "samples_needed"):
                need = max(1, math.ceil(s.predictor.samples_needed() * s.rate / 16000))
        with self._cv:
            s.busy = False
            s.need = need
            self._schedule(s)

    def _claim(self) -> list[_Work] | None:
        lag = self.loop_lag
        if lag > self.config.loop_lag_s:  # the event loop is behind: give it the CPU (and the GIL) first
            self._count("throttled", 1)
            time.sleep(min(0.05, lag / 4))
        with self._cv:
            while not self._ready and not self._stopping:
                self._cv.wait()
            if self._stopping:
                return None
            if self.config.linger_s and len(self._ready) < 2:
                self._cv.wait(self.config.linger_s)  # let a few more sessions join the batch
            work: list[_Work] = []
            audio_s = 0.0  # a cycle's results are posted when it ends: keep cycles short under overload
            while self._ready and len(work) < self.config.max_batch and (not work or audio_s < self.config.max_claim_s):
                s = self._ready.popleft()
                s.scheduled = False
                if s.closed or not s.inbox:
                    continue
                s.busy = True
                audio_s += s.queued / s.rate
                gap, audio, flush = s._take()
                work.append(_Work(s, gap=gap, audio=audio, flush=flush))
            return work

    # -- the worker ------------------------------------------------------------------------------

    def _worker(self) -> None:
        if self._setup is not None:
            try:
                self._setup()
            except Exception:  # pragma: no cover - an optimisation only
                log.exception("stream engine thread setup failed")
        while True:
            work = self._claim()
            if work is None:
                return
            try:
                self._cycle(work)
            except Exception as e:  # a bug: fail the sessions of this cycle, keep the engine alive
                log.exception("stream engine cycle failed")
                for w in work:
                    if not w.released:
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
                if w.flush is not None and s.split and hasattr(s.predictor, "drain"):
                    # the last windows go through the batch and the emotion budget like any others
                    w.pending = list(s.predictor.drain())
                    w.arrivals = [w.flush.arrival] * len(w.pending)
                    split.append(w)
                    continue
                if w.flush is not None:
                    w.outputs.append(Flushed(list(s.predictor.flush()), w.flush.token))
                elif w.audio:
                    x = w.audio[0].x if len(w.audio) == 1 else np.concatenate([a.x for a in w.audio])
                    w.pushed = x.size
                    if s.split:
                        seen = s.predictor.samples_seen
                        if s.sheddable and time.monotonic() - w.audio[-1].arrival >= self.config.latency_target_s:
                            w.pending = list(s.predictor.advance(x, s.rate, vad=False))  # behind: shed the VAD
                            self._count("vad_shed", len(w.pending))
                        else:
                            w.pending = list(s.predictor.advance(x, s.rate))
                        w.arrivals = _arrivals(w.audio, [(p.end - seen) * s.rate / 16000 for p in w.pending])
                        split.append(w)
                        continue
                    ws = list(s.predictor.push(x, s.rate))
                    self._count("windows", len(ws))
                    w.outputs.append(Windows(ws, w.pushed, [w.audio[-1].arrival] * len(ws)))
            except Exception as e:
                w.outputs.append(Failed(e))
            done.append(w)
        self._screams([w for w in split if w.pending])
        chosen = self._plan_emotion(split)
        for w in split:
            if w not in chosen:
                self._finish(w)
                done.append(w)
        self._post(done)  # these do not wait for the emotion runs
        for w in done:
            self._release(w)
        if not chosen:
            return
        for w, picks in chosen.items():
            for i, must in picks:
                t0 = time.monotonic()
                late = t0 - w.arrivals[i]
                target = self.config.latency_target_s
                first = w.session.last_emotion == -math.inf  # a new session shows an emotion at once
                if not first and late >= (target if must else 0.6 * target):
                    self._count("emotion_late", 1)  # the cycle is already late: shed it after all
                    continue
                pred = w.session.predictor
                try:  # the backbone scream head rides on the emotion model's features
                    probs, backbone = (pred.score_shared(w.pending[i]) if hasattr(pred, "score_shared")
                                       else (pred.score_emotion(w.pending[i]), None))
                except Exception as e:
                    w.outputs.append(Failed(e))
                    break
                dt = (time.monotonic() - t0) * 1e3
                self._emotion_ms = 0.9 * self._emotion_ms + 0.1 * dt
                w.emotions[i] = (probs, dt)
                if backbone is not None:
                    w.backbone[i] = backbone
                if must and not first:
                    self._count("emotion_forced", 1)
                w.session.last_emotion = time.monotonic()
                self._count("emotion_runs", 1)
            if not any(isinstance(o, Failed) for o in w.outputs):
                self._finish(w)
            self._post([w])
            self._release(w)

    def _plan_emotion(self, split: list[_Work]) -> dict[_Work, list[tuple[int, bool]]]:
        """Which due windows get the emotion model: ``{work: [(window index, must run), ...]}``.

        Due windows (the predictor's plan) are ranked: each session's first due window before any
        second one, stalest session first; the budget grants a number of them. A session that never
        had an emotion, or none for ``emotion_max_age_s``, gets its first due window outside the
        budget (the overdue one still not when the cycle is already later than the latency target).
        """
        now = time.monotonic()
        ranked: list[tuple[int, float, int, _Work, int]] = []
        must: list[tuple[_Work, int]] = []
        for n, w in enumerate(split):
            if not w.pending:
                continue
            plan = w.session.predictor.emotion_plan(w.pending)
            due = [i for i, d in enumerate(plan) if d]
            if not due:
                continue
            s = w.session
            if s.last_emotion == -math.inf or now - max(s.last_emotion, s.opened) >= self.config.emotion_max_age_s:
                must.append((w, due[0]))
                due = due[1:]
            ranked += [(rank, s.last_emotion, n, w, i) for rank, i in enumerate(due)]
        ranked.sort(key=lambda r: (r[0], r[1], r[2]))
        k = self.budget.grant(len(ranked), now) if ranked else 0
        chosen: dict[_Work, list[tuple[int, bool]]] = {}
        for w, i in must:
            chosen.setdefault(w, []).append((i, True))
        for _, _, _, w, i in ranked[:k]:
            chosen.setdefault(w, []).append((i, False))
        for picks in chosen.values():
            picks.sort()
        return chosen

    def _screams(self, work: list[_Work]) -> None:
        """P(scream) of every window, one batched run of each scream detector (its first stage on all
        of them, its second on those that reach the gate)."""
        groups: dict[int, list[_Work]] = {}
        for w in work:
            groups.setdefault(id(w.session.predictor.scream), []).append(w)
        for ws in groups.values():
            detector = ws[0].session.predictor.scream
            t0 = time.perf_counter()
            proba = detector.score_batch([p.scream_audio for w in ws for p in w.pending])
            per = (time.perf_counter() - t0) * 1e3 / len(proba)
            i = 0
            for w in ws:
                w.screams = [float(v) for v in proba[i : i + len(w.pending)]]
                w.scream_ms = per
                i += len(w.pending)
            with self._stat_lock:
                self.scream_batches[len(proba)] += 1
            self._count("windows", len(proba))

    def _finish(self, w: _Work) -> None:
        """Complete ``w``'s windows, in order, into ``w.outputs`` (with the emotions in ``w.emotions``).

        A window that needs the keyword spotter gets it on the ASR thread (``asr_pending``; its
        keywords come with a later window of the session) or, when that queue is full, not at all
        (``asr_skipped``): a session never waits for ASR."""
        s = w.session
        pred = s.predictor
        results: list[Any] = []
        for i, pw in enumerate(w.pending):
            scream = w.screams[i]
            probs, ms = w.emotions.get(i, (None, None))
            timings = {"scream": round(w.scream_ms, 3)}
            if ms is not None:
                timings["emotion"] = round(ms, 3)
            asr: bool | str = True
            if pred.asr_due(pw, scream):
                asr = "external" if self._asr_offer(s, pw) else False
            with self._cv:
                spotted, s.spotted = s.spotted, None
            extra = {"backbone": w.backbone[i]} if i in w.backbone else {}
            try:
                r = pred.complete(pw, scream, probs, asr=asr, spotted=spotted, timings_ms=timings, **extra)
            except Exception as e:
                w.outputs.append(Failed(e))
                return
            if r.emotion_deferred:
                self._count("emotion_deferred", 1)
            if r.asr_skipped:
                self._count("asr_skipped", 1)
            results.append(r)
        if w.flush is not None:
            pred.reset()
            w.outputs.append(Flushed(results, w.flush.token))
            return
        w.outputs.append(Windows(results, w.pushed, w.arrivals[: len(results)]))

    # -- ASR thread ----------------------------------------------------------------------------------

    def _asr_offer(self, s: EngineSession, pw: Any) -> bool:
        with self._asr_cv:
            if len(self._asr_q) >= self.config.asr_queue or self._stopping:
                return False
            default = bool(getattr(s.predictor, "uses_default_spotter", False))
            run = self._asr_pool.spot if default and self._asr_pool is not None else s.predictor.keyword_spotter.spot
            self._asr_q.append(_AsrJob(s, pw.audio, pw.end / 16000, run))
            self._asr_cv.notify()
            return True

    def _asr_worker(self) -> None:
        while True:
            with self._asr_cv:
                while not self._asr_q and not self._stopping:
                    self._asr_cv.wait()
                if self._stopping:
                    return
                job = self._asr_q.popleft()
            try:
                hits, text = job.run(job.audio)
            except Exception as e:
                log.warning("keyword spotting failed: %r", e)
                self._count("asr_failed", 1)
                continue
            self._count("asr_runs", 1)
            from vocalis.streaming.predictor import Spotted

            with self._cv:
                old = job.session.spotted
                kws = tuple(dict.fromkeys([*(old.keywords if old else ()), *hits]))
                job.session.spotted = Spotted(kws, text if old is None else f"{old.transcript} | {text}", job.t_end)

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


def _arrivals(blocks: list[_Audio], offsets: list[float]) -> list[float]:
    """Arrival time of the block holding each input-sample offset (counted from the first block's start)."""
    ends = np.cumsum([b.x.size for b in blocks])
    idx = np.searchsorted(ends, np.maximum(np.asarray(offsets, dtype=np.float64) - 0.5, 0), side="left")
    return [blocks[min(int(i), len(blocks) - 1)].arrival for i in idx]


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
