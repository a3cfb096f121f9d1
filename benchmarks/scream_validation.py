"""Validation of scream-detector and policy levers on the **training side** only (never the test side).

The held-out split of :mod:`vocalis.danger.train` is left alone: everything here uses the
clips on its training side, cut into cross-validation folds that keep a person on one side
(:func:`cv_folds`): screams groups (known user / recording day), RAVDESS actors 1-12 in four
groups of three, the training synthetic seeds by ``i % 5``; TESS's only training speaker (OAF)
is a fold of its own (its model has seen no TESS at all). Fold 0 is exactly
:func:`vocalis.danger.train.validation_split`.

For every fold a detector is fitted on the other folds (plus their augmented copies) and scores

* every 2 s window (0.5 s hop) of the fold's screams clips, each streamed on its own (the windows
  :class:`~vocalis.streaming.predictor.StreamingPredictor` forms), and
* a continuous non-danger stream of the fold's acted speech (shuffled, 0-1.5 s pauses) followed
  by synthetic noise / hum / silence segments of 20 s — what ``benchmarks/danger.py`` does with the
  test side.

The real :class:`~vocalis.danger.policy.DangerPolicy` then runs on those scores together with
the emotion model's probabilities (every 4th hop, as in streaming) and, for the screams clips,
the keyword hits of a tiny.en transcript of the clip (``danger-train-transcripts.json``; no ASR on
the acted speech stream). Out-of-fold, that gives a clip-level danger F1 over all training-side
screams clips and false alerts per hour over ~1.8 h of non-danger audio. Scores are cached under
``.cache/scream-validation``.

Run: ``.venv/bin/python benchmarks/scream_validation.py`` (writes ``results/scream-validation.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, REPO  # noqa: E402
from vocalis.audio.constants import SAMPLE_RATE  # noqa: E402
from vocalis.danger.keywords import KeywordMatcher  # noqa: E402
from vocalis.danger.policy import PolicyConfig  # noqa: E402
from vocalis.danger.train import (  # noqa: E402
    LEVEL_CHANNELS,
    SEED,
    Clip,
    apply_channel,
    channel_augment,
    crops,
    loud_copy,
    loud_rng,
    scream_dataset,
)
from vocalis.danger.validation import (  # noqa: E402
    NOISE_SEGMENTS_PER_FOLD,
    ValidationStream,
    cv_folds,
    fa_audio,
    policy_metrics,
    run_policy,
    stream_windows,
)
from vocalis.features.base import from_config  # noqa: E402

CACHE = REPO / ".cache" / "scream-validation"
HOP = 0.5
WINDOW = 2.0


def folds_key(folds: np.ndarray) -> str:
    """Fingerprint of a fold assignment: cached scores and crops are only reused for the same folds."""
    return hashlib.sha256(np.asarray(folds, dtype=np.int64).tobytes()).hexdigest()[:12]


# -- streams -----------------------------------------------------------------------------------


@dataclass
class Stream:
    """Windows of one continuous stream (or one clip streamed on its own)."""

    name: str
    fold: int
    ends: np.ndarray  # window end, seconds
    feats: np.ndarray | None = None
    emotion: list[dict[str, float]] = field(default_factory=list)  # per window (repeated between fresh ones)
    label: int = 0
    subset: str = ""
    keywords: list[str] = field(default_factory=list)  # keyword hits of the clip's transcript
    seconds: float = 0.0


def _emotion_track(ws: Sequence[np.ndarray], emotion: Any, every: int = 4) -> list[dict[str, float]]:
    out: list[dict[str, float]] = []
    last: dict[str, float] = {}
    for i, w in enumerate(ws):
        if emotion is not None and i % every == 0:
            p = emotion.predict_proba(w)
            last = {lab: float(v) for lab, v in zip(emotion.labels, p)}
        out.append(last)
    return out


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def audio_of(clip: Clip, channel: str) -> np.ndarray:
    return apply_channel(clip.audio(), channel)


def build_streams(clips: Sequence[Clip], folds: np.ndarray, channel: str = "original",
                  emotion: Any = None, transcripts: dict[str, str] | None = None) -> list[Stream]:
    """Screams clips (one stream each) and one non-danger stream per fold; emotion cached to disk."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"streams-{channel}-{_key(len(clips), folds_key(folds), NOISE_SEGMENTS_PER_FOLD)}.json"
    matcher = KeywordMatcher()
    transcripts = transcripts or {}
    if path.is_file():
        rows = json.loads(path.read_text())
    else:
        if emotion is None:
            from vocalis.bundle.runtime import load_bundle

            emotion = load_bundle()
        rows = []
        for i, (c, f) in enumerate(zip(clips, folds)):
            if f < 0 or c.source != "screams":
                continue
            ws = stream_windows(audio_of(c, channel))
            rows.append({"name": str(c.path), "clip": i, "fold": int(f), "n": len(ws),
                         "emotion": _emotion_track(ws, emotion), "seconds": len(ws) * HOP + 1.5})
        for f in range(int(folds.max()) + 1):
            x = apply_channel(fa_audio(clips, folds, f), channel)
            ws = stream_windows(x)
            rows.append({"name": f"fa:{f}", "clip": -1, "fold": f, "n": len(ws),
                         "emotion": _emotion_track(ws, emotion), "seconds": x.size / SAMPLE_RATE})
        path.write_text(json.dumps(rows))
    out = []
    for r in rows:
        c = clips[r["clip"]] if r["clip"] >= 0 else None
        ends = WINDOW + HOP * np.arange(r["n"])
        out.append(Stream(r["name"], r["fold"], ends, emotion=r["emotion"], label=c.label if c else 0,
                          subset=c.subset if c else "fa", seconds=r["seconds"],
                          keywords=matcher.match(transcripts.get(r["name"], "")) if c else []))
    return out


