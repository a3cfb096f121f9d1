"""Rebuild the bundled two-stage scream detector and its held-out twins.

* ``src/vocalis/data/scream.vocalis``: the first stage, recipe ``DEFAULT_CANDIDATE``;
* ``src/vocalis/data/scream_confirm.vocalis``: the second stage, recipe ``CONFIRM_CANDIDATE``, with
  ``metrics.cascade_gate`` = ``CASCADE_GATE`` (:mod:`vocalis.danger.detector`).

Each operating point is chosen on the validation part of the training side (the held-out test side
is never looked at). The held-out twins (``benchmarks/results/scream-holdout.vocalis``,
``scream-confirm-holdout.vocalis``), trained on the training side only, are what benchmarks/danger.py
and benchmarks/triage.py evaluate.

Run: .venv/bin/python scripts/train_scream.py [DATA]   (about 4 min on 2 cores)
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from vocalis.danger.train import CASCADE_GATE, CONFIRM_CANDIDATE, DEFAULT_CANDIDATE, train_scream_detector

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data"
    m = train_scream_detector(data, REPO / "src" / "vocalis" / "data" / "scream.vocalis",
                              holdout_out=REPO / "benchmarks" / "results" / "scream-holdout.vocalis")
    print(f"{DEFAULT_CANDIDATE} at P >= {m['validation']['threshold']}: held-out max-window clip F1 "
          f"{m['screams_test_clip_max_window']['f1']:.3f}")
    m = train_scream_detector(data, REPO / "src" / "vocalis" / "data" / "scream_confirm.vocalis",
                              recipe=CONFIRM_CANDIDATE, name="scream-confirm", cascade_gate=CASCADE_GATE,
                              holdout_out=REPO / "benchmarks" / "results" / "scream-confirm-holdout.vocalis")
    print(f"{CONFIRM_CANDIDATE} (second stage from P >= {CASCADE_GATE}) at P >= {m['validation']['threshold']}: "
          f"held-out max-window clip F1 {m['screams_test_clip_max_window']['f1']:.3f} (alone)")


if __name__ == "__main__":
    main()
