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

    def batch(self, audios: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """``(N, dim)``: ``self(row)`` for every row of ``audios`` ``(N, samples)``; each part's own
        ``batch`` where it has one (a live server scores many sessions' windows at once). Parts with
        the same STFT (``stft_key``: rate, ``n_fft``, hop, padding) share one: the scream detector's
        MFCC and cue parts frame a window identically, so its cues reuse the MFCC part's spectrum."""
        a = np.asarray(audios, dtype=np.float32)
        if a.ndim != 2:
            raise ConfigError(f"audios.shape={a.shape} must be (windows, samples)")
        cols = []
        spectra: dict[Any, np.ndarray] = {}  # power spectra by STFT key, for parts that can reuse one
        for p in self.parts:
            key = getattr(p, "stft_key", None)
            if key in spectra and hasattr(p, "batch_from_power"):
                f = p.batch_from_power(spectra[key], a.shape[0])
            elif hasattr(p, "batch_and_power"):
                f, power = p.batch_and_power(a, sample_rate)
                if power is not None and key is not None and int(sample_rate) == key[0]:
                    spectra[key] = power
            elif hasattr(p, "batch"):
                f = p.batch(a, sample_rate)
            else:
                f = np.stack([p(x, sample_rate) for x in a])
            cols.append(np.asarray(f, np.float32).reshape(a.shape[0], -1))
        return np.concatenate(cols, axis=1)
