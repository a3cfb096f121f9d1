"""Hot microphone benchmark: the danger path with and without the slow gain (``StreamConfig.level_gain``).

The held-out twins of the shipped two-stage scream detector (``results/scream-holdout.vocalis``,
``results/scream-confirm-holdout.vocalis``, made by ``scripts/train_scream.py``) and the default
policy at the detector's operating point (chosen on the training side); no emotion model, no ASR
(the danger path). Each measurement runs with the gain off and on (:class:`vocalis.streaming.gain.GainConfig`
defaults), at three levels: as recorded, ``loud_12`` and ``loud_6`` (one gain that brings the
audio's active level to -12 / -6 dBFS, clipped at full scale: a voice close to a phone microphone
without automatic gain control; :func:`vocalis.danger.train.hot_mic`).

1. **False alerts per hour**: ``benchmarks/danger.py``'s non-danger stream (held-out RAVDESS
   actors 13-24 and TESS YAF, every emotion, 0-1.5 s pauses, then 30 min of held-out synthetic
   noise, hum and silence), the whole stream at one gain.
2. **Clip F1 in context**: every held-out ``screams`` clip after ``--context-s`` seconds of held-out
   acted speech and before 4 s more, the whole stream at the one gain that brings the context's
   active level to the condition's level (as recorded: no gain). A clip is flagged when
   ``danger.started`` comes between its start and 4 s after its end; starts before the clip are
   counted as context false starts.

Run: ``.venv/bin/python benchmarks/hot_mic.py`` (about 20 min on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, corpus_or_exit, save  # noqa: E402
from danger import _f1, non_danger_audio, stream  # noqa: E402
from vocalis.audio.constants import SAMPLE_RATE  # noqa: E402
from vocalis.bundle.runtime import load_bundle  # noqa: E402
from vocalis.danger.detector import ScreamDetector  # noqa: E402
from vocalis.danger.policy import DangerPolicy, PolicyConfig  # noqa: E402
from vocalis.danger.train import LEVEL_CHANNELS, Clip, hot_mic, scream_dataset  # noqa: E402
from vocalis.streaming.gain import GainConfig  # noqa: E402
from vocalis.streaming.predictor import StreamConfig, StreamingPredictor  # noqa: E402

LEVELS: dict[str, float | None] = {"as recorded": None, **{k: float(v) for k, v in LEVEL_CHANNELS.items()}}
AFTER_S = 4.0


GAINS: dict[str, GainConfig | None] = {"off": None, "on": GainConfig(), "on, boost up to +12 dB": GainConfig(max_boost_db=12.0)}
"""The gain settings of ``--sitting`` (fixed before its first run, benchmarks/notes.md session 15)."""


def predictor(scream: ScreamDetector, gain: bool | GainConfig | None) -> StreamingPredictor:
    cfg = GainConfig() if gain is True else gain or None
    return StreamingPredictor(StreamConfig(asr="off", level_gain=cfg),
                              emotion_model=False, scream_model=scream, keyword_spotter=False)


def calm_context(c: Clip, pool: list[Clip], rng: random.Random, min_s: float = 30.0) -> np.ndarray | None:
    """The *other* clips of ``pool`` from ``c``'s recording day / user with a calm voice (corpus emotion
    "calm"), looped with 0.5-1.5 s pauses to at least ``min_s`` seconds, as recorded; ``None`` when there are none."""
    calm = [o for o in pool if o.group == c.group and o.path != c.path and o.extra.get("emotion") == "calm"]
    if not calm:
        return None
    parts: list[np.ndarray] = []
    while sum(p.size for p in parts) < min_s * SAMPLE_RATE:
        for o in calm:
            parts += [o.audio(), np.zeros(int(rng.uniform(0.5, 1.5) * SAMPLE_RATE), np.float32)]
    return np.concatenate(parts)


def sitting_contexts(test: list[Clip], seed: int = 3) -> list[np.ndarray | None]:
    """Per held-out clip: :func:`calm_context` among the held-out clips (one random stream for all)."""
    rng = random.Random(seed)
    return [calm_context(c, test, rng) for c in test]


def in_sitting(test: list[Clip], contexts: list[np.ndarray | None], scream: ScreamDetector, policy: PolicyConfig,
               gain: GainConfig | None) -> dict[str, Any]:
    """Clip F1 with each clip streamed after its sitting's calm voice (alone where it has none)."""
    y, flagged, early, gains = [], [], 0, []
    by: dict[str, dict[str, int]] = {}
    for c, ctx in zip(test, contexts):
        clip = c.audio()
        x = clip if ctx is None else np.concatenate([ctx, clip])
        t0 = 0.0 if ctx is None else ctx.size / SAMPLE_RATE
        windows, ev = stream(predictor(scream, gain), DangerPolicy(policy), x)
        starts = [e.t for e in ev if e.type == "danger.started"]
        early += any(t < t0 for t in starts)
        f = int(any(t >= t0 for t in starts))
        if ctx is not None:
            gains.append(next((w.gain_db for w in windows if w.t_end > t0), 0.0))
        y.append(c.label)
        flagged.append(f)
        key = f"{c.subset}/{c.extra.get('emotion', '')}" + (" (in context)" if ctx is not None else "")
        d = by.setdefault(key, {"n": 0, "flagged": 0})
        d["n"] += 1
        d["flagged"] += f
    g = np.array(gains) if gains else np.zeros(1)
    return {"clip": _f1(y, flagged), "by_subset": by, "context_false_starts": early,
            "clips_in_context": sum(ctx is not None for ctx in contexts),
            "gain_db_at_clip": {"median": round(float(np.median(g)), 2), "min": round(float(g.min()), 2),
                                "max": round(float(g.max()), 2)}}


