"""Personalisation on simulated users: RAVDESS actors enrol k clips per mood, global vs personalised UA.

    .venv/bin/python benchmarks/personalisation.py                 # all 24 actors, k = 1 3 5, 3 seeds
    .venv/bin/python benchmarks/personalisation.py --actors 1 2 3 --seeds 1

For each actor A (a simulated user): the global model is the default recipe's head (cached
whisper-layers features, ``recipe.estimator()``) trained on the OTHER 23 actors, i.e. a
leave-one-speaker-out fold. A enrols k clips per class (seeded draw; at most n-1 per class so every
class keeps a test clip: RAVDESS has 4 neutral clips per actor, so k = 5 enrols 3 neutral ones); the
rest of A's clips are the test set. Reported: unweighted accuracy (UA, mean per-class recall) over
the 8 classes, and over positive/negative valence (neutral excluded; the predicted side is the sign
of the probability-weighted valence, as the product reports it), for

- ``global``: the global model alone;
- ``norm``: the global model on speaker-normalised embeddings (``x - user mean + population mean``);
- ``head``: the personal ridge head alone (over the enrolled classes);
- ``personal``: what Vocalis uses, ``(1 - w) p_norm + w p_head`` with ``w = m / (m + k0)``, then the
  personal temperature fitted on leave-one-out predictions of the enrolled clips.

Calibration (ECE, 15 bins, top-class confidence, test clips pooled over actors and seeds): as in
the product, the global model is temperature-calibrated on held-out speakers: actor A's global
model gets the temperature that fits the pooled leave-one-actor-out predictions of the OTHER
actors (so A's test clips never tune it). Reported: ``ece_global_raw`` (no temperature),
``ece_global``, ``ece_blend`` (the personal blend before its own temperature) and ``ece_personal``
(served). Results written before this column existed lack the ``ece_*`` keys; make_report.py
prints "–" for them.

The personal model's hyper-parameters (alpha 0.1, beta 3, k0 2) were picked on actors
1, 4, 7, ..., 22 with this protocol; the table also reports the other 16 actors alone.
Results: benchmarks/results/personalisation.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, corpus_or_exit, save
from vocalis.corpora import load_corpus
from vocalis.labels import valence_arousal
from vocalis.training.cv import featurize
from vocalis.training.metrics import expected_calibration_error, fit_temperature
from vocalis.training.recipes import get_recipe
from vocalis.wellbeing.personal import PersonalModel, apply_temperature

TUNING_ACTORS = {1, 4, 7, 10, 13, 16, 19, 22}
METHODS = ("global", "norm", "head", "personal")


def ravdess_features(data: Path, recipe: Any) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """RAVDESS under ``data`` through ``recipe``'s features: (X, y, labels, actor of every clip)."""
    d = featurize(load_corpus(corpus_or_exit("ravdess", data)), recipe, workers=1)
    return np.stack(d.feats).astype(np.float64), d.y, d.labels, np.array([int(g) for g in d.groups])


def ua(true: np.ndarray, pred: np.ndarray) -> float:
    """Unweighted accuracy: mean recall over the classes present in ``true``."""
    return float(np.mean([np.mean(pred[true == c] == c) for c in np.unique(true)]))


def valence_ua(proba: np.ndarray, y: np.ndarray, labels: list[str]) -> float:
    """UA of positive vs negative valence (neutral clips excluded; predicted side = sign of valence)."""
    true_v = np.array([np.sign(valence_arousal({labels[i]: 1.0})[0]) for i in y])
    keep = true_v != 0
    pred_v = np.array([1.0 if valence_arousal(dict(zip(labels, p)))[0] >= 0 else -1.0 for p in proba])
    return ua(true_v[keep], pred_v[keep])


