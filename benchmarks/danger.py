"""Danger detection benchmark: clip F1, false alerts per hour, time to alert, per-window cost.

Everything is measured with a scream detector trained only on the **training side** of the
held-out split of :mod:`vocalis.danger.train`, so no clip, speaker or recording session scored here
was seen in training: the two stages of :mod:`vocalis.danger.detector` (``--holdout-model``, rebuilt
when absent, and ``--holdout-confirm-model``, made by ``scripts/train_scream.py``; ``--one-stage``
measures the first alone). The shipped ``data/scream.vocalis`` and ``data/scream_confirm.vocalis``
are the same recipes refitted on all data. ``--backbone-holdout-model PATH``
adds a second scream head on the emotion model's embedding (trained on the training side by
:func:`vocalis.danger.train.train_backbone_scream_head` when PATH is missing; none ships): it runs
with every emotion run (every 4th hop), its score is held over the windows that overlap it and
fused with ``w_backbone`` = ``on_threshold`` / its own operating point (chosen on its training side).

1. **Clip-level danger F1** on the held-out ``screams`` clips (danger 1 vs 0):
   (a) offline — the detector on the whole clip, P(scream) >= the operating point;
   (b) streaming — the clip streamed through StreamingPredictor + DangerPolicy (defaults except
       ``on_threshold`` = the detector's ``metrics.operating_point``, chosen on the *training*
       side by the rule its manifest names (``metrics.validation.criterion``), never on this test side;
       emotion every 4th hop); danger = a
       ``danger.started`` event. Keyword hits come from one
       tiny.en transcript per clip (computed once; ``--no-asr`` disables).
2. **Keyword spotting** precision / recall on the same held-out clips (keyword help/bacho vs
   background), tiny.en transcript + the tolerant matcher.
3. **False alerts per hour**: RAVDESS actors 13-24 and TESS speaker YAF (held-out speakers,
   every emotion), shuffled and concatenated with 0-1.5 s pauses, plus held-out synthetic noise,
   hum and silence segments, streamed at speed 0 with the default policy; alert = an ``alert``
   event (the countdown is not cancelled). Also counts ``danger.started`` episodes.
4. **Time to alert**: each held-out scream clip is inserted between held-out non-danger audio
   (6 s before, 4 s after); latency = ``danger.started`` time - clip start (the confirmation
   countdown comes on top and is excluded).
5. **Band-limited and hot-microphone conditions** (``--channels``): clip F1 (streaming + policy, no
   ASR) and false alerts per hour again with all audio low-passed at 7 kHz (8th-order Butterworth;
   Chromium's fake microphone, many phones and headsets), through an 8 kHz telephone channel
   (300-3400 Hz), and at one gain that brings each clip's / the whole non-danger stream's active
   level to -12 and -6 dBFS, clipped (``loud_12``, ``loud_6``: a voice close to a phone
   microphone without automatic gain control; the held-out speech sits near -21 dBFS).
6. **Per-window cost** (median, p90, mean in ms; one thread each) of every component from the
   ``timings_ms`` of the long stream.

Run: ``.venv/bin/python benchmarks/danger.py`` (about 15-30 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

# "one core": a multi-threaded BLAS on a busy machine turns the ~0.6 ms feature matmuls into ~25 ms
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, corpus_or_exit, label_ceiling, save  # noqa: E402
from vocalis.audio.constants import SAMPLE_RATE  # noqa: E402
from vocalis.bundle.runtime import Bundle, load_bundle  # noqa: E402
from vocalis.danger.detector import ScreamDetector  # noqa: E402
from vocalis.danger.keywords import SPOTTER_RUNTIME, KeywordMatcher, load_asr, transcribe  # noqa: E402
from vocalis.danger.policy import DangerPolicy, PolicyConfig  # noqa: E402
from vocalis.danger.train import (  # noqa: E402
    Clip,
    apply_channel,
    scream_dataset,
    synthetic_negative,
    train_backbone_scream_head,
    train_scream_detector,
)
from vocalis.streaming.predictor import StreamConfig, StreamingPredictor, WindowResult  # noqa: E402


class CachedSpotter:
    """Keyword spotter returning a precomputed transcript's hits (one ASR run per clip, not per window)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.text = ""

    def spot(self, audio: np.ndarray) -> tuple[list[str], str]:
        return list(self.hits), self.text


