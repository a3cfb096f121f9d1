"""Danger clip F1 cross-validated over the whole ``screams`` corpus, by recording day and known user.

A second held-out estimate next to ``benchmarks/danger.py``. That benchmark scores one fixed
held-out side: 6 recording days and 9 known users, 97 clips. Its number depends on which sittings
that side happens to hold. For example, 11 of its 69 positives are the calm calls of one sitting,
labelled danger only by their environment. Here **every** screams clip is scored by a detector
that never saw its recording day or user. The folds are:

* the four cross-validation folds of the training side (:func:`vocalis.danger.validation.cv_folds`);
* the held-out side's screams clips, as one more fold.

TESS OAF is a fold of its own, as in ``cv_folds``. Each fold's detector is the shipped two-stage
detector's recipes (read from the bundles: features and SVM C, with one channel-augmented copy each; the second stage's
score where the first reaches the gate). It is fitted on the other folds' screams clips plus
the training-side RAVDESS / TESS / synthetic clips outside the fold. The held-out acted speakers
(RAVDESS 13-24, TESS YAF) are never used. Every clip is streamed on its own through
StreamingPredictor windows and the real ``DangerPolicy``, with the keyword hits of a tiny.en
transcript, as in ``benchmarks/scream_validation.py``, whose caches it shares.

It reports clip F1 pooled over all clips and per fold, and the clips flagged per subset and
emotion label. The threshold is the shipped detector's operating point: not tuned here, and the
policy defaults otherwise. False alerts per hour are not measured here; ``danger.py`` measures
them on the held-out acted speech.

Run: ``.venv/bin/python benchmarks/scream_corpus_cv.py`` (about 10 min on 2 cores; writes
``results/scream-corpus-cv.json``).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, corpus_or_exit, label_ceiling, save  # noqa: E402
from scream_validation import (  # noqa: E402
    ModelSpec,
    as_validation,
    build_streams,
    fit_data,
    load_transcripts,
    oof_scores,
    stream_features,
)
from vocalis.danger.detector import load_scream_detector  # noqa: E402
from vocalis.danger.policy import PolicyConfig  # noqa: E402
from vocalis.danger.train import NOT_TRAINED_ON, scream_dataset  # noqa: E402
from vocalis.danger.validation import cv_folds, policy_metrics  # noqa: E402


def corpus_folds(clips: list[Any]) -> np.ndarray:
    """``cv_folds`` plus the held-out side's screams clips as the last fold; held-out acted speech stays -1."""
    folds = cv_folds(clips)
    last = int(folds.max()) + 1
    for i, c in enumerate(clips):
        if c.split == "test" and c.source == "screams":
            folds[i] = last
    return folds


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("screams", "ravdess", "tess"):
        corpus_or_exit(name, DATA)
    clips = scream_dataset(DATA)
    folds = corpus_folds(clips)
    detector = load_scream_detector()  # its recipes (features, RBF SVM C=3), gate and operating point
    on = float(detector.operating_point or PolicyConfig().on_threshold)
    cfg = PolicyConfig().at_threshold(on)
    streams = build_streams(clips, folds, "original", None, load_transcripts(clips, folds))
    # as every fit of vocalis.danger.train: the calm calls of a scream environment are scored, never fitted
    not_fitted = tuple((f"{sub}/{emo}", 0.0) for sub, emo in NOT_TRAINED_ON)
    stage_scores, names = [], []
    for b in (detector.first, detector.confirm):
        if b is None:
            continue
        shipped = b.manifest
        features, recipe = dict(shipped.features), str(shipped.recipe.get("name"))
        params = shipped.recipe.get("params", {})
        if shipped.recipe.get("head") != "svm" or set(params) - {"C"}:
            sys.exit(f"the shipped scream recipe {shipped.recipe} is not an RBF SVM with C only; extend ModelSpec here")
        spec = ModelSpec(C=float(params.get("C", 3.0)), weights=not_fitted)
        stream_features(clips, folds, streams, features)
        d = fit_data(clips, folds, features, augment_copies=1)
        stage_scores.append(oof_scores(spec, clips, folds, d, {"original": streams},
                                       f"corpus-{recipe}-C{spec.C:g}-aug1-nt")["original"])
        names.append(recipe)
    scores = stage_scores[0]
    if len(stage_scores) == 2:  # the second stage decides where the first reaches the gate
        scores = {k: np.where(v >= detector.gate, stage_scores[1][k], v) for k, v in scores.items()}
    recipe = " -> ".join(names) + (f" from P >= {detector.gate}" if len(names) == 2 else "")
    by_path = {str(c.path): c for c in clips if c.source == "screams"}
    clip_streams = [s for s in streams if not s.name.startswith("fa:")]
    # subset/emotion as the stream's subset: policy_metrics' by_subset is then the per-emotion table
    vs = [replace(as_validation(s, scores[s.name]),
                  subset=f"{by_path[s.name].subset}/{by_path[s.name].extra.get('emotion', '')}") for s in clip_streams]
    pooled = policy_metrics(vs, cfg)
    per_fold: dict[str, Any] = {}
    for f in sorted({s.fold for s in clip_streams}):
        part = [v for v, s in zip(vs, clip_streams) if s.fold == f]
        m = policy_metrics(part, cfg)
        groups = sorted({by_path[s.name].group for s in clip_streams if s.fold == f})
        per_fold[str(f)] = {"held_out_side": f == int(folds.max()), "clips": len(part),
                            "positives": sum(v.label for v in part), "clip": m["clip"], "groups": groups}
    f1s = [p["clip"]["f1"] for p in per_fold.values()]
    print(f"pooled clip F1 {pooled['clip']['f1']:.3f} (P {pooled['clip']['precision']:.3f} "
          f"R {pooled['clip']['recall']:.3f}) over {len(vs)} clips; per fold {f1s}")
    save("scream-corpus-cv", {
        "method": __doc__, "recipe": f"{recipe}, 1 augmented copy each", "on_threshold": on,
        "policy_config": dict(cfg.__dict__), "pooled": pooled["clip"], "by_subset_emotion": pooled["by_subset"],
        "per_fold": per_fold, "label_ceiling": label_ceiling([by_path[s.name] for s in clip_streams]),
    }, "python benchmarks/scream_corpus_cv.py")


if __name__ == "__main__":
    main()
