"""Vocalis: hear emotion and distress in a human voice.

The public API. Audio is always a float32 mono numpy array plus an int sample rate.

>>> import vocalis
>>> sorted(vocalis.EMOTIONS)[:3]
['angry', 'calm', 'disgust']
"""

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import load_audio
from vocalis.bundle import Bundle, Manifest, Prediction, load_bundle
from vocalis.errors import (
    AudioError,
    ConfigError,
    DataError,
    DependencyError,
    ModelError,
    VocalisError,
)
from vocalis.labels import EMOTIONS, valence_arousal

__version__ = "0.1.0"

__all__ = [
    "EMOTIONS",
    "SAMPLE_RATE",
    "AudioError",
    "Bundle",
    "ConfigError",
    "DataError",
    "DependencyError",
    "Manifest",
    "ModelError",
    "Prediction",
    "VocalisError",
    "__version__",
    "load_audio",
    "load_bundle",
    "valence_arousal",
]
