"""The slow level gain on the training side, cross-validated: each clip after its own sitting's calm voice.

``benchmarks/scream_validation.py``'s folds, fits and policy (the shipped cascade: ``band-svm``, then
``band-cues-svm-c10`` from P >= 0.05; out-of-fold scores), with every window scored at the gain
:class:`vocalis.streaming.gain.StreamGain` would give it:

* a ``screams`` clip whose recording day / user has *other* clips with a calm voice (corpus emotion
  "calm") gets the gain the stream of those clips (looped, 0.5-1.5 s pauses, at least 30 s) ends
  with (held for the clip's few seconds: a 120 s median barely moves in 3 s); any other clip is
  scored as recorded (a fresh stream has no reference);
* each fold's non-danger stream (acted speech, then noise) gets its running gain, window by window.

Gain settings as ``benchmarks/hot_mic.py --sitting`` (:data:`hot_mic.GAINS`). Results:
``results/sitting_gain.json``; clip F1 and false alerts per hour at the rule's threshold and at the
shipped operating point.

Run: ``.venv/bin/python benchmarks/sitting_gain.py`` (about 20 min on 2 cores).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402
from hot_mic import GAINS, calm_context  # noqa: E402
from scream_validation import (  # noqa: E402
    CACHE,
    CASCADES,
    Stream,
    _features,
    evaluate,
    fit_data,
    folds_key,
    oof_scores,
    setup,
    stream_features,
    threshold_table,
)
from vocalis.audio.constants import SAMPLE_RATE  # noqa: E402
from vocalis.danger.policy import PolicyConfig  # noqa: E402
from vocalis.danger.train import Clip  # noqa: E402
from vocalis.danger.validation import fa_audio, stream_windows  # noqa: E402
from vocalis.features.base import from_config  # noqa: E402
from vocalis.streaming.gain import GainConfig  # noqa: E402
from vocalis.streaming.predictor import StreamConfig, StreamingPredictor  # noqa: E402

GATE = 0.05
SHIPPED_POINT = 0.35


def running_gains(x: np.ndarray, cfg: GainConfig) -> np.ndarray:
    """The gain (dB) of every window :class:`StreamingPredictor` emits for ``x`` (Silero VAD)."""
    p = StreamingPredictor(StreamConfig(asr="off", emotion_every=0, level_gain=cfg), emotion_model=False,
                           keyword_spotter=False)
    step = 30 * SAMPLE_RATE
    return np.array([w.gain_db for i in range(0, x.size, step) for w in p.advance(x[i:i + step])])


def _audio(s: Stream, clips: list[Clip], folds: np.ndarray, by_name: dict[str, Clip]) -> np.ndarray:
    return fa_audio(clips, folds, int(s.name[3:])) if s.name.startswith("fa:") else by_name[s.name].audio()


def stream_gains(clips: list[Clip], folds: np.ndarray, base: list[Stream], cfg: GainConfig
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The gain of every window of every stream of ``base`` (one VAD pass per stream and config), and a summary."""
    by_name = {str(c.path): c for c in clips if c.source == "screams"}
    index = {str(c.path): i for i, c in enumerate(clips)}
    pool = [c for c, f in zip(clips, folds) if f >= 0 and c.source == "screams"]  # the training side's clips
    gains: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"clips_in_context": 0, "clip_gain_db": [], "fa_gain_db": {}}
    for s in base:
        x = _audio(s, clips, folds, by_name)
        n = len(stream_windows(x))
        if s.name.startswith("fa:"):
            g = running_gains(x, cfg)[:n]
            g = np.pad(g, (0, n - g.size))
            info["fa_gain_db"][s.name] = {"median": round(float(np.median(g)), 2), "min": round(float(g.min()), 2),
                                          "max": round(float(g.max()), 2)}
        else:
            ctx = calm_context(by_name[s.name], pool, random.Random(index[s.name]))
            gain = 0.0
            if ctx is not None:
                gs = running_gains(ctx, cfg)
                gain = float(gs[-1]) if gs.size else 0.0
                info["clips_in_context"] += 1
                info["clip_gain_db"].append(round(gain, 2))
            g = np.full(n, gain)
        gains[s.name] = g
    return gains, info


