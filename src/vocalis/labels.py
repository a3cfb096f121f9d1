"""The label taxonomy and the documented emotion -> valence/arousal mapping.

Vocalis' canonical emotions are those of RAVDESS (the richest common set);
other corpora map onto them (TESS ``ps`` -> ``surprise``, CREMA-D ``FEA`` -> ``fear``, ...).
A manifest may bring any other label; it is kept as-is.

Valence and arousal of a prediction are the probability-weighted mean of the
coordinates below: approximate positions of each category on Russell's (1980)
circumplex of affect, scaled to [-1, 1]. Labels not listed count as (0, 0),
i.e. they pull the estimate toward neutral.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

EMOTIONS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise",
)

VALENCE_AROUSAL: Mapping[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "calm": (0.4, -0.6),
    "happy": (0.8, 0.5),
    "sad": (-0.7, -0.4),
    "angry": (-0.6, 0.8),
    "fear": (-0.7, 0.7),
    "disgust": (-0.6, 0.2),
    "surprise": (0.3, 0.8),
}

ALIASES: Mapping[str, str] = {
    "fearful": "fear", "fearfull": "fear", "afraid": "fear", "fea": "fear",
    "angry": "angry", "anger": "angry", "ang": "angry",
    "happiness": "happy", "hap": "happy", "joy": "happy",
    "sadness": "sad",
    "disgusted": "disgust", "dis": "disgust",
    "surprised": "surprise", "ps": "surprise", "pleasant_surprise": "surprise",
    "pleasant_surprised": "surprise", "sur": "surprise",
    "neu": "neutral", "boredom": "calm",
}


def normalise_label(label: str) -> str:
    """Lower-case, trim and map a known synonym onto the canonical taxonomy.

    >>> normalise_label(" Fearful "), normalise_label("ps"), normalise_label("prank")
    ('fear', 'surprise', 'prank')
    """
    key = label.strip().lower().replace(" ", "_").replace("-", "_")
    return ALIASES.get(key, key)


def sort_labels(labels: Sequence[str] | set[str]) -> list[str]:
    """Canonical emotions first in taxonomy order, then custom labels alphabetically."""
    s = set(labels)
    return [e for e in EMOTIONS if e in s] + sorted(s - set(EMOTIONS))


def valence_arousal(probabilities: Mapping[str, float]) -> tuple[float, float]:
    """Probability-weighted valence and arousal, each in [-1, 1].

    >>> valence_arousal({"happy": 1.0})
    (0.8, 0.5)
    """
    v = a = 0.0
    for label, p in probabilities.items():
        lv, la = VALENCE_AROUSAL.get(label, (0.0, 0.0))
        v += p * lv
        a += p * la
    return float(np.clip(v, -1, 1)), float(np.clip(a, -1, 1))
