"""Log-mel spectrogram extractor (frame-level output for CNN/CRNN models and backbones)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from vocalis.audio.constants import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE
from vocalis.audio.io import resample
from vocalis.errors import ConfigError
from vocalis.features.base import dataclass_config, register
from vocalis.features.spectral import mel_filterbank, power_spectrogram, power_to_db

SCALES = ("db", "whisper", "ln")


@register
@dataclass(frozen=True)
class LogMel:
    """``(n_mels, frames)`` log-mel spectrogram.

    ``scale``:

    * ``"db"`` — ``10 log10`` power, 80 dB dynamic range (librosa ``power_to_db``);
    * ``"whisper"`` — Whisper's front end: ``log10``, clamped 8 below the max, ``(x + 4) / 4``
      (drops the last STFT frame, as Whisper does);
    * ``"ln"`` — ``log(mel + 1e-6)``.

    ``normalise`` = ``"utterance"`` subtracts each band's mean and divides by the std over the
    clip (per-utterance normalisation, robust to microphone gain and colour).
    """

    kind: ClassVar[str] = "logmel"
    output: ClassVar[str] = "frames"

    n_mels: int = N_MELS
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    fmin: float = 0.0
    fmax: float | None = None
    scale: str = "db"
    normalise: str | None = None
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"logmel scale={self.scale!r} must be one of {SCALES}")
        if self.normalise not in (None, "utterance"):
            raise ConfigError(f"logmel normalise={self.normalise!r} must be None or 'utterance'")
        if self.n_mels < 1 or self.n_fft < 16 or self.hop_length < 1:
            raise ConfigError(
                f"logmel n_mels={self.n_mels}, n_fft={self.n_fft}, hop_length={self.hop_length} must be positive"
            )

    def get_config(self) -> dict[str, Any]:
        return dataclass_config(self)

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        x = resample(audio, sample_rate, self.sample_rate)
        spec = power_spectrogram(x, self.n_fft, self.hop_length)
        if self.scale == "whisper":
            spec = spec[:, :-1]
        mel = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax) @ spec
        if self.scale == "db":
            out = power_to_db(mel)
        elif self.scale == "whisper":
            log = np.log10(np.maximum(mel, 1e-10))
            log = np.maximum(log, log.max() - 8.0)
            out = (log + 4.0) / 4.0
        else:
            out = np.log(mel + 1e-6)
        if self.normalise == "utterance":
            out = (out - out.mean(axis=1, keepdims=True)) / (out.std(axis=1, keepdims=True) + 1e-5)
        return np.ascontiguousarray(out, dtype=np.float32)
