"""Batch analysis throughput (``vocalis batch``): files/s and audio-hours per hour, local engine vs Ray.

Method. ``--files`` RAVDESS clips (48 kHz FLAC, ~3.7 s each; evenly spaced over the sorted manifest so
every actor appears) are analysed into Parquet with the bundled default model by

* the local engine in this process (``workers=1``, the single-core baseline),
* the local engine with ``--workers`` processes,
* the Ray engine with ``--workers`` predictor actors on a local Ray instance started here with
  ``num_cpus=--workers``. The instance's start is timed apart (``ray_start_s``, paid once per
  session on a real cluster); the Ray run's wall time includes starting the actors and loading the
  model in each, like the local pool's includes starting its processes.

Wall time is from the call to the closed Parquet file. audio-hours/hour = seconds of audio analysed
per second of wall time. The two engines' probabilities are compared file by file (max abs difference).

    python benchmarks/batch.py [--files 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus_or_exit, save, section
from vocalis.batch import BatchSpec, run_batch


def pick_files(n: int) -> list[str]:
    root = corpus_or_exit("ravdess")
    with open(root / "manifest.csv", newline="") as f:
        rows = sorted(r["path"] for r in csv.DictReader(f))
    if n >= len(rows):
        return [str(root / p) for p in rows]
    step = len(rows) / n
    return [str(root / rows[int(i * step)]) for i in range(n)]


def _row(name: str, summary: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    d = summary.to_dict()
    return {"run": name, "engine": d["engine"], "workers": d["workers"], "files": d["files"], "failed": d["failed"],
            "audio_min": round(d["audio_s"] / 60, 2), "wall_s": round(d["wall_s"], 2),
            "files_per_s": round(d["files_per_s"], 2), "audio_hours_per_hour": round(d["audio_hours_per_hour"], 1),
            **(extra or {})}


def max_prob_diff(a: Path, b: Path) -> float:
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a), pq.read_table(b)
    cols = [c for c in ta.column_names if c.startswith("prob_")]
    worst = 0.0
    for c in cols:
        for x, y in zip(ta.column(c).to_pylist(), tb.column(c).to_pylist()):
            if x is not None and y is not None:
                worst = max(worst, abs(x - y))
    return worst


def report_lines(r: dict[str, Any] | None) -> list[str]:
    """The docs/benchmarks.md section (used by make_report.py)."""
    out = section("Batch analysis (`vocalis batch`): local process pool vs Ray Data", r, "python benchmarks/batch.py")
    if r is None:
        return out
    out.append(f"Method: {r['files']} RAVDESS clips ({r['audio_min']:.1f} min of 48 kHz FLAC) through the whole "
               "pipeline (decode + resample to 16 kHz, Whisper tiny.en encoder features, ONNX head, calibrated "
               "probabilities, one Parquet row per file) with the bundled default model; one single-threaded "
               "analyser per worker process or Ray actor (the in-process baseline leaves numpy its default "
               "threads). Wall time includes starting the workers and loading the "
               f"model in each; starting the local Ray instance took {r['ray_start_s']:.1f} s more (once per session, "
               "not counted). audio-hours/hour = audio seconds per wall-clock second."
               + (f" Load average {r['load_average_start']:.1f} at the start: the machine was shared with other "
                  "jobs, so these numbers are a lower bound." if r.get("load_average_start", 0) > 1.5 else "")
               + "\n")
    out.append("| run | engine | workers | files (failed) | wall | files/s | audio-hours/hour |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for row in r["runs"]:
        out.append(f"| {row['run']} | {row['engine']} | {row['workers']} | {row['files']} ({row['failed']}) | "
                   f"{row['wall_s']:.1f} s | {row['files_per_s']:.1f} | {row['audio_hours_per_hour']:.0f} |")
    out.append("")
    out.append(f"The engines agree: the largest difference of any class probability between the local and the Ray "
               f"output is {r['max_prob_diff_local_vs_ray']:.1e}.\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    try:
        import ray
    except ImportError:
        sys.exit("benchmark needs ray for the Ray engine: pip install 'vocalis[ray]'")
    files = pick_files(args.files)
    tmp = Path(tempfile.mkdtemp(prefix="vocalis-batch-"))
    load0 = os.getloadavg()[0]
    spec = BatchSpec()
    runs: list[dict[str, Any]] = []
    try:
        print(f"{len(files)} files; local engine, 1 worker (in-process) ...", flush=True)
        s = run_batch(files, tmp / "local1.parquet", spec, engine="local", workers=1)
        runs.append(_row("local, in-process", s))
        print(runs[-1], flush=True)
        print(f"local engine, {args.workers} worker processes ...", flush=True)
        s = run_batch(files, tmp / "local.parquet", spec, engine="local", workers=args.workers)
        runs.append(_row("local, process pool", s))
        print(runs[-1], flush=True)
        print(f"ray engine, {args.workers} actors on a local instance ...", flush=True)
        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_start = time.perf_counter() - t0
        try:
            s = run_batch(files, tmp / "ray.parquet", spec, engine="ray", workers=args.workers)
        finally:
            ray.shutdown()
        runs.append(_row("ray data, actor pool", s))
        print(runs[-1], flush=True)
        diff = max_prob_diff(tmp / "local.parquet", tmp / "ray.parquet")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "method": "RAVDESS clips evenly spaced over the manifest; bundled default model; see benchmarks/batch.py",
        "files": len(files), "audio_min": runs[0]["audio_min"], "workers": args.workers,
        "ray_start_s": round(ray_start, 2), "load_average_start": round(load0, 2), "runs": runs,
        "max_prob_diff_local_vs_ray": diff,
    }
    print(result)
    path = save("batch", result, "python benchmarks/batch.py " + " ".join(sys.argv[1:]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
