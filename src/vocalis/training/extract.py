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
from typing import Any

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import load_audio
from vocalis.corpora.types import Utterance
from vocalis.features.base import FeatureExtractor


def cache_root() -> Path:
    return Path(os.environ.get("VOCALIS_CACHE_DIR", Path.home() / ".cache" / "vocalis")).expanduser()


def extractor_fingerprint(extractor: Any) -> str:
    """What an extractor's output depends on beyond its config: e.g. the weights file a model
    name ("tiny.en") resolves to and the graph version built from it (``fingerprint()``, optional)."""
    fp = getattr(extractor, "fingerprint", None)
    if callable(fp):
        return str(fp())
    parts = getattr(extractor, "parts", None)  # a Concat of extractors
    return "+".join(extractor_fingerprint(p) for p in parts) if parts else ""


def config_key(extractor: FeatureExtractor) -> str:
    """Cache folder of an extractor: its config and :func:`extractor_fingerprint` (new weights or a
    new graph version get new features, never stale cached ones)."""
    blob = json.dumps(extractor.get_config(), sort_keys=True).encode()
    extra = extractor_fingerprint(extractor)
    if extra:
        blob += b"|" + extra.encode()
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


def extract_augmented(
    extractor: FeatureExtractor,
    items: Sequence[Utterance],
    augment: dict[str, Any],
    *,
    seed: int = 0,
    use_cache: bool = True,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> list[list[np.ndarray]]:
    """Features of augmented copies of TRAINING items: ``out[c][i]`` is copy ``c`` of ``items[i]``.

    ``augment`` is an :class:`vocalis.augment.AugmentConfig` dict; it says how many copies. Copy
    ``c`` of an item is drawn by an :class:`~vocalis.augment.Augmenter` seeded from ``seed``,
    ``c`` and the item's corpus, speaker and file name, so it is the same in every fold the item
    trains in, on any machine, and it is cached like clean features (under the extractor's
    folder, keyed by the augmentation settings without ``copies``, the seed, the copy and the
    file). Only ever pass training items: the caller decides which those are.
    """
    from vocalis.augment import AugmentConfig, Augmenter

    cfg = AugmentConfig.from_dict(augment)
    settings = {k: v for k, v in cfg.to_dict().items() if k != "copies"}
    blob = json.dumps({"augment": settings, "seed": seed}, sort_keys=True).encode()
    cdir = cache_root() / "features" / config_key(extractor) / ("aug-" + hashlib.sha256(blob).hexdigest()[:16])
    if use_cache:
        cdir.mkdir(parents=True, exist_ok=True)

    def one(job: tuple[int, Utterance]) -> np.ndarray:
        c, u = job
        path = Path(u.path)
        f = cdir / f"{_file_key(path)}-{c}.npy" if use_cache else None
        if f is not None and f.is_file():
            try:
                return np.load(f, allow_pickle=False)
            except (OSError, ValueError):
                pass  # corrupt cache entry: recompute
        ident = f"{seed}|{c}|{u.corpus}|{u.speaker}|{path.name}".encode()
        clip_seed = int(hashlib.sha256(ident).hexdigest()[:8], 16)
        x = Augmenter(cfg, seed=clip_seed)(load_audio(path, SAMPLE_RATE), SAMPLE_RATE)
        feat = np.asarray(extractor(x, SAMPLE_RATE), dtype=np.float32)
        if f is not None:
            tmp = f.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, feat, allow_pickle=False)
            tmp.replace(f)
        return feat

    jobs = [(c, u) for c in range(cfg.copies) for u in items]
    flat: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for feat in pool.map(one, jobs):
            flat.append(feat)
            if progress:
                progress(1)
    n = len(items)
    return [flat[c * n : (c + 1) * n] for c in range(cfg.copies)]
