"""StreamingPredictor: a pure state machine from audio chunks to per-window scores (no I/O).

``push(samples, sample_rate)`` takes chunks of any size at any rate (resampled incrementally to
16 kHz with ``soxr.ResampleStream``, so chunk boundaries leave no trace), keeps a ring buffer of
exactly one window, and emits one :class:`WindowResult` per hop once a full window is there.

Per window (the *danger path* is cheap; the expensive parts are rate-limited):

* ``voice`` — max Silero VAD frame probability in the window (VAD runs once per 32 ms frame,
  incrementally); an energy VAD when ``silero-vad`` is missing (``voice_model="energy"``);
* ``scream`` — P(scream) of the scream detector (:mod:`vocalis.danger.detector`; default: the
  packaged two stages, cheap spectral features every hop and pitch/harmonicity cues where the
  first stage stirs), every hop;
* ``probabilities`` — the emotion bundle (default: the packaged default model) every
  ``emotion_every``-th hop; in between the last probabilities are repeated
  (``emotion_fresh=False``). ``emotion_every=0`` or ``emotion_model=False`` disables it;
* ``scream_backbone`` — P(scream) of an optional second scream head that reads the emotion
  model's own embedding (``backbone_scream_model``; none by default): computed in the same pass as
  the emotion (:meth:`StreamingPredictor.score_shared`; the Whisper encoder costs ~16 ms, the head
  nothing) and *held* on the following windows that overlap the window it was computed on (with
  the default 2 s window and ``emotion_every=4`` hops of 0.5 s, every moment of audio is seen by
  exactly one backbone window); ``None`` when there is no head or no overlapping run (the
  emotion run was shed);
* ``keywords`` — calls for help found by a keyword spotter (ASR) that runs only when the
  window is loud or scream-like (:attr:`StreamConfig.asr`), at most once per window length.

Bundles are loaded with :func:`vocalis.bundle.load_bundle`, so features and models are the
same code as offline prediction.

Two phases, for callers that batch the models across streams (the service's stream engine):
:meth:`StreamingPredictor.advance` takes a chunk and returns :class:`PendingWindow` objects
(audio, voice, level; nothing scored yet); the caller scores them (:meth:`score_scream` /
:meth:`score_emotion`, or its own batched run of the same bundles) and hands each back, in
order, to :meth:`StreamingPredictor.complete`, which updates the state (last emotion, ASR rate
limit) and returns the :class:`WindowResult`. :meth:`push` is exactly ``advance`` + score +
``complete``. A caller may leave out the emotion of a window that is due for one
(:meth:`emotion_due`, :meth:`emotion_plan`): the window then repeats the last probabilities
with ``emotion_deferred=True``, and the next window is due again. Likewise the keyword spotter
(:meth:`asr_due`) may be run by the caller elsewhere (``complete(..., asr="external")``, its
result passed to a later window as ``spotted``) or left out (``asr=False``).

Performance: limit BLAS to one thread around :meth:`StreamingPredictor.push` on a busy machine
(``threadpoolctl.threadpool_limits(1, "blas")`` or ``OPENBLAS_NUM_THREADS=1``); the
per-window matrices are tiny and a multi-threaded OpenBLAS turned the ~1 ms scream features
into ~25 ms under load. :mod:`vocalis.danger.monitor` does this when threadpoolctl is installed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from vocalis.audio.constants import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, SAMPLE_RATE
from vocalis.audio.io import pcm_offset_scale, to_mono
from vocalis.audio.vad import FRAME, FrameVAD, make_vad
from vocalis.bundle.runtime import Bundle, load_bundle
from vocalis.danger.detector import ScreamDetector, as_detector, scream_column
from vocalis.errors import AudioError, ConfigError, ModelError
from vocalis.features.level import active_level_db
from vocalis.streaming.gain import GainConfig, StreamGain
from vocalis.streaming.ring import RingBuffer

WINDOW_RANGE_S = (0.5, 10.0)
"""Allowed ``window_s`` (inclusive)."""
HOP_STEP_S = 0.01
"""``hop_s`` must be a multiple of 10 ms ..."""
HOP_RANGE_S = (0.1, 10.0)
"""... and within this range (and not longer than the window)."""
MAX_CHUNK_S = 60.0
"""A single pushed chunk may hold at most this many seconds (bounded memory per call)."""
ASR_MODES = ("off", "auto", "always")
VAD_KINDS = ("auto", "silero", "energy")


class KeywordSpotter(Protocol):
    """Anything that finds keywords in a 16 kHz window: ``spot(audio) -> (hits, transcript)``."""

    def spot(self, audio: np.ndarray) -> tuple[list[str], str]: ...


@dataclass(frozen=True)
class StreamConfig:
    """Window geometry and rate limits of :class:`StreamingPredictor`.

    ``asr``: ``"off"``; ``"auto"`` = run the keyword spotter on a window whose scream score is at
    least ``asr_scream_trigger``, or (when set) whose summed emotion probability of
    ``distress_labels`` is at least ``asr_distress_trigger``, or (when set) whose level is at
    least ``asr_level_db`` dBFS while a voice is heard (``voice >= asr_voice_trigger``); at most
    once per ``window_s`` of audio. ``"always"`` = every window (expensive: tiny.en pads every
    window to 30 s, ~0.3-1.3 s of CPU per call). The default policy counts a keyword only
    together with a scream-like or fearful voice, so by default ASR runs only where the scream
    score is already elevated (acted fearful speech would otherwise trigger it every 2 s).

    ``level_gain``: a :class:`~vocalis.streaming.gain.GainConfig` puts a slow gain in front of the
    scream detector (the stream's usual voiced level brought to ``target_dbfs``; a hot microphone
    then no longer makes speech look like screaming), ``None`` scores the audio as it arrives.
    """

    window_s: float = 2.0
    hop_s: float = 0.5
    emotion_every: int = 4
    asr: str = "auto"
    asr_scream_trigger: float = 0.1
    asr_distress_trigger: float | None = None
    distress_labels: tuple[str, ...] = ("fear",)
    asr_level_db: float | None = None
    asr_voice_trigger: float = 0.5
    vad: str = "auto"
    level_gain: GainConfig | None = None

    def __post_init__(self) -> None:
        lo, hi = WINDOW_RANGE_S
        if not lo <= self.window_s <= hi:
            raise ConfigError(f"window_s={self.window_s} must be between {lo} and {hi} seconds")
        steps = self.hop_s / HOP_STEP_S
        hlo, hhi = HOP_RANGE_S
        if abs(steps - round(steps)) > 1e-6 or not hlo <= self.hop_s <= min(hhi, self.window_s):
            raise ConfigError(
                f"hop_s={self.hop_s} must be a multiple of {HOP_STEP_S} s between {hlo} s and "
                f"window_s={self.window_s} s (e.g. 0.25, 0.5, 1.0)"
            )
        if not isinstance(self.emotion_every, int) or self.emotion_every < 0:
            raise ConfigError(f"emotion_every={self.emotion_every!r} must be an integer >= 0 (0 = never)")
        if self.asr not in ASR_MODES:
            raise ConfigError(f"asr={self.asr!r} must be one of {ASR_MODES}")
        if self.vad not in VAD_KINDS:
            raise ConfigError(f"vad={self.vad!r} must be one of {VAD_KINDS}")
        if self.level_gain is not None and not isinstance(self.level_gain, GainConfig):
            raise ConfigError(f"level_gain={self.level_gain!r} must be a GainConfig or None")
        for name in ("asr_scream_trigger", "asr_distress_trigger", "asr_voice_trigger"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name}={v} must be between 0 and 1")

    @property
    def window_samples(self) -> int:
        return round(self.window_s * SAMPLE_RATE)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_s * SAMPLE_RATE)


@dataclass(frozen=True)
class WindowResult:
    """Scores of one window ``[t_start, t_end)`` (seconds of stream time at 16 kHz).

    ``probabilities`` is empty when no emotion model runs; ``emotion_fresh`` says whether they
    were computed on this window (else repeated from the last window that computed them).
    ``keywords`` lists the keywords heard (``transcript`` is the ASR text when the spotter ran,
    else ``None``). ``timings_ms`` is the CPU wall time of each component on this window.
    ``partial`` marks the zero-padded last window emitted by :meth:`StreamingPredictor.flush`.
    ``emotion_age_s`` is how many seconds of audio before ``t_end`` the probabilities were
    computed (0 when fresh, ``None`` before any); ``emotion_deferred`` says the emotion model was
    due on this window but the caller left it out (load shedding); ``asr_skipped`` says the
    keyword spotter should have run but the caller left it out; ``asr_pending`` that the caller
    runs it elsewhere (its keywords come on a later window, with ``keywords_t_end`` = this
    window's end). ``scream_backbone`` is the backbone scream head's P(scream) of the latest
    window it ran on that overlaps this one (``None`` without a head or such a run).
    ``gain_db`` is the gain the scream detector's copy of the window got (``StreamConfig.level_gain``; 0 without).
    ``level_ref_db`` is the stream's usual voiced level so far (the median active level of its voiced
    windows of the last ``memory_s``, :class:`~vocalis.streaming.gain.StreamGain`; ``None`` until
    ``min_voiced_s`` of voice were heard), tracked with or without the gain.
    ``voice_deferred`` says the caller shed the VAD on some of the window's frames (load
    shedding, ``advance(..., vad=False)``): ``voice`` is then the maximum over the frames that
    were scored, or the previous window's ``voice`` when none was.
    """

    t_start: float
    t_end: float
    probabilities: dict[str, float]
    voice: float
    scream: float
    keywords: list[str] = field(default_factory=list)
    voice_model: str = "silero"
    level_db: float = -100.0
    emotion_fresh: bool = False
    transcript: str | None = None
    partial: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)
    emotion_age_s: float | None = None
    emotion_deferred: bool = False
    asr_skipped: bool = False
    asr_pending: bool = False
    keywords_t_end: float | None = None
    scream_backbone: float | None = None
    voice_deferred: bool = False
    gain_db: float = 0.0
    level_ref_db: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Spotted:
    """A keyword spotter's result for the window ending at ``t_end`` (seconds), computed by the caller."""

    keywords: tuple[str, ...]
    transcript: str
    t_end: float