def false_alerts(x: np.ndarray, scream: ScreamDetector, policy: PolicyConfig, gain: bool | GainConfig | None
                 ) -> dict[str, Any]:
    windows, events = stream(predictor(scream, gain), DangerPolicy(policy), x)
    hours = x.size / SAMPLE_RATE / 3600
    alerts = sum(e.type == "alert" for e in events)
    starts = sum(e.type == "danger.started" for e in events)
    g = np.array([w.gain_db for w in windows])
    return {"hours": round(hours, 3), "alerts": alerts, "alerts_per_hour": round(alerts / hours, 3),
            "danger_episodes": starts, "gain_db": {"median": round(float(np.median(g)), 2),
                                                   "min": round(float(g.min()), 2), "max": round(float(g.max()), 2)}}


def context_streams(test: list[Clip], clips: list[Clip], context_s: float, seed: int = 2
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(context speech, clip + 4 s speech) per held-out clip, as recorded."""
    rng = random.Random(seed)
    filler = [c for c in clips if c.split == "test" and c.source in ("ravdess", "tess")]
    n_ctx, n_after = int(context_s * SAMPLE_RATE), int(AFTER_S * SAMPLE_RATE)
    out = []
    for c in test:
        parts: list[np.ndarray] = []
        while sum(p.size for p in parts) < n_ctx + n_after:
            parts += [rng.choice(filler).audio(), np.zeros(int(rng.uniform(0.0, 1.5) * SAMPLE_RATE), np.float32)]
        speech = np.concatenate(parts)
        out.append((speech[:n_ctx], np.concatenate([c.audio(), speech[n_ctx:n_ctx + n_after]])))
    return out


def in_context(test: list[Clip], streams: list[tuple[np.ndarray, np.ndarray]], level: float | None,
               scream: ScreamDetector, policy: PolicyConfig, gain: bool) -> dict[str, Any]:
    y, flagged, early = [], [], 0
    by: dict[str, dict[str, int]] = {}
    for c, (ctx, tail) in zip(test, streams):
        x = np.concatenate([ctx, tail])
        if level is not None:
            x = hot_mic(x, level, reference=ctx)
        _, ev = stream(predictor(scream, gain), DangerPolicy(policy), x)
        t0 = ctx.size / SAMPLE_RATE
        starts = [e.t for e in ev if e.type == "danger.started"]
        early += any(t < t0 for t in starts)
        f = int(any(t0 <= t <= x.size / SAMPLE_RATE for t in starts))
        y.append(c.label)
        flagged.append(f)
        d = by.setdefault(c.subset, {"n": 0, "flagged": 0})
        d["n"] += 1
        d["flagged"] += f
    return {"clip": _f1(y, flagged), "by_subset": by, "context_false_starts": early}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--holdout-model", type=Path, default=RESULTS / "scream-holdout.vocalis")
    ap.add_argument("--holdout-confirm-model", type=Path, default=RESULTS / "scream-confirm-holdout.vocalis")
    ap.add_argument("--noise-minutes", type=float, default=30.0)
    ap.add_argument("--context-s", type=float, default=60.0)
    ap.add_argument("--tag", default="", help="write results/hot_mic_TAG.json (a variant)")
    ap.add_argument("--sitting", action="store_true",
                    help="instead: each clip after its own recording day's / user's calm voice, gain off / on / "
                         "on with boost (results/hot_mic_sitting.json)")
    args = ap.parse_args()
    for name in ("screams", "ravdess", "tess"):
        corpus_or_exit(name, args.data)
    for p in (args.holdout_model, args.holdout_confirm_model):
        if not p.is_file():
            sys.exit(f"{p} is missing: run scripts/train_scream.py")
    t_all = time.time()
    scream = ScreamDetector(load_bundle(args.holdout_model), load_bundle(args.holdout_confirm_model))
    on = float(scream.operating_point or PolicyConfig().on_threshold)
    policy = PolicyConfig().at_threshold(on)
    clips = scream_dataset(args.data)
    test = [c for c in clips if c.split == "test" and c.source == "screams"]
    x, _ = non_danger_audio(clips, args.noise_minutes)
    if args.sitting:
        sitting(args, test, x, scream, policy, t_all)
        return
    ctx = context_streams(test, clips, args.context_s)
    rows: dict[str, dict[str, Any]] = {}
    for name, level in LEVELS.items():
        xl = x if level is None else hot_mic(x, level)
        for gain in (False, True):
            key = f"{name}, gain {'on' if gain else 'off'}"
            print(f"{key} ...", file=sys.stderr, flush=True)
            t0 = time.time()
            rows[key] = {"level_dbfs": level, "gain": gain,
                         "false_alerts": false_alerts(xl, scream, policy, gain),
                         "in_context": in_context(test, ctx, level, scream, policy, gain),
                         "wall_s": round(time.time() - t0, 1)}
            r = rows[key]
            print(f"  false alerts/h {r['false_alerts']['alerts_per_hour']}, in-context F1 "
                  f"{r['in_context']['clip']['f1']}, context false starts {r['in_context']['context_false_starts']}",
                  file=sys.stderr, flush=True)
    base = rows["as recorded, gain off"]["in_context"]["clip"]["f1"]
    criterion = {
        "loud_12 false alerts/h <= 0.5 with the gain": rows["loud_12, gain on"]["false_alerts"]["alerts_per_hour"] <= 0.5,
        "loud_6 false alerts/h at most half of gain off": rows["loud_6, gain on"]["false_alerts"]["alerts_per_hour"]
        <= 0.5 * rows["loud_6, gain off"]["false_alerts"]["alerts_per_hour"],
        "as recorded false alerts/h <= 0.5 with the gain":
            rows["as recorded, gain on"]["false_alerts"]["alerts_per_hour"] <= 0.5,
        **{f"{name}: in-context F1 with the gain >= {base} - 0.01":
           rows[f"{name}, gain on"]["in_context"]["clip"]["f1"] >= base - 0.01 for name in LEVELS},
    }
    payload = {"scream_model": {"first": str(args.holdout_model), "confirm": str(args.holdout_confirm_model),
                                "operating_point": on},
               "gain_config": GainConfig().__dict__, "policy_config": dict(policy.__dict__),
               "context_s": args.context_s, "after_s": AFTER_S, "held_out_clips": len(test),
               "rows": rows, "criterion": criterion, "adopt": all(criterion.values()),
               "total_wall_s": round(time.time() - t_all, 1)}
    path = save(f"hot_mic_{args.tag}" if args.tag else "hot_mic", payload,
                "python benchmarks/hot_mic.py " + " ".join(sys.argv[1:]))
    print("| level | gain | false alerts / h | clip F1 in context (P / R) | context false starts |\n|---|---|---|---|---|")
    for key, r in rows.items():
        c = r["in_context"]["clip"]
        print(f"| {key.split(',')[0]} | {'on' if r['gain'] else 'off'} | {r['false_alerts']['alerts_per_hour']} | "
              f"{c['f1']} ({c['precision']} / {c['recall']}) | {r['in_context']['context_false_starts']} |")
    print(f"criterion: {criterion}\nwrote {path}", file=sys.stderr)


def sitting(args: argparse.Namespace, test: list[Clip], x: np.ndarray, scream: ScreamDetector,
            policy: PolicyConfig, t_all: float) -> None:
    contexts = sitting_contexts(test)
    rows: dict[str, dict[str, Any]] = {}
    for name, cfg in GAINS.items():
        print(f"gain {name} ...", file=sys.stderr, flush=True)
        rows[name] = {"gain_config": None if cfg is None else cfg.__dict__,
                      "in_sitting": in_sitting(test, contexts, scream, policy, cfg),
                      "false_alerts": false_alerts(x, scream, policy, cfg)}
        r = rows[name]
        print(f"  in-sitting F1 {r['in_sitting']['clip']}, false alerts/h {r['false_alerts']['alerts_per_hour']}",
              file=sys.stderr, flush=True)
    payload = {"scream_model": {"first": str(args.holdout_model), "confirm": str(args.holdout_confirm_model),
                                "operating_point": policy.on_threshold},
               "policy_config": dict(policy.__dict__), "held_out_clips": len(test), "rows": rows,
               "total_wall_s": round(time.time() - t_all, 1)}
    path = save("hot_mic_sitting", payload, "python benchmarks/hot_mic.py " + " ".join(sys.argv[1:]))
    print("| gain | clip F1 (P / R) | context false starts | false alerts / h |\n|---|---|---|---|")
    for name, r in rows.items():
        c = r["in_sitting"]["clip"]
        print(f"| {name} | {c['f1']} ({c['precision']} / {c['recall']}) | {r['in_sitting']['context_false_starts']} | "
              f"{r['false_alerts']['alerts_per_hour']} |")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
