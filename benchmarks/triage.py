"""Call triage benchmark: speed (x real time, transcript included) and priority-ordering quality.

Method. ``--calls`` constructed calls (default 60 of ~60 s = 1 hour), half urgent, half not, all
through an 8 kHz telephone band with room noise at 20-30 dB SNR:

* urgent: ``medical`` and ``violence`` calls (espeak-ng sentences holding grave words, e.g. "my
  father is not breathing", interleaved with fearful screamed calls for help from the ``screams``
  corpus), and ``voice-only`` calls (screamed calls for help and pleas with no lexicon word:
  "please hurry, oh god");
* not urgent: ``routine`` enquiries (espeak-ng, no grave word or a negated one: "nobody is hurt",
  interleaved with calm real voices from the ``screams`` corpus' calm calls),
  ``prank`` calls (grave words with laughter), ``pocket`` calls (ambient recordings from the
  ``screams`` corpus' quiet backgrounds and rustle) and ``silent`` calls.

All corpus clips come from the held-out side of the ``screams`` split of
:func:`vocalis.danger.train.scream_dataset`: the emotion model never saw the corpus (RAVDESS + TESS)
and the scream detector used here (``benchmarks/results/scream-holdout.vocalis``, as in
``danger.py``) was trained without those clips. The espeak voice is the same in urgent and
non-urgent calls, so the words carry the lexicon part and the corpus clips the voice part. Ordering quality: ROC-AUC of the priority for urgent vs not, precision
at k = number of urgent calls, and NDCG of the queue; the same from the words alone and the voice
alone (re-scored from the stored reports) shows what each part adds.

    python benchmarks/triage.py [--calls 60] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, corpus_or_exit, save, section
from vocalis.audio.io import load_audio, resample
from vocalis.danger.train import scream_dataset, train_scream_detector
from vocalis.triage import AnalyzerSpec, PriorityConfig, triage_files
from vocalis.triage.lexicon import GravityHit
from vocalis.triage.priority import WindowAffect, score

SR = 16000
MEDICAL = [
    "Please come quickly, my father is not breathing.", "My wife collapsed and she is unconscious.",
    "He has terrible chest pain, I think it is a heart attack.", "My son took an overdose, he is not responding.",
    "There is so much blood, she is bleeding from her head.", "My baby is choking, she can't breathe.",
]
VIOLENCE = [
    "A man has a knife and he stabbed my neighbour.", "Someone is shooting outside, I heard a gun.",
    "There is a fire in our building and people are trapped.", "My husband is attacking me, please send the police.",
    "Somebody broke in and they are still in the house.", "There was a car crash and the driver is dead.",
]
PLEAS = ["Please hurry, oh god, please.", "Please, please come now.", "Oh my god, please be quick.",
         "I am at twelve Park Road, please hurry."]
ROUTINE = [
    "Hello, I would like to ask about a parking fine.", "I want to report a broken street light on Main Street.",
    "My neighbour's music is very loud again tonight.", "I lost my wallet yesterday, who should I call?",
    "There is no fire, I only smelled some toast, nobody is hurt.", "Can you tell me the number for the town hall?",
    "I think my cat is stuck in a tree, it is not an emergency.", "What time does the pharmacy open tomorrow?",
]
PRANK = ["Ha ha ha, there is a fire at the school, ha ha!", "He is dead, ha ha, just kidding!",
         "Ha ha, someone has a gun, ha ha ha.", "There was a bomb, ha ha ha, bye!"]


def espeak(text: str, tmp: Path, n: int) -> np.ndarray:
    out = tmp / f"s{n}.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(out), text], check=True, capture_output=True)
    return load_audio(out)


def telephone(x: np.ndarray) -> np.ndarray:
    return resample(resample(x, SR, 8000), 8000, SR)


def build_calls(n_calls: int, out: Path, seed: int = 0) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    corpus_or_exit("screams")
    held_out = [c for c in scream_dataset(DATA) if c.split == "test" and c.source == "screams"]
    screamed = [c.path for c in held_out if c.subset == "scream_call"]
    ambient = [c.path for c in held_out if c.subset == "quiet_background"]
    calm = [c.path for c in held_out if c.subset == "calm_call"]
    tmp = Path(tempfile.mkdtemp())
    n_say = 0

    def say(text: str) -> np.ndarray:
        nonlocal n_say
        n_say += 1
        return espeak(text, tmp, n_say)

    def clip(paths: list[Any]) -> np.ndarray:
        return load_audio(paths[int(rng.integers(len(paths)))])

    def gap() -> np.ndarray:
        return np.zeros(int(rng.uniform(0.3, 1.2) * SR), np.float32)

    kinds = ["medical", "violence", "voice-only", "routine", "prank", "pocket", "silent"]
    weights = np.array([1 / 6, 1 / 6, 1 / 6, 0.25, 0.1, 0.075, 0.075])
    counts = np.floor(weights * n_calls).astype(int)
    counts[3] += n_calls - counts.sum()
    truth: dict[str, dict[str, Any]] = {}
    i = 0
    for kind, count in zip(kinds, counts):
        for _ in range(count):
            target = rng.uniform(45, 75)
            parts: list[np.ndarray] = []
            while sum(p.size for p in parts) < target * SR:
                if kind in ("medical", "violence"):
                    pool = MEDICAL if kind == "medical" else VIOLENCE
                    choice = rng.integers(3)
                    parts += [say(pool[int(rng.integers(len(pool)))]) if choice < 2 else clip(screamed), gap()]
                elif kind == "voice-only":
                    parts += [clip(screamed) if rng.random() < 0.6 else say(PLEAS[int(rng.integers(len(PLEAS)))]), gap()]
                elif kind == "routine":
                    parts += [say(ROUTINE[int(rng.integers(len(ROUTINE)))]) if rng.random() < 0.6 else clip(calm),
                              gap(), gap()]
                elif kind == "prank":
                    parts += [say(PRANK[int(rng.integers(len(PRANK)))]) if rng.random() < 0.6
                              else say(ROUTINE[int(rng.integers(len(ROUTINE)))]), gap()]
                elif kind == "pocket":
                    a = clip(ambient)
                    rustle = np.cumsum(rng.standard_normal(a.size)).astype(np.float32)
                    rustle -= np.convolve(rustle, np.ones(400) / 400, "same").astype(np.float32)
                    parts += [a + 0.002 * rustle / (np.std(rustle) + 1e-9)]
                else:
                    parts += [np.zeros(5 * SR, np.float32)]
            x = np.concatenate(parts)[: int(target * SR)]
            snr = rng.uniform(20, 30)
            speech_rms = np.sqrt(np.mean(x**2)) if kind not in ("silent",) else 0.01
            x = x + rng.standard_normal(x.size).astype(np.float32) * speech_rms / 10 ** (snr / 20)
            x = telephone(x.astype(np.float32))
            x = x / max(1.0, float(np.max(np.abs(x))) / 0.99)
            name = f"call{i:03d}_{kind}"
            sf.write(out / f"{name}.flac", x, SR)
            truth[name] = {"kind": kind, "urgent": kind in ("medical", "violence", "voice-only"),
                           "duration_s": x.size / SR}
            i += 1
    shutil.rmtree(tmp, ignore_errors=True)
    return truth


def auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / max(len(pos) * len(neg), 1)


def ranking_metrics(priorities: dict[str, float], truth: dict[str, dict[str, Any]]) -> dict[str, float]:
    names = sorted(priorities, key=lambda n: (-priorities[n], n))
    labels = [truth[n]["urgent"] for n in names]
    k = sum(labels)
    dcg = sum(1 / np.log2(i + 2) for i, y in enumerate(labels) if y)
    idcg = sum(1 / np.log2(i + 2) for i in range(k))
    return {"auc": round(auc([priorities[n] for n in names], labels), 3),
            "precision_at_k": round(sum(labels[:k]) / max(k, 1), 3), "ndcg": round(float(dcg / idcg), 3)}


def rescore(call: dict[str, Any], config: PriorityConfig, words: bool, voice: bool) -> float:
    hits = [GravityHit(k["phrase"], k["category"], k["weight"], k["negated"], k["start"], k["end"], k["context"])
            for k in call["keywords"]] if words else []
    windows = [WindowAffect(r["start"], r["end"], r.get("urgency", r.get("distress")) if voice else None)
               for r in call["timeline"]]
    return score(hits, windows, [], config)[0]


def report_lines(r: dict[str, Any] | None) -> list[str]:
    """The docs/benchmarks.md section (used by make_report.py)."""
    out = section("Emergency-call triage (speed with transcript, priority ordering)", r, "python benchmarks/triage.py")
    if r is None:
        return out
    out.append(f"Method: {r['calls']} constructed calls, {r['audio_min']} min of audio; {r['method']}. Urgent = "
               "medical, violence and voice-only calls; not urgent = routine, prank, pocket and silent calls. "
               "Whole pipeline per call: decode, Silero VAD, faster-whisper tiny.en transcript of the speech "
               "(pause-cut windows of up to 30 s decoded together, int8, greedy, word timestamps), caller state per 3 s speech window (default emotion "
               f"model), lexicon, signals, priority; {r['jobs']} worker processes of one thread each.\n")
    out.append("| metric | result | target |")
    out.append("|---|---|---|")
    out.append(f"| triage speed incl. transcript | **{r['x_real_time']:.1f}x real time** ({r['wall_s']:.0f} s for "
               f"{r['audio_min']:.0f} min; 1 h would take {3600 / r['x_real_time']:.0f} s) | >= 60x (1 h in 60 s) |")
    nt = r.get("no_transcript")
    if nt:
        out.append(f"| triage speed without the transcript (`--no-transcript`: voice, scream, signals) | "
                   f"{nt['x_real_time']:.1f}x real time ({nt['wall_s']:.0f} s) | – |")
    for name, label in (("full", "priority (words + voice + signals)"), ("words_only", "words only (lexicon)"),
                        ("voice_only", "voice only (caller distress)")):
        m = r["ordering"][name]
        out.append(f"| ordering, {label} | ROC-AUC {m['auc']:.3f}, precision@k {m['precision_at_k']:.3f}, "
                   f"NDCG {m['ndcg']:.3f} | – |")
    out.append("")
    out.append("| kind | urgent | calls | mean priority | levels |")
    out.append("|---|---|---|---|---|")
    for kind, k in r["per_kind"].items():
        lv = ", ".join(f"{a} {b}" for a, b in sorted(k["levels"].items()))
        out.append(f"| {kind} | {'yes' if k['urgent'] else 'no'} | {k['n']} | {k['mean_priority']:.1f} | {lv} |")
    out.append("")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="Keep the constructed calls in this folder.")
    ap.add_argument("--one-stage", action="store_true", help="the scream detector's first stage alone")
    ap.add_argument("--tag", default=None, help="writes results/triage_TAG.json")
    args = ap.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("benchmark needs espeak-ng (apt-get install espeak-ng, or scripts/speech.sh)")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="vocalis-calls-"))
    folder.mkdir(parents=True, exist_ok=True)
    truth = build_calls(args.calls, folder)
    files = sorted(folder.glob("*.flac"))
    audio_s = sum(t["duration_s"] for t in truth.values())
    print(f"{len(files)} calls, {audio_s / 60:.1f} min; triage with {args.jobs} workers ...", flush=True)
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    holdout = RESULTS / "scream-holdout.vocalis"  # the scream detector trained without the held-out clips
    if not holdout.is_file():
        train_scream_detector(DATA, RESULTS / "scream-all.tmp.vocalis", holdout_out=holdout)
        (RESULTS / "scream-all.tmp.vocalis").unlink(missing_ok=True)
    confirm_path = RESULTS / "scream-confirm-holdout.vocalis"  # its second stage (scripts/train_scream.py)
    if not args.one_stage and not confirm_path.is_file():
        sys.exit(f"{confirm_path} is missing: run scripts/train_scream.py (or pass --one-stage)")
    confirm = None if args.one_stage else str(confirm_path)
    spec = AnalyzerSpec(scream_model=str(holdout), scream_confirm_model=confirm)
    reports = {f.stem: rep for f, rep, err in triage_files(files, spec, jobs=args.jobs) if rep}
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in triage_files(files, AnalyzerSpec(scream_model=str(holdout), scream_confirm_model=confirm,
                                              asr_model=None), jobs=args.jobs):
        pass
    wall_voice = time.perf_counter() - t1
    pr = {n: r["priority"] for n, r in reports.items()}
    cfg = PriorityConfig()
    kinds: dict[str, dict[str, Any]] = {}
    for n, r in reports.items():
        k = kinds.setdefault(truth[n]["kind"], {"n": 0, "priority": [], "levels": {}})
        k["n"] += 1
        k["priority"].append(r["priority"])
        k["levels"][r["level"]] = k["levels"].get(r["level"], 0) + 1
    per_kind = {k: {"n": v["n"], "urgent": truth[next(n for n in truth if truth[n]["kind"] == k)]["urgent"],
                    "mean_priority": round(float(np.mean(v["priority"])), 1), "levels": v["levels"]}
                for k, v in kinds.items()}
    result = {
        "method": "constructed calls (espeak-ng sentences + screams-corpus clips, telephone band, 20-30 dB SNR); "
                  "see benchmarks/triage.py",
        "calls": len(reports), "audio_min": round(audio_s / 60, 1), "jobs": args.jobs,
        "wall_s": round(wall, 1), "x_real_time": round(audio_s / wall, 1),
        "no_transcript": {"wall_s": round(wall_voice, 1), "x_real_time": round(audio_s / wall_voice, 1)},
        "load_average_start": round(load0, 2),
        "ordering": {
            "full": ranking_metrics(pr, truth),
            "words_only": ranking_metrics({n: rescore(r, cfg, True, False) for n, r in reports.items()}, truth),
            "voice_only": ranking_metrics({n: rescore(r, cfg, False, True) for n, r in reports.items()}, truth),
        },
        "per_kind": per_kind,
    }
    print(result)
    path = save(f"triage_{args.tag}" if args.tag else "triage", result, "python benchmarks/triage.py " + " ".join(sys.argv[1:]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
