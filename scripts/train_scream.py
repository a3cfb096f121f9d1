"""Rebuild the bundled scream detector (src/vocalis/data/scream.vocalis) and its held-out twin.

Recipe ``vocalis.danger.train.DEFAULT_CANDIDATE``; the operating point is chosen on the validation
part of the training side (the held-out test side is never looked at). The held-out twin, trained on
the training side only, is what benchmarks/danger.py and benchmarks/triage.py evaluate.

Run: .venv/bin/python scripts/train_scream.py [DATA]   (about 3 min on 2 cores)
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from vocalis.danger.train import DEFAULT_CANDIDATE, train_scream_detector

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data"
    m = train_scream_detector(data, REPO / "src" / "vocalis" / "data" / "scream.vocalis",
                              holdout_out=REPO / "benchmarks" / "results" / "scream-holdout.vocalis")
    print(f"{DEFAULT_CANDIDATE} at P >= {m['validation']['threshold']}: held-out max-window clip F1 "
          f"{m['screams_test_clip_max_window']['f1']:.3f}")


if __name__ == "__main__":
    main()
