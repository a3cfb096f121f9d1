"""Shared helpers for the benchmark scripts: data location, machine description, result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"


def corpus_or_exit(name: str, data: Path = DATA) -> Path:
    p = data / name
    if not (p / "manifest.csv").is_file():
        sys.exit(f"benchmark needs the {name} corpus at {p} (../shared/data next to the repo); not found")
    return p


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024**2:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}, Python {platform.python_version()}, {platform.system()}"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def meta_line(r: dict[str, Any]) -> str:
    """The provenance line every docs/benchmarks.md section starts with (machine, date, commit, command)."""
    return (f"*Machine:* {r['machine']}. *Date:* {r['date']}. *Commit:* `{r['commit']}`. "
            f"*Command:* `{r['command'].strip()}`")


def section(title: str, r: dict[str, Any] | None, command: str) -> list[str]:
    """The head of a docs/benchmarks.md section: ``## title``, then ``r``'s provenance line, or, when the
    benchmark has no result yet, the ``command`` that makes one."""
    return [f"## {title}\n", meta_line(r) + "\n" if r is not None else f"_not run yet_: `{command}`\n"]


def load_crops(path: Path) -> Any:
    """Crop features (:class:`vocalis.danger.train.CropFeatures`) cached by :func:`save_crops`."""
    import numpy as np

    from vocalis.danger.train import CropFeatures

    d = np.load(path)
    return CropFeatures(d["X"], d["ci"], d["whole"])


def save_crops(path: Path, f: Any) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, X=f.X, ci=f.clip_index, whole=f.whole)


def save(name: str, payload: dict[str, Any], command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    # a benchmark that records the load before it started is judged by that (its own load is not "other jobs")
    load1 = float(payload.get("load_average_start", os.getloadavg()[0]))
    load = f", load average {load1:.1f} (other jobs running: timings inflated)" if load1 > 1.5 else ""
    payload = {"benchmark": name, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "machine": machine() + load, "commit": commit(), "command": command, **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def label_ceiling(clips: Any) -> dict[str, Any]:
    """The best clip F1 a voice-only detector can reach on these ``screams`` clips.

    ``danger`` is the corpus' *environment* label. A calm call recorded in a "scream" environment
    (``vocalis.danger.train.NOT_TRAINED_ON``) is a positive with the same voice as a calm call in a
    safe one (a negative). A detector that misses only those and is right on every other clip
    reaches this F1."""
    from vocalis.danger.train import trainable

    pos = sum(c.label for c in clips)
    env_only = sum(1 for c in clips if c.label == 1 and not trainable(c))
    r_max = (pos - env_only) / pos if pos else 0.0
    return {"calm_calls_in_scream_environment": env_only, "positives": pos,
            "f1_if_those_are_missed_and_all_else_right": round(2 * r_max / (1 + r_max), 4) if r_max else 0.0}