def stream_features(clips: Sequence[Clip], folds: np.ndarray, streams: list[Stream], features: dict[str, Any],
                    channel: str = "original") -> None:
    """Fill ``Stream.feats`` for ``features`` (cached per feature config and channel)."""
    path = CACHE / f"sfeat-{channel}-{_key(features, len(clips), folds_key(folds), NOISE_SEGMENTS_PER_FOLD)}.npz"
    if path.is_file():
        z = np.load(path)
        for s in streams:
            s.feats = z[s.name]
        return
    ex = from_config(dict(features))
    by_name = {str(c.path): c for c in clips if c.source == "screams"}
    for s in streams:
        if s.name.startswith("fa:"):
            x = apply_channel(fa_audio(clips, folds, int(s.name[3:])), channel)
        else:
            x = audio_of(by_name[s.name], channel)
        s.feats = np.stack([np.asarray(ex(w, SAMPLE_RATE), np.float32) for w in stream_windows(x)])
    np.savez(path, **{s.name: s.feats for s in streams})


@dataclass
class FitData:
    X: np.ndarray
    y: np.ndarray
    clip: np.ndarray  # clip index of each row
    fold: np.ndarray
    loud: np.ndarray | None = None  # rows of loud copies (ModelSpec.loud_weight)


LEVEL_COPY_DB = {1: (-18.0, -6.0), 0: (3.0, 15.0)}
"""Gain (dB, uniform) of a *level copy* by label: dangers quieter, non-dangers louder (clipped at full scale)."""


