"""Speech presence (``Prediction.speech``, the wellbeing speech check): who is said to hold speech.

Method. Every clip of RAVDESS and TESS (acted speech), every clip of the ``screams`` corpus (by
subset: screams and screamed or calm calls for help, and quiet backgrounds of phone recordings),
and synthetic sounds that are not speech (3 s each, 20 seeds or frequencies per kind: white and
pink noise at -50 / -30 / -15 dBFS, pure tones 100-2000 Hz, a harmonic complex at 100-300 Hz
with 5 Hz vibrato, the voice stand-in of the unit tests) go through
:func:`vocalis.audio.vad.speech_presence` (Silero VAD over the whole clip, no silence gate):
``detected`` = some 32 ms frame reaches speech probability 0.5. Cost = CPU time per second of
audio, one thread, decoding excluded.

    python benchmarks/speech_presence.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import csv
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus_or_exit, save, section
from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import load_audio
from vocalis.audio.vad import SPEECH_PEAK, silero_onnx_path, speech_presence

SR = SAMPLE_RATE


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size)
    spec[1:] /= np.sqrt(f[1:])
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x**2))


def synthetic() -> Iterator[tuple[str, np.ndarray]]:
    n = 3 * SR
    t = np.arange(n) / SR
    for level in (-50, -30, -15):
        amp = 10 ** (level / 20)
        for seed in range(20):
            rng = np.random.default_rng(seed)
            yield f"white noise {level} dBFS", (amp * rng.standard_normal(n)).astype(np.float32)
            yield f"pink noise {level} dBFS", (amp * _pink(n, rng)).astype(np.float32)
    for f0 in np.geomspace(100, 2000, 20):
        yield "pure tone 100-2000 Hz", (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
    for f0 in np.linspace(100, 300, 20):
        f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 5 * t))
        ph = 2 * np.pi * np.cumsum(f) / SR
        x = sum(np.sin(k * ph) / k for k in range(1, 9))
        yield "harmonic complex 100-300 Hz, vibrato", (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def corpus(name: str, group: str | None = None) -> Iterator[tuple[str, Path]]:
    root = corpus_or_exit(name)
    with open(root / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            yield (f"{name} {r[group]}" if group else name), root / r["path"]


def main() -> None:
    if silero_onnx_path() is None:
        sys.exit("silero-vad is not installed (pip install --no-deps silero-vad)")
    rows: dict[str, dict[str, Any]] = {}
    cost: list[float] = []

    def add(kind: str, x: np.ndarray) -> None:
        t0 = time.process_time()
        s = speech_presence(x, SR)
        cost.append((time.process_time() - t0) / (x.size / SR) * 1e3)
        r = rows.setdefault(kind, {"n": 0, "detected": 0, "peaks": [], "voiced": []})
        r["n"] += 1
        r["detected"] += int(bool(s.detected))
        r["peaks"].append(s.peak)
        r["voiced"].append(s.voiced_s)

    for source in (corpus("ravdess"), corpus("tess"), corpus("screams", "subset")):
        for kind, path in source:
            add(kind, load_audio(path, SR))
    for kind, x in synthetic():
        add(kind, x)
    table = [{"kind": k, "n": r["n"], "detected": r["detected"],
              "peak_median": round(float(np.median(r["peaks"])), 3),
              "peak_min": round(float(np.min(r["peaks"])), 3), "peak_max": round(float(np.max(r["peaks"])), 3),
              "voiced_s_median": round(float(np.median(r["voiced"])), 2)} for k, r in rows.items()]
    result = {"threshold": SPEECH_PEAK, "rows": table,
              "cost_ms_per_audio_s_median": round(float(np.median(cost)), 3)}
    print(save("speech_presence", result, "python benchmarks/speech_presence.py " + " ".join(sys.argv[1:])))


def report_lines(r: dict[str, Any] | None) -> list[str]:
    """The docs/benchmarks.md section (used by make_report.py)."""
    out = section("Speech presence: which clips are said to hold speech", r, "python benchmarks/speech_presence.py")
    if r is None:
        return out
    out.append(f"Method: `vocalis.audio.vad.speech_presence` (Silero VAD over the whole clip, no silence gate) on "
               f"every clip of the corpora and on synthetic sounds that are not speech (3 s each); a clip holds "
               f"speech when some 32 ms frame reaches probability {r['threshold']}. `vocalis predict`, "
               "`POST /v1/predict` and `vocalis batch` then mark a label of a clip without speech as a guess; "
               "wellbeing enrolment and check-ins refuse it. No threshold was tuned on these clips: 0.5 is "
               "Silero's own default. Cost: "
               f"{r['cost_ms_per_audio_s_median']:.1f} ms of CPU per second of audio (median, one thread).\n")
    out.append("| clips | n | said to hold speech | peak probability median (min-max) | speech seconds (median) |")
    out.append("|---|---:|---:|---|---:|")
    for row in r["rows"]:
        out.append(f"| {row['kind']} | {row['n']} | {row['detected']} ({row['detected'] / row['n']:.1%}) | "
                   f"{row['peak_median']:.2f} ({row['peak_min']:.2f}-{row['peak_max']:.2f}) | "
                   f"{row['voiced_s_median']:.2f} |")
    out.append("")
    by = {row["kind"]: row for row in r["rows"]}
    acted = [by[k] for k in ("ravdess", "tess") if k in by]
    missed = sum(row["n"] - row["detected"] for row in acted)
    out.append(f"Acted speech: {missed} of {sum(row['n'] for row in acted)} clips not heard as speech (these would be "
               "refused as wellbeing clips). Screamed calls for help mostly hold words Silero hears; screams "
               "without words (the `scream_background` clips) mostly do not, and get an emotion label from "
               "`predict` marked as a guess. The danger path never depends on this check.\n")
    return out


if __name__ == "__main__":
    main()
