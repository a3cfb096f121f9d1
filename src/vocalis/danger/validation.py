"""Cross-validation of the scream detector *with the streaming policy*, on the training side only.

The operating point of the detector (and any policy setting) is chosen here, never on the
held-out test side of :func:`vocalis.danger.train.scream_dataset`. The training side is cut into
folds that keep a person on one side (:func:`cv_folds`):

* screams: whole split groups (known user / recording day), about a quarter of every subset
  per fold (fold 0 is exactly :func:`vocalis.danger.train.validation_split`'s screams part);
* RAVDESS training actors 1-12 in four groups of three (10-12, 7-9, 4-6, 1-3);
* training synthetic seeds by ``i % 5``;
* TESS's only training speaker (OAF) is a fold of its own (its model has seen no TESS at all).

For every fold a detector is fitted on the other folds and scores what streaming would see:

* every 2 s window (0.5 s hop) of the fold's screams clips, each streamed on its own;
* one continuous non-danger stream of the fold's acted speech (shuffled, 0-1.5 s pauses, every
  emotion) followed by 20 s synthetic noise / hum / silence segments (:func:`fa_audio`), as
  ``benchmarks/danger.py`` builds from the test side.

:func:`policy_metrics` then runs the real :class:`~vocalis.danger.policy.DangerPolicy` on those
scores: clip-level danger F1 (a clip is flagged when the policy emits ``danger.started``) and
false alerts per hour of the non-danger streams (``alert`` events; the countdown is not
cancelled). Keyword hits and emotion probabilities are not simulated (the default policy gives
distress no weight; ASR runs only on scream-like windows).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.danger.policy import DangerPolicy, PolicyConfig
from vocalis.errors import DataError

if TYPE_CHECKING:
    from vocalis.danger.train import Clip

K_FOLDS = 4
"""Folds of the screams / RAVDESS / synthetic training side (TESS OAF is one more)."""
HOP_S = 0.5
WINDOW_S = 2.0
NOISE_SEGMENTS_PER_FOLD = 20
MAX_VALIDATION_FA_PER_H = 0.5
"""Most false alerts per hour (worst channel) an operating point may cause on the validation streams."""


def _balanced_folds(groups: Sequence[str], strata: Sequence[str], k: int, seed: int,
                    tries: int = 200) -> dict[str, int]:
    """Fold (0..k-1) of every group: whole groups, folds of similar size and mix of strata.

    Each try takes the groups in a seeded random order and puts each into the fold that holds the
    fewest clips so far (so one large recording day cannot leave a fold nearly empty); the try
    whose folds deviate least from 1/k of the clips, in total and per stratum, wins.
    """
    counts, total_by = Counter(groups), Counter(strata)
    best: tuple[float, dict[str, int]] = (float("inf"), {})
    for t in range(tries):
        order = sorted(counts)
        random.Random(seed + t).shuffle(order)
        order.sort(key=lambda g: -counts[g])  # large groups first (stable: ties stay shuffled)
        size = [0] * k
        of: dict[str, int] = {}
        for g in order:
            f = min(range(k), key=lambda j: (size[j], j))
            of[g] = f
            size[f] += counts[g]
        got = [dict.fromkeys(total_by, 0) for _ in range(k)]
        for g, s in zip(groups, strata):
            got[of[g]][s] += 1
        dev = max(abs(size[f] / len(groups) - 1 / k) for f in range(k)) + max(
            abs(got[f][s] / total_by[s] - 1 / k) for f in range(k) for s in total_by)
        if dev < best[0]:
            best = (dev, of)
    return best[1]


def cv_folds(clips: Sequence[Clip], k: int = K_FOLDS, seed: int | None = None) -> np.ndarray:
    """Fold of every clip; ``-1`` for the held-out test side, ``k`` for TESS OAF."""
    from vocalis.danger.train import SEED, _test_groups

    seed = SEED + 1 if seed is None else seed
    fold = np.full(len(clips), -1)
    left = [i for i, c in enumerate(clips) if c.split == "train" and c.source == "screams"]
    # fold 0 is the validation split (train.validation_split); the rest share the other folds
    chosen = _test_groups([clips[i].group for i in left], [clips[i].subset for i in left], 1.0 / k, seed)
    for i in left:
        if clips[i].group in chosen:
            fold[i] = 0
    left = [i for i in left if fold[i] < 0]
    rest = _balanced_folds([clips[i].group for i in left], [clips[i].subset for i in left], k - 1, seed)
    for i in left:
        fold[i] = 1 + rest[clips[i].group]
    synth_fold = {3: 0, 0: 1, 1: 2, 2: 3}
    for i, c in enumerate(clips):
        if c.split != "train":
            continue
        if c.source == "ravdess":
            fold[i] = min(k - 1, 3 - (int(c.group.split(":")[1]) - 1) // 3)
        elif c.source == "tess":
            fold[i] = k
        elif c.source == "synthetic":
            fold[i] = min(k - 1, synth_fold.get(c.synth % 5, 0))
    return fold


def fa_audio(clips: Sequence[Clip], folds: np.ndarray, fold: int, *, seed: int = 0,
             noise_segments: int = NOISE_SEGMENTS_PER_FOLD) -> np.ndarray:
    """Fold ``fold``'s acted speech (shuffled, 0-1.5 s pauses) then its synthetic noise segments (20 s each)."""
    from vocalis.danger.train import synthetic_negative

    rng = random.Random(seed + fold)
    speech = [c for c, g in zip(clips, folds) if g == fold and c.source in ("ravdess", "tess")]
    rng.shuffle(speech)
    parts: list[np.ndarray] = []
    for c in speech:
        parts.append(c.audio())
        parts.append(np.zeros(int(rng.uniform(0.0, 1.5) * SAMPLE_RATE), np.float32))
    synth = [c.synth for c, g in zip(clips, folds) if g == fold and c.source == "synthetic"]
    for s in synth[:noise_segments]:
        parts.append(synthetic_negative(s, 20.0))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def stream_windows(x: np.ndarray, window_s: float = WINDOW_S, hop_s: float = HOP_S) -> list[np.ndarray]:
    """The windows :class:`~vocalis.streaming.predictor.StreamingPredictor` scores (shorter audio: zero-padded front)."""
    w, h = int(window_s * SAMPLE_RATE), int(hop_s * SAMPLE_RATE)
    if x.size < w:
        return [np.pad(np.asarray(x, np.float32), (w - x.size, 0))]
    return [x[e - w : e] for e in range(w, x.size + 1, h)]


