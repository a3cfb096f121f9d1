"""Which Whisper-encoder layers carry emotion? Speaker-independent RAVDESS sweep over layer choices.

    .venv/bin/python benchmarks/levers.py                 # float32 graph + int8 check of the best row, C = 0.05
    .venv/bin/python benchmarks/levers.py --cs 0.01 0.05 0.2 --top 2 3 --no-int8

Every configuration is a :class:`vocalis.features.whisper_onnx.WhisperLayers` vector (mean+std
pooled hidden states) + the ``logreg`` head, scored with ``cross_validate`` on the 6 speaker-disjoint
folds (actors 1-4, 5-8, ..., 21-24). The encoder runs once per clip: every layer's mean and std
pool are cached under ``$VOCALIS_CACHE_DIR/levers/`` and each configuration slices them (the
slicing is checked against ``WhisperLayers.__call__`` on a clip).

Choosing layers (and C) on the very folds that score them is optimistic, so every row is reported
and a "leave-fold-out selection" is added: for each test fold, the configuration (layer set, C)
with the best mean WA on the *other five* folds is picked and scored on the held-out fold. (Those
five folds' models were trained with the held-out speakers, as training data only; a fully nested
CV would refit inside each training split.) The CTranslate2 int8 default recipe (``whisper-logreg``)
is scored alongside as the reference.

Results: benchmarks/results/levers.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, corpus_or_exit, save
from vocalis.audio.io import load_audio
from vocalis.corpora import load_corpus
from vocalis.corpora.types import Corpus
from vocalis.features.whisper import WhisperEncoder
from vocalis.features.whisper_onnx import GRAPH_VERSION, WhisperLayers
from vocalis.training.cv import Features, cross_validate, featurize, speaker_groups
from vocalis.training.extract import cache_root
from vocalis.training.recipes import Recipe, get_recipe


def layer_pools(corpus: Corpus, quantized: bool, workers: int) -> np.ndarray:
    """``[N, L + 1, 2 * d]``: per clip and hidden state, the mean then the std over time (cached)."""
    ex = WhisperLayers(quantized=quantized, threads=1)
    files = "|".join(f"{u.path}:{Path(u.path).stat().st_size}" for u in corpus.items)
    key = hashlib.sha256(f"{ex.get_config()}|{GRAPH_VERSION}|{files}".encode()).hexdigest()[:16]
    f = cache_root() / "levers" / f"{key}.npy"
    if f.is_file():
        return np.load(f)

    def one(path: Path) -> np.ndarray:
        h = ex.hidden_states(load_audio(path)).astype(np.float64)
        return np.concatenate([h.mean(axis=1), h.std(axis=1)], axis=-1).astype(np.float32)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        out = np.stack(list(pool.map(one, [Path(u.path) for u in corpus.items])))
    print(f"encoded {len(out)} clips (quantized={quantized}) in {time.perf_counter() - t0:.0f} s", flush=True)
    # the cached slices must be exactly what the extractor returns
    probe = WhisperLayers(layers=(1, -1), quantized=quantized)(load_audio(corpus.items[0].path))
    assert np.allclose(probe, out[0, [1, -1]].reshape(-1), rtol=1e-4, atol=1e-5), "pool slicing mismatch"
    f.parent.mkdir(parents=True, exist_ok=True)
    np.save(f, out)
    return out


def vectors(pools: np.ndarray, layers: tuple[int, ...], combine: str) -> list[np.ndarray]:
    sel = pools[:, list(layers)]
    v = sel.reshape(len(pools), -1) if combine == "concat" else sel.mean(axis=1)
    return list(v.astype(np.float32))


def score(corpus: Corpus, feats: list[np.ndarray], features_cfg: dict[str, Any], name: str, c: float
          ) -> dict[str, Any]:
    labels = corpus.labels
    y = np.array([labels.index(u.label) for u in corpus.items])
    data = Features(corpus, feats, labels, y, speaker_groups(corpus), "vector")
    recipe = Recipe(name, features_cfg, "logreg", {"C": c})
    res = cross_validate(corpus, recipe, folds=6, by="speaker", data=data)
    return {"wa": res["wa"], "ua": res["ua"], "fold_wa": [f["wa"] for f in res["folds"]],
            "fold_ua": [f["ua"] for f in res["folds"]], "fold_n": [f["n"] for f in res["folds"]]}


def clip_cost(corpus: Corpus, n: int) -> dict[str, float]:
    """Median feature time (ms, one thread) per 3 s of audio for each backbone variant."""
    clips = [load_audio(u.path) for u in corpus.items[:: max(1, len(corpus) // n)][:n]]
    secs = np.array([len(x) / 16000 for x in clips])
    variants: dict[str, Any] = {
        "ct2_int8_last": WhisperEncoder(compute_type="int8", threads=1),
        "ct2_float32_last": WhisperEncoder(compute_type="float32", threads=1),
        "onnx_float32_all_layers": WhisperLayers(quantized=False, threads=1),
        "onnx_int8_all_layers": WhisperLayers(quantized=True, threads=1),
    }
    out = {}
    for name, ex in variants.items():
        ex(clips[0])  # warm-up (loads / builds the model)
        ts = []
        for x in clips:
            t0 = time.perf_counter()
            ex(x)
            ts.append(time.perf_counter() - t0)
        out[name] = round(1000 * float(np.median(np.array(ts) / secs * 3.0)), 1)
    return out


def leave_fold_out_selection(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """For each fold, the row with the best mean WA on the other folds, scored on that fold."""
    k = len(rows[0]["fold_wa"])
    picks, wa, ua = [], [], []
    for f in range(k):
        others = [i for i in range(k) if i != f]
        best = max(rows, key=lambda r: float(np.mean([r["fold_wa"][i] for i in others])))
        picks.append(f"{best['config']} C={best['C']}")
        wa.append(best["fold_wa"][f])
        ua.append(best["fold_ua"][f])
    return {"wa": round(float(np.mean(wa)), 4), "ua": round(float(np.mean(ua)), 4), "picks": picks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cs", type=float, nargs="*", default=[0.05])
    ap.add_argument("--top", type=int, nargs="*", default=[3], help="sizes of 'best k single layers' sets")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 graph rows")
    ap.add_argument("--cost-clips", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # onnxruntime.quantization's pre-processing hint
    corpus = load_corpus(corpus_or_exit("ravdess", args.data))
    t0 = time.perf_counter()
    pools = layer_pools(corpus, quantized=False, workers=args.workers)
    n_hidden = pools.shape[1]
    rows: list[dict[str, Any]] = []

    def run(config: str, layers: tuple[int, ...], combine: str, p: np.ndarray, quantized: bool,
            cs: list[float]) -> None:
        cfg = WhisperLayers(layers=layers, combine=combine, quantized=quantized).get_config()
        feats = vectors(p, layers, combine)
        for c in cs:
            t = time.perf_counter()
            r = score(corpus, feats, cfg, config, c)
            rows.append({"config": config, "layers": list(layers), "combine": combine, "quantized": quantized,
                         "C": c, "dim": int(feats[0].shape[0]), **r})
            print(f"{config:28} C={c:<5} WA {r['wa']:.4f} UA {r['ua']:.4f} ({time.perf_counter() - t:.0f} s)",
                  flush=True)

    for i in range(n_hidden):
        run(f"layer {i}" + (" (last)" if i == n_hidden - 1 else ""), (i,), "concat", pools, False, args.cs)
    single = {i: max(r["wa"] for r in rows if r["layers"] == [i]) for i in range(n_hidden)}
    ranked = sorted(single, key=lambda i: -single[i])
    all_layers = tuple(range(n_hidden))
    run("concat all", all_layers, "concat", pools, False, args.cs)
    for k in args.top:
        best = tuple(sorted(ranked[:k]))
        run(f"concat best {k} {list(best)}", best, "concat", pools, False, args.cs)
    run("mean of all layers", all_layers, "mean", pools, False, args.cs)
    selection = leave_fold_out_selection(rows)
    print(f"leave-fold-out selection: WA {selection['wa']:.4f} UA {selection['ua']:.4f} picks {selection['picks']}")

    command = "python benchmarks/levers.py " + " ".join(sys.argv[1:])
    save("levers", {"corpus": "ravdess", "folds": 6, "head": "logreg", "cs": args.cs, "partial": True,
                    "rows": rows, "leave_fold_out_selection": selection}, command)  # checkpoint
    ref_rows = []
    base = get_recipe("whisper-logreg")
    data = featurize(corpus, base)
    for c in args.cs:
        res = cross_validate(corpus, Recipe(base.name, base.features, "logreg", {"C": c}), data=data)
        ref_rows.append({"config": "CT2 int8 last layer (whisper-logreg)", "C": c, "wa": res["wa"], "ua": res["ua"]})
        print(f"{'CT2 int8 whisper-logreg':28} C={c:<5} WA {res['wa']:.4f} UA {res['ua']:.4f}", flush=True)

    if not args.no_int8:
        qpools = layer_pools(corpus, quantized=True, workers=args.workers)
        top = max(rows, key=lambda r: r["wa"])
        run("int8: layer last", (n_hidden - 1,), "concat", qpools, True, [top["C"]])
        run(f"int8: {top['config']}", tuple(top["layers"]), top["combine"], qpools, True, [top["C"]])

    cost = clip_cost(corpus, args.cost_clips)
    payload = {"corpus": "ravdess", "folds": 6, "head": "logreg", "cs": args.cs, "n_hidden_states": n_hidden,
               "rows": rows, "reference": ref_rows, "leave_fold_out_selection": selection,
               "ms_per_3s_clip_1_thread": cost, "total_s": round(time.perf_counter() - t0, 1)}
    path = save("levers", payload, command)

    print("\n| configuration | dim | C | WA | UA |\n|---|---|---|---|---|")
    for r in ref_rows:
        print(f"| {r['config']} | 768 | {r['C']} | {r['wa']:.3f} | {r['ua']:.3f} |")
    for r in rows:
        print(f"| {r['config']} | {r['dim']} | {r['C']} | {r['wa']:.3f} | {r['ua']:.3f} |")
    print(f"| leave-fold-out selection (layer set + C) | | | {selection['wa']:.3f} | {selection['ua']:.3f} |")
    print("\n| backbone (one thread) | ms per 3 s clip (median) |\n|---|---|")
    for k, v in cost.items():
        print(f"| {k} | {v} |")
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
