"""Feature extraction over a corpus, with an on-disk cache and a thread pool.

The cache key is the extractor config (sha256 of its JSON) plus each file's absolute path,
size and mtime, so a changed config or file is never served stale features.
Set ``VOCALIS_CACHE_DIR`` to move the cache (default ``~/.cache/vocalis``); pass
``use_cache=False`` to bypass it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import load_audio
from vocalis.corpora.types import Utterance
from vocalis.features.base import FeatureExtractor


def cache_root() -> Path:
    return Path(os.environ.get("VOCALIS_CACHE_DIR", Path.home() / ".cache" / "vocalis")).expanduser()


def config_key(extractor: FeatureExtractor) -> str:
    blob = json.dumps(extractor.get_config(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _file_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def extract_items(
    extractor: FeatureExtractor,
    items: Sequence[Utterance] | Sequence[Path],
    *,
    use_cache: bool = True,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    max_duration: float | None = None,
) -> list[np.ndarray]:
    """Features of each item's audio file (vectors ``(D,)`` or frames ``(C, T)``), in order."""
    paths = [Path(i.path) if isinstance(i, Utterance) else Path(i) for i in items]
    cdir = cache_root() / "features" / config_key(extractor)
    if use_cache:
        cdir.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> np.ndarray:
        f = cdir / (_file_key(path) + ".npy") if use_cache else None
        if f is not None and f.is_file():
            try:
                return np.load(f, allow_pickle=False)
            except (OSError, ValueError):
                pass  # corrupt cache entry: recompute
        x = load_audio(path, SAMPLE_RATE, max_duration=max_duration)
        feat = np.asarray(extractor(x, SAMPLE_RATE), dtype=np.float32)
        if f is not None:
            tmp = f.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, feat, allow_pickle=False)
            tmp.replace(f)
        return feat

    out: list[np.ndarray] = []
    if workers <= 1:
        for p in paths:
            out.append(one(p))
            if progress:
                progress(1)
        return out
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for feat in pool.map(one, paths):
            out.append(feat)
            if progress:
                progress(1)
    return out


def extract_signals(
    extractor: FeatureExtractor, signals: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE, workers: int = 2
) -> list[np.ndarray]:
    """Features of in-memory signals (e.g. augmented training copies; never cached)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda s: np.asarray(extractor(s, sample_rate), dtype=np.float32), signals))
