"""The model the service predicts with: loaded once per path per process, thread-safe."""

from __future__ import annotations

import threading
from pathlib import Path

from vocalis.bundle.runtime import Bundle, load_bundle

_cache: dict[str, Bundle] = {}
_lock = threading.Lock()


class ModelHolder:
    """Lazily loads the bundle at ``path`` (``None`` = the bundled default) on first use."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._key = str(path) if path is not None else "<default>"

    @property
    def loaded(self) -> bool:
        return self._key in _cache

    def get(self) -> Bundle:
        """The loaded bundle (loads it on first call; raises ModelError if it cannot)."""
        bundle = _cache.get(self._key)
        if bundle is not None:
            return bundle
        with _lock:
            bundle = _cache.get(self._key)
            if bundle is None:
                bundle = load_bundle(self.path)
                _cache[self._key] = bundle
        return bundle
