"""Concatenate several vector extractors into one feature vector (feature fusion)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.errors import ConfigError
from vocalis.features.base import FeatureExtractor, from_config, register


@register
class Concat:
    """``Concat([ClassicFeatures(), WhisperEncoder()])`` -> one fused vector."""

    kind: ClassVar[str] = "concat"
    output: ClassVar[str] = "vector"

    def __init__(self, parts: list[FeatureExtractor]) -> None:
        if not parts:
            raise ConfigError("concat parts=[] must hold at least one extractor")
        for p in parts:
            if p.output != "vector":
                raise ConfigError(f"concat part type={p.kind!r} must output 'vector', not {p.output!r}")
        self.parts = list(parts)

    @classmethod
    def from_config_dict(cls, parts: list[dict[str, Any]]) -> Concat:
        return cls([from_config(p) for p in parts])

    def get_config(self) -> dict[str, Any]:
        return {"type": self.kind, "parts": [p.get_config() for p in self.parts]}

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        return np.concatenate([np.asarray(p(audio, sample_rate), np.float32).ravel() for p in self.parts])
