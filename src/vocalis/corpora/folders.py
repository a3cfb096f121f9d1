"""One-sub-folder-per-label layout, plus the file-scanning helpers the layout parsers share.

Layout::

    root/
        angry/   a.wav  take2/b.flac ...
        happy/   c.ogg ...
        ...

Every audio file (``.wav .flac .ogg .mp3 .webm .m4a .opus``) anywhere inside a label folder
gets that folder's name as its label, normalised with :func:`vocalis.labels.normalise_label`
(``Fearful`` -> ``fear``, ``anger`` -> ``angry``). Audio lying directly in ``root`` has no label
and is ignored, as are hidden files and folders (``.x``, ``__MACOSX``).

Such a layout says nothing about who speaks: every utterance gets ``speaker = "unknown"``,
so **speaker-independent cross-validation is impossible** on it (one speaker only); use a
``manifest.csv`` with a ``speaker`` column instead when speakers are known.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeAlias

from vocalis.corpora.types import Corpus, Utterance
from vocalis.errors import DataError
from vocalis.labels import normalise_label

#: Extensions the corpus-layout parsers (RAVDESS, TESS, ...) look at.
LAYOUT_EXTENSIONS: frozenset[str] = frozenset({".wav", ".flac", ".ogg", ".mp3"})
#: Extensions accepted in a folder-per-label layout.
AUDIO_EXTENSIONS: frozenset[str] = LAYOUT_EXTENSIONS | {".webm", ".m4a", ".opus", ".aiff", ".aif", ".aac"}

NAME = "folders"
UNKNOWN_SPEAKER = "unknown"

#: A file-name parser: ``(path relative to root) -> utterance fields`` or ``None`` if it
#: does not follow the convention. Fields: label, speaker, gender, extra.
Parsed: TypeAlias = tuple[str, str, str | None, dict[str, str]]


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def iter_audio_files(root: Path, extensions: frozenset[str] = LAYOUT_EXTENSIONS) -> Iterator[Path]:
    """Yield audio files under ``root`` recursively, in sorted order, skipping hidden entries."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for f in sorted(filenames):
            if not _hidden(f) and os.path.splitext(f)[1].lower() in extensions:
                yield Path(dirpath) / f


def sample_matches(
    root: Path, parse: Callable[[Path], Parsed | None], n: int = 40, min_fraction: float = 0.9
) -> bool:
    """Cheap layout detection: do at least ``min_fraction`` of the first ``n`` audio files parse?"""
    if not root.is_dir():
        return False
    sample = list(itertools.islice(iter_audio_files(root), n))
    if not sample:
        return False
    ok = sum(parse(p) is not None for p in sample)
    return ok >= min_fraction * len(sample)


def load_layout(root: Path, name: str, parse: Callable[[Path], Parsed | None]) -> Corpus:
    """Parse every audio file under ``root`` with ``parse``; any file that does not parse is an error."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"DATA_DIR={root} must be an existing folder")
    items: list[Utterance] = []
    bad: list[str] = []
    for p in iter_audio_files(root):
        parsed = parse(p)
        if parsed is None:
            bad.append(p.relative_to(root).as_posix())
            continue
        label, speaker, gender, extra = parsed
        items.append(Utterance(p, label, speaker, gender, name, extra))
    if bad:
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise DataError(
            f"files={len(bad)} under {root} do not follow the {name} naming convention: {shown}"
        )
    if not items:
        raise DataError(f"DATA_DIR={root} must contain {name} audio files; none found")
    return Corpus(name, root, items)


def _label_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not _hidden(d.name))


def matches(root: Path) -> bool:
    """True when at least one sub-folder of ``root`` contains audio."""
    if not root.is_dir():
        return False
    return any(
        next(iter_audio_files(d, AUDIO_EXTENSIONS), None) is not None for d in _label_dirs(root)
    )


def load_folders(root: Path) -> Corpus:
    """Load ``root/<label>/**/<audio>``; speaker is ``"unknown"`` for every utterance."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"DATA_DIR={root} must be an existing folder")
    items: list[Utterance] = []
    for d in _label_dirs(root):
        label = normalise_label(d.name)
        items.extend(
            Utterance(p, label, UNKNOWN_SPEAKER, None, root.name)
            for p in iter_audio_files(d, AUDIO_EXTENSIONS)
        )
    if not items:
        raise DataError(
            f"DATA_DIR={root} must have one sub-folder per label containing audio files; none found"
        )
    return Corpus(root.name, root, items)


load = load_folders
