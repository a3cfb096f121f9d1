"""Audio: constants, decoding/validation and resampling.

The signal contract: float32 mono ``numpy`` array plus an ``int`` sample rate.
"""

from vocalis.audio.constants import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE
from vocalis.audio.io import decode_bytes, load_audio, resample, validate

__all__ = [
    "HOP_LENGTH",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "decode_bytes",
    "load_audio",
    "resample",
    "validate",
]
