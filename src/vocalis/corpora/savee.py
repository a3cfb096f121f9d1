"""SAVEE file names: ``DC_a01.wav`` (flat copies) or ``DC/a01.wav`` (the original ``AudioData``).

Four male speakers (``DC, JE, JK, KL``); the emotion prefix is ``a`` anger, ``d`` disgust,
``f`` fear, ``h`` happiness, ``n`` neutral, ``sa`` sadness, ``su`` surprise, followed by the
sentence number within that emotion's list (``extra["sentence"]``, e.g. ``"01"``).

Licence: free for research after registration (see the SAVEE website); not redistributable.
"""

from __future__ import annotations

import re
from pathlib import Path

from vocalis.corpora.folders import Parsed, load_layout, sample_matches
from vocalis.corpora.types import Corpus
from vocalis.labels import normalise_label

NAME = "savee"

SPEAKERS = ("DC", "JE", "JK", "KL")
EMOTION = {
    "a": "anger", "d": "disgust", "f": "fear", "h": "happiness",
    "n": "neutral", "sa": "sadness", "su": "surprise",
}
_FLAT = re.compile(r"^(DC|JE|JK|KL)_(a|d|f|h|n|sa|su)(\d{2})$")
_NESTED = re.compile(r"^(a|d|f|h|n|sa|su)(\d{2})$")


def parse(path: Path) -> Parsed | None:
    """Parse one SAVEE file name; ``None`` if it does not follow the convention.

    >>> parse(Path("JK/sa03.wav"))
    ('sad', 'JK', 'male', {'sentence': '03'})
    """
    m = _FLAT.match(path.stem)
    if m is not None:
        speaker, code, num = m.groups()
    else:
        m = _NESTED.match(path.stem)
        if m is None or path.parent.name not in SPEAKERS:
            return None
        speaker = path.parent.name
        code, num = m.groups()
    return normalise_label(EMOTION[code]), speaker, "male", {"sentence": num}


def matches(root: Path) -> bool:
    """True when the audio files under ``root`` follow the SAVEE naming convention."""
    return sample_matches(root, parse)


def load(root: Path) -> Corpus:
    """Load every SAVEE-named audio file under ``root`` (recursively)."""
    return load_layout(root, NAME, parse)
