"""CREMA-D file names: ``AAAA_SSS_EEE_II.ext`` (e.g. ``1001_DFA_ANG_XX.wav``).

* ``AAAA`` actor id 1001-1091 (48 male, 43 female)
* ``SSS`` sentence code (``IEO`` "It's eleven o'clock", ``DFA`` "Don't forget a jacket", ...)
* ``EEE`` emotion: ANG angry, DIS disgust, FEA fear, HAP happy, NEU neutral, SAD sad
* ``II`` intensity: LO low, MD medium, HI high, XX unspecified

``speaker`` is the actor id (``"1001"``). The file name carries no gender; it is taken from
:data:`FEMALE_ACTORS`, copied from the corpus' own ``VideoDemographics.csv``
(GitHub ``CheyneyComputerScience/CREMA-D``, commit 98df52c). ``extra`` holds ``sentence``
and ``intensity`` (the codes as written).

Licence: Open Database License / Database Contents License (see the CREMA-D repository).
"""

from __future__ import annotations

import re
from pathlib import Path

from vocalis.corpora.folders import Parsed, load_layout, sample_matches
from vocalis.corpora.types import Corpus
from vocalis.labels import normalise_label

NAME = "cremad"

_RE = re.compile(r"^(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_([A-Z]{1,2})$")

#: Female actors according to CREMA-D's VideoDemographics.csv; every other id is male.
FEMALE_ACTORS: frozenset[int] = frozenset({
    1002, 1003, 1004, 1006, 1007, 1008, 1009, 1010, 1012, 1013, 1018, 1020, 1021, 1024, 1025,
    1028, 1029, 1030, 1037, 1043, 1046, 1047, 1049, 1052, 1053, 1054, 1055, 1056, 1058, 1060,
    1061, 1063, 1072, 1073, 1074, 1075, 1076, 1078, 1079, 1082, 1084, 1089, 1091,
})


def parse(path: Path) -> Parsed | None:
    """Parse one CREMA-D file name; ``None`` if it does not follow the convention.

    >>> parse(Path("AudioWAV/1002_IEO_FEA_HI.wav"))
    ('fear', '1002', 'female', {'sentence': 'IEO', 'intensity': 'HI'})
    """
    m = _RE.match(path.stem)
    if m is None:
        return None
    actor, sentence, emotion, intensity = m.groups()
    if not 1001 <= int(actor) <= 1091:
        return None
    gender = "female" if int(actor) in FEMALE_ACTORS else "male"
    return normalise_label(emotion), actor, gender, {"sentence": sentence, "intensity": intensity}


def matches(root: Path) -> bool:
    """True when the audio files under ``root`` follow the CREMA-D naming convention."""
    return sample_matches(root, parse)


def load(root: Path) -> Corpus:
    """Load every CREMA-D-named audio file under ``root`` (recursively)."""
    return load_layout(root, NAME, parse)