def level_copy(x: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    """A copy that breaks "loud = danger": the corpus' screams were recorded close and loud, its calm
    calls and the acted speech quieter, so level alone separates much of the training data. The
    copy turns dangers down and the rest up (a shout from across the room, a calm voice close to
    the phone), then a random capture channel as in :func:`channel_augment`."""
    lo, hi = LEVEL_COPY_DB[int(label)]
    y = np.clip(np.asarray(x, np.float32) * np.float32(10 ** (rng.uniform(lo, hi) / 20)), -1.0, 1.0)
    return channel_augment(y, rng)


def fit_data(clips: Sequence[Clip], folds: np.ndarray, features: dict[str, Any], augment_copies: int = 1,
             copy_offset: int = 0, level_copies: int = 0, loud_copies: int = 0) -> FitData:
    """Training crops of every training-side clip (+ ``augment_copies`` channel-augmented copies,
    ``level_copies`` :func:`level_copy` copies and ``loud_copies`` :func:`vocalis.danger.train.loud_copy`
    copies of the non-danger clips), cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    ex = from_config(dict(features))
    Xs, ys, cs, ls = [], [], [], []
    for copy in [*range(-1, augment_copies), *(f"lvl{k}" for k in range(level_copies)),
                 *(f"loud{k}" for k in range(loud_copies))]:
        tag = copy if isinstance(copy, str) else "orig" if copy == -1 else f"aug{copy + copy_offset}"
        path = CACHE / f"fit-{tag}-{_key(features, len(clips), folds_key(folds))}.npz"
        if path.is_file():
            z = np.load(path)
            X, ci = z["X"], z["clip"]
        else:
            rows, idx = [], []
            for i, (c, f) in enumerate(zip(clips, folds)):
                if f < 0 or (isinstance(copy, str) and copy.startswith("loud") and c.label == 1):
                    continue
                x = c.audio()
                if isinstance(copy, str) and copy.startswith("loud"):
                    x = loud_copy(x, loud_rng(int(copy[4:]), i))
                elif isinstance(copy, str):
                    x = level_copy(x, c.label, np.random.default_rng(SEED + 77_000 + 1000 * int(copy[3:]) + i))
                elif copy >= 0:
                    x = channel_augment(x, np.random.default_rng(SEED + 1000 * (copy + copy_offset + 1) + i))
                for w in crops(x, step_s=0.5 if c.source == "screams" else 1.0):
                    rows.append(np.asarray(ex(w, SAMPLE_RATE), np.float32))
                    idx.append(i)
            X, ci = np.stack(rows), np.asarray(idx)
            np.savez(path, X=X, clip=ci)
        Xs.append(X)
        cs.append(ci)
        ys.append(np.array([clips[i].label for i in ci]))
        ls.append(np.full(len(ci), isinstance(copy, str) and copy.startswith("loud")))
    clip_idx = np.concatenate(cs)
    return FitData(np.concatenate(Xs), np.concatenate(ys), clip_idx, folds[clip_idx], np.concatenate(ls))


# -- models ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A detector head: RBF SVM (scaler inside) with class weights and per-subset sample weights."""

    C: float = 3.0
    gamma: str | float = "scale"
    class_weight: str | dict[int, float] | None = "balanced"
    weights: tuple[tuple[str, float], ...] = ()  # (subset/emotion, subset, source:subset or source; weight)
    head: str = "svm"
    loud_weight: float = 1.0  # sample weight of the loud copies' rows

    def estimator(self) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        if self.head == "logreg":
            clf: Any = LogisticRegression(C=self.C, max_iter=3000, class_weight=self.class_weight)
        elif self.head == "hgb":
            from sklearn.ensemble import HistGradientBoostingClassifier

            clf = HistGradientBoostingClassifier(max_iter=int(self.C), learning_rate=0.1, max_leaf_nodes=15,
                                                 l2_regularization=1.0, class_weight=self.class_weight,
                                                 early_stopping=False, random_state=0)
        elif self.head == "mlp":
            from sklearn.neural_network import MLPClassifier

            clf = MLPClassifier(hidden_layer_sizes=(64, 32), alpha=self.C, max_iter=300, early_stopping=False,
                                random_state=0)
        else:
            clf = SVC(C=self.C, gamma=self.gamma, probability=True, class_weight=self.class_weight, random_state=0)
        return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def sample_weights(clips: Sequence[Clip], clip_idx: np.ndarray, weights: Sequence[tuple[str, float]]) -> np.ndarray:
    w = np.ones(len(clip_idx))
    if not weights:
        return w
    table = dict(weights)
    per_clip = np.ones(len(clips))
    for i, c in enumerate(clips):
        for key in (f"{c.subset}/{c.extra.get('emotion', '')}", c.subset, f"{c.source}:{c.subset}", c.source):
            if key in table:
                per_clip[i] = table[key]
                break
    return per_clip[clip_idx]


def fit(spec: ModelSpec, clips: Sequence[Clip], d: FitData, keep: np.ndarray) -> Any:
    est = spec.estimator()
    w = sample_weights(clips, d.clip[keep], spec.weights)
    if d.loud is not None and spec.loud_weight != 1.0:
        w = w * np.where(d.loud[keep], spec.loud_weight, 1.0)
    est.fit(d.X[keep], d.y[keep], clf__sample_weight=w)
    return est


def oof_scores(spec: ModelSpec, clips: Sequence[Clip], folds: np.ndarray, d: FitData,
               streams_by_channel: dict[str, list[Stream]], tag: str,
               log: Callable[[str], None] = print) -> dict[str, dict[str, np.ndarray]]:
    """Out-of-fold P(scream) of every window of every stream: ``{channel: {stream name: scores}}`` (cached)."""
    path = CACHE / f"oof-{tag}-{folds_key(folds)}.npz"
    chans = sorted(streams_by_channel)
    if path.is_file():
        z = np.load(path)
        if all(f"{ch}|{s.name}" in z for ch in chans for s in streams_by_channel[ch]):
            return {ch: {s.name: z[f"{ch}|{s.name}"] for s in streams_by_channel[ch]} for ch in chans}
    out: dict[str, dict[str, np.ndarray]] = {ch: {} for ch in chans}
    for f in range(int(folds.max()) + 1):
        t0 = time.time()
        est = fit(spec, clips, d, d.fold != f)
        for ch in chans:
            for s in streams_by_channel[ch]:
                if s.fold == f:
                    assert s.feats is not None
                    out[ch][s.name] = est.predict_proba(s.feats)[:, 1]
        log(f"  fold {f}: fit+score {time.time() - t0:.0f} s")
    np.savez(path, **{f"{ch}|{n}": v for ch in chans for n, v in out[ch].items()})
    return out


# -- policy ------------------------------------------------------------------------------------


def as_validation(s: Stream, scores: np.ndarray, keywords: bool = True) -> ValidationStream:
    return ValidationStream(name=s.name, fold=s.fold, label=s.label, subset=s.subset, seconds=s.seconds,
                            scores=scores, clip=-1 if s.name.startswith("fa:") else 0,
                            keywords=s.keywords if keywords else [], probabilities=s.emotion)


def evaluate(streams: list[Stream], scores: dict[str, np.ndarray], cfg: PolicyConfig, *,
             keywords: bool = True, margins: Sequence[float] = (0.75,)) -> dict[str, Any]:
    """Clip-level F1 (policy) and false alerts / h of the non-danger streams, plus near misses: ``danger.started``
    episodes on the non-danger streams with both thresholds scaled by each of ``margins``."""
    vs = [as_validation(s, scores[s.name], keywords) for s in streams]
    out = policy_metrics(vs, cfg)
    for m in margins:
        c2 = replace(cfg, on_threshold=cfg.on_threshold * m, off_threshold=cfg.off_threshold * m)
        out[f"fa_episodes_at_{m:g}x"] = sum(sum(e.type == "danger.started" for e in run_policy(v, c2))
                                            for v in vs if v.non_danger)
    return out


def window_fpr(streams: list[Stream], scores: dict[str, np.ndarray], th: float) -> float:
    v = np.concatenate([scores[s.name] for s in streams if s.name.startswith("fa:")])
    return round(float((v >= th).mean()), 5)


def load_transcripts(clips: Sequence[Clip], folds: np.ndarray) -> dict[str, str]:
    """tiny.en transcripts of the training-side screams clips (computed once, cached)."""
    path = CACHE / "transcripts.json"
    text: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    todo = [c for c, f in zip(clips, folds) if f >= 0 and c.source == "screams" and str(c.path) not in text]
    if todo:
        from vocalis.danger.keywords import load_asr, transcribe

        model = load_asr()
        for c in todo:
            text[str(c.path)] = transcribe(c.audio(), model)
        CACHE.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(text, indent=1))
    return text


