"""Speaker-independent (default) and random splits.

``speaker_folds`` is the honest protocol: no speaker appears in both train and test.
With RAVDESS' 24 actors and 6 folds it yields actors 1-4, 5-8, ..., 21-24 as test folds
(contiguous blocks of the sorted speaker ids). With fewer speakers than folds it falls back
to leave-one-speaker-out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vocalis.errors import ConfigError, DataError


def _speaker_sort_key(s: str) -> tuple[int, int | str]:
    return (0, int(s)) if s.isdigit() else (1, s)


def speaker_folds(
    speakers: Sequence[str], n_folds: int, corpora: Sequence[str] | None = None
) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Return ``[(train_idx, test_idx, test_speakers), ...]`` with speaker-disjoint folds.

    With several ``corpora`` (one name per item), each corpus' speakers are split into folds on
    their own and fold *j* tests block *j* of every corpus, so no fold holds out a whole corpus
    (a 2-speaker corpus like TESS then contributes one test speaker to each of two folds).

    >>> spk = [str(i) for i in range(1, 25) for _ in range(2)]
    >>> [f[2] for f in speaker_folds(spk, 6)][:2]
    [['1', '2', '3', '4'], ['5', '6', '7', '8']]
    """
    if n_folds < 2:
        raise ConfigError(f"folds={n_folds} must be at least 2")
    spk = np.asarray(speakers, dtype=object)
    if corpora is not None and len(set(corpora)) > 1:
        return _multi_corpus_folds(spk, np.asarray(corpora, dtype=object), n_folds)
    unique = sorted(set(spk.tolist()), key=_speaker_sort_key)
    if len(unique) < 2:
        raise DataError(
            f"speakers={len(unique)}: a speaker-independent split needs at least 2 speakers"
        )
    if len(unique) <= n_folds:
        groups = [[s] for s in unique]  # leave-one-speaker-out
    else:
        groups = [list(g) for g in np.array_split(np.array(unique, dtype=object), n_folds)]
    folds = []
    for g in groups:
        test = np.isin(spk, g)
        folds.append((np.flatnonzero(~test), np.flatnonzero(test), [str(s) for s in g]))
    return folds


def _multi_corpus_folds(
    spk: np.ndarray, corpora: np.ndarray, n_folds: int
) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    groups: list[list[str]] = [[] for _ in range(n_folds)]
    for name in sorted(set(corpora.tolist())):
        unique = sorted(set(spk[corpora == name].tolist()), key=_speaker_sort_key)
        blocks = np.array_split(np.array(unique, dtype=object), min(n_folds, len(unique)))
        for j, block in enumerate(blocks):
            groups[j].extend(str(s) for s in block)
    if sum(1 for g in groups if g) < 2:
        raise DataError("a speaker-independent split needs at least 2 speakers")
    folds = []
    for g in groups:
        if g:
            test = np.isin(spk, g)
            folds.append((np.flatnonzero(~test), np.flatnonzero(test), g))
    return folds


def random_folds(
    n: int, n_folds: int, labels: Sequence[str] | None = None, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Stratified random folds: speakers leak across train and test (for comparison only)."""
    if n_folds < 2:
        raise ConfigError(f"folds={n_folds} must be at least 2")
    from sklearn.model_selection import KFold, StratifiedKFold

    idx = np.arange(n)
    if labels is not None:
        split = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(idx, labels)
    else:
        split = KFold(n_folds, shuffle=True, random_state=seed).split(idx)
    return [(tr, te, []) for tr, te in split]