def loso_global_models(recipe: Any, X: np.ndarray, y: np.ndarray, actor: np.ndarray, actors: list[int],
                       t0: float) -> tuple[dict[int, Any], dict[int, np.ndarray], float]:
    """Each actor's leave-one-actor-out global model, its raw predictions on that actor, and the
    total fitting time."""
    models: dict[int, Any] = {}
    oof: dict[int, np.ndarray] = {}
    t_fit = 0.0
    for a in actors:
        t1 = time.perf_counter()
        est = recipe.estimator(seed=0)
        est.fit(X[actor != a], y[actor != a])
        t_fit += time.perf_counter() - t1
        models[a], oof[a] = est, est.predict_proba(X[actor == a])
        print(f"actor {a:2d} global model fitted ({time.perf_counter() - t0:.0f} s)", flush=True)
    return models, oof, t_fit


def held_out_temperature(oof: dict[int, np.ndarray], y: np.ndarray, actor: np.ndarray, a: int,
                         actors: list[int]) -> float:
    """Actor ``a``'s global temperature, fitted on the OTHER actors' held-out predictions."""
    others = [b for b in actors if b != a]
    if not others:
        return 1.0
    return fit_temperature(np.concatenate([oof[b] for b in others]), np.concatenate([y[actor == b] for b in others]))


