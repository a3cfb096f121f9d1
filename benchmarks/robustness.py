"""Robustness of the emotion model: noise and telephone channel, cross-corpus transfer, calibration.

    .venv/bin/python benchmarks/robustness.py                                 # default recipe
    .venv/bin/python benchmarks/robustness.py --recipes whisper-layers-logreg classic-logreg
    .venv/bin/python benchmarks/robustness.py --conditions white-10 telephone  # a subset

1. Noise/channel: RAVDESS, 6 speaker-disjoint folds (actors 1-4, 5-8, ..., 21-24). The head is
   trained on the CLEAN training folds (cached features; plus their augmented copies when the recipe
   augments, as in `vocalis cv`); the held-out fold is corrupted (white or
   pink noise at a given SNR, seeded per clip; or the telephone band: 8 kHz, 300-3400 Hz band-pass,
   back to 16 kHz) and featurised uncached. WA/UA are means over the folds.
2. Cross-corpus: train on all of RAVDESS, test on all of TESS, and the reverse. Two protocols:
   "shared" restricts both sides to the 7 labels they share (RAVDESS drops calm); "restrict" trains
   on the source's full label set and drops the model classes the target lacks before the argmax
   (the `vocalis evaluate --restrict-labels` protocol, run through train_bundle/evaluate_bundle).
   Valence: positive (happy, calm, surprise) vs negative (sad, angry, fear, disgust), neutral clips
   excluded; the decision is the larger of the summed positive / negative class probabilities.
3. Calibration: ECE (15 bins) of the pooled out-of-fold probabilities of the speaker-independent
   6-fold CV, before and after one temperature fitted on those probabilities (optimistic: the
   temperature is fitted and scored on the same predictions).

Results go to benchmarks/results/robustness.json (a result per recipe, replaced when that recipe
is re-run, each with its own date and commit); make_report.py renders docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, RESULTS, commit, corpus_or_exit, save
from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import load_audio, resample
from vocalis.bundle.runtime import load_bundle
from vocalis.corpora import load_corpus
from vocalis.corpora.splits import speaker_folds
from vocalis.corpora.types import Corpus
from vocalis.labels import VALENCE_AROUSAL
from vocalis.models.heads import full_proba
from vocalis.training.cv import (
    Features,
    cross_validate,
    evaluate_bundle,
    featurize,
    train_bundle,
    training_set,
)
from vocalis.training.extract import extract_items, extract_signals
from vocalis.training.metrics import scores
from vocalis.training.recipes import DEFAULT_RECIPE, Recipe, fit_estimator, get_recipe, stack_inputs

CONDITIONS = ["white-20", "white-10", "white-5", "pink-20", "pink-10", "pink-5", "telephone"]
POSITIVE = sorted(lab for lab, (v, _) in VALENCE_AROUSAL.items() if v > 0)
NEGATIVE = sorted(lab for lab, (v, _) in VALENCE_AROUSAL.items() if v < 0)


# --- corruptions --------------------------------------------------------------------------------

def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f power) noise by shaping white noise in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1] if n > 1 else 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


def add_noise(x: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add noise at ``snr_db`` relative to the power of the whole clip (silences included)."""
    noise = rng.standard_normal(len(x)) if kind == "white" else _pink(len(x), rng)
    p_sig = float(np.mean(np.square(x, dtype=np.float64))) or 1e-12
    noise *= np.sqrt(p_sig / (10 ** (snr_db / 10)) / float(np.mean(noise ** 2)))
    return (x + noise).astype(np.float32)


def telephone(x: np.ndarray) -> np.ndarray:
    """Narrow-band telephone channel: 8 kHz, 300-3400 Hz band-pass (4th-order Butterworth), back to 16 kHz."""
    from scipy.signal import butter, sosfiltfilt

    y = resample(x, SAMPLE_RATE, 8000)
    sos = butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos")
    y = sosfiltfilt(sos, y).astype(np.float32)
    return resample(y, 8000, SAMPLE_RATE)[: len(x)]


def corrupt(x: np.ndarray, cond: str, seed: int) -> np.ndarray:
    if cond == "telephone":
        return telephone(x)
    kind, snr = cond.split("-")
    if kind not in ("white", "pink"):
        raise SystemExit(f"condition={cond!r} must be telephone, white-<dB> or pink-<dB>")
    return add_noise(x, kind, float(snr), np.random.default_rng(seed))


# --- 1. noise and channel -----------------------------------------------------------------------

