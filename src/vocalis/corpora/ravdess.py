"""RAVDESS file names: ``MM-VV-EE-II-SS-RR-AA.ext`` (e.g. ``03-01-05-02-01-01-07.wav``).

Fields, in order (Livingstone & Russo 2018):

* ``MM`` modality: 01 full-AV, 02 video-only, 03 audio-only
* ``VV`` vocal channel: 01 speech, 02 song
* ``EE`` emotion: 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
  08 surprised (song has no disgust/surprised, but the code is parsed the same way)
* ``II`` intensity: 01 normal, 02 strong (neutral has normal only)
* ``SS`` statement: 01 "Kids are talking by the door", 02 "Dogs are sitting by the door"
* ``RR`` repetition: 01, 02
* ``AA`` actor 01-24: odd = male, even = female

``speaker`` is the two-digit actor number (``"07"``). ``extra`` holds ``modality``
(``audio-only``...), ``channel`` (``speech``/``song``), ``intensity`` (``normal``/``strong``),
``statement`` (its text) and ``repetition`` (``"01"``/``"02"``): the same values as the
``manifest.csv`` of the shared copy. Labels use the canonical taxonomy (``fearful`` -> ``fear``).

Licence: CC BY-NC-SA 4.0 (non-commercial).
"""

from __future__ import annotations

import re
from pathlib import Path

from vocalis.corpora.folders import Parsed, load_layout, sample_matches
from vocalis.corpora.types import Corpus
from vocalis.labels import normalise_label

NAME = "ravdess"

_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
MODALITY = {"01": "full-AV", "02": "video-only", "03": "audio-only"}
CHANNEL = {"01": "speech", "02": "song"}
EMOTION = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}
INTENSITY = {"01": "normal", "02": "strong"}
STATEMENT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def parse(path: Path) -> Parsed | None:
    """Parse one RAVDESS file name; ``None`` if it does not follow the convention.

    >>> parse(Path("Actor_07/03-01-06-02-01-02-07.wav"))[:3]
    ('fear', '07', 'male')
    """
    m = _RE.match(path.stem)
    if m is None:
        return None
    mod, chan, emo, inten, stmt, rep, actor = m.groups()
    if (
        mod not in MODALITY or chan not in CHANNEL or emo not in EMOTION
        or inten not in INTENSITY or stmt not in STATEMENT or not 1 <= int(actor) <= 24
    ):
        return None
    gender = "male" if int(actor) % 2 else "female"
    extra = {
        "modality": MODALITY[mod],
        "channel": CHANNEL[chan],
        "intensity": INTENSITY[inten],
        "statement": STATEMENT[stmt],
        "repetition": rep,
    }
    return normalise_label(EMOTION[emo]), actor, gender, extra


def matches(root: Path) -> bool:
    """True when the audio files under ``root`` follow the RAVDESS naming convention."""
    return sample_matches(root, parse)


def load(root: Path) -> Corpus:
    """Load every RAVDESS-named audio file under ``root`` (recursively)."""
    return load_layout(root, NAME, parse)