@dataclass(frozen=True)
class PendingWindow:
    """A window :meth:`StreamingPredictor.advance` completed: audio and VAD ready, models not run yet.

    ``end`` is the window's end in 16 kHz samples of stream time, ``hop`` its index in the stream;
    ``audio`` is a private copy of the window (``window_samples`` float32 values); ``gain_db`` the
    gain of the scream detector's copy (:attr:`scream_audio`; ``StreamConfig.level_gain``);
    ``level_ref_db`` the stream's usual voiced level before this window (see :class:`WindowResult`).
    """

    end: int
    hop: int
    audio: np.ndarray
    voice: float
    level_db: float
    vad_ms: float
    partial: bool = False
    voice_deferred: bool = False
    gain_db: float = 0.0
    level_ref_db: float | None = None

    @property
    def scream_audio(self) -> np.ndarray:
        """The window as the scream detector hears it: ``audio`` at ``gain_db``."""
        if self.gain_db == 0.0:
            return self.audio
        return self.audio * np.float32(10.0 ** (self.gain_db / 20.0))


class StreamingPredictor:
    """Chunks in, :class:`WindowResult` per hop out. Holds no file, socket or device.

    ``emotion_model``: a :class:`Bundle`, a bundle path, ``None`` (the packaged default model) or
    ``False`` (no emotion). ``scream_model``: a :class:`~vocalis.danger.detector.ScreamDetector`,
    a bundle or a path (a one-stage detector) or ``None`` (the packaged two-stage detector). ``keyword_spotter``: ``None`` = the ASR spotter
    (:class:`vocalis.danger.keywords.AsrKeywordSpotter`, loaded lazily on first use), ``False``
    = none, or any object with ``spot(audio) -> (hits, transcript)``. ``backbone_scream_model``:
    a bundle or path whose feature config must be the emotion bundle's (:class:`ModelError`
    otherwise; :func:`vocalis.danger.train.train_backbone_scream_head` makes one), or
    ``None``/``False`` (none, the default: see :mod:`vocalis.danger.policy` for why).
    """

    def __init__(
        self,
        config: StreamConfig | None = None,
        *,
        emotion_model: Bundle | str | Any = None,
        scream_model: ScreamDetector | Bundle | str | None = None,
        keyword_spotter: KeywordSpotter | Any = None,
        backbone_scream_model: Bundle | str | Any = None,
    ) -> None:
        self.config = config or StreamConfig()
        if emotion_model is False or self.config.emotion_every == 0:
            self.emotion: Bundle | None = None
        else:
            self.emotion = emotion_model if isinstance(emotion_model, Bundle) else load_bundle(emotion_model)
        self.scream: ScreamDetector = as_detector(scream_model)
        self.backbone_bundle = self._backbone(backbone_scream_model)
        self._backbone_idx = None if self.backbone_bundle is None else scream_column(self.backbone_bundle)
        self._spotter_arg = keyword_spotter
        self._spotter: KeywordSpotter | None = None
        self.vad: FrameVAD = make_vad(self.config.vad)
        self._ring = RingBuffer(self.config.window_samples)
        n_vad = -(-self.config.window_samples // FRAME) + 1
        self._vad_probs = RingBuffer(n_vad)
        # the stream's level is always tracked (level_ref_db); the gain is applied only with level_gain
        self._gain = StreamGain(self.config.level_gain)
        self.reset()

    # -- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all audio and state; the next push starts a new stream at t=0."""
        self._ring.clear()
        self._vad_probs.clear()
        self.vad.reset()
        self._resampler: Any = None
        self._rate: int | None = None
        self._next_end = self.config.window_samples
        self._hops = 0
        self._last_emotion: dict[str, float] = {}
        self._last_emotion_hop: int | None = None
        self._last_emotion_end = 0
        self._last_asr_end = -(10**12)
        self._vad_s = 0.0
        self._last_voice = 0.0
        self._last_backbone: tuple[float, int] | None = None  # (P(scream), window end in samples)
        self._gain.reset()

    def _backbone(self, arg: Any) -> Bundle | None:
        if arg is None or arg is False or self.emotion is None:
            return None
        head = arg if isinstance(arg, Bundle) else load_bundle(arg)
        if head.manifest.features != self.emotion.manifest.features:
            raise ModelError(
                f"backbone scream model {head.source}: feature config {head.manifest.features} must be the emotion "
                f"model's ({self.emotion.source}: {self.emotion.manifest.features}); it reads the same embedding"
            )
        return head

    @property
    def samples_seen(self) -> int:
        """16 kHz samples received so far in this stream."""
        return self._ring.total

    def samples_needed(self) -> int:
        """16 kHz samples still missing before the next window is complete (a scheduler can wait for them)."""
        return max(0, self._next_end - self._ring.total)

    @property
    def uses_default_spotter(self) -> bool:
        """True when keyword spotting is on with the packaged ASR spotter (a caller may run it in another process)."""
        return self._spotter_arg is None and self.config.asr != "off"

    @property
    def keyword_spotter(self) -> KeywordSpotter | None:
        if self._spotter_arg is False or self.config.asr == "off":
            return None
        if self._spotter is None:
            if self._spotter_arg is None:
                from vocalis.danger.keywords import AsrKeywordSpotter

                self._spotter = AsrKeywordSpotter()
            else:
                self._spotter = self._spotter_arg
        return self._spotter

    # -- input ------------------------------------------------------------------------------

    def _check(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
            raise AudioError(f"sample_rate={sample_rate!r} must be an integer number of Hz")
        if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
            raise AudioError(f"sample_rate={sample_rate} must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz")
        if self._rate is not None and int(sample_rate) != self._rate:
            raise AudioError(
                f"sample_rate={sample_rate} must stay {self._rate} Hz within a stream; call reset() to change it"
            )
        arr = np.asarray(samples)
        if arr.dtype.kind not in "fiu":
            raise AudioError(f"samples dtype={arr.dtype} must be float32 (or a numeric type convertible to it)")
        if arr.ndim == 2 and arr.shape[1] > arr.shape[0]:
            raise AudioError(f"samples.shape={arr.shape} must be (frames,) or (frames, channels)")
        x = to_mono(arr)
        if arr.dtype.kind in "iu":  # PCM integers -> [-1, 1)
            offset, scale = pcm_offset_scale(arr.dtype)
            x = (x - offset) / scale
        if x.size > MAX_CHUNK_S * int(sample_rate):
            raise AudioError(
                f"chunk of {x.size} samples must hold at most {MAX_CHUNK_S:g} s "
                f"({int(MAX_CHUNK_S * int(sample_rate))} samples at {sample_rate} Hz); push smaller chunks"
            )
        if not np.isfinite(x).all():
            raise AudioError(f"samples have {int((~np.isfinite(x)).sum())} non-finite values (NaN/Inf); all must be finite")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _resample(self, x: np.ndarray, sample_rate: int, last: bool = False) -> np.ndarray:
        if self._rate is None:
            self._rate = int(sample_rate)
        if self._rate == SAMPLE_RATE:
            return x
        if self._resampler is None:
            import soxr

            self._resampler = soxr.ResampleStream(self._rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        return np.asarray(self._resampler.resample_chunk(x, last=last), dtype=np.float32)

    def push(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[WindowResult]:
        """Add a chunk; returns the windows it completed (possibly none, possibly several)."""
        return [self._score(w) for w in self.advance(samples, sample_rate)]

    def advance(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, *, vad: bool = True) -> list[PendingWindow]:
        """Add a chunk and return the windows it completed, unscored; give each, in order, to :meth:`complete`.

        ``vad=False`` sheds the VAD model on this chunk (a caller under overload; Silero only, the
        energy fallback costs next to nothing): its windows say ``voice_deferred``."""
        x = self._check(samples, sample_rate)
        return self._consume(self._resample(x, int(sample_rate)), vad=vad)

    def flush(self) -> list[WindowResult]:
        """End the stream: drain the resampler, emit a last (zero-padded if needed) window, reset.

        The last window ends at the end of the audio and is emitted only when audio arrived after
        the previous window's end (or when no window was emitted yet and there is any audio).
        """
        out = [self._score(w) for w in self.drain()]
        self.reset()
        return out

    def drain(self) -> list[PendingWindow]:
        """The windows :meth:`flush` would emit, unscored: :meth:`complete` them in order, then :meth:`reset`."""
        out: list[PendingWindow] = []
        if self._resampler is not None:
            out += self._consume(np.asarray(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True),
                                            dtype=np.float32))
            self._resampler = None  # drained: a second drain adds nothing
        total = self._ring.total
        last_end = self._next_end - self.config.hop_samples
        if total > 0 and (total > last_end or self._hops == 0):
            partial = total < self.config.window_samples or total != last_end
            out.append(self._pending(total, partial=partial))
            self._next_end = total + self.config.hop_samples  # a second drain adds nothing
        return out

    def _consume(self, y: np.ndarray, vad: bool = True) -> list[PendingWindow]:
        out: list[PendingWindow] = []
        shed = None if vad else getattr(self.vad, "shed", None)
        pos = 0
        while pos < y.size:
            need = self._next_end - self._ring.total
            take = min(need, y.size - pos)
            piece = y[pos : pos + take]
            self._ring.extend(piece)
            tv = time.perf_counter()
            self._vad_probs.extend(self.vad(piece) if shed is None else shed(piece))
            self._vad_s += time.perf_counter() - tv
            pos += take
            if self._ring.total == self._next_end:
                out.append(self._pending(self._next_end))
                self._next_end += self.config.hop_samples
        return out

    # -- scoring ----------------------------------------------------------------------------

    def _pending(self, end: int, partial: bool = False) -> PendingWindow:
        cfg = self.config
        w = self._ring.latest(cfg.window_samples)
        # the VAD frames (a 512-sample grid from the stream's start) that overlap [end - window, end):
        # not simply the last ceil(window / 512), which on half the grid offsets reach a frame that
        # ends before the window starts (a sound just before the window then counted as its voice)
        n_frames = max(1, min(len(self._vad_probs), end // FRAME - max(0, end - cfg.window_samples) // FRAME))
        vp = self._vad_probs.latest(n_frames) if len(self._vad_probs) else np.zeros(1, np.float32)
        scored = vp[~np.isnan(vp)]  # frames of a shed chunk are NaN
        voice = float(scored.max()) if scored.size else self._last_voice
        self._last_voice = voice
        level = float(10 * np.log10(float(np.dot(w, w)) / w.size + 1e-10))  # float32 dot: ~20x cheaper
        vad_ms = self._vad_s * 1e3  # VAD runs as audio arrives: its cost since the last window
        self._vad_s = 0.0
        hop = self._hops
        self._hops += 1
        active = active_level_db(w) if self._gain.wants_level(voice) else float("nan")  # only voiced ones count
        gain = self._gain.push(active, voice, end / SAMPLE_RATE, cfg.hop_s)
        if cfg.level_gain is None:
            gain = 0.0
        ref = self._gain.last_reference_db
        return PendingWindow(end=end, hop=hop, audio=w, voice=voice, level_db=level, vad_ms=vad_ms,
                             partial=partial, voice_deferred=scored.size < vp.size, gain_db=gain,
                             level_ref_db=None if ref is None else round(ref, 2))

    def score_scream(self, window: PendingWindow) -> float:
        """P(scream) of one window (a batched caller runs :meth:`ScreamDetector.score_batch` on many at once)."""
        return self.scream.score(window.scream_audio)

    def score_emotion(self, window: PendingWindow) -> np.ndarray:
        """The emotion bundle's probabilities for one window (``emotion`` must be set)."""
        return self.score_shared(window)[0]

    def score_shared(self, window: PendingWindow) -> tuple[np.ndarray, float | None]:
        """One pass of the emotion model's features: its probabilities and the backbone scream head's
        P(scream) (``None`` without a head); give both to :meth:`complete`."""
        if self.emotion is None:
            raise ConfigError("score_emotion: this predictor has no emotion model (emotion_model=False or emotion_every=0)")
        feats = self.emotion.features(window.audio)[None]
        probs = np.asarray(self.emotion.predict_proba_features(feats)[0], dtype=np.float64)
        if self.backbone_bundle is None:
            return probs, None
        return probs, float(self.backbone_bundle.predict_proba_features(feats)[0, self._backbone_idx])

    def emotion_due(self, window: PendingWindow) -> bool:
        """Whether the emotion model should run on ``window``: every ``emotion_every``-th hop since it
        last ran (a window whose emotion was left out is followed by a due one), and on a partial window."""
        if self.emotion is None:
            return False
        last = self._last_emotion_hop
        return window.partial or last is None or window.hop - last >= self.config.emotion_every

    def emotion_plan(self, windows: list[PendingWindow]) -> list[bool]:
        """For consecutive pending windows (in order): which are due if every due one gets its emotion."""
        if self.emotion is None:
            return [False] * len(windows)
        last, out = self._last_emotion_hop, []
        for w in windows:
            due = w.partial or last is None or w.hop - last >= self.config.emotion_every
            out.append(due)
            if due:
                last = w.hop
        return out

    def asr_due(self, window: PendingWindow, scream: float) -> bool:
        """Whether :meth:`complete` would run the keyword spotter on ``window`` (given the windows before it)."""
        cfg = self.config
        if cfg.asr == "off" or self._spotter_arg is False or window.end - self._last_asr_end < cfg.window_samples:
            return False
        distress = sum(self._last_emotion.get(lab, 0.0) for lab in cfg.distress_labels)
        return (cfg.asr == "always" or scream >= cfg.asr_scream_trigger
                or (cfg.asr_distress_trigger is not None and distress >= cfg.asr_distress_trigger)
                or (cfg.asr_level_db is not None and window.level_db >= cfg.asr_level_db
                    and window.voice >= cfg.asr_voice_trigger))

    def _score(self, window: PendingWindow) -> WindowResult:
        t0 = time.perf_counter()
        scream = self.score_scream(window)
        t1 = time.perf_counter()
        timings = {"scream": (t1 - t0) * 1e3}
        probs = backbone = None
        if self.emotion_due(window):
            probs, backbone = self.score_shared(window)
            timings["emotion"] = (time.perf_counter() - t1) * 1e3
        return self.complete(window, scream, probs, timings_ms=timings, backbone=backbone)

    def complete(self, window: PendingWindow, scream: float, emotion: np.ndarray | None = None, *,
                 asr: bool | str = True, spotted: Spotted | None = None,
                 timings_ms: dict[str, float] | None = None, backbone: float | None = None) -> WindowResult:
        """Finish ``window`` (windows must come back in the order :meth:`advance` returned them).

        ``scream`` is P(scream); ``emotion`` the emotion bundle's probabilities for this window, or
        ``None`` to repeat the last ones (``emotion_deferred`` is set when the window was due).
        When the keyword spotter is due (:meth:`asr_due`): ``asr=True`` runs it here; ``False``
        skips it (``asr_skipped``; the next window may try again); ``"external"`` means the caller
        runs it elsewhere on ``window.audio`` (``asr_pending``; counts for the once-per-window rate
        limit) and passes its result as ``spotted`` to a later window, which reports those
        keywords (``keywords_t_end`` says which window they were heard in).
        ``timings_ms`` are the caller's model timings, reported as they are. ``backbone`` is the
        backbone scream head's P(scream) from the same pass as ``emotion`` (:meth:`score_shared`).
        """
        if asr not in (True, False, "external"):
            raise ConfigError(f"asr={asr!r} must be True, False or 'external'")
        cfg = self.config
        timings: dict[str, float] = {"vad": window.vad_ms, **(timings_ms or {})}
        t0 = time.perf_counter()
        fresh = emotion is not None and self.emotion is not None
        deferred = False
        if fresh:
            assert emotion is not None and self.emotion is not None
            self._last_emotion = {lab: round(float(v), 6) for lab, v in zip(self.emotion.labels, emotion)}
            self._last_emotion_hop, self._last_emotion_end = window.hop, window.end
            if backbone is not None:
                self._last_backbone = (float(backbone), window.end)
        elif self.emotion_due(window):
            deferred = True
        held = None
        if self._last_backbone is not None and window.end - self._last_backbone[1] < cfg.window_samples:
            held = round(self._last_backbone[0], 6)  # that window overlaps this one
        keywords: list[str] = []
        transcript: str | None = None
        heard_at: float | None = None
        skipped = pending = False
        if spotted is not None:
            keywords, transcript, heard_at = list(spotted.keywords), spotted.transcript, spotted.t_end
        if self.asr_due(window, scream):
            if asr == "external":
                self._last_asr_end = window.end
                pending = True
            elif asr and self.keyword_spotter is not None:
                t3 = time.perf_counter()
                keywords, transcript = self.keyword_spotter.spot(window.audio)
                heard_at = None
                self._last_asr_end = window.end
                timings["asr"] = (time.perf_counter() - t3) * 1e3
            elif self.keyword_spotter is not None:
                skipped = True
        own = (time.perf_counter() - t0) * 1e3 - timings.get("asr", 0.0)  # ASR is counted in its own entry
        timings["window_total"] = own + sum(timings.values())
        age = None if self._last_emotion_hop is None else (window.end - self._last_emotion_end) / SAMPLE_RATE
        return WindowResult(
            t_start=round((window.end - cfg.window_samples) / SAMPLE_RATE, 6),
            t_end=round(window.end / SAMPLE_RATE, 6),
            probabilities=dict(self._last_emotion),
            voice=round(window.voice, 6),
            voice_deferred=window.voice_deferred,
            scream=round(float(scream), 6),
            keywords=keywords,
            voice_model=self.vad.name,
            level_db=round(window.level_db, 2),
            emotion_fresh=fresh,
            transcript=transcript,
            partial=window.partial,
            timings_ms={k: round(v, 3) for k, v in timings.items()},
            emotion_age_s=None if age is None else round(age, 3),
            emotion_deferred=deferred,
            asr_skipped=skipped,
            asr_pending=pending,
            keywords_t_end=heard_at,
            scream_backbone=held,
            gain_db=round(window.gain_db, 2),
            level_ref_db=window.level_ref_db,
        )