@dataclass
class ValidationStream:
    """Scored windows of one validation stream: a screams clip (``clip >= 0``) or a fold's non-danger stream."""

    name: str
    fold: int
    label: int
    subset: str
    seconds: float
    scores: np.ndarray
    clip: int = -1
    keywords: list[str] = field(default_factory=list)
    probabilities: list[dict[str, float]] = field(default_factory=list)
    backbone: np.ndarray | None = None  # the backbone head's held score per window (see held_backbone)

    @property
    def non_danger(self) -> bool:
        return self.clip < 0


@dataclass(frozen=True)
class _Window:
    t_end: float
    scream: float
    probabilities: Mapping[str, float]
    keywords: list[str]
    scream_backbone: float | None = None


def held_backbone(scores: np.ndarray, n_windows: int, every: int) -> np.ndarray:
    """Per-window backbone scores as streaming reports them: the head runs with the emotion model on
    windows 0, ``every``, 2 * ``every``, ... (``scores``, one per run) and each run's score is held on
    the windows after it that still overlap it (all ``every - 1`` of them when ``every`` hops fit in a window)."""
    held = np.repeat(np.asarray(scores, np.float64), every)[:n_windows]
    if held.size < n_windows:
        raise DataError(f"{scores.size} backbone scores held over every={every} windows cover {held.size} windows; "
                        f"the stream has {n_windows}: one score per {every} windows is needed")
    return held


