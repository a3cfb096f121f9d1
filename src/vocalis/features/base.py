"""Feature extractors: objects with a serialisable config and a registry to rebuild them.

An extractor's ``get_config()`` is plain JSON data stored in the model bundle;
:func:`from_config` rebuilds the identical extractor at serving time, so training and
serving can never drift (the opensmile/audonnx habit).

Two output kinds exist:

* ``"vector"``: ``__call__(audio, sr) -> (D,)`` float32, one vector per clip;
* ``"frames"``: ``__call__(audio, sr) -> (C, T)`` float32, a time-frequency matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from vocalis.errors import ConfigError


@runtime_checkable
class FeatureExtractor(Protocol):
    """What every extractor provides."""

    kind: ClassVar[str]
    output: ClassVar[str]

    def get_config(self) -> dict[str, Any]: ...

    def __call__(self, audio: np.ndarray, sample_rate: int = ...) -> np.ndarray: ...


_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Class decorator: make ``cls`` rebuildable from ``{"type": cls.kind, ...}``."""
    kind = cls.kind  # type: ignore[attr-defined]
    if kind in _REGISTRY and _REGISTRY[kind] is not cls:
        raise ConfigError(f"feature type={kind!r} is registered twice")
    _REGISTRY[kind] = cls
    return cls


def dataclass_config(obj: Any) -> dict[str, Any]:
    """``{"type": kind, **fields}`` for a dataclass extractor (tuples become lists)."""
    cfg: dict[str, Any] = {"type": obj.kind}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        cfg[f.name] = list(v) if isinstance(v, tuple) else v
    return cfg


def from_config(config: dict[str, Any]) -> FeatureExtractor:
    """Rebuild an extractor from its config; unknown types or fields raise ConfigError."""
    _ensure_builtin()
    if not isinstance(config, dict) or "type" not in config:
        raise ConfigError(f"feature config={config!r} must be a dict with a 'type' key")
    cfg = dict(config)
    kind = cfg.pop("type")
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise ConfigError(f"feature type={kind!r} must be one of {sorted(_REGISTRY)}")
    builder: Callable[..., Any] = getattr(cls, "from_config_dict", cls)
    try:
        return builder(**cfg)  # type: ignore[no-any-return]
    except TypeError as e:
        raise ConfigError(f"feature config for type={kind!r} is invalid: {e}") from e


def registered_types() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def _ensure_builtin() -> None:
    # Importing the modules runs their @register decorators.
    import importlib

    for mod in ("classic", "concat", "cues", "level", "logmel", "prosody", "whisper", "whisper_onnx"):
        importlib.import_module(f"vocalis.features.{mod}")


def extract_many(
    extractor: FeatureExtractor,
    signals: Sequence[np.ndarray],
    sample_rate: int,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Stack vector features of many clips into ``(N, D)`` float32."""
    out = []
    for x in signals:
        out.append(np.asarray(extractor(x, sample_rate), dtype=np.float32))
        if progress is not None:
            progress(1)
    return np.stack(out) if out else np.zeros((0, 0), np.float32)
