"""Should a scream head on the emotion model's embedding join the live danger policy? Cross-validated.

Method. The training side only (the held-out test side of `vocalis.danger.train` is not loaded
into any score here): the person-disjoint folds of `vocalis.danger.validation.cv_folds`; for every
fold the shipped cheap recipe (`band-svm`, one channel-augmented copy, as shipped) and a scream
head on the default emotion model's exact feature vector (Whisper tiny.en encoder, voiced span,
mean+std: `vocalis.danger.train.backbone_recipe`) are fitted on the other folds. They score what
streaming would see: every 2 s window (0.5 s hop) of the fold's screams clips and of a continuous
non-danger stream of its acted speech and synthetic noise, the cheap head on every window, the
backbone head on every 4th (it rides on the emotion run) with its score held over the 3 windows
after it. The real `DangerPolicy` (the cheap head at its shipped threshold 0.2) fuses them with
`w_backbone = 0.2 / t` for every head threshold t; clip-level danger F1 (a clip is flagged when
`danger.started` fires) and false alerts per hour per capture channel (original, 7 kHz low-pass,
telephone band). The rule (`choose_backbone_threshold`): the best mean clip F1 among thresholds
that add no false alert per hour over the cheap head alone on any channel, and only if it beats the
cheap head alone ("none" in the table: the head is not used).

Head variants: logistic regression (C 0.05, 0.01, 0.005), all with the crops, one augmented copy and
the `stream_crops` negatives (each training-side speaker's speech played as one stream with pauses,
in 2 s windows), one with the screams corpus' own negatives (calm calls, quiet backgrounds) repeated
5 times. An RBF SVM head (`--variants svm-c3`, the best head alone in session 6) is left out of the
default run: five fits of a probability-calibrated SVC on ~12,000 x 3,840 take over 20 minutes here.

    .venv/bin/python benchmarks/scream_fusion.py [--cache DIR] [--variants logreg-c0.05 ...]

``--cache DIR`` keeps the crop and window features between runs (about 12 minutes to compute on
2 cores; the Whisper ones are ~1.2 GB).
"""

from __future__ import annotations

import argparse
import os
import pickle
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
    CANDIDATES,
    DEFAULT_CANDIDATE,
    SEED,
    Clip,
    CropFeatures,
    backbone_recipe,
    choose_backbone_threshold,
    featurize_clips,
    score_validation_windows,
    scream_dataset,
    stream_crops,
    validation_windows,
)
from vocalis.training.recipes import Recipe  # noqa: E402


def _cached(path: Path | None, make: Any) -> Any:
    """``make()``, kept in ``path`` (npz for crop features, a pickle of arrays for window features)."""
    if path is not None and path.is_file():
        if path.suffix == ".npz":
            return load_crops(path)
        return pickle.loads(path.read_bytes())  # our own cache of numpy arrays, written below
    t0 = time.time()
    out = make()
    print(f"  {path.name if path else 'features'}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    if path is not None:
        if isinstance(out, CropFeatures):
            save_crops(path, out)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps(out))
    return out


def _join(*parts: CropFeatures) -> CropFeatures:
    return CropFeatures(np.concatenate([p.X for p in parts]), np.concatenate([p.clip_index for p in parts]),
                        parts[0].whole)


def _repeat_corpus_negatives(clips: list[Clip], f: CropFeatures, n: int) -> CropFeatures:
    """The crops of the screams corpus' own negatives (calm calls, quiet backgrounds), ``n`` times."""
    neg = np.array([c.source == "screams" and c.label == 0 for c in clips])[f.clip_index]
    return CropFeatures(np.concatenate([f.X[neg]] * n), np.concatenate([f.clip_index[neg]] * n), f.whole)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--variants", nargs="*", default=["logreg-c0.05", "logreg-c0.01",
                                                      "logreg-c0.005-corpus-negatives-x5"])
    args = ap.parse_args()
    for name in ("screams", "ravdess", "tess"):
        corpus_or_exit(name, args.data)
    t_all = time.time()
    clips = scream_dataset(args.data)
    emotion = load_bundle()
    head = backbone_recipe(emotion)
    cheap = CANDIDATES[DEFAULT_CANDIDATE]
    c = args.cache

    def path(name: str) -> Path | None:
        return c / name if c else None

    band = _cached(path("band_orig.npz"), lambda: featurize_clips(clips, cheap))
    band_aug = _cached(path("band_aug.npz"), lambda: featurize_clips(clips, cheap, augment_seed=SEED + 1000))
    wh = _cached(path("wh_orig.npz"), lambda: featurize_clips(clips, head))
    wh_aug = _cached(path("wh_aug.npz"), lambda: featurize_clips(clips, head, augment_seed=SEED + 1000))
    wh_stream = _cached(path("wh_stream.npz"), lambda: stream_crops(clips, head))
    windows = _cached(path("validation_windows.pkl"), lambda: validation_windows(clips, cheap, head))
    with_streams = _join(wh_aug, wh_stream)
    corpus_x5 = _join(wh_aug, wh_stream, _repeat_corpus_negatives(clips, wh, 5))
    variants: dict[str, tuple[Recipe, CropFeatures]] = {
        "logreg-c0.05": (Recipe("logreg-c0.05", head.features, "logreg", {"C": 0.05}), with_streams),
        "logreg-c0.01": (Recipe("logreg-c0.01", head.features, "logreg", {"C": 0.01}), with_streams),
        "logreg-c0.005-corpus-negatives-x5": (Recipe("logreg-c0.005", head.features, "logreg", {"C": 0.005}),
                                              corpus_x5),
        "svm-c3": (Recipe("svm-c3", head.features, "svm", {"C": 3.0}), with_streams),
    }
    results: dict[str, Any] = {}
    for name, (recipe, augmented) in variants.items():
        if name not in args.variants:
            continue
        t0 = time.time()
        streams = score_validation_windows(clips, windows, cheap, band, band_aug, recipe, wh, augmented)
        cv = choose_backbone_threshold(streams)
        results[name] = {**cv, "wall_s": round(time.time() - t0, 1)}
        print(f"{name}: chosen {cv['threshold']} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        for k, v in cv["by_threshold"].items():
            q = v["by_subset"]["original"]
            print(f"  {k:>5} F1 {v['mean_clip_f1']:.3f} FA/h {v['false_alerts_per_hour']} quiet backgrounds "
                  f"{q['quiet_background']['flagged']}/{q['quiet_background']['n']} scream calls "
                  f"{q['scream_call']['flagged']}/{q['scream_call']['n']}", file=sys.stderr, flush=True)
    save("scream_fusion", {
        "method": __doc__.split("Method. ")[1].split("    .venv")[0].strip(),
        "cheap_recipe": cheap.name, "head_features": dict(emotion.manifest.features),
        "results": results, "total_wall_s": round(time.time() - t_all, 1),
    }, "python benchmarks/scream_fusion.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