def setup(channels: Sequence[str] = ("original",)) -> tuple[list[Clip], np.ndarray, dict[str, list[Stream]]]:
    """Clips, folds and the validation streams of every channel (emotion only on the original audio)."""
    clips = scream_dataset(DATA)
    folds = cv_folds(clips)
    tr = load_transcripts(clips, folds)
    streams = {}
    for ch in channels:
        emotion: Any = None if ch == "original" else _NoEmotion()
        if ch == "original" and not any(CACHE.glob(f"streams-{ch}-*.json")):
            from vocalis.bundle.runtime import load_bundle

            emotion = load_bundle()
        streams[ch] = build_streams(clips, folds, ch, emotion, tr)
    return clips, folds, streams


class _NoEmotion:
    labels = ("neutral",)

    def predict_proba(self, w: np.ndarray) -> np.ndarray:
        return np.ones(1)


# -- levers --------------------------------------------------------------------------------------



def _features() -> dict[str, dict[str, Any]]:
    from vocalis.danger.train import BAND_CUE_FEATURES, BAND_FEATURES, CHEAP_FEATURES

    def level(inner: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return {"type": "level_normalized", "inner": inner, **kw}

    return {"band": BAND_FEATURES, "band+cues": BAND_CUE_FEATURES, "cheap4k": {**CHEAP_FEATURES, "fmax": 4000.0},
            "level(band)": level(BAND_FEATURES), "level(band)+cues": level(BAND_CUE_FEATURES),
            "level(band) max+12": level(BAND_FEATURES, max_gain_db=12.0),
            "cheap4k+cues": {"type": "concat", "parts": [{**CHEAP_FEATURES, "fmax": 4000.0},
                                                         BAND_CUE_FEATURES["parts"][1]]}}


Copies = int | tuple[int, int] | tuple[int, int, int]
"""Augmented copies of a lever: ``n`` channel copies, or ``(n, level copies)``, or ``(n, level, loud copies)``."""


_NOT_CALM_ENV = (("scream_call/calm", 0.0),)  # vocalis.danger.train.NOT_TRAINED_ON, as the shipped fits
LEVERS: list[tuple[str, str, Copies, ModelSpec, dict[str, Any]]] = [
    ("session 1 as shipped: band-svm, 1 augmented copy, P >= 0.2, w_distress=0.15", "band", 1, ModelSpec(),
     {"w_distress": 0.15, "on_threshold": 0.2}),
    ("band-svm at P >= 0.2, w_distress=0 (shipped until session 9)", "band", 1, ModelSpec(), {"on_threshold": 0.2}),
    ("band-svm at P >= 0.55, w_distress=0 (shipped: the validation split's point)", "band", 1, ModelSpec(),
     {"on_threshold": 0.55}),
    ("band-svm, w_distress=0.15, threshold by the rule", "band", 1, ModelSpec(), {"w_distress": 0.15}),
    ("band-svm, w_distress=0, threshold by the rule", "band", 1, ModelSpec(), {}),
    ("band-svm C=1", "band", 1, ModelSpec(C=1.0), {}),
    ("band-svm C=10", "band", 1, ModelSpec(C=10.0), {}),
    ("band-svm, calm calls weighted x3", "band", 1, ModelSpec(weights=(("calm_call", 3.0),)), {}),
    ("band-svm, 2 augmented copies", "band", 2, ModelSpec(), {}),
    ("full cheap set with fmax=4000 (ZCR, spectral shape full band)", "cheap4k", 1, ModelSpec(), {}),
    ("band-svm, calm calls of a scream environment not trained on (still scored)", "band", 1,
     ModelSpec(weights=(("scream_call/calm", 0.0),)), {}),
    ("band + scream cues", "band+cues", 1, ModelSpec(), {}),
    ("band + scream cues, C=1", "band+cues", 1, ModelSpec(C=1.0), {}),
    ("band + scream cues, C=10", "band+cues", 1, ModelSpec(C=10.0), {}),
    ("band + scream cues, gamma=0.003", "band+cues", 1, ModelSpec(gamma=0.003), {}),
    ("band + scream cues, calm x3 + RAVDESS x2", "band+cues", 1,
     ModelSpec(weights=(("calm_call", 3.0), ("ravdess", 2.0))), {}),
    ("cheap4k + scream cues", "cheap4k+cues", 1, ModelSpec(), {}),
    ("band + scream cues, 2 augmented copies", "band+cues", 2,
     ModelSpec(), {}),
    ("  ... + policy w_distress=0.15", "band+cues", 2, ModelSpec(), {"w_distress": 0.15}),
    ("  ... + policy w_distress=0.05", "band+cues", 2, ModelSpec(), {"w_distress": 0.05}),
    ("  ... + policy w_keyword=0", "band+cues", 2, ModelSpec(), {"w_keyword": 0.0}),
    ("  ... + policy 2 of 2 windows", "band+cues", 2, ModelSpec(), {"n_on": 2, "m_windows": 2}),
    ("  ... + policy 3 of 3 windows", "band+cues", 2, ModelSpec(), {"n_on": 3, "m_windows": 3}),
    ("  ... + policy min duration 1 s", "band+cues", 2, ModelSpec(), {"min_duration_s": 1.0}),
    ("band + scream cues, gradient boosting (200 trees)", "band+cues", 2, ModelSpec(head="hgb", C=200), {}),
    ("level-normalised band-svm (active level -> -12 dBFS, gain +-30 dB), calm scream-env calls not trained on",
     "level(band)", 1, ModelSpec(weights=_NOT_CALM_ENV), {}),
    ("level-normalised band-svm, gain up at most +12 dB, calm scream-env calls not trained on",
     "level(band) max+12", 1, ModelSpec(weights=_NOT_CALM_ENV), {}),
    ("level-normalised band + scream cues, calm scream-env calls not trained on", "level(band)+cues", 1,
     ModelSpec(weights=_NOT_CALM_ENV), {}),    ("band + scream cues, calm scream-env calls not trained on", "band+cues", 1, ModelSpec(weights=_NOT_CALM_ENV), {}),
    ("  ... + 2 augmented copies", "band+cues", 2, ModelSpec(weights=_NOT_CALM_ENV), {}),
    ("  ... + C=10", "band+cues", 1, ModelSpec(C=10.0, weights=_NOT_CALM_ENV), {}),
    ("  ... + a level copy (dangers 6-18 dB quieter, the rest 3-15 dB louder)", "band+cues", (1, 1),
     ModelSpec(weights=_NOT_CALM_ENV), {}),
    ("  ... + C=30", "band+cues", 1, ModelSpec(C=30.0, weights=_NOT_CALM_ENV), {}),
    ("  ... + C=10, gamma=0.003", "band+cues", 1, ModelSpec(C=10.0, gamma=0.003, weights=_NOT_CALM_ENV), {}),
    ("band-svm, calm scream-env calls not trained on, + a loud copy of every non-danger clip", "band", (1, 0, 1),
     ModelSpec(weights=_NOT_CALM_ENV), {}),
    ("band + scream cues C=10, calm scream-env calls not trained on, + a loud copy of every non-danger clip",
     "band+cues", (1, 0, 1), ModelSpec(C=10.0, weights=_NOT_CALM_ENV), {}),
    ("  ... the loud copies weighted 0.3", "band+cues", (1, 0, 1),
     ModelSpec(C=10.0, weights=_NOT_CALM_ENV, loud_weight=0.3), {}),
    ("  ... the loud copies weighted 0.1", "band+cues", (1, 0, 1),
     ModelSpec(C=10.0, weights=_NOT_CALM_ENV, loud_weight=0.1), {}),
]
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(2, 15))  # as vocalis.danger.train.THRESHOLDS