def gained_streams(clips: list[Clip], folds: np.ndarray, base: list[Stream], gains: dict[str, np.ndarray],
                   features: dict[str, Any]) -> list[Stream]:
    """Copies of ``base`` with ``features`` of every window at its gain (:func:`stream_gains`)."""
    ex = from_config(dict(features))
    by_name = {str(c.path): c for c in clips if c.source == "screams"}
    out = []
    for s in base:
        ws = stream_windows(_audio(s, clips, folds, by_name))
        feats = np.stack([np.asarray(ex(w * np.float32(10 ** (gi / 20)), SAMPLE_RATE), np.float32)
                          for w, gi in zip(ws, gains[s.name])])
        out.append(Stream(s.name, s.fold, s.ends, feats=feats, emotion=s.emotion, label=s.label, subset=s.subset,
                          keywords=s.keywords, seconds=s.seconds))
    return out


def main() -> None:
    t_all = time.time()
    clips, folds, streams = setup(["original"])
    base = streams["original"]
    (f1, a1, s1), (f2, a2, s2) = CASCADES[""]
    rows: dict[str, Any] = {}
    for name, cfg in GAINS.items():
        print(f"gain {name} ...", file=sys.stderr, flush=True)
        scores = []
        gains, info = stream_gains(clips, folds, base, cfg) if cfg is not None else ({}, {})
        for feat, aug, spec in ((f1, a1, s1), (f2, a2, s2)):
            features = _features()[feat]
            n_aug = aug if isinstance(aug, int) else aug[0]
            d = fit_data(clips, folds, features, augment_copies=n_aug)
            if cfg is None:
                S = base
                stream_features(clips, folds, S, features)
            else:
                S = gained_streams(clips, folds, base, gains, features)
            tag = f"sitting|{name}|{feat}|{spec.C}|{list(spec.weights)}|{folds_key(folds)}"
            scores.append(oof_scores(spec, clips, folds, d, {"original": S},
                                     "g" + hashlib.sha256(tag.encode()).hexdigest()[:12],
                                     log=lambda m: print(m, file=sys.stderr, flush=True))["original"])
        first, second = scores
        comb = {k: np.where(first[k] >= GATE, second[k], first[k]) for k in first}
        t = threshold_table(S, comb, {})
        at = evaluate(S, comb, PolicyConfig().at_threshold(SHIPPED_POINT))
        rows[name] = {"gain_config": None if cfg is None else cfg.__dict__, "rule": t["chosen_threshold"],
                      "at_rule": {"clip": t["at_chosen"]["clip"], "alerts_per_hour": t["at_chosen"]["alerts_per_hour"],
                                  "by_subset": t["at_chosen"]["by_subset"]},
                      f"at_{SHIPPED_POINT}": {"clip": at["clip"], "alerts_per_hour": at["alerts_per_hour"],
                                              "by_subset": at["by_subset"]},
                      "by_threshold": t["by_threshold"],
                      "gains": info}
        r = rows[name]
        print(f"  rule {r['rule']}: F1 {r['at_rule']['clip']['f1']} FA {r['at_rule']['alerts_per_hour']}/h; "
              f"at {SHIPPED_POINT}: F1 {r[f'at_{SHIPPED_POINT}']['clip']} FA {r[f'at_{SHIPPED_POINT}']['alerts_per_hour']}/h",
              file=sys.stderr, flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    path = save("sitting_gain", {"method": __doc__, "gate": GATE, "rows": rows, "total_wall_s": round(time.time() - t_all, 1)},
                "python benchmarks/sitting_gain.py")
    print("| gain | threshold (rule) | clip F1 (P / R) | false alerts / h | at 0.35: clip F1 | false alerts / h |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        a, b = r["at_rule"], r[f"at_{SHIPPED_POINT}"]
        print(f"| {name} | {r['rule']:.2f} | {a['clip']['f1']} ({a['clip']['precision']} / {a['clip']['recall']}) | "
              f"{a['alerts_per_hour']} | {b['clip']['f1']} | {b['alerts_per_hour']} |")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