def _f1(y: list[int], p: list[int]) -> dict[str, float]:
    tp = sum(a == b == 1 for a, b in zip(y, p))
    fp = sum(a == 0 and b == 1 for a, b in zip(y, p))
    fn = sum(a == 1 and b == 0 for a, b in zip(y, p))
    pr = tp / (tp + fp) if tp + fp else 0.0
    rc = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(pr, 4), "recall": round(rc, 4),
            "f1": round(2 * pr * rc / (pr + rc), 4) if pr + rc else 0.0, "tp": tp, "fp": fp, "fn": fn, "n": len(y)}


def stream(pred: StreamingPredictor, pol: DangerPolicy, x: np.ndarray, chunk: int = 1600
           ) -> tuple[list[WindowResult], list[Any]]:
    windows: list[WindowResult] = []
    events: list[Any] = []
    report = 600 * SAMPLE_RATE if x.size > 1200 * SAMPLE_RATE else 0
    t0 = time.time()
    for i in range(0, x.size, chunk):
        if report and i % report < chunk:
            print(f"  {i / SAMPLE_RATE / 60:.0f} / {x.size / SAMPLE_RATE / 60:.0f} min of audio, "
                  f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        for w in pred.push(x[i : i + chunk], SAMPLE_RATE):
            windows.append(w)
            events += pol.push(w)
    for w in pred.flush():
        windows.append(w)
        events += pol.push(w)
    return windows, events


def clip_level(test: list[Clip], heads: dict[str, Any], emotion: Bundle | None, transcripts: dict[str, str],
               policy: PolicyConfig) -> dict[str, Any]:
    matcher = KeywordMatcher()
    y = [c.label for c in test]
    offline, streaming, streaming_scream_only = [], [], []
    spotter = CachedSpotter()
    scream = heads["scream_model"]
    pred = StreamingPredictor(StreamConfig(), emotion_model=emotion if emotion is not None else False,
                              keyword_spotter=spotter, **heads)
    bare = StreamingPredictor(StreamConfig(asr="off"), emotion_model=False, scream_model=scream, keyword_spotter=False)
    for c in test:
        x = c.audio()
        # predict_proba, not predict: a digitally silent clip (two on the held-out side) is scored, not refused
        p_scream = scream.score(x)
        offline.append(int(p_scream >= policy.on_threshold))
        text = transcripts.get(str(c.path), "")
        spotter.hits, spotter.text = matcher.match(text), text
        for p, out in ((pred, streaming), (bare, streaming_scream_only)):
            pol = DangerPolicy(policy)
            _, ev = stream(p, pol, x)
            out.append(int(any(e.type == "danger.started" for e in ev)))
    per_subset: dict[str, dict[str, int]] = {}
    per_emotion: dict[str, dict[str, int]] = {}  # the corpus' own emotion label of each clip
    for c, s in zip(test, streaming):
        for table, key in ((per_subset, c.subset), (per_emotion, f"{c.subset}/{c.extra.get('emotion', '')}")):
            d = table.setdefault(key, {"n": 0, "flagged": 0})
            d["n"] += 1
            d["flagged"] += s
    return {"offline_whole_clip": _f1(y, offline), "streaming_policy": _f1(y, streaming),
            "streaming_policy_scream_only": _f1(y, streaming_scream_only), "streaming_by_subset": per_subset,
            "streaming_by_subset_emotion": per_emotion, "label_ceiling": label_ceiling(test)}


def band_limited_clips(test: list[Clip], heads: dict[str, Any], emotion: Bundle | None, channel: str,
                       policy: PolicyConfig) -> dict[str, Any]:
    """Streaming + policy clip-level F1 with every held-out clip through ``channel`` (no ASR)."""
    y, flagged = [], []
    per_subset: dict[str, dict[str, int]] = {}
    pred = StreamingPredictor(StreamConfig(asr="off"), emotion_model=emotion if emotion is not None else False,
                              keyword_spotter=False, **heads)
    for c in test:
        _, ev = stream(pred, DangerPolicy(policy), apply_channel(c.audio(), channel))
        f = int(any(e.type == "danger.started" for e in ev))
        y.append(c.label)
        flagged.append(f)
        d = per_subset.setdefault(c.subset, {"n": 0, "flagged": 0})
        d["n"] += 1
        d["flagged"] += f
    return {"streaming_policy_no_asr": _f1(y, flagged), "streaming_by_subset": per_subset}


def keyword_eval(test: list[Clip], transcripts: dict[str, str]) -> dict[str, Any]:
    m = KeywordMatcher()
    rows = [(c, m.match(transcripts.get(str(c.path), ""))) for c in test if c.source == "screams"]
    y = [int(c.keyword in ("help", "bacho")) for c, _ in rows]
    p = [int(bool(h)) for _, h in rows]
    out: dict[str, Any] = {"any_keyword": _f1(y, p)}
    for kw, spoken in (("help", "help"), ("bachao", "bacho")):
        yk = [int(c.keyword == spoken) for c, _ in rows]
        pk = [int(kw in h) for _, h in rows]
        out[kw] = _f1(yk, pk)
    by = {}
    for sub in sorted({c.subset for c, _ in rows}):
        r = [(c, h) for c, h in rows if c.subset == sub]
        by[sub] = {"n": len(r), "hit": sum(bool(h) for _, h in r)}
    out["by_subset"] = by
    return out


def non_danger_audio(clips: list[Clip], minutes_noise: float, seed: int = 0) -> tuple[np.ndarray, float]:
    """Held-out acted speech (shuffled, with pauses) followed by noise/hum/silence segments."""
    rng = random.Random(seed)
    speech = [c for c in clips if c.split == "test" and c.source in ("ravdess", "tess")]
    rng.shuffle(speech)
    parts: list[np.ndarray] = []
    for c in speech:
        parts.append(c.audio())
        parts.append(np.zeros(int(rng.uniform(0.0, 1.5) * SAMPLE_RATE), np.float32))
    speech_s = sum(p.size for p in parts) / SAMPLE_RATE
    n_seg = int(minutes_noise * 60 / 20)
    synth_test = [i for i in range(4000) if i % 5 == 4]  # the held-out synthetic seeds
    for k in range(n_seg):
        parts.append(synthetic_negative(synth_test[k % len(synth_test)] + 400 * (k // len(synth_test)), 20.0))
    return np.concatenate(parts).astype(np.float32), speech_s


def summarize(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {"n": len(values), "median": round(float(np.median(a)), 3), "p90": round(float(np.percentile(a, 90)), 3),
            "mean": round(float(a.mean()), 3), "max": round(float(a.max()), 3)}


SPLIT_GROUPING = "recording day"  # vocalis.danger.train.session_group


def previous_detector(path: Path, setup: dict[str, Any]) -> dict[str, Any] | None:
    """Headline numbers of the last run with another detector setup (recipe, operating point, fusion
    weights); kept across re-runs of the same setup."""
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    try:
        recipe = old["scream_model"]["recipe"]
        if (old.get("backbone_scream_model") or {}).get("recipe"):
            recipe = f"{recipe} + {old['backbone_scream_model']['recipe']}"
        grouping = (old.get("split") or {}).get("grouping", "recording hour (before session 10)")
        if _setup(recipe, old["operating_point"]["on_threshold"], old["policy_config"]) == setup \
                and grouping == SPLIT_GROUPING:
            return old.get("previous")
        weights = ("w_distress", "w_keyword", "w_backbone")
        return {"what": f"{recipe} at P >= {old['operating_point']['on_threshold']}, "
                        f"policy {json.dumps({k: old['policy_config'].get(k, 0.0) for k in weights})}, "
                        f"commit {old['commit']}, 'unknown' clips grouped by {grouping}",
                "clip_f1": old["clip_level"]["streaming_policy"]["f1"],
                "alerts_per_hour": old["false_alerts"]["alerts_per_hour"],
                "latency_median_s": old["latency_s"]["median"],
                "danger_path_ms": old["per_window_cost_ms"]["danger_path_vad_plus_scream"]["median"]}
    except (KeyError, TypeError):
        return None


def _setup(recipe: Any, on: float, policy: dict[str, Any]) -> dict[str, Any]:
    return {"recipe": recipe, "on_threshold": on, "w_backbone": policy.get("w_backbone", 0.0),
            **{k: policy.get(k) for k in ("w_distress", "w_keyword", "n_on", "m_windows", "min_duration_s")}}


def _recipe(scream: ScreamDetector) -> str:
    name = str(scream.first.manifest.recipe.get("name"))
    if scream.confirm is not None:
        name += f" -> {scream.confirm.manifest.recipe.get('name')} from P >= {scream.gate}"
    return name


def _recipes(scream: ScreamDetector, backbone: Bundle | None) -> str:
    name = _recipe(scream)
    return name if backbone is None else f"{name} + {backbone.manifest.recipe.get('name')}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--holdout-model", type=Path, default=RESULTS / "scream-holdout.vocalis")
    ap.add_argument("--holdout-confirm-model", type=Path, default=RESULTS / "scream-confirm-holdout.vocalis",
                    help="the second stage (vocalis.danger.detector), trained on the training side")
    ap.add_argument("--one-stage", action="store_true", help="the first stage alone (no second opinion)")
    ap.add_argument("--backbone-holdout-model", type=Path, default=None,
                    help="also fuse a scream head on the emotion embedding (trained here when the file is missing)")
    ap.add_argument("--noise-minutes", type=float, default=30.0)
    ap.add_argument("--max-speech-clips", type=int, default=0, help="0 = all held-out speech")
    ap.add_argument("--no-emotion", action="store_true")
    ap.add_argument("--no-asr", action="store_true")
    ap.add_argument("--channels", nargs="*", default=["lowpass_7k", "telephone", "loud_12", "loud_6"],
                    help="channel conditions (band limits, hot microphone): clip F1 and false alerts again with the audio through each")
    ap.add_argument("--tag", default="", help="write results/danger_TAG.json instead of danger.json (a variant)")
    ap.add_argument("--transcripts", type=Path, default=RESULTS / "danger-transcripts.json",
                    help="cache of tiny.en transcripts of the held-out screams clips")
    args = ap.parse_args()
    for name in ("screams", "ravdess", "tess"):
        corpus_or_exit(name, args.data)
    t_all = time.time()
    if not args.holdout_model.is_file():
        print("training the held-out scream detector ...", file=sys.stderr)
        train_scream_detector(args.data, RESULTS / "scream-all.tmp.vocalis", holdout_out=args.holdout_model)
        (RESULTS / "scream-all.tmp.vocalis").unlink(missing_ok=True)
    first = load_bundle(args.holdout_model)
    if not args.one_stage and not args.holdout_confirm_model.is_file():
        sys.exit(f"{args.holdout_confirm_model} is missing: run scripts/train_scream.py (or pass --one-stage)")
    confirm = None if args.one_stage else load_bundle(args.holdout_confirm_model)
    scream = ScreamDetector(first, confirm)
    decider = confirm or first
    # the operating point chosen on the training side (metrics.validation.criterion in the bundle)
    on = float(scream.operating_point or PolicyConfig().on_threshold)
    emotion = None if args.no_emotion else load_bundle()
    backbone: Bundle | None = None
    if emotion is not None and args.backbone_holdout_model is not None:
        if not args.backbone_holdout_model.is_file():
            print("training the held-out backbone scream head ...", file=sys.stderr)
            tmp = RESULTS / "scream-backbone-all.tmp.vocalis"
            train_backbone_scream_head(args.data, tmp, holdout_out=args.backbone_holdout_model, emotion=emotion)
            tmp.unlink(missing_ok=True)
        backbone = load_bundle(args.backbone_holdout_model)
    w_backbone = 0.0 if backbone is None else on / float(backbone.manifest.metrics["operating_point"])
    policy = PolicyConfig(w_backbone=w_backbone).at_threshold(on)
    heads = {"scream_model": scream, "backbone_scream_model": backbone if backbone is not None else False}
    clips = scream_dataset(args.data)
    test = [c for c in clips if c.split == "test" and c.source == "screams"]

    # transcripts (one tiny.en run per held-out screams clip; cached by path under --data, so a
    # changed split only transcribes the clips the cache lacks)
    transcripts: dict[str, str] = {}
    asr_ms: list[float] = []
    if not args.no_asr:
        cached: dict[str, Any] = {"text": {}, "ms": []}
        if args.transcripts.is_file():
            cached = json.loads(args.transcripts.read_text())
        root = args.data.resolve()
        text = {str(root / k): v for k, v in cached["text"].items()}
        asr_ms = list(cached["ms"])
        missing = [c for c in test if str(Path(c.path).resolve()) not in text]
        if missing:
            model = load_asr(**SPOTTER_RUNTIME)  # the live spotter's runtime
            for c in missing:
                x = c.audio()
                t0 = time.perf_counter()
                text[str(Path(c.path).resolve())] = transcribe(x, model)
                asr_ms.append((time.perf_counter() - t0) * 1e3)
            args.transcripts.parent.mkdir(parents=True, exist_ok=True)
            args.transcripts.write_text(json.dumps(
                {"text": {Path(k).relative_to(root).as_posix(): v for k, v in sorted(text.items())}, "ms": asr_ms},
                indent=1))
        transcripts = {str(c.path): text[str(Path(c.path).resolve())] for c in test}
    print("clip level ...", file=sys.stderr)
    clip = clip_level(test, heads, emotion, transcripts, policy)
    kw = keyword_eval(test, transcripts) if transcripts else {}

    # false alerts per hour
    print("false alerts ...", file=sys.stderr)
    if args.max_speech_clips:
        keep = [c for c in clips if c.split == "test" and c.source in ("ravdess", "tess")][: args.max_speech_clips]
        clips_fa = keep + [c for c in clips if not (c.split == "test" and c.source in ("ravdess", "tess"))]
    else:
        clips_fa = clips
    x, speech_s = non_danger_audio(clips_fa, args.noise_minutes)
    hours = x.size / SAMPLE_RATE / 3600
    pred = StreamingPredictor(StreamConfig(asr="off" if args.no_asr else "auto"),
                              emotion_model=emotion if emotion is not None else False,
                              keyword_spotter=False if args.no_asr else None, **heads)
    pol = DangerPolicy(policy)
    t0 = time.time()
    windows, events = stream(pred, pol, x)
    fa_wall = time.time() - t0
    alerts = [e for e in events if e.type == "alert"]
    starts = [e for e in events if e.type == "danger.started"]
    comp: dict[str, list[float]] = {}
    for w in windows:
        for k, v in w.timings_ms.items():
            comp.setdefault(k, []).append(v)
    n_w = len(windows)
    cost = {k: {**summarize(v), "runs_per_window": round(len(v) / n_w, 4)} for k, v in comp.items()}
    danger_path = [w.timings_ms.get("vad", 0) + w.timings_ms.get("scream", 0) for w in windows]
    cost["danger_path_vad_plus_scream"] = summarize(danger_path)
    false_alerts = {
        "hours": round(hours, 3), "speech_hours": round(speech_s / 3600, 3),
        "noise_hours": round((x.size / SAMPLE_RATE - speech_s) / 3600, 3),
        "alerts": len(alerts), "alerts_per_hour": round(len(alerts) / hours, 3),
        "danger_episodes": len(starts), "episodes_per_hour": round(len(starts) / hours, 3),
        "episode_times_s": [round(e.t, 1) for e in starts][:50],
        "windows": n_w, "keyword_hits": sum(bool(w.keywords) for w in windows),
        "asr_calls": len(comp.get("asr", [])), "wall_s": round(fa_wall, 1),
        "realtime_factor": round(fa_wall / (x.size / SAMPLE_RATE), 4),
    }

    # time to alert
    print("latency ...", file=sys.stderr)
    rng = random.Random(1)
    filler = [c for c in clips if c.split == "test" and c.source in ("ravdess", "tess")]
    lat: list[float] = []
    missed = 0
    for c in [c for c in test if c.label == 1]:
        before = np.concatenate([f.audio() for f in rng.sample(filler, 3)])[: 6 * SAMPLE_RATE]
        before = np.pad(before, (6 * SAMPLE_RATE - before.size, 0))
        after = np.concatenate([f.audio() for f in rng.sample(filler, 2)])[: 4 * SAMPLE_RATE]
        y = np.concatenate([before, c.audio(), after])
        p = StreamingPredictor(StreamConfig(asr="off"), emotion_model=emotion if emotion is not None else False,
                               keyword_spotter=False, **heads)
        _, ev = stream(p, DangerPolicy(policy), y)
        st = [e.t for e in ev if e.type == "danger.started" and e.t > 6.0]
        if st:
            lat.append(st[0] - 6.0)
        else:
            missed += 1
    latency = {**summarize(lat), "missed": missed, "detected_fraction": round(len(lat) / max(1, len(lat) + missed), 4),
               "countdown_s_excluded": DangerPolicy().config.countdown_s}

    # band-limited conditions: the same clips and the same long stream through each channel
    band: dict[str, Any] = {}
    for ch in args.channels:
        print(f"band-limited: {ch} ...", file=sys.stderr)
        bc = band_limited_clips(test, heads, emotion, ch, policy)
        xb = apply_channel(x, ch)
        pb = StreamingPredictor(StreamConfig(asr="off"), emotion_model=emotion if emotion is not None else False,
                                keyword_spotter=False, **heads)
        _, evb = stream(pb, DangerPolicy(policy), xb)
        n_alerts = sum(e.type == "alert" for e in evb)
        n_eps = sum(e.type == "danger.started" for e in evb)
        band[ch] = {**bc, "false_alerts": {"hours": round(hours, 3), "alerts": n_alerts,
                                           "alerts_per_hour": round(n_alerts / hours, 3), "danger_episodes": n_eps,
                                           "episodes_per_hour": round(n_eps / hours, 3)}}

    payload = {
        "scream_model": {"path": str(args.holdout_model), "recipe": _recipe(scream),
                         "held_out": first.manifest.metrics.get("held_out", {}),
                         "confirm": None if confirm is None else {
                             "path": str(args.holdout_confirm_model), "recipe": confirm.manifest.recipe.get("name"),
                             "gate": scream.gate, "operating_point": on,
                             "held_out_alone": confirm.manifest.metrics.get("held_out", {})}},
        "emotion_model": None if emotion is None else emotion.manifest.name,
        "backbone_scream_model": None if backbone is None else {
            "path": str(args.backbone_holdout_model), "recipe": backbone.manifest.recipe.get("name"),
            "operating_point": backbone.manifest.metrics.get("operating_point"),
            "held_out": backbone.manifest.metrics.get("held_out", {})},
        "operating_point": {"on_threshold": on, "chosen_on": "the training side only ("
                            + str(decider.manifest.metrics.get("validation", {}).get("criterion", "?"))
                            + "); the held-out test side was not used"},
        "split": {"grouping": SPLIT_GROUPING, **first.manifest.metrics.get("held_out", {}).get("split", {})},
        "previous": previous_detector(RESULTS / "danger.json", _setup(_recipes(scream, backbone), on,
                                                                       dict(policy.__dict__))),
        "stream_config": StreamConfig().__dict__, "policy_config": dict(policy.__dict__),
        "clip_level": clip, "keywords": {**kw, "asr_ms_per_clip": summarize(asr_ms)},
        "false_alerts": false_alerts, "latency_s": latency, "per_window_cost_ms": cost, "band_limited": band,
        "targets": {
            "clip_f1>=0.95": clip["streaming_policy"]["f1"] >= 0.95,
            "false_alerts_per_hour<=0.5": false_alerts["alerts_per_hour"] <= 0.5 and hours >= 2.0,
            "median_latency<=3s": bool(lat) and latency["median"] <= 3.0,
            "danger_path_median<=5ms": cost["danger_path_vad_plus_scream"].get("median", 1e9) <= 5.0,
            **{f"{ch}: clip_f1>=0.95 (no ASR)": b["streaming_policy_no_asr"]["f1"] >= 0.95 for ch, b in band.items()},
            **{f"{ch}: false_alerts_per_hour<=0.5": b["false_alerts"]["alerts_per_hour"] <= 0.5 and hours >= 2.0
               for ch, b in band.items()},
        },
        "total_wall_s": round(time.time() - t_all, 1),
    }
    path = save(f"danger_{args.tag}" if args.tag else "danger", payload, "python benchmarks/danger.py " + " ".join(sys.argv[1:]))
    print(f"| metric | value | target |\n|---|---|---|\n"
          f"| clip F1, offline whole clip (held-out screams) | {clip['offline_whole_clip']['f1']} | >= 0.95 |\n"
          f"| clip F1, streaming + policy | {clip['streaming_policy']['f1']} | >= 0.95 |\n"
          f"| keyword hits P / R (any keyword) | {kw.get('any_keyword', {}).get('precision')} / "
          f"{kw.get('any_keyword', {}).get('recall')} | - |\n"
          f"| false alerts per hour ({hours:.2f} h non-danger) | {false_alerts['alerts_per_hour']} | <= 0.5 |\n"
          f"| danger episodes per hour | {false_alerts['episodes_per_hour']} | - |\n"
          f"| time to danger.started, median (p90) | {latency.get('median')} s ({latency.get('p90')} s), "
          f"missed {missed} | <= 3 s |\n"
          f"| danger path per window (VAD + scream), median | {cost['danger_path_vad_plus_scream'].get('median')} ms | <= 5 ms |\n"
          + "".join(f"| {k} per window: median / p90 / mean (runs per window) | {v.get('median')} / {v.get('p90')} / "
                    f"{v.get('mean')} ms ({v.get('runs_per_window')}) | - |\n"
                    for k, v in cost.items() if k != "danger_path_vad_plus_scream")
          + "".join(f"| {ch}: clip F1, streaming + policy (no ASR) | {b['streaming_policy_no_asr']['f1']} | >= 0.95 |\n"
                    f"| {ch}: false alerts per hour ({hours:.2f} h) | {b['false_alerts']['alerts_per_hour']} | <= 0.5 |\n"
                    for ch, b in band.items()))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