def _copies(aug: Copies) -> tuple[int, int, int]:
    if isinstance(aug, int):
        return aug, 0, 0
    return (aug[0], aug[1], 0) if len(aug) == 2 else (aug[0], aug[1], aug[2])  # type: ignore[misc]


def lever_scores(clips: Sequence[Clip], folds: np.ndarray, streams: dict[str, list[Stream]], feat: str,
                 aug: Copies, spec: ModelSpec) -> dict[str, dict[str, np.ndarray]]:
    """Out-of-fold P(scream) of every window of the streams of every channel in ``streams`` (cached):
    ``{channel: {stream name: scores}}``; features ``feat``, copies ``aug`` (:data:`Copies`), head ``spec``."""
    features = _features()[feat]
    for ch, S in streams.items():
        stream_features(clips, folds, S, features, ch)
    n_aug, n_level, n_loud = _copies(aug)
    d = fit_data(clips, folds, features, augment_copies=n_aug, level_copies=n_level, loud_copies=n_loud)
    extra = (f"+lvl{n_level}" if n_level else "") + (f"+loud{n_loud}" if n_loud else "")
    tag = f"{feat}|aug{n_aug}{extra}|C{spec.C}|g{spec.gamma}|cw{spec.class_weight}|w{list(spec.weights)}|{spec.head}"
    if spec.loud_weight != 1.0:
        tag += f"|lw{spec.loud_weight}"
    return oof_scores(spec, clips, folds, d, streams, "x" + hashlib.sha256(tag.encode()).hexdigest()[:12])


