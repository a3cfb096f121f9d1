"""TESS file names: ``<OAF|YAF>_<word>_<emotion>.ext`` (e.g. ``OAF_angry/OAF_back_angry.wav``).

Two actresses, OAF (older, 64 years) and YAF (younger, 26 years), say "Say the word ___"
for 200 words in 7 emotions. Folder names differ between public copies (``OAF_Fear`` vs
``OAF_fear``, ``OAF_Pleasant_surprise``), so the emotion is taken from the **file name's
last token**: ``angry, disgust, fear, happy, neutral, ps, sad`` (``ps`` = pleasant surprise ->
``surprise``). One original file is named ``OA_bite_neutral`` (sic); ``OA`` is read as ``OAF``.

``speaker`` is ``OAF``/``YAF``, ``gender`` is ``female``; ``extra`` holds ``word`` and
``age`` (``"64"``/``"26"``).

Licence: CC BY-NC-ND 4.0 (non-commercial, no derivatives).
"""

from __future__ import annotations

import re
from pathlib import Path

from vocalis.corpora.folders import Parsed, load_layout, sample_matches
from vocalis.corpora.types import Corpus
from vocalis.labels import normalise_label

NAME = "tess"

_RE = re.compile(r"^(OAF|YAF|OA)_(.+)_(angry|disgust|fear|happy|neutral|ps|sad)$", re.IGNORECASE)
AGE = {"OAF": "64", "YAF": "26"}


def parse(path: Path) -> Parsed | None:
    """Parse one TESS file name; ``None`` if it does not follow the convention.

    >>> parse(Path("OAF_neutral/OA_bite_neutral.wav"))
    ('neutral', 'OAF', 'female', {'word': 'bite', 'age': '64'})
    """
    m = _RE.match(path.stem)
    if m is None:
        return None
    speaker, word, emotion = m.groups()
    speaker = speaker.upper()
    if speaker == "OA":
        speaker = "OAF"
    return normalise_label(emotion), speaker, "female", {"word": word.lower(), "age": AGE[speaker]}


def matches(root: Path) -> bool:
    """True when the audio files under ``root`` follow the TESS naming convention."""
    return sample_matches(root, parse)


def load(root: Path) -> Corpus:
    """Load every TESS-named audio file under ``root`` (recursively)."""
    return load_layout(root, NAME, parse)
