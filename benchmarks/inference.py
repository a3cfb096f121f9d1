"""Per-clip CPU latency of a bundle on one thread: decode + features/backbone + ONNX head.

    .venv/bin/python benchmarks/inference.py [--model my.vocalis] [--n 100]

Single-threaded (thread env vars set before numpy loads). Reports the median and p95 over
RAVDESS clips (2.9-5.3 s each) and the time normalised to a 3 s clip.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, corpus_or_exit, save  # noqa: E402
from vocalis.audio.io import load_audio  # noqa: E402
from vocalis.bundle import load_bundle  # noqa: E402
from vocalis.corpora import load_corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    corpus = load_corpus(corpus_or_exit("ravdess", args.data))
    items = corpus.items[:: max(1, len(corpus) // args.n)][: args.n]
    b = load_bundle(args.model, threads=1)
    b.predict_file(items[0].path)  # warm-up: loads the backbone and the ONNX session
    decode, feats, head, secs = [], [], [], []
    for u in items:
        t0 = time.perf_counter()
        x = load_audio(u.path)
        t1 = time.perf_counter()
        f = b.features(x)
        t2 = time.perf_counter()
        b.predict_proba_features(f[None])
        t3 = time.perf_counter()
        decode.append(t1 - t0)
        feats.append(t2 - t1)
        head.append(t3 - t2)
        secs.append(len(x) / 16000)
    total = np.array(decode) + np.array(feats) + np.array(head)
    per3 = total / np.array(secs) * 3.0
    res = {
        "model": b.source if args.model else "bundled default",
        "recipe": b.manifest.recipe.get("name"),
        "n_clips": len(items),
        "mean_clip_s": round(float(np.mean(secs)), 2),
        "decode_ms_median": round(1000 * float(np.median(decode)), 2),
        "features_ms_median": round(1000 * float(np.median(feats)), 2),
        "head_ms_median": round(1000 * float(np.median(head)), 3),
        "total_ms_median": round(1000 * float(np.median(total)), 2),
        "total_ms_p95": round(1000 * float(np.percentile(total, 95)), 2),
        "per_3s_clip_ms_median": round(1000 * float(np.median(per3)), 2),
        "bundle_bytes": Path(b.source).stat().st_size,
    }
    for k, v in res.items():
        print(f"{k:24} {v}")
    save("inference", res, "python benchmarks/inference.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