def threshold_table(S: list[Stream], scores: dict[str, np.ndarray], policy: dict[str, Any]) -> dict[str, Any]:
    """Policy metrics per threshold (``policy["on_threshold"]``, when given, fixes it) and the one
    :func:`choose_operating_point` picks: ``chosen_threshold``, ``at_chosen``, ``by_threshold`` (brief)."""
    from vocalis.danger.validation import choose_operating_point

    table = {}
    fixed = policy.get("on_threshold")
    for th in [fixed] if fixed is not None else THRESHOLDS:
        cfg = PolicyConfig(**policy).at_threshold(th)
        table[f"{th:.2f}"] = evaluate(S, scores, cfg)
        table[f"{th:.2f}"]["mean_clip_f1"] = table[f"{th:.2f}"]["clip"]["f1"]
        table[f"{th:.2f}"]["max_false_alerts_per_hour"] = table[f"{th:.2f}"]["alerts_per_hour"]
    best = choose_operating_point(table)
    brief = {k: {**{m: v["clip"][m] for m in ("f1", "precision", "recall")}, "alerts": v["alerts"],
                 "near_misses": v["fa_episodes_at_0.75x"]} for k, v in table.items()}
    return {"chosen_threshold": best, "at_chosen": table[f"{best:.2f}"], "by_threshold": brief}


