"""A scream head on the shared Whisper backbone vs the shipped cheap detector, window by window.

Question (issue #4, "a model of its own or a head on the shared backbone -- measured, not
assumed"): does a head on the embedding the default emotion model already computes (its exact
feature config: Whisper tiny.en encoder over the voiced span, mean+std) find the shouted calls for
help the cheap ``band-svm`` detector misses?

Method. The same clips, split and crops as `vocalis.danger.train`: 2 s crops of every clip
(screams every 0.5 s, acted speech every 1 s), one channel-augmented copy of every clip in each
fit, the test side never augmented nor looked at for choices. Two evaluations per head:

* `validation`: fitted on the training side minus its validation part
  (`validation_split`), scored on that validation part;
* `test`: fitted on the whole training side, scored on the held-out test side.

Clip-level danger F1 on the `screams` clips with a clip flagged when one of its 2 s windows
reaches the threshold (what streaming sees, without the policy's N-of-M), and the window
false-positive rate on acted speech (every emotion) and synthetic noise of the same side. This is
**not** the streaming + policy number of `benchmarks/danger.py`: it measures the heads.

    .venv/bin/python benchmarks/scream_backbone.py [--cache DIR]

``--cache DIR`` keeps the crop features (``band_orig.npz`` ... ``wh_aug.npz``; the Whisper ones
take ~10 min on 2 cores) and reuses them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, corpus_or_exit, load_crops, save, save_crops  # noqa: E402
from vocalis.bundle.runtime import load_bundle  # noqa: E402
from vocalis.danger.train import (  # noqa: E402
    BAND_FEATURES,
    CANDIDATES,
    SEED,
    Clip,
    CropFeatures,
    _f1,
    _fit,
    featurize_clips,
    scream_dataset,
    validation_split,
)
from vocalis.training.recipes import Recipe  # noqa: E402

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
Features = tuple[CropFeatures, CropFeatures]  # the original crops, one channel-augmented copy


def _features(clips: list[Clip], name: str, recipe: Recipe, cache: Path | None) -> Features:
    out = []
    for tag, seed in (("orig", None), ("aug", SEED + 1000)):
        path = cache / f"{name}_{tag}.npz" if cache else None
        if path is not None and path.is_file():
            out.append(load_crops(path))
            continue
        t0 = time.time()
        f = featurize_clips(clips, recipe, workers=2, augment_seed=seed)
        print(f"  {name} {tag}: {f.X.shape} in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        if path is not None:
            save_crops(path, f)
        out.append(f)
    return out[0], out[1]


def _side_by_side(*parts: Features) -> Features:
    """Feature sets of the same crops joined column-wise (what a ``concat`` extractor computes)."""
    def join(k: int) -> CropFeatures:
        return CropFeatures(np.concatenate([p[k].X for p in parts], 1), parts[0][k].clip_index,
                            np.concatenate([p[k].whole for p in parts], 1))

    return join(0), join(1)


def evaluate(clips: list[Clip], feats: Features, recipe: Recipe, train: np.ndarray, scored: np.ndarray
             ) -> dict[str, Any]:
    """Fit ``recipe``'s head on the ``train`` clips (original + augmented crops), score the ``scored`` side."""
    orig, aug = feats
    y_clip = np.array([c.label for c in clips])
    src = np.array([c.source for c in clips])
    est = _fit(recipe, 0, clips, train, orig, aug)
    p = est.predict_proba(orig.X)[:, 1]
    ci = orig.clip_index
    p_max = np.zeros(len(clips))
    np.maximum.at(p_max, ci, p)
    scr = scored & (src == "screams")
    neg = scored[ci] & np.isin(src[ci], ["ravdess", "tess", "synthetic"])
    rows = {}
    for th in THRESHOLDS:
        f = _f1(y_clip[scr], (p_max[scr] >= th).astype(int))
        rows[f"{th:.1f}"] = {**f, "window_fpr_acted_and_noise": round(float((p[neg] >= th).mean()), 5)}
    return {"clips": int(scr.sum()), "negative_windows": int(neg.sum()), "by_threshold": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    for name in ("screams", "ravdess", "tess"):
        corpus_or_exit(name, args.data)
    t_all = time.time()
    clips = scream_dataset(args.data)
    emotion = load_bundle()
    backbone = dict(emotion.manifest.features)
    band_recipe = CANDIDATES["band-svm"]
    band = _features(clips, "band", band_recipe, args.cache)
    wh = _features(clips, "wh", Recipe("backbone", backbone, "logreg"), args.cache)
    is_test = np.array([c.split == "test" for c in clips])
    val = validation_split(clips)
    svm = (band_recipe.head, band_recipe.params)
    heads: dict[str, tuple[Features, Recipe]] = {
        "band-svm (shipped recipe)": (band, band_recipe),
        "backbone-logreg": (wh, Recipe("backbone-logreg", backbone, "logreg", {"C": 0.05})),
        "backbone-svm": (wh, Recipe("backbone-svm", backbone, *svm)),
        "backbone+band-svm": (_side_by_side(wh, band),
                              Recipe("backbone-band-svm", {"type": "concat", "parts": [backbone, BAND_FEATURES]}, *svm)),
    }
    results: dict[str, Any] = {}
    for label, (feats, recipe) in heads.items():
        results[label] = {
            "validation": evaluate(clips, feats, recipe, ~is_test & ~val, val),
            "test": evaluate(clips, feats, recipe, ~is_test, is_test),
        }
        for side in ("validation", "test"):
            row = " ".join(f"{th}:{v['f1']:.3f}" for th, v in results[label][side]["by_threshold"].items())
            print(f"{label:28} {side:10} {row}", file=sys.stderr, flush=True)
    save("scream_backbone", {
        "method": __doc__.split("Method. ")[1].split("    .venv")[0].strip(),
        "backbone_features": dict(emotion.manifest.features),
        "results": results, "total_wall_s": round(time.time() - t_all, 1),
    }, "python benchmarks/scream_backbone.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
