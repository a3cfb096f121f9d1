"""Rebuild the bundled two-stage scream detector and its held-out twins.

* ``src/vocalis/data/scream.vocalis``: the first stage, recipe ``DEFAULT_CANDIDATE``;
* ``src/vocalis/data/scream_confirm.vocalis``: the second stage, recipe ``CONFIRM_CANDIDATE``, with
  ``metrics.cascade_gate`` = ``CASCADE_GATE`` (:mod:`vocalis.danger.detector`).

Each operating point is chosen on the validation part of the training side (the held-out test side
is never looked at). The held-out twins (``benchmarks/results/scream-holdout.vocalis``,
``scream-confirm-holdout.vocalis``), trained on the training side only, are what benchmarks/danger.py
and benchmarks/triage.py evaluate.

``--loud-copies N`` adds N hot-microphone copies of every non-danger clip to every fit of both stages
(:func:`vocalis.danger.train.loud_crops`; not in the shipped detector: ``benchmarks/notes.md``,
session 14); ``--out-dir DIR`` writes the four bundles to DIR (``scream.vocalis``,
``scream_confirm.vocalis``, ``scream-holdout.vocalis``, ``scream-confirm-holdout.vocalis``) instead of
the packaged and benchmark locations.

Run: .venv/bin/python scripts/train_scream.py [DATA] [--loud-copies N] [--out-dir DIR]   (about 4 min on 2 cores)
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from vocalis.danger.train import (
    CASCADE_GATE,
    CONFIRM_CANDIDATE,
    DEFAULT_CANDIDATE,
    LOUD_COPIES,
    train_scream_detector,
)

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--loud-copies", type=int, default=LOUD_COPIES)
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    if args.out_dir is None:
        pkg, bench = REPO / "src" / "vocalis" / "data", REPO / "benchmarks" / "results"
    else:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        pkg = bench = args.out_dir
    m = train_scream_detector(args.data, pkg / "scream.vocalis", holdout_out=bench / "scream-holdout.vocalis",
                              loud_copies=args.loud_copies)
    print(f"{DEFAULT_CANDIDATE} at P >= {m['validation']['threshold']}: held-out max-window clip F1 "
          f"{m['screams_test_clip_max_window']['f1']:.3f}")
    m = train_scream_detector(args.data, pkg / "scream_confirm.vocalis",
                              recipe=CONFIRM_CANDIDATE, name="scream-confirm", cascade_gate=CASCADE_GATE,
                              holdout_out=bench / "scream-confirm-holdout.vocalis", loud_copies=args.loud_copies)
    print(f"{CONFIRM_CANDIDATE} (second stage from P >= {CASCADE_GATE}) at P >= {m['validation']['threshold']}: "
          f"held-out max-window clip F1 {m['screams_test_clip_max_window']['f1']:.3f} (alone)")


if __name__ == "__main__":
    main()
