"""Forced keyword scoring with Whisper tiny.en: how likely the model finds "help" / "bachao", not what it writes.

Method. For every ``screams/`` clip (both sides of the held-out split of :mod:`vocalis.danger.train`)
and ``--acted`` random RAVDESS/TESS clips: 2 s windows with a 1 s hop, each padded to Whisper's 30 s
and encoded once (the spotter's onnxruntime int8 encoder, :data:`vocalis.danger.keywords.SPOTTER_RUNTIME`);
one pass of the int8 decoder scores every spelling in :data:`SPELLINGS` as the transcript's first tokens
after ``<|startoftranscript|><|notimestamps|>``; a clip's score per keyword is the best log P over its
windows and spellings. The emotion model's P(fear) on the whole clip and its level (dBFS) are kept
beside it. The table: clips with a score >= each threshold, per group (help calls, other
``screams/`` clips, acted speech) and side. Results: ``results/keyword_scoring.json``; the finding is
in ``benchmarks/notes.md`` ("Calls for help"). Not used by the live path.

    python benchmarks/keyword_scoring.py [--acted 200]   # ~15 min on 2 cores
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
from _common import DATA, corpus_or_exit, save  # noqa: E402
from vocalis.bundle.runtime import default_model_path, load_bundle  # noqa: E402
from vocalis.danger.keywords import SPOTTER_RUNTIME, load_asr  # noqa: E402
from vocalis.danger.train import scream_dataset  # noqa: E402

SPELLINGS = {"help": ["Help", " Help", "HELP", "Help!", "help", "Help me", "Helps"],
             "bachao": ["Bachao", "Bacho", "Bachau", "Batcho", "Bacha", "Bachaao", "BACHAO"]}
THRESHOLDS = (-3.0, -4.0, -5.0, -6.0)


class ForcedScorer:
    """log P of each keyword's spellings as the first tokens of a window's transcript (tiny.en, ONNX)."""

    def __init__(self) -> None:
        self.model = load_asr("tiny.en", **SPOTTER_RUNTIME)
        self.dec = self.model.model.decoder
        sp = self.dec.tokens
        self.prompt = [sp.sot, sp.no_timestamps]
        tok = self.model.hf_tokenizer
        self.seqs = [(k, tok.encode(s, add_special_tokens=False).ids) for k, v in SPELLINGS.items() for s in v]
        width = len(self.prompt) + max(len(ids) for _, ids in self.seqs)
        self.tokens = np.full((len(self.seqs), width), sp.eot, np.int64)
        for i, (_, ids) in enumerate(self.seqs):
            self.tokens[i, : len(self.prompt) + len(ids)] = self.prompt + ids

    def encode(self, audio: np.ndarray) -> np.ndarray:
        mel = self.model.feature_extractor(audio)
        padded = np.zeros((mel.shape[0], 3000), np.float32)
        padded[:, : min(3000, mel.shape[1])] = mel[:, :3000]
        return np.asarray(self.model.encode(padded))[0]

    def score(self, audio: np.ndarray) -> dict[str, float]:
        dec, n = self.dec, len(self.seqs)
        cross = [np.repeat(c, n, 0) for c in dec._cross.run(None, {"encoder": self.encode(audio)[None]})]
        feed: dict[str, np.ndarray] = {"tokens": self.tokens[:, :-1]}
        empty = np.zeros((n, dec._heads, 0, dec._dh), np.float32)
        for i in range(dec.n_layers):
            feed[f"cross_k_{i}"], feed[f"cross_v_{i}"] = cross[2 * i], cross[2 * i + 1]
            feed[f"past_k_{i}"] = feed[f"past_v_{i}"] = empty
        logits = dict(zip(dec._outputs, dec._step.run(None, feed)))["logits"].astype(np.float64)
        top = logits.max(-1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
        best: dict[str, float] = {}
        for i, (k, ids) in enumerate(self.seqs):
            lp = float(sum(logp[i, len(self.prompt) - 1 + j, t] for j, t in enumerate(ids)))
            best[k] = max(best.get(k, -np.inf), lp)
        return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--acted", type=int, default=200, help="random RAVDESS/TESS clips (acted speech, no keyword)")
    args = ap.parse_args()
    for name in ("screams", "ravdess", "tess"):
        corpus_or_exit(name, args.data)
    t_start = time.time()
    clips = scream_dataset(args.data)
    acted = [c for c in clips if c.source in ("ravdess", "tess")]
    rng = np.random.default_rng(0)
    chosen = [c for c in clips if c.source == "screams"] + [
        acted[i] for i in rng.choice(len(acted), min(args.acted, len(acted)), replace=False)]
    scorer = ForcedScorer()
    emotion = load_bundle(default_model_path())
    rows: list[dict[str, Any]] = []
    for n, c in enumerate(chosen, 1):
        x = c.audio()
        best = {k: -np.inf for k in SPELLINGS}
        for i in range(0, max(1, x.size - 32000 + 1), 16000):
            for k, v in scorer.score(x[i : i + 32000]).items():
                best[k] = max(best[k], v)
        name = Path(c.path).name
        group = "acted" if c.source != "screams" else ("help_call" if name.startswith("help") else "other_screams")
        rows.append({"path": Path(os.path.relpath(str(c.path), args.data)).as_posix(), "split": c.split, "subset": c.subset, "label": c.label, "group": group,
                     **{f"logp_{k}": round(v, 3) for k, v in best.items()},
                     "p_fear": round(float(emotion.predict(x).probabilities.get("fear", 0.0)), 4),
                     "level_dbfs": round(float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-10)), 2)})
        if n % 50 == 0:
            print(f"{n} / {len(chosen)} clips, {time.time() - t_start:.0f} s", file=sys.stderr, flush=True)
    table = []
    for t in THRESHOLDS:
        row: dict[str, Any] = {"threshold_logp_help": t}
        for group in ("help_call", "other_screams", "acted"):
            for side in (("train", "test") if group != "acted" else ("any",)):
                sel = [r for r in rows if r["group"] == group and (side == "any" or r["split"] == side)]
                row[f"{group}_{side}"] = {"hit": sum(r["logp_help"] >= t for r in sel), "n": len(sel)}
        table.append(row)
    for r in table:
        print(r)
    save("keyword_scoring", {"spellings": SPELLINGS, "window_s": 2.0, "hop_s": 1.0, "table": table, "clips": rows,
                             "total_wall_s": round(time.time() - t_start, 1)},
         command="python benchmarks/keyword_scoring.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