def run_policy(s: ValidationStream, cfg: PolicyConfig, *, asr_trigger: float = 0.1) -> list[Any]:
    """Events of the policy on one stream. Keyword hits (when the stream has any) arrive on the windows
    where :class:`~vocalis.streaming.predictor.StreamingPredictor` would run ASR (scream >= ``asr_trigger``,
    at most once per window length)."""
    pol = DangerPolicy(cfg)
    events: list[Any] = []
    last_asr = -1e9
    for i, p in enumerate(s.scores):
        t = WINDOW_S + HOP_S * i
        kw: list[str] = []
        if s.keywords and p >= asr_trigger and t - last_asr >= WINDOW_S - 1e-9:
            kw, last_asr = list(s.keywords), t
        probs = s.probabilities[i] if i < len(s.probabilities) else {}
        b = None if s.backbone is None else float(s.backbone[i])
        events += pol.push(_Window(t, float(p), probs, kw, b))
    return events


def _f1(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"f1": round(2 * p * r / (p + r), 4) if p + r else 0.0, "precision": round(p, 4), "recall": round(r, 4),
            "tp": tp, "fp": fp, "fn": fn}


def policy_metrics(streams: Sequence[ValidationStream], cfg: PolicyConfig) -> dict[str, Any]:
    """Clip-level danger F1 of the screams clips and false alerts per hour of the non-danger streams."""
    tp = fp = fn = 0
    by: dict[str, dict[str, int]] = {}
    alerts = episodes = 0
    seconds = 0.0
    for s in streams:
        ev = run_policy(s, cfg)
        if s.non_danger:
            alerts += sum(e.type == "alert" for e in ev)
            episodes += sum(e.type == "danger.started" for e in ev)
            seconds += s.seconds
            continue
        flagged = any(e.type == "danger.started" for e in ev)
        tp += int(flagged and s.label == 1)
        fp += int(flagged and s.label == 0)
        fn += int(not flagged and s.label == 1)
        b = by.setdefault(s.subset, {"n": 0, "flagged": 0})
        b["n"] += 1
        b["flagged"] += int(flagged)
    hours = seconds / 3600
    return {"clip": _f1(tp, fp, fn), "by_subset": by, "hours": round(hours, 3), "alerts": alerts,
            "alerts_per_hour": round(alerts / hours, 3) if hours else 0.0, "danger_episodes": episodes}


def operating_point_table(streams_by_channel: Mapping[str, Sequence[ValidationStream]], thresholds: Sequence[float],
                          policy: PolicyConfig | None = None) -> dict[str, dict[str, Any]]:
    """Policy metrics per threshold (``on_threshold``; ``off_threshold`` = min(policy's, threshold)) and channel."""
    base = policy or PolicyConfig()
    return {f"{th:.2f}": channel_metrics(streams_by_channel, base.at_threshold(th)) for th in thresholds}


def channel_metrics(streams_by_channel: Mapping[str, Sequence[ValidationStream]], cfg: PolicyConfig
                    ) -> dict[str, Any]:
    """:func:`policy_metrics` of every channel's streams under ``cfg``, and their mean / worst."""
    per = {ch: policy_metrics(ss, cfg) for ch, ss in streams_by_channel.items()}
    return {
        "clip_f1": {ch: m["clip"]["f1"] for ch, m in per.items()},
        "mean_clip_f1": round(float(np.mean([m["clip"]["f1"] for m in per.values()])), 4),
        "false_alerts_per_hour": {ch: m["alerts_per_hour"] for ch, m in per.items()},
        "max_false_alerts_per_hour": max(m["alerts_per_hour"] for m in per.values()),
        "by_subset": {ch: m["by_subset"] for ch, m in per.items()},
        "hours": {ch: m["hours"] for ch, m in per.items()},
    }


def choose_operating_point(table: Mapping[str, Mapping[str, Any]],
                           max_fa_per_hour: float = MAX_VALIDATION_FA_PER_H) -> float:
    """Best mean clip F1 among thresholds whose worst-channel false alerts/h stay within ``max_fa_per_hour``
    (none: the fewest false alerts); ties go to the lower threshold (more sensitive, faster)."""
    ok = [k for k, v in table.items() if v["max_false_alerts_per_hour"] <= max_fa_per_hour]
    if not ok:
        least = min(v["max_false_alerts_per_hour"] for v in table.values())
        ok = [k for k, v in table.items() if v["max_false_alerts_per_hour"] == least]
    return float(max(ok, key=lambda k: (table[k]["mean_clip_f1"], -float(k))))
