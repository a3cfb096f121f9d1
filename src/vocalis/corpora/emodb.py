"""EmoDB (Berlin Database of Emotional Speech) file names: ``SSTTTEV.wav`` (e.g. ``03a01Fa.wav``).

* ``SS`` speaker: 03, 08, 09, 10, 11, 12, 13, 14, 15, 16 (male: 03, 10, 11, 12, 15)
* ``TTT`` text code (``a01`` ... ``b10``)
* ``E`` emotion letter (German initial): W anger (Ärger), L boredom (Langeweile),
  E disgust (Ekel), A fear (Angst), F happiness (Freude), T sadness (Trauer), N neutral
* ``V`` version letter (``a``, ``b``, ...)

**Boredom stays its own label, ``"boredom"``.** It is not in the canonical taxonomy and
is not the same thing as RAVDESS' ``calm`` (:func:`vocalis.labels.normalise_label` would
fold it into ``calm``, so it is deliberately not applied to it). To merge it anyway, load
with ``label_map={"boredom": "calm"}``; to drop it, ``label_map={"boredom": None}``.
The other six emotions map to the canonical labels (``angry, disgust, fear, happy, sad,
neutral``). ``speaker`` is the two-digit code; ``extra`` holds ``text`` and ``version``.

Licence: no explicit open licence; distributed free of charge for research by TU Berlin
(emodb.bilderbar.info). Check the terms before any non-research use.
"""

from __future__ import annotations

import re
from pathlib import Path

from vocalis.corpora.folders import Parsed, load_layout, sample_matches
from vocalis.corpora.types import Corpus
from vocalis.labels import normalise_label

NAME = "emodb"

SPEAKERS = frozenset({"03", "08", "09", "10", "11", "12", "13", "14", "15", "16"})
MALE = frozenset({"03", "10", "11", "12", "15"})
EMOTION = {
    "W": "anger", "L": "boredom", "E": "disgust", "A": "fear",
    "F": "happiness", "T": "sadness", "N": "neutral",
}
_RE = re.compile(r"^(\d{2})([ab]\d{2})([WLEAFTN])([a-z])$")


def parse(path: Path) -> Parsed | None:
    """Parse one EmoDB file name; ``None`` if it does not follow the convention.

    >>> parse(Path("wav/03a01Fa.wav"))
    ('happy', '03', 'male', {'text': 'a01', 'version': 'a'})
    >>> parse(Path("wav/08b02La.wav"))[0]
    'boredom'
    """
    m = _RE.match(path.stem)
    if m is None or m.group(1) not in SPEAKERS:
        return None
    speaker, text, emo, version = m.groups()
    word = EMOTION[emo]
    label = word if word == "boredom" else normalise_label(word)
    gender = "male" if speaker in MALE else "female"
    return label, speaker, gender, {"text": text, "version": version}


def matches(root: Path) -> bool:
    """True when the audio files under ``root`` follow the EmoDB naming convention."""
    return sample_matches(root, parse)


def load(root: Path) -> Corpus:
    """Load every EmoDB-named audio file under ``root`` (recursively)."""
    return load_layout(root, NAME, parse)
