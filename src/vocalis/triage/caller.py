"""Caller state from the voice: the emotion model mapped onto caller states, or a call-centre's own model.

A call centre trains a bundle on its own labels (``angry``, ``stressful``, ``painful``, ``drunk``,
``prank``, ``abusive`` … any label set) with ``vocalis train MANIFEST_DIR --out callers.vocalis``:
the same engine, speaker-independent splits and bundle format as the emotion model. Until then
the default emotion bundle is used and its eight emotions are summed into caller states with
:data:`EMOTION_TO_STATE` (documented mapping):

========== ==========================
state      emotions summed
========== ==========================
distress   fear, sad, angry
calm       neutral, calm
cheerful   happy, surprise
other      disgust
========== ==========================

and the **distress intensity** of a window is ``P(fear) + P(sad) + 0.5 * P(angry)``: anger counts
half, because an angry caller is as often complaining as in danger, and acted-speech models read
any loud or synthetic voice as anger. Reasons name the strongest of the three. With a custom bundle the intensity is the sum of
the probabilities of the labels in :attr:`CallerStateModel.urgent_states` (by default those of
:data:`URGENT_STATES` that the bundle has, e.g. ``painful``, ``stressful``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vocalis.bundle.runtime import Bundle
from vocalis.errors import ConfigError

EMOTION_TO_STATE: Mapping[str, tuple[str, ...]] = {
    "distress": ("fear", "sad", "angry"),
    "calm": ("neutral", "calm"),
    "cheerful": ("happy", "surprise"),
    "other": ("disgust",),
}
EMOTION_DISTRESS: tuple[str, ...] = ("fear", "sad", "angry")
EMOTION_DISTRESS_WEIGHTS: Mapping[str, float] = {"fear": 1.0, "sad": 1.0, "angry": 0.5}
URGENT_STATES: tuple[str, ...] = (
    "distress", "painful", "pain", "stressful", "stressed", "scared", "fear", "panic", "injured", "crying",
)
"""Labels of a custom caller-state model that count toward distress intensity (when present)."""
CHEERFUL_STATES: tuple[str, ...] = ("cheerful", "happy", "laughing", "amused", "surprise")
NON_GENUINE_STATES: tuple[str, ...] = ("prank", "fake", "joke", "non_genuine", "pocket")


@dataclass(frozen=True)
class CallerStates:
    """Per-window caller-state probabilities (``states``), distress intensity and the raw model output."""

    states: dict[str, float]
    distress: float
    raw: dict[str, float]


class CallerStateModel:
    """Maps a bundle's per-window probabilities onto caller states.

    ``mode`` is ``"emotion"`` when the bundle's labels are emotions (mapped with
    :data:`EMOTION_TO_STATE`) and ``"custom"`` otherwise (labels used as they are).
    """

    def __init__(self, bundle: Bundle, urgent_states: Sequence[str] | None = None) -> None:
        self.bundle = bundle
        labels = bundle.labels
        self.mode = "emotion" if set(labels) <= set(sum(EMOTION_TO_STATE.values(), ())) else "custom"
        if self.mode == "emotion":
            self.state_names = [s for s, emos in EMOTION_TO_STATE.items() if set(emos) & set(labels)]
            self.urgent = tuple(e for e in EMOTION_DISTRESS if e in labels)
        else:
            self.state_names = list(labels)
            wanted = tuple(urgent_states) if urgent_states is not None else URGENT_STATES
            unknown = [s for s in (urgent_states or ()) if s not in labels]
            if unknown:
                raise ConfigError(f"urgent_states={unknown} are not labels of the model {labels}")
            self.urgent = tuple(s for s in labels if s in wanted)

    def states(self, proba: np.ndarray) -> CallerStates:
        """Caller states of one window from the bundle's ``(K,)`` probabilities."""
        raw = {lab: float(p) for lab, p in zip(self.bundle.labels, np.asarray(proba, np.float64))}
        if self.mode == "emotion":
            states = {s: sum(raw.get(e, 0.0) for e in EMOTION_TO_STATE[s]) for s in self.state_names}
        else:
            states = dict(raw)
        weights = EMOTION_DISTRESS_WEIGHTS if self.mode == "emotion" else {}
        distress = sum(weights.get(e, 1.0) * raw.get(e, 0.0) for e in self.urgent)
        return CallerStates({k: round(v, 4) for k, v in states.items()}, round(distress, 4),
                            {k: round(v, 4) for k, v in raw.items()})

    def cheerful(self, states: Mapping[str, float]) -> float:
        return float(sum(v for k, v in states.items() if k in CHEERFUL_STATES))

    def non_genuine(self, states: Mapping[str, float]) -> float:
        return float(sum(v for k, v in states.items() if k in NON_GENUINE_STATES))