def noise_channel(recipe: Recipe, data: Features, conditions: list[str], folds: int, workers: int,
                  seed: int) -> dict[str, Any]:
    ex = recipe.extractor()
    k = len(data.labels)
    splits = speaker_folds(data.groups.tolist(), folds, data.corpora)
    per: dict[str, list[dict[str, float]]] = {c: [] for c in ["clean", *conditions]}
    t_extract = 0.0
    for fi, (tr, te, spk) in enumerate(splits):
        est = recipe.estimator(seed=seed)
        tr_feats, tr_y, tr_g = training_set(recipe, data, tr, seed, workers)  # + augmented copies if the recipe has them
        fit_estimator(est, stack_inputs(tr_feats, data.input_kind), tr_y, tr_g)
        true = [data.labels[j] for j in data.y[te]]

        def score(feats: list[np.ndarray], true: list[str] = true, est: Any = est) -> dict[str, float]:
            p = full_proba(est, stack_inputs(feats, data.input_kind), k)
            s = scores(true, [data.labels[j] for j in p.argmax(axis=1)], data.labels)
            return {"wa": s["wa"], "ua": s["ua"]}

        per["clean"].append(score([data.feats[i] for i in te]))
        clean_sig = [load_audio(data.corpus.items[i].path, SAMPLE_RATE) for i in te] if conditions else []
        for ci, cond in enumerate(conditions):
            t0 = time.perf_counter()
            sig = [corrupt(x, cond, seed * 1_000_003 + ci * 10_007 + int(i)) for x, i in zip(clean_sig, te)]
            feats = extract_signals(ex, sig, SAMPLE_RATE, workers)
            t_extract += time.perf_counter() - t0
            per[cond].append(score(feats))
            print(f"  fold {fi + 1}/{len(splits)} (actors {','.join(spk)}) {cond:10} "
                  f"WA {per[cond][-1]['wa']:.3f} (clean {per['clean'][-1]['wa']:.3f}) "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    rows = [{"condition": c, "wa": round(float(np.mean([f["wa"] for f in v])), 4),
             "ua": round(float(np.mean([f["ua"] for f in v])), 4),
             "fold_wa": [round(f["wa"], 4) for f in v]} for c, v in per.items()]
    aug = " (plus their augmented copies)" if recipe.augment else ""
    return {"split": f"speaker-independent: {len(splits)} folds, train on clean training folds{aug}, "
                     "test on the corrupted held-out fold",
            "rows": rows, "extract_s": round(t_extract, 1)}


# --- 2. cross-corpus ----------------------------------------------------------------------------

def _valence(proba: np.ndarray, labels: list[str], true: list[str]) -> dict[str, Any]:
    pos = [i for i, lab in enumerate(labels) if lab in POSITIVE]
    neg = [i for i, lab in enumerate(labels) if lab in NEGATIVE]
    keep = [j for j, t in enumerate(true) if t in POSITIVE or t in NEGATIVE]
    t = np.array([true[j] in POSITIVE for j in keep])
    pred = proba[keep][:, pos].sum(axis=1) > proba[keep][:, neg].sum(axis=1)
    acc_pos = float(np.mean(pred[t])) if t.any() else float("nan")
    acc_neg = float(np.mean(~pred[~t])) if (~t).any() else float("nan")
    return {"n": len(keep), "acc": round(float(np.mean(pred == t)), 4),
            "balanced_acc": round((acc_pos + acc_neg) / 2, 4),
            "majority_baseline": round(float(max(t.mean(), 1 - t.mean())), 4)}


def _shared(src: Corpus, dst: Corpus, recipe: Recipe, seed: int, workers: int) -> dict[str, Any]:
    shared = [lab for lab in src.labels if lab in set(dst.labels)]
    a, b = src.restrict(shared), dst.restrict(shared)
    da = featurize(a, recipe, workers=workers)
    est = recipe.estimator(seed=seed)
    feats_a, y_a, g_a = training_set(recipe, da, np.arange(len(da.feats)), seed, workers)
    fit_estimator(est, stack_inputs(feats_a, da.input_kind), y_a, g_a)
    feats = extract_items(recipe.extractor(), b.items, workers=workers)
    p = full_proba(est, stack_inputs(feats, da.input_kind), len(da.labels))
    true = [u.label for u in b.items]
    s = scores(true, [da.labels[j] for j in p.argmax(axis=1)], da.labels)
    return {"labels": da.labels, "n_train": len(a), "n_test": s["n"], "wa": s["wa"], "ua": s["ua"],
            "macro_f1": s["macro_f1"], "confusion": s["confusion"], "valence": _valence(p, da.labels, true)}


def _restrict(src: Corpus, dst: Corpus, recipe: Recipe, seed: int, workers: int, tmp: Path) -> dict[str, Any]:
    path, _ = train_bundle(src, recipe, tmp / f"{src.name}.vocalis", cv_folds=0, seed=seed, workers=workers)
    bundle = load_bundle(path)
    r = evaluate_bundle(bundle, dst, restrict_labels=True, workers=workers)
    items = [u for u in dst.items if u.label in bundle.labels]
    feats = extract_items(bundle.extractor, items, workers=workers)
    p = bundle.predict_proba_features(np.stack(feats))
    present = {u.label for u in items}
    keep = [i for i, lab in enumerate(bundle.labels) if lab in present]
    val = _valence(p[:, keep], [bundle.labels[i] for i in keep], [u.label for u in items])
    return {"model_labels": bundle.labels, "scored_labels": r["labels"], "n_train": len(src), "n_test": r["n"],
            "skipped": r["skipped"], "wa": r["wa"], "ua": r["ua"], "macro_f1": r["macro_f1"],
            "confusion": r["confusion"], "valence": val}


def cross_corpus(rav: Corpus, tess: Corpus, recipe: Recipe, seed: int, workers: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for src, dst in ((rav, tess), (tess, rav)):
            for proto in ("shared", "restrict"):
                t0 = time.perf_counter()
                r = _shared(src, dst, recipe, seed, workers) if proto == "shared" \
                    else _restrict(src, dst, recipe, seed, workers, Path(td))
                rows.append({"train": src.name, "test": dst.name, "protocol": proto, **r})
                print(f"  {src.name} -> {dst.name} [{proto}] WA {r['wa']:.3f} UA {r['ua']:.3f} "
                      f"valence {r['valence']['acc']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


# --- report -------------------------------------------------------------------------------------

def markdown(results: list[dict[str, Any]]) -> str:
    out = []
    for res in results:
        when = f" (measured {res['date']}, `{res['commit']}`)" if res.get("date") else ""
        out.append(f"### `{res['recipe']}`{when}\n")
        nc = res.get("noise_channel")
        if nc:
            out.append(f"Noise/channel ({nc['split']}); mean over folds.\n")
            out.append("| test condition | WA | UA | ΔWA vs clean |")
            out.append("|---|---:|---:|---:|")
            clean = nc["rows"][0]["wa"]
            for row in nc["rows"]:
                out.append(f"| {row['condition']} | {row['wa']:.3f} | {row['ua']:.3f} | {row['wa'] - clean:+.3f} |")
            out.append("")
        cc = res.get("cross_corpus")
        if cc:
            out.append("Cross-corpus (train on all of one corpus, test on all of the other; speaker-disjoint "
                       "by construction).\n")
            out.append("| train -> test | protocol | labels scored | n test | WA | UA | valence acc | valence bal. acc "
                       "| valence majority |")
            out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
            for r in cc:
                v = r["valence"]
                nl = len(r.get("labels") or r.get("scored_labels") or [])
                out.append(f"| {r['train']} -> {r['test']} | {r['protocol']} | {nl} | {r['n_test']} | {r['wa']:.3f} | "
                           f"{r['ua']:.3f} | {v['acc']:.3f} | {v['balanced_acc']:.3f} | {v['majority_baseline']:.3f} |")
            out.append("")
        cal = res.get("calibration")
        if cal:
            out.append(f"Calibration ({cal['split']}): ECE {cal['ece']:.3f} -> {cal['ece_calibrated']:.3f} after "
                       f"temperature T = {cal['temperature']:.2f} (CV WA {cal['wa']:.3f}).\n")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--recipes", nargs="*", default=[DEFAULT_RECIPE])
    ap.add_argument("--conditions", nargs="*", default=CONDITIONS)
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], choices=["noise", "cross", "calibration"])
    args = ap.parse_args()
    rav = load_corpus(corpus_or_exit("ravdess", args.data))
    tess = load_corpus(corpus_or_exit("tess", args.data)) if "cross" not in args.skip else None
    new: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for name in args.recipes:
        recipe = get_recipe(name)
        print(f"{name}: features", flush=True)
        data = featurize(rav, recipe, workers=args.workers)
        res: dict[str, Any] = {"recipe": name, "description": recipe.description,
                               "date": dt.date.today().isoformat(), "commit": commit()}
        t0 = time.perf_counter()
        if "noise" not in args.skip:
            res["noise_channel"] = noise_channel(recipe, data, args.conditions, args.folds, args.workers, args.seed)
        if tess is not None:
            res["cross_corpus"] = cross_corpus(rav, tess, recipe, args.seed, args.workers)
        if "calibration" not in args.skip:
            cv = cross_validate(rav, recipe, folds=args.folds, by="speaker", seed=args.seed, data=data)
            res["calibration"] = {k: cv[k] for k in ("split", "wa", "ua", "ece", "temperature", "ece_calibrated")}
        res["seconds"] = round(time.perf_counter() - t0, 1)
        new.append(res)
        print(f"{name}: done in {res['seconds']:.0f} s", flush=True)
    previous = RESULTS / "robustness.json"  # read at the end: another run may have saved meanwhile
    old = json.loads(previous.read_text()) if previous.is_file() else {}
    results = [r for r in old.get("results", []) if r["recipe"] not in args.recipes]  # recipes not re-run are kept
    for r in results:
        r.setdefault("date", old.get("date", "")[:10])
        r.setdefault("commit", old.get("commit", ""))
    results += new
    md = markdown(results)
    print(md)
    save("robustness", {"corpus": "ravdess (+ tess for cross-corpus)", "folds": args.folds, "seed": args.seed,
                        "conditions": args.conditions, "positive": POSITIVE, "negative": NEGATIVE,
                        "total_s": round(time.perf_counter() - t_all, 1), "results": results, "markdown": md},
         "python benchmarks/robustness.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
