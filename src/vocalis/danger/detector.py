"""The scream detector every face uses: a cheap first stage and, where it stirs, a second opinion.

Stage 1 (``data/scream.vocalis``, recipe ``band-svm``: RMS/MFCC of the 0-4 kHz band) scores every
2 s window. Where its P(scream) reaches the **gate** (:data:`vocalis.danger.train.CASCADE_GATE`,
stored in the second stage's manifest as ``metrics.cascade_gate``), stage 2
(``data/scream_confirm.vocalis``, recipe ``band-cues-svm``: the same features plus pitch,
harmonicity, flatness and loudness-dynamics cues) scores the window again and its P(scream) is the
window's score; below the gate stage 1's score stands. The operating point is stage 2's.

Why two stages: cross-validated on the training side through the streaming policy
(``benchmarks/scream_validation.py``), the cue model is the better detector (clip F1 0.955 against
0.932 within 0.5 false alerts per hour), but its features cost about twice as much, and at 200
live streams on two cores that cost broke the latency goal (p99 316 ms against 250). Gated at
0.05, the cascade scores exactly as the cue model alone in that cross-validation at every
threshold from 0.30 up (slightly better below), while the second stage runs on ~3 % of windows
(speech and noise rarely reach the gate). ``benchmarks/notes.md`` ("session 13") has the numbers.

A :class:`ScreamDetector` holds no state between windows (the policy does); it is shared by
every session of a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.bundle.runtime import Bundle, load_bundle
from vocalis.errors import ConfigError, ModelError


def scream_column(bundle: Bundle) -> int:
    """Column of P(scream) in ``bundle``'s probabilities (:class:`ModelError` when it has no ``scream`` label)."""
    if "scream" not in bundle.labels:
        raise ModelError(f"scream model {bundle.source}: labels={bundle.labels} must include 'scream'")
    return bundle.labels.index("scream")


class ScreamDetector:
    """P(scream) of 2 s windows: ``first`` on every window, ``confirm`` (optional) where ``first``
    reaches ``gate``. ``ScreamDetector(bundle)`` alone is a one-stage detector."""

    def __init__(self, first: Bundle, confirm: Bundle | None = None, gate: float | None = None) -> None:
        self.first = first
        self.confirm = confirm
        self._i1 = scream_column(first)
        self._i2 = None if confirm is None else scream_column(confirm)
        if confirm is not None:
            if gate is None:
                gate = confirm.manifest.metrics.get("cascade_gate")
            if not isinstance(gate, int | float) or not 0.0 <= float(gate) < 1.0:
                raise ConfigError(f"scream cascade gate={gate!r} must be a number in [0, 1) "
                                  f"(metrics.cascade_gate of {confirm.source})")
        self.gate = None if confirm is None else float(gate)  # type: ignore[arg-type]

    @property
    def operating_point(self) -> float | None:
        """``metrics.operating_point`` of the stage whose score decides: the second one when present."""
        op = (self.confirm or self.first).manifest.metrics.get("operating_point")
        return None if op is None else float(op)

    def score_batch(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """``(N,)`` P(scream) of ``audios`` (windows of any lengths), each stage in batched calls."""
        if not len(audios):
            return np.zeros(0, np.float64)
        p = self.first.predict_proba_features(self.first.features_batch(audios, sample_rate))[:, self._i1]
        p = np.asarray(p, np.float64)
        if self.confirm is not None and self.gate is not None:
            again = np.flatnonzero(p >= self.gate)
            if again.size:
                c = self.confirm
                p2 = c.predict_proba_features(c.features_batch([audios[int(i)] for i in again], sample_rate))
                p[again] = p2[:, self._i2]
        return p

    def score(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        """P(scream) of one window."""
        return float(self.score_batch([audio], sample_rate)[0])


def confirm_model_path() -> Path:
    """The second-stage scream bundle shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "data" / "scream_confirm.vocalis"


def load_scream_detector(first: Bundle | str | Path | None = None,
                         confirm: Bundle | str | Path | None = None) -> ScreamDetector:
    """The packaged two-stage detector (``first`` and ``confirm`` None), or the bundles given.

    ``confirm`` None = the packaged second stage when ``first`` is the packaged one too (a first
    stage given alone is a one-stage detector: the packaged second stage was not gated on its scores).
    """
    from vocalis.danger import scream_model_path

    b1 = first if isinstance(first, Bundle) else load_bundle(first if first is not None else scream_model_path())
    b2: Bundle | None
    if isinstance(confirm, Bundle):
        b2 = confirm
    elif confirm is None:
        b2 = load_bundle(confirm_model_path()) if first is None and confirm_model_path().is_file() else None
    else:
        b2 = load_bundle(confirm)
    return ScreamDetector(b1, b2)


def as_detector(model: ScreamDetector | Bundle | str | Path | None) -> ScreamDetector:
    """A :class:`ScreamDetector` from what callers pass: one already made, a bundle or path (one
    stage), or None (the packaged two-stage detector)."""
    if isinstance(model, ScreamDetector):
        return model
    if isinstance(model, Bundle):
        return ScreamDetector(model)
    return load_scream_detector(model)