def draw_enrolment(ya: np.ndarray, classes: list[int], k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` clips of each class in ``classes`` (at most n - 1, so each keeps a test clip)."""
    enrol: list[int] = []
    for c in classes:
        idx = np.flatnonzero(ya == c)
        rng.shuffle(idx)
        enrol += idx[: min(k, len(idx) - 1)].tolist()
    return np.array(enrol)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--actors", type=int, nargs="*", default=None, help="Actors to simulate (default all).")
    ap.add_argument("--ks", type=int, nargs="*", default=[1, 3, 5])
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    recipe = get_recipe()
    t0 = time.perf_counter()
    X, y, labels, actor = ravdess_features(args.data, recipe)
    actors = args.actors or sorted(set(actor.tolist()))
    # pass 1: each actor's leave-one-actor-out global model and its raw predictions on that actor
    models, oof, t_fit = loso_global_models(recipe, X, y, actor, actors, t0)
    # per (k, method, metric): list of per-(actor, seed) results; per (k, method): pooled (proba, y) for ECE
    acc: dict[tuple[int, str, str], list[tuple[int, float]]] = {}
    pooled: dict[tuple[int, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    temps: dict[int, list[float]] = {}
    global_t: dict[int, float] = {}
    for a in actors:
        est = models[a]
        t_a = global_t[a] = held_out_temperature(oof, y, actor, a, actors)

        def g(z: np.ndarray, est: Any = est, t_a: float = t_a) -> np.ndarray:
            return apply_temperature(est.predict_proba(z), t_a)

        scaler = est.steps[0][1]
        ref_mean, ref_scale = np.asarray(scaler.mean_), np.asarray(scaler.scale_)
        Xa, ya = X[actor == a], y[actor == a]
        for seed in range(args.seeds):
            rng = np.random.default_rng(1000 * seed + a)
            for k in args.ks:
                e = draw_enrolment(ya, list(range(len(labels))), k, rng)
                te = np.setdiff1d(np.arange(len(ya)), e)
                pm = PersonalModel(labels).fit(Xa[e], [labels[i] for i in ya[e]], reference_mean=ref_mean,
                                               reference_scale=ref_scale, global_proba=g)
                temps.setdefault(k, []).append(pm.temperature_)
                p_raw = est.predict_proba(Xa[te])
                p_global = g(Xa[te])
                p_norm = g(pm.adapt(Xa[te]))
                p_head = np.zeros_like(p_norm)
                p_head[:, [labels.index(c) for c in pm.classes_]] = pm.user_proba(Xa[te])
                p_pers = pm.predict_proba(Xa[te], p_norm)
                p_blend = apply_temperature(p_pers, 1.0 / pm.temperature_)  # undo the personal temperature
                for name, p in zip(METHODS, (p_global, p_norm, p_head, p_pers)):
                    acc.setdefault((k, name, "ua8"), []).append((a, ua(ya[te], p.argmax(1))))
                    acc.setdefault((k, name, "valence"), []).append((a, valence_ua(p, ya[te], labels)))
                for name, p in (("global_raw", p_raw), ("global", p_global), ("blend", p_blend),
                                ("personal", p_pers)):
                    pooled.setdefault((k, name), []).append((p, ya[te]))
        print(f"actor {a:2d} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    def mean(k: int, name: str, metric: str, subset: set[int] | None = None) -> float:
        vals = [v for a, v in acc[(k, name, metric)] if subset is None or a in subset]
        return round(float(np.mean(vals)), 4) if vals else float("nan")

    def ece(k: int, name: str) -> float:
        ps, ys = zip(*pooled[(k, name)])
        return expected_calibration_error(np.concatenate(ps), np.concatenate(ys))

    held_out = set(actors) - TUNING_ACTORS
    rows: list[dict[str, Any]] = []
    for k in args.ks:
        row: dict[str, Any] = {"k": k, "weight": round(k / (k + 2.0), 3)}
        for metric in ("ua8", "valence"):
            for name in METHODS:
                row[f"{metric}_{name}"] = mean(k, name, metric)
            row[f"{metric}_personal_untuned_actors"] = mean(k, "personal", metric, held_out)
            row[f"{metric}_global_untuned_actors"] = mean(k, "global", metric, held_out)
        for name in ("global_raw", "global", "blend", "personal"):
            row[f"ece_{name}"] = ece(k, name)
        row["personal_temperature_median"] = round(float(np.median(temps[k])), 3)
        row["personal_calibrated_share"] = round(float(np.mean([t != 1.0 for t in temps[k]])), 3)
        rows.append(row)
    lines = [
        "| k per class | w | UA8 global | UA8 norm only | UA8 head only | **UA8 personal** | gain | "
        "valence UA global | **valence UA personal** | gain | UA8 gain, 16 untuned actors | "
        "ECE global | ECE blend | **ECE personal** |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['k']} | {r['weight']:.2f} | {r['ua8_global']:.3f} | {r['ua8_norm']:.3f} | {r['ua8_head']:.3f} | "
            f"**{r['ua8_personal']:.3f}** | {100 * (r['ua8_personal'] - r['ua8_global']):+.1f} | "
            f"{r['valence_global']:.3f} | **{r['valence_personal']:.3f}** | "
            f"{100 * (r['valence_personal'] - r['valence_global']):+.1f} | "
            f"{100 * (r['ua8_personal_untuned_actors'] - r['ua8_global_untuned_actors']):+.1f} | "
            f"{r['ece_global']:.3f} | {r['ece_blend']:.3f} | **{r['ece_personal']:.3f}** |"
        )
    table = "\n".join(lines)
    print(table)
    payload = {
        "corpus": "ravdess", "recipe": recipe.name, "actors": actors, "seeds": args.seeds, "ks": args.ks,
        "protocol": "leave-one-actor-out global head (23 other actors); the actor enrols k clips per class "
                    "(max n-1), tested on the rest; UA over 8 classes and over +/- valence (neutral excluded)",
        "personal_model": PersonalModel(labels).get_config(),
        "tuning_actors": sorted(TUNING_ACTORS),
        "rows": rows, "table": table,
        "global_temperatures": {str(a): t for a, t in global_t.items()},
        "calibration": "ECE, 15 bins, top-class confidence, test clips pooled over actors and seeds; the global "
                       "temperature of actor A is fitted on the other actors' leave-one-actor-out predictions; the "
                       "personal temperature on leave-one-out predictions of A's enrolled clips",
        "global_fit_s": round(t_fit, 1), "total_s": round(time.perf_counter() - t0, 1),
    }
    path = save("personalisation", payload, "python benchmarks/personalisation.py " + " ".join(sys.argv[1:]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