def level_rows(streams: dict[str, list[Stream]], scores: dict[str, dict[str, np.ndarray]], threshold: float,
               policy: dict[str, Any]) -> dict[str, Any]:
    """At ``threshold``: clip F1 and false alerts / h on every hot-microphone channel (:data:`LEVEL_CHANNELS`)
    in ``streams``: the same clips and non-danger streams, louder."""
    cfg = PolicyConfig(**policy).at_threshold(threshold)
    out = {}
    for ch in streams:
        if ch in LEVEL_CHANNELS:
            m = evaluate(streams[ch], scores[ch], cfg, keywords=False)
            out[ch] = {"clip": {k: m["clip"][k] for k in ("f1", "precision", "recall")}, "alerts": m["alerts"],
                       "alerts_per_hour": m["alerts_per_hour"], "hours": m["hours"]}
    return out


def lever(clips: Sequence[Clip], folds: np.ndarray, streams: dict[str, list[Stream]], feat: str, aug: Copies,
          spec: ModelSpec, policy: dict[str, Any]) -> dict[str, Any]:
    """Per threshold: out-of-fold policy metrics; the threshold :func:`choose_operating_point` would pick
    (``policy["on_threshold"]``, when given, fixes it) on the original audio, and the hot-microphone
    channels at that threshold."""
    S = streams["original"]
    sc = lever_scores(clips, folds, streams, feat, aug, spec)
    t = threshold_table(S, sc["original"], policy)
    return {"features": feat, "augment_copies": aug, "model": {"C": spec.C, "gamma": spec.gamma, "head": spec.head,
            "weights": [list(w) for w in spec.weights]}, "policy": policy, **t,
            "level_channels": level_rows(streams, sc, t["chosen_threshold"], policy)}


Stage = tuple[str, Copies, ModelSpec]
CASCADES: dict[str, tuple[Stage, Stage]] = {
    "": (("band", 1, ModelSpec(weights=_NOT_CALM_ENV)), ("band+cues", 1, ModelSpec(C=10.0, weights=_NOT_CALM_ENV))),
    "loud copies, both stages": (("band", (1, 0, 1), ModelSpec(weights=_NOT_CALM_ENV)),
                                 ("band+cues", (1, 0, 1), ModelSpec(C=10.0, weights=_NOT_CALM_ENV))),
}
"""First stage (features, copies, head) and second stage of :mod:`vocalis.danger.detector`: as shipped (``""``)
and variants."""
GATES = (0.01, 0.02, 0.05, 0.1)


