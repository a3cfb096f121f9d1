"""Cross-validation (speaker-independent by default), training of bundles, and evaluation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.bundle.manifest import Manifest
from vocalis.bundle.runtime import Bundle, save_bundle
from vocalis.corpora.splits import random_folds, speaker_folds
from vocalis.corpora.types import Corpus
from vocalis.errors import ConfigError, DataError
from vocalis.models.heads import full_proba
from vocalis.training.extract import extract_augmented, extract_items
from vocalis.training.metrics import expected_calibration_error, fit_temperature, scores
from vocalis.training.recipes import Recipe, export_onnx, fit_estimator, stack_inputs

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``."""

SPLITS = ("speaker", "random")


@dataclass
class Features:
    """Features of a corpus, aligned with its items."""

    corpus: Corpus
    feats: list[np.ndarray]
    labels: list[str]  # class order
    y: np.ndarray  # int index into labels
    groups: np.ndarray  # speaker ids used for splitting
    input_kind: str

    @property
    def corpora(self) -> list[str]:
        return [u.corpus or self.corpus.name for u in self.corpus.items]


def _counter(progress: Progress | None, stage: str, total: int) -> Callable[[int], None] | None:
    """Adapt ``progress(stage, done, total)`` to a per-item ``tick(k)`` callback."""
    if progress is None:
        return None
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        progress(stage, done, total)

    return tick


def speaker_groups(corpus: Corpus) -> np.ndarray:
    """Plain speaker ids for one corpus (so RAVDESS sorts 1..24); ``corpus:speaker`` across several."""
    multi = len({u.corpus for u in corpus.items}) > 1
    return np.array([u.speaker_key if multi else u.speaker for u in corpus.items], dtype=object)


def featurize(corpus: Corpus, recipe: Recipe, *, workers: int = 2, use_cache: bool = True,
              progress: Progress | None = None) -> Features:
    if len(corpus) == 0:
        raise DataError(f"corpus {corpus.name!r} is empty")
    ex = recipe.extractor()
    labels = corpus.labels
    if len(labels) < 2:
        raise DataError(f"labels={labels} must hold at least 2 classes to train a classifier")
    feats = extract_items(ex, corpus.items, workers=workers, use_cache=use_cache,
                          progress=_counter(progress, "features", len(corpus)))
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([index[u.label] for u in corpus.items])
    return Features(corpus, feats, labels, y, speaker_groups(corpus), ex.output)


