"""Personalisation when a user enrols only some moods (RAVDESS actors as users, leave-one-actor-out).

    .venv/bin/python benchmarks/personalisation_partial.py            # all 24 actors, 2 seeds, k = 4

The protocol of ``benchmarks/personalisation.py`` (the global model of each actor trained on the other
23; its temperature fitted on their held-out predictions), except that the simulated user enrols
k clips of only the moods in each subset below and is tested on all their other clips, every mood.
Reported, 8-class UA (mean per-class recall), valence UA, and the accuracy on the test clips of the
enrolled moods and of the others, for

- ``global``: the global model alone;
- ``personal``: what Vocalis serves (:class:`vocalis.wellbeing.personal.PersonalModel`);
- ``personal_shifted``: the same, but with the speaker shift (``x - user mean + population mean``)
  applied whatever the enrolled moods, as Vocalis did before session 9.

Results: benchmarks/results/personalisation_partial.json (and the table in benchmarks/notes.md).
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

from _common import DATA, save
from personalisation import (
    draw_enrolment,
    held_out_temperature,
    loso_global_models,
    ravdess_features,
    ua,
    valence_ua,
)
from vocalis.training.recipes import get_recipe
from vocalis.wellbeing.personal import PersonalModel, apply_temperature

SUBSETS = [("neutral",), ("neutral", "calm"), ("happy", "sad"), ("angry", "calm"),
           ("happy", "sad", "neutral", "angry"), None]  # None = every mood
VARIANTS = ("global", "personal", "personal_shifted")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--actors", type=int, nargs="*", default=None)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    recipe = get_recipe()
    t0 = time.perf_counter()
    X, y, labels, actor = ravdess_features(args.data, recipe)
    actors = args.actors or sorted(set(actor.tolist()))
    models, oof, _ = loso_global_models(recipe, X, y, actor, actors, t0)
    res: dict[str, dict[str, list[list[float]]]] = {}
    for a in actors:
        est, t_a = models[a], held_out_temperature(oof, y, actor, a, actors)

        def g(z: np.ndarray, est: Any = est, t_a: float = t_a) -> np.ndarray:
            return apply_temperature(est.predict_proba(z), t_a)

        scaler = est.steps[0][1]
        ref_mean, ref_scale = np.asarray(scaler.mean_), np.asarray(scaler.scale_)
        Xa, ya = X[actor == a], y[actor == a]
        for seed in range(args.seeds):
            rng = np.random.default_rng(1000 * seed + a)
            for subset in SUBSETS:
                moods = list(subset) if subset else list(labels)
                e = draw_enrolment(ya, [labels.index(m) for m in moods], args.k, rng)
                te = np.setdiff1d(np.arange(len(ya)), e)
                pm = PersonalModel(labels).fit(Xa[e], [labels[i] for i in ya[e]], reference_mean=ref_mean,
                                               reference_scale=ref_scale, global_proba=g)
                shifted = g(Xa[te] - pm.mean_ + pm.reference_mean_)
                probs = {"global": g(Xa[te]), "personal": pm.predict_proba(Xa[te], g(pm.adapt(Xa[te]))),
                         "personal_shifted": pm.predict_proba(Xa[te], shifted)}
                enrolled = np.isin(ya[te], [labels.index(m) for m in moods])
                key = "+".join(subset) if subset else "every mood"
                for name, p in probs.items():
                    pred = p.argmax(1)
                    res.setdefault(key, {}).setdefault(name, []).append([
                        ua(ya[te], pred), valence_ua(p, ya[te], labels),
                        float(np.mean(pred[enrolled] == ya[te][enrolled])),
                        float(np.mean(pred[~enrolled] == ya[te][~enrolled])) if (~enrolled).any() else float("nan")])
        print(f"actor {a:2d} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    table = {key: {name: dict(zip(("ua8", "valence", "acc_enrolled_moods", "acc_other_moods"),
                                  [round(float(v), 3) for v in np.nanmean(np.array(rows), axis=0)]))
                   for name, rows in per.items()} for key, per in res.items()}
    for key, per in table.items():
        print(key)
        for name, m in per.items():
            print(f"  {name:17s} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))
    save("personalisation_partial", {
        "method": "RAVDESS, leave-one-actor-out global model; each actor enrols k clips of the listed moods "
                  "and is tested on all its other clips", "k": args.k, "seeds": args.seeds, "actors": actors,
        "split": "speaker-independent (leave-one-actor-out)", "results": table},
         "python benchmarks/personalisation_partial.py")


if __name__ == "__main__":
    main()