def cascade(clips: Sequence[Clip], folds: np.ndarray, streams: dict[str, list[Stream]],
            variant: str = "") -> list[dict[str, Any]]:
    """The two-stage detector out of fold: the second stage's score where the first reaches the gate,
    else the first's; one row per gate, with the share of windows the second stage scores."""
    S = streams["original"]
    (f1, a1, s1), (f2, a2, s2) = CASCADES[variant]
    first, second = (lever_scores(clips, folds, streams, f, a, sp) for f, a, sp in ((f1, a1, s1), (f2, a2, s2)))
    every = np.concatenate([first["original"][s.name] for s in S])
    rows = []
    for gate in GATES:
        comb = {ch: {k: np.where(first[ch][k] >= gate, second[ch][k], first[ch][k]) for k in first[ch]}
                for ch in first}
        frac = float(np.mean(every >= gate))
        t = threshold_table(S, comb["original"], {})
        loud = {ch: round(float(np.mean(np.concatenate(list(first[ch].values())) >= gate)), 4)
                for ch in first if ch in LEVEL_CHANNELS}
        rows.append({"lever": f"cascade{f' ({variant})' if variant else ''}: band-svm, then band + scream cues "
                              f"C={s2.C:g} from P >= {gate} (second stage on {100 * frac:.1f} % of windows)",
                     "features": f"{f1} -> {f2}", "gate": gate, "second_stage_fraction": round(frac, 4),
                     "second_stage_fraction_level_channels": loud, **t,
                     "level_channels": level_rows(streams, comb, t["chosen_threshold"], {})})
    return rows


def _loud(r: dict[str, Any]) -> str:
    return "".join(f"; {ch}: F1 {m['clip']['f1']:.3f} FA {m['alerts_per_hour']:.2f}/h"
                   for ch, m in r.get("level_channels", {}).items())


def main() -> None:
    import argparse
    import warnings

    from _common import save

    warnings.filterwarnings("ignore", category=FutureWarning)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", type=int, help="indices into LEVERS (default: all)")
    ap.add_argument("--cascade", nargs="*", choices=list(CASCADES), default=None,
                    help="the two-stage rows of these variants ('' = as shipped; all of them without --only)")
    args = ap.parse_args()
    clips, folds, streams = setup(["original", *LEVEL_CHANNELS])
    out = []
    for i, (name, feat, aug, spec, policy) in enumerate(LEVERS):
        if args.only is not None and i not in args.only:
            continue
        r = lever(clips, folds, streams, feat, aug, spec, policy)
        a = r["at_chosen"]
        print(f"{name:62s} th {r['chosen_threshold']:.2f} F1 {a['clip']['f1']:.3f} (P {a['clip']['precision']:.3f} "
              f"R {a['clip']['recall']:.3f}) FA {a['alerts']} = {a['alerts_per_hour']:.2f}/h, "
              f"near misses {a['fa_episodes_at_0.75x']}{_loud(r)}", flush=True)
        out.append({"lever": name, **r})
    variants = list(CASCADES) if args.cascade is None and args.only is None else args.cascade or []
    for v in variants:
        for r in cascade(clips, folds, streams, v):
            a = r["at_chosen"]
            print(f"{r['lever']:62s} th {r['chosen_threshold']:.2f} F1 {a['clip']['f1']:.3f} "
                  f"FA {a['alerts']} = {a['alerts_per_hour']:.2f}/h{_loud(r)}", flush=True)
            out.append(r)
    if args.only is not None:  # a partial run updates its rows of the last results and keeps the others
        from _common import RESULTS

        prev = RESULTS / "scream-validation.json"
        if prev.is_file():
            mine = {r["lever"] for r in out}
            order = [name for name, *_ in LEVERS] + sorted(r["lever"] for r in out if r["lever"].startswith("cascade"))
            kept = [r for r in json.loads(prev.read_text())["levers"] if r["lever"] not in mine]
            out = sorted(kept + out, key=lambda r: order.index(r["lever"]) if r["lever"] in order else len(order))
    hours = out[0]["at_chosen"]["hours"] if out else 0.0
    n = sum(1 for c, f in zip(clips, folds) if f >= 0 and c.source == "screams")
    save("scream-validation", {"method": __doc__, "screams_clips": n, "non_danger_hours": hours, "levers": out},
         "python benchmarks/scream_validation.py")


if __name__ == "__main__":
    main()