def training_set(recipe: Recipe, data: Features, train_idx: np.ndarray, seed: int = 0, workers: int = 2,
                 use_cache: bool = True, progress: Progress | None = None
                 ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Features, labels and groups of the training items ``train_idx``, plus their augmented copies
    when the recipe augments (never pass test items)."""
    if recipe.augment:
        return _augmented(recipe, data, train_idx, seed, workers, use_cache, progress)
    return [data.feats[i] for i in train_idx], data.y[train_idx], data.groups[train_idx]


def _augmented(recipe: Recipe, data: Features, train_idx: np.ndarray, seed: int, workers: int,
               use_cache: bool = True, progress: Progress | None = None
               ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The TRAINING fold (never the test fold) followed by its augmented copies, featurised.

    Copies are seeded per clip (see :func:`extract_augmented`), so a clip's copies are the same
    in every fold it trains in and are featurised once per corpus, then read from the cache.
    """
    assert recipe.augment is not None
    items = [data.corpus.items[i] for i in train_idx]
    copies = extract_augmented(recipe.extractor(), items, recipe.augment, seed=seed, use_cache=use_cache,
                               workers=workers,
                               progress=_counter(progress, "augment", len(items) * int(recipe.augment.get("copies", 1))))
    feats = [data.feats[i] for i in train_idx] + [f for copy in copies for f in copy]
    reps = 1 + len(copies)
    return feats, np.tile(data.y[train_idx], reps), np.tile(data.groups[train_idx], reps)


def cross_validate(
    corpus: Corpus,
    recipe: Recipe,
    *,
    folds: int = 6,
    by: str = "speaker",
    seed: int = 0,
    workers: int = 2,
    use_cache: bool = True,
    progress: Progress | None = None,
    data: Features | None = None,
) -> dict[str, Any]:
    """K-fold CV. ``by="speaker"`` (default) keeps every speaker on one side of each split.

    Returns per-fold and mean WA/UA, pooled out-of-fold scores, ECE and a fitted temperature.
    """
    if by not in SPLITS:
        raise ConfigError(f"by={by!r} must be one of {SPLITS}")
    data = data or featurize(corpus, recipe, workers=workers, use_cache=use_cache, progress=progress)
    n = len(data.feats)
    if by == "speaker":
        splits = speaker_folds(data.groups.tolist(), folds, data.corpora)
        split_desc = (f"speaker-independent: {len(splits)} folds, no speaker in both train and test"
                      + (" (leave-one-speaker-out)" if len(splits) != folds else ""))
    else:
        splits = random_folds(n, folds, [str(v) for v in data.y], seed=seed)
        split_desc = f"random stratified {folds}-fold: speakers appear in train and test (leaky)"
    k = len(data.labels)
    oof = np.zeros((n, k))
    fold_rows = []
    for fi, (tr, te, test_speakers) in enumerate(splits):
        if progress:
            progress("folds", fi, len(splits))
        tr_feats, tr_y, tr_g = training_set(recipe, data, tr, seed, workers, use_cache, progress)
        est = recipe.estimator(seed=seed)
        fit_estimator(est, stack_inputs(tr_feats, data.input_kind), tr_y, tr_g)
        p = full_proba(est, stack_inputs([data.feats[i] for i in te], data.input_kind), k)
        oof[te] = p
        pred = [data.labels[j] for j in p.argmax(axis=1)]
        true = [data.labels[j] for j in data.y[te]]
        s = scores(true, pred, data.labels)
        fold_rows.append({"test_speakers": test_speakers, "n": s["n"], "wa": s["wa"], "ua": s["ua"],
                          "macro_f1": s["macro_f1"]})
    if progress:
        progress("folds", len(splits), len(splits))
    pooled = scores([data.labels[j] for j in data.y], [data.labels[j] for j in oof.argmax(axis=1)], data.labels)
    temp = fit_temperature(oof, data.y)
    logp = np.log(np.clip(oof, 1e-12, 1)) / temp
    cal = np.exp(logp - logp.max(axis=1, keepdims=True))
    cal /= cal.sum(axis=1, keepdims=True)
    return {
        "recipe": recipe.name,
        "corpus": corpus.name,
        "split": split_desc,
        "by": by,
        "folds": fold_rows,
        "wa": round(float(np.mean([f["wa"] for f in fold_rows])), 4),
        "ua": round(float(np.mean([f["ua"] for f in fold_rows])), 4),
        "macro_f1": round(float(np.mean([f["macro_f1"] for f in fold_rows])), 4),
        "pooled": {key: pooled[key] for key in ("n", "wa", "ua", "macro_f1", "labels", "confusion")},
        "ece": expected_calibration_error(oof, data.y),
        "temperature": temp,
        "ece_calibrated": expected_calibration_error(cal, data.y),
        "_oof": oof,
    }


def train_bundle(
    corpus: Corpus,
    recipe: Recipe,
    out: str | Path,
    *,
    cv_folds: int = 6,
    seed: int = 0,
    workers: int = 2,
    use_cache: bool = True,
    progress: Progress | None = None,
    name: str | None = None,
) -> tuple[Path, Manifest]:
    """Train ``recipe`` on all of ``corpus`` and write a bundle.

    With ``cv_folds >= 2`` a speaker-independent CV runs first: its scores go into the manifest
    (with their split) and its out-of-fold probabilities fit the calibration temperature.
    """
    data = featurize(corpus, recipe, workers=workers, use_cache=use_cache, progress=progress)
    metrics: dict[str, Any] = {}
    calibration: dict[str, float] = {}
    if cv_folds >= 2 and len(set(data.groups.tolist())) >= 2:
        res = cross_validate(corpus, recipe, folds=cv_folds, by="speaker", seed=seed, workers=workers,
                             progress=progress, data=data)
        res.pop("_oof")
        metrics["cv"] = {k: res[k] for k in ("split", "wa", "ua", "macro_f1", "folds", "ece", "ece_calibrated")}
        calibration["temperature"] = res["temperature"]
    feats, y, groups = training_set(recipe, data, np.arange(len(data.feats)), seed, workers, use_cache, progress)
    if progress:
        progress("fit", 0, 1)
    est = recipe.estimator(seed=seed)
    fit_estimator(est, stack_inputs(feats, data.input_kind), y, groups)
    if progress:
        progress("fit", 1, 1)
    n_features = int(data.feats[0].shape[0]) if data.input_kind == "vector" else None
    onnx_bytes = export_onnx(recipe, est, n_features)
    manifest = Manifest(
        labels=data.labels,
        features=recipe.extractor().get_config(),
        input_kind=data.input_kind,
        name=name or Path(out).stem,
        recipe=recipe.to_dict(),
        training={
            "corpora": sorted({u.corpus or corpus.name for u in corpus.items}),
            "n": len(corpus),
            "speakers": len(set(data.groups.tolist())),
            "label_counts": corpus.label_counts(),
            "seed": seed,
        },
        metrics=metrics,
        calibration=calibration,
    )
    path = save_bundle(out, manifest, onnx_bytes)
    return path, manifest


def evaluate_bundle(
    bundle: Bundle,
    corpus: Corpus,
    *,
    restrict_labels: bool = False,
    workers: int = 2,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score a bundle on a corpus. ``restrict_labels`` drops model classes the data lacks before the argmax
    (the cross-corpus protocol); otherwise data labels unknown to the model are an error."""
    model_labels = bundle.labels
    data_labels = corpus.labels
    unknown = [lab for lab in data_labels if lab not in model_labels]
    if unknown and not restrict_labels:
        raise DataError(
            f"data labels {unknown} are not among the model's labels {model_labels}; "
            "map them with --label-map or use --restrict-labels to score only shared labels"
        )
    items = [u for u in corpus.items if u.label in model_labels]
    if not items:
        raise DataError(f"no utterance of {corpus.name!r} has a label the model knows ({model_labels})")
    feats = extract_items(bundle.extractor, items, workers=workers, use_cache=use_cache,
                          progress=_counter(progress, "features", len(items)))
    proba = np.concatenate([bundle.predict_proba_features(f[None]) for f in feats]) if bundle.manifest.input_kind == "frames" \
        else bundle.predict_proba_features(np.stack(feats))
    scored: Sequence[str] = model_labels
    if restrict_labels:
        present = {u.label for u in items}
        keep = [i for i, lab in enumerate(model_labels) if lab in present]
        proba = proba[:, keep]
        scored = [model_labels[i] for i in keep]
    pred = [scored[j] for j in proba.argmax(axis=1)]
    true = [u.label for u in items]
    labels_for_scores = [lab for lab in scored if lab in set(true)] if restrict_labels else list(scored)
    s = scores(true, pred, labels_for_scores)
    out = {k: s[k] for k in ("n", "wa", "ua", "macro_f1", "labels", "confusion")}
    out["per_class"] = s["per_class"]
    out["restricted"] = bool(restrict_labels)
    out["skipped"] = len(corpus.items) - len(items)
    return out
