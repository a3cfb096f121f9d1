"""RAVDESS accuracy of every model family: speaker-independent 6-fold vs random 6-fold, one run.

    .venv/bin/python benchmarks/accuracy.py                      # all recipes
    .venv/bin/python benchmarks/accuracy.py --recipes whisper-logreg classic-mlp

The speaker-independent folds hold out actors 1-4, 5-8, ..., 21-24; the random folds are
stratified by label and mix every actor into train and test (the leak the hobby projects
reported). Results go to benchmarks/results/accuracy.json (a row per recipe, replaced when that
recipe is re-run, each with its own date and commit); make_report.py renders docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, RESULTS, commit, corpus_or_exit, save
from vocalis.corpora import load_corpus
from vocalis.training.cv import cross_validate, featurize
from vocalis.training.recipes import RECIPES, TORCH_HEADS, get_recipe

ORDER = ["classic-mlp", "classic-logreg", "classicplus-logreg", "classic-svm", "classic-cnn1d", "logmel-cnn2d", "logmel-crnn",
         "whisper-logreg", "fusion-logreg", "whisper-layers-logreg", "whisper-voiced-logreg",
         "whisper-voiced-aug-logreg", "whisper-span-aug-logreg"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--recipes", nargs="*", default=[r for r in ORDER if r in RECIPES])
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--splits", nargs="*", default=["speaker", "random"])
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for the PyTorch recipes (their own setting otherwise)")
    args = ap.parse_args()
    corpus = load_corpus(corpus_or_exit("ravdess", args.data))
    previous = RESULTS / "accuracy.json"
    rows = json.loads(previous.read_text())["rows"] if previous.is_file() else []
    for name in args.recipes:
        recipe = get_recipe(name)
        if args.threads and recipe.head in TORCH_HEADS:
            recipe = dataclasses.replace(recipe, params={**recipe.params, "threads": args.threads})
        t0 = time.perf_counter()
        data = featurize(corpus, recipe)
        t_feat = time.perf_counter() - t0
        old = next((r for r in rows if r["recipe"] == name), {})
        row = {**{k: v for k, v in old.items() if k in ("speaker", "random")},  # splits not re-run are kept
               "recipe": name, "description": recipe.description, "features_s": round(t_feat, 1),
               "date": dt.date.today().isoformat(), "commit": commit()}
        for by in args.splits:
            t0 = time.perf_counter()
            res = cross_validate(corpus, recipe, folds=args.folds, by=by, data=data)
            row[by] = {"wa": res["wa"], "ua": res["ua"], "macro_f1": res["macro_f1"], "ece": res["ece"],
                       "split": res["split"], "folds": res["folds"], "fit_s": round(time.perf_counter() - t0, 1)}
            print(f"{name:16} {by:8} WA {res['wa']:.3f} UA {res['ua']:.3f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        # re-read: another run may have saved rows of other recipes since this one started
        rows = json.loads(previous.read_text())["rows"] if previous.is_file() else rows
        rows = [r for r in rows if r["recipe"] != name] + [row]
        save("accuracy", {"corpus": "ravdess", "folds": args.folds, "rows": rows},
             "python benchmarks/accuracy.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
