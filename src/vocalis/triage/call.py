"""Analyse one call: voice activity, transcript, caller-state timeline, gravity, signals, priority.

:class:`CallAnalyzer` is the library entry point (``vocalis triage`` and ``POST /v1/calls`` use it)::

    analyzer = CallAnalyzer()                      # bundled emotion model, packaged tiny.en
    report = analyzer.analyse_file("call.wav")     # CallReport
    report.priority, report.level, report.reasons

Per call: Silero VAD once; the transcript of the speech only (:class:`Transcriber`); the caller
model on windows of ``window_s`` seconds every ``hop_s`` seconds that hold at least ``min_speech``
x ``window_s`` seconds of speech (a short last window too; the others are in the timeline without
caller states); the scream detector (the bundled
two-stage detector of the safety monitor, :mod:`vocalis.danger.detector`) on every window that is not near-silent (above
``pocket_floor_dbfs``), because a scream is not speech to the voice detector — a speech window's
urgency is the larger of the caller's distress intensity and P(scream), another window's is
P(scream) when it reaches ``scream_threshold``, and such a call is never a pocket call; the gravity lexicon on
the transcript's words; the non-genuine signals; the priority and its reasons (:mod:`.priority`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import Source, load_audio, validate
from vocalis.bundle.runtime import Bundle, load_bundle
from vocalis.danger.detector import ScreamDetector
from vocalis.errors import ConfigError
from vocalis.triage.caller import CallerStateModel
from vocalis.triage.lexicon import GravityHit, GravityLexicon, gravity_score, tokenize
from vocalis.triage.priority import (
    PriorityConfig,
    Reason,
    Signal,
    WindowAffect,
    affect_score,
    clock,
    level,
    score,
)
from vocalis.triage.transcript import SpeechSpan, Transcriber, Transcript, speech_spans

MAX_CALL_SECONDS = 2 * 3600.0
_LAUGH = re.compile(r"\b(?:ha\W*){2,}|\bhehe|\blaugh|\blol\b|\bhaha", re.I)


@dataclass(frozen=True)
class TriageConfig:
    window_s: float = 3.0
    hop_s: float = 3.0
    min_speech: float = 0.3
    silent_speech_s: float = 1.0
    pocket_floor_dbfs: float = -50.0
    short_call_s: float = 5.0
    cheerful_threshold: float = 0.45
    prank_threshold: float = 0.5
    scream_threshold: float = 0.5
    max_call_s: float = MAX_CALL_SECONDS
    priority: PriorityConfig = field(default_factory=PriorityConfig)

    def __post_init__(self) -> None:
        if not 0.5 <= self.window_s <= 30.0:
            raise ConfigError(f"window_s={self.window_s} must be in [0.5, 30] seconds")
        if not 0.1 <= self.hop_s <= self.window_s:
            raise ConfigError(f"hop_s={self.hop_s} must be in [0.1, window_s={self.window_s}]")
        if not 0.0 <= self.min_speech <= 1.0:
            raise ConfigError(f"min_speech={self.min_speech} must be in [0, 1]")
        if not 0.0 < self.scream_threshold <= 1.0:
            raise ConfigError(f"scream_threshold={self.scream_threshold} must be in (0, 1]")


@dataclass
class CallReport:
    call_id: str
    duration_s: float
    speech_s: float
    priority: float
    level: str
    reasons: list[Reason]
    signals: list[Signal]
    gravity: float
    affect: float
    hits: list[GravityHit]
    timeline: list[dict[str, Any]]
    transcript: Transcript
    caller_mode: str
    model: str
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "source": self.source,
            "duration_s": self.duration_s,
            "speech_s": self.speech_s,
            "priority": self.priority,
            "level": self.level,
            "reasons": [r.to_dict() for r in self.reasons],
            "signals": [s.to_dict() for s in self.signals],
            "gravity": self.gravity,
            "affect": self.affect,
            "keywords": [h.to_dict() for h in self.hits],
            "timeline": self.timeline,
            "transcript": self.transcript.to_dict(),
            "caller_model": {"mode": self.caller_mode, "model": self.model},
        }


def _speech_fraction(spans: Sequence[SpeechSpan], start: float, end: float) -> float:
    covered = sum(max(0.0, min(end, s.end) - max(start, s.start)) for s in spans)
    return covered / max(end - start, 1e-9)


def _dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-10)) if x.size else -200.0


class CallAnalyzer:
    """Triage one call at a time (thread-compatible; one per worker process is cheapest).

    ``model`` is a bundle (path or loaded; ``None`` = the bundled emotion model) whose labels are
    emotions or a call centre's own caller states; ``asr_model`` any Whisper model name or
    CTranslate2 directory (``None`` disables the transcript, for affect-only triage).
    """

    def __init__(self, model: str | Path | Bundle | None = None, *, asr_model: str | None = "tiny.en",
                 lexicon: GravityLexicon | str | Path | None = None, config: TriageConfig | None = None,
                 threads: int = 1, language: str | None = "en", urgent_states: Sequence[str] | None = None,
                 scream_model: ScreamDetector | str | Path | Bundle | bool | None = None, asr_encoder: str = "onnx",
                 asr_decoder: str = "onnx") -> None:
        self.bundle = model if isinstance(model, Bundle) else load_bundle(model, threads=threads)
        self.caller = CallerStateModel(self.bundle, urgent_states)
        self.scream: ScreamDetector | None = None
        if scream_model is not False:
            from vocalis.danger.detector import as_detector

            self.scream = as_detector(None if scream_model is True else scream_model)
        self.transcriber = Transcriber(asr_model, threads=threads, language=language,
                                       encoder=asr_encoder, decoder=asr_decoder) if asr_model else None
        if lexicon is None:
            lexicon = GravityLexicon()
        elif not isinstance(lexicon, GravityLexicon):
            lexicon = GravityLexicon.from_file(lexicon)
        self.lexicon = lexicon
        self.config = config or TriageConfig()

    def analyse_file(self, source: Source, call_id: str | None = None) -> CallReport:
        x = load_audio(source, SAMPLE_RATE, max_duration=self.config.max_call_s)
        name = call_id or (Path(source).stem if isinstance(source, str | Path) else "call")
        rep = self.analyse(x, SAMPLE_RATE, call_id=name)
        rep.source = str(source) if isinstance(source, str | Path) else None
        return rep

    def _timeline(self, x: np.ndarray, spans: list[SpeechSpan]) -> tuple[list[dict[str, Any]], list[WindowAffect]]:
        cfg = self.config
        dur = x.size / SAMPLE_RATE
        win, hop = int(cfg.window_s * SAMPLE_RATE), int(cfg.hop_s * SAMPLE_RATE)
        starts = list(range(0, max(x.size - win, 0) + 1, hop)) or [0]
        if starts[-1] + win < x.size and x.size - starts[-1] - hop >= SAMPLE_RATE:  # a last partial window >= 1 s
            starts.append(starts[-1] + hop)
        rows: list[dict[str, Any]] = []
        todo: list[int] = []  # windows with enough speech: caller states (and the scream detector)
        loud: list[int] = []  # every window above the silence floor: the scream detector
        for i, s in enumerate(starts):
            a, b = s / SAMPLE_RATE, min((s + win) / SAMPLE_RATE, dur)
            frac = _speech_fraction(spans, a, b)
            rows.append({"start": round(a, 2), "end": round(b, 2), "speech": round(frac, 3)})
            if b - a < 0.5:
                continue
            if frac * (b - a) >= cfg.min_speech * cfg.window_s:  # seconds of speech: a short last window
                todo.append(i)                                   # needs as much as a whole one
            if _dbfs(x[s:s + win]) > cfg.pocket_floor_dbfs:
                loud.append(i)
        affect = [WindowAffect(r["start"], r["end"], None) for r in rows]
        scream: dict[int, float] = {}
        if self.scream is not None and loud:
            p = self.scream.score_batch([x[starts[i]:starts[i] + win] for i in loud])
            scream = dict(zip(loud, p.tolist()))
        if todo:
            feats = np.stack([self.bundle.features(x[starts[i]:starts[i] + win]) for i in todo])
            proba = self.bundle.predict_proba_features(feats)
            for i, p in zip(todo, proba):
                st = self.caller.states(p)
                urgent = {k: st.raw[k] for k in self.caller.urgent if k in st.raw}
                top = max(urgent, key=urgent.__getitem__) if urgent else None
                top_p = urgent.get(top, 0.0) if top else 0.0
                rows[i].update(states=st.states, distress=st.distress,
                               label=max(st.states, key=st.states.__getitem__))
                level_ = st.distress
                if self.scream is not None:
                    sc = scream.get(i, 0.0)
                    rows[i]["scream"] = round(sc, 4)
                    if sc > level_:  # a scream or shout is distress whatever the emotion model says
                        level_, top, top_p = sc, "screaming", sc
                rows[i]["urgency"] = round(level_, 4)
                affect[i] = WindowAffect(rows[i]["start"], rows[i]["end"], level_, top, top_p)
        for i, sc in scream.items():
            if "states" in rows[i]:
                continue
            rows[i]["scream"] = round(sc, 4)
            if sc >= cfg.scream_threshold:  # screaming without words: urgent on its own
                rows[i]["urgency"] = round(sc, 4)
                affect[i] = WindowAffect(rows[i]["start"], rows[i]["end"], sc, "screaming", sc)
        return rows, affect

    def _signals(self, x: np.ndarray, spans: list[SpeechSpan], rows: list[dict[str, Any]],
                 transcript: Transcript, hits: list[GravityHit]) -> list[Signal]:
        cfg = self.config
        dur = x.size / SAMPLE_RATE
        speech_s = sum(s.end - s.start for s in spans)
        out: list[Signal] = []
        screamed = any(r.get("scream", 0.0) >= cfg.scream_threshold for r in rows)
        if speech_s < max(cfg.silent_speech_s, 0.05 * dur) and not screamed:  # screams are no pocket noise
            mask = np.ones(x.size, bool)
            for s in spans:
                mask[int(s.start * SAMPLE_RATE):int(s.end * SAMPLE_RATE)] = False
            level_db = _dbfs(x[mask])
            pct = f"speech {speech_s:.1f} s of {dur:.0f} s ({100 * speech_s / max(dur, 1e-9):.0f} %)"
            if level_db > cfg.pocket_floor_dbfs:
                out.append(Signal("pocket_call", f"{pct}, continuous background sound at {level_db:.0f} dBFS", 0.3))
            else:
                out.append(Signal("silent_call", f"{pct}, background {level_db:.0f} dBFS", 0.3))
        if dur < cfg.short_call_s:
            out.append(Signal("very_short_call", f"{dur:.1f} s long (< {cfg.short_call_s:.0f} s)", 0.1))
        laughs = [w for w in transcript.words if _LAUGH.search(w.text)]
        if laughs or _LAUGH.search(transcript.text):
            when = f" at {clock(laughs[0].start)}" if laughs else ""
            out.append(Signal("laughter", f"laughter in the transcript{when}", 0.3))
        voiced = [r for r in rows if "states" in r]
        g = gravity_score(hits)
        if voiced and g >= 0.5:
            cheer = float(np.mean([self.caller.cheerful(r["states"]) for r in voiced]))
            dis = float(np.mean([r["distress"] for r in voiced]))
            if cheer >= cfg.cheerful_threshold and cheer > dis:
                grave = sorted({h.phrase for h in hits if not h.negated})
                out.append(Signal("cheerful_voice_with_grave_words",
                                  f"grave words {grave} spoken with a cheerful voice ({cheer:.2f} vs distress {dis:.2f})",
                                  0.25))
        if voiced and self.caller.mode == "custom":
            ng = float(np.mean([self.caller.non_genuine(r["states"]) for r in voiced]))
            if ng >= cfg.prank_threshold:
                out.append(Signal("non_genuine_voice", f"caller model: non-genuine states {ng:.2f} on average", 0.3))
        return out

    def analyse(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *, call_id: str = "call") -> CallReport:
        x = validate(audio, sample_rate, max_duration=self.config.max_call_s)
        if sample_rate != SAMPLE_RATE:
            from vocalis.audio.io import resample

            x = resample(x, sample_rate, SAMPLE_RATE)
        spans = speech_spans(x)
        transcript = self.transcriber.transcribe(x, spans) if self.transcriber else Transcript(model="")
        words = transcript.words
        if words:
            hits = self.lexicon.find(tokenize((w.text, w.start, w.end) for w in words))
        else:
            hits = self.lexicon.find_text(transcript.text)
        rows, affect = self._timeline(x, spans)
        signals = self._signals(x, spans, rows, transcript, hits)
        priority, reasons = score(hits, affect, signals, self.config.priority)
        return CallReport(
            call_id=call_id, duration_s=round(x.size / SAMPLE_RATE, 2),
            speech_s=round(sum(s.end - s.start for s in spans), 2), priority=priority, level=level(priority),
            reasons=reasons, signals=signals, gravity=round(gravity_score(hits), 4),
            affect=round(affect_score(affect, self.config.priority), 4), hits=hits, timeline=rows,
            transcript=transcript, caller_mode=self.caller.mode, model=self.bundle.source,
        )
