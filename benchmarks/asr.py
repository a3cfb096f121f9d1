"""Transcript quality and cost of the triage ASR runtimes: word error rate on calls with known words.

Method. ``--calls`` calls of ~40 s, each espeak-ng sentences from the triage benchmark's lists
(medical, violence, pleas, routine, prank) separated by 0.3-1 s pauses, room noise at 25 dB SNR,
then the 8 kHz telephone band (seeded; the reference text is the sentences spoken). Every variant
transcribes every call with :class:`vocalis.triage.transcript.Transcriber` (tiny.en, int8, greedy,
word timestamps, one thread, the speech spans of Silero VAD cut into windows of up to 30 s as in
triage) in this process, one
after the other on the same calls; WER = word-level edit distance / reference words, pooled over
the calls (lower case, punctuation removed). Time = wall seconds for all calls; x real time =
audio seconds / that.

    python benchmarks/asr.py [--calls 12]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save, section
from triage import MEDICAL, PLEAS, PRANK, ROUTINE, SR, VIOLENCE, espeak, telephone

VARIANTS = {  # name -> (encoder, decoder)
    "ctranslate2 encoder + decoder (faster-whisper's runtime)": ("ctranslate2", "ctranslate2"),
    "onnxruntime encoder + CTranslate2 decoder (session 3 default)": ("onnx", "ctranslate2"),
    "onnxruntime encoder + decoder (default)": ("onnx", "onnx"),
}


def build(n_calls: int, seed: int = 1) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    sents = MEDICAL + VIOLENCE + PLEAS + ROUTINE + PRANK
    tmp = Path(tempfile.mkdtemp())
    calls = []
    k = 0
    for _ in range(n_calls):
        parts: list[np.ndarray] = []
        said: list[str] = []
        while sum(p.size for p in parts) < 40 * SR:
            s = sents[int(rng.integers(len(sents)))]
            k += 1
            parts += [espeak(s, tmp, k), np.zeros(int(rng.uniform(0.3, 1.0) * SR), np.float32)]
            said.append(s)
        x = np.concatenate(parts)
        x = x + rng.standard_normal(x.size).astype(np.float32) * np.sqrt(np.mean(x**2)) / 10 ** (25 / 20)
        calls.append((telephone(x.astype(np.float32)), " ".join(said)))
    return calls


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def edits(ref: list[str], hyp: list[str]) -> int:
    d = np.arange(len(hyp) + 1)
    for i in range(1, len(ref) + 1):
        prev = d.copy()
        d[0] = i
        for j in range(1, len(hyp) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (ref[i - 1] != hyp[j - 1]))
    return int(d[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=12)
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    from vocalis.triage.call import speech_spans

    threadpool_limits(1)  # one thread everywhere, like a triage worker
    from vocalis.triage.transcript import Transcriber

    calls = build(args.calls)
    spans = [speech_spans(x) for x, _ in calls]
    audio_s = sum(x.size for x, _ in calls) / SR
    rows: list[dict[str, Any]] = []
    for name, (enc, dec) in VARIANTS.items():
        tr = Transcriber(encoder=enc, decoder=dec)
        tr.transcribe(calls[0][0][: 3 * SR])  # load and warm up outside the clock
        errors = n_ref = 0
        t0 = time.perf_counter()
        hyps = [tr.transcribe(x, s).text for (x, _), s in zip(calls, spans)]
        wall = time.perf_counter() - t0
        for (_, ref), hyp in zip(calls, hyps):
            errors += edits(words(ref), words(hyp))
            n_ref += len(words(ref))
        rows.append({"variant": name, "encoder": enc, "decoder": dec, "wer": round(errors / n_ref, 3),
                     "wall_s": round(wall, 1), "x_real_time": round(audio_s / wall, 1)})
        print(rows[-1], flush=True)
    result = {"calls": len(calls), "audio_min": round(audio_s / 60, 1), "reference_words": n_ref, "rows": rows}
    path = save("asr", result, "python benchmarks/asr.py " + " ".join(sys.argv[1:]))
    print(f"wrote {path}")


def report_lines(r: dict[str, Any] | None) -> list[str]:
    """The docs/benchmarks.md section (used by make_report.py)."""
    out = section("Triage transcript: word error rate and cost by runtime", r, "python benchmarks/asr.py")
    if r is None:
        return out
    out.append(f"Method: {r['calls']} calls ({r['audio_min']} min) of espeak-ng sentences with 0.3-1 s pauses, room "
               "noise at 25 dB SNR, 8 kHz telephone band; faster-whisper tiny.en (int8, greedy, word timestamps) on "
               "the Silero speech spans cut at pauses into windows of up to 30 s decoded together without timestamp "
               f"tokens (`Transcriber`, session 5; the session-4 sequential path scored 0.405 / 0.443 / 0.474 "
               f"WER for the three variants below), one thread, variants one after the other on the same calls; WER pooled "
               f"over {r['reference_words']} reference words. Same weights everywhere: the runtimes differ in their "
               "int8 arithmetic only (the onnxruntime decoder in float32 reproduces CTranslate2's float32 tokens "
               "exactly, `tests/test_asr.py`).\n")
    out.append("| encoder + decoder | WER | wall | x real time (one thread) |")
    out.append("|---|---:|---:|---:|")
    for row in r["rows"]:
        out.append(f"| {row['variant']} | {row['wer']:.3f} | {row['wall_s']:.1f} s | {row['x_real_time']:.1f}x |")
    out.append("")
    return out


if __name__ == "__main__":
    main()
