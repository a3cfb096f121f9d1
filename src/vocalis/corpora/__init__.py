"""Corpora: load a data folder into a :class:`Corpus` of labelled, speaker-tagged utterances.

:func:`load_corpus` recognises, in this order:

1. ``manifest.csv`` in the folder (see :mod:`vocalis.corpora.manifest`);
2. a known corpus' own file naming: RAVDESS, TESS, CREMA-D, SAVEE, EmoDB;
3. one sub-folder per label (speakers unknown; see :mod:`vocalis.corpora.folders`).

Importing this package is light: no scikit-learn, no audio decoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType

from vocalis.corpora import cremad, emodb, folders, ravdess, savee, tess
from vocalis.corpora.manifest import MANIFEST, load_manifest, write_manifest
from vocalis.corpora.splits import random_folds, speaker_folds
from vocalis.corpora.types import Corpus, Utterance
from vocalis.errors import ConfigError, DataError

__all__ = [
    "LAYOUTS",
    "Corpus",
    "Utterance",
    "detect_layout",
    "load_corpus",
    "load_manifest",
    "parse_label_map",
    "random_folds",
    "speaker_folds",
    "write_manifest",
]

#: Corpus-specific file-naming parsers, tried in this order.
LAYOUTS: tuple[ModuleType, ...] = (ravdess, tess, cremad, savee, emodb)


def detect_layout(root: Path) -> str | None:
    """Name of the layout :func:`load_corpus` would use for ``root``, or ``None``.

    One of ``"manifest"``, ``"ravdess"``, ``"tess"``, ``"cremad"``, ``"savee"``, ``"emodb"``,
    ``"folders"``.
    """
    root = Path(root)
    if (root / MANIFEST).is_file():
        return "manifest"
    for mod in LAYOUTS:
        if mod.matches(root):
            return str(mod.NAME)
    if folders.matches(root):
        return folders.NAME
    return None


def load_corpus(
    path: str | Path,
    *,
    label_map: Mapping[str, str | None] | None = None,
    labels: Iterable[str] | None = None,
) -> Corpus:
    """Load the corpus in folder ``path``, then rename/drop labels and keep only ``labels``.

    ``label_map`` renames or merges labels (``{"calm": "neutral"}``); a label mapped to
    ``None`` or ``""`` is dropped. ``labels`` then keeps only the listed labels; each must
    exist after mapping. Raises :class:`DataError` for a missing or unrecognised folder, or
    when nothing is left.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"DATA_DIR={root} must be an existing folder; it does not exist")
    if not root.is_dir():
        raise DataError(f"DATA_DIR={root} must be a folder, not a file")
    root = root.resolve()
    layout = detect_layout(root)
    if layout is None:
        raise DataError(
            f"DATA_DIR={root} is not a recognised corpus: expected manifest.csv, or a "
            "RAVDESS/TESS/CREMA-D/SAVEE/EmoDB layout, or one sub-folder per label"
        )
    if layout == "manifest":
        corpus = load_manifest(root)
    elif layout == folders.NAME:
        corpus = folders.load_folders(root)
    else:
        corpus = {m.NAME: m for m in LAYOUTS}[layout].load(root)
    if label_map:
        corpus = corpus.map_labels(label_map)
    if labels is not None:
        wanted = list(dict.fromkeys(labels))
        absent = [lab for lab in wanted if lab not in set(corpus.labels)]
        if absent:
            raise DataError(
                f"labels={absent} must be labels of corpus {corpus.name} "
                f"(it has: {', '.join(corpus.labels) or 'none'})"
            )
        corpus = corpus.restrict(wanted)
    if not corpus.items:
        raise DataError(f"DATA_DIR={root}: no utterances left after label mapping/selection")
    return corpus


def parse_label_map(spec: str) -> dict[str, str | None]:
    """Parse a CLI label map such as ``"calm=neutral,surprise=,fear=fear"``.

    An empty right-hand side drops the label (``None``).

    >>> parse_label_map("calm=neutral, surprise=")
    {'calm': 'neutral', 'surprise': None}
    """
    out: dict[str, str | None] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        old, sep, new = part.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old:
            raise ConfigError(
                f"label_map={spec!r} must be comma-separated old=new pairs "
                f"(empty new drops the label); bad item {part!r}"
            )
        if old in out:
            raise ConfigError(f"label_map={spec!r} must name each label once; {old!r} repeats")
        out[old] = new or None
    return out
