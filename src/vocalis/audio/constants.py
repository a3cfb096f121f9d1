"""All audio constants in one place (as openai/whisper's ``audio.py``).

Every signal inside Vocalis is a float32 mono numpy array at :data:`SAMPLE_RATE`.
Derived values are computed, never typed twice.
"""

from __future__ import annotations

SAMPLE_RATE = 16_000
"""Internal sample rate in Hz."""

N_FFT = 400
"""STFT window length in samples (25 ms at 16 kHz)."""

HOP_LENGTH = 160
"""STFT hop in samples (10 ms at 16 kHz)."""

N_MELS = 80
"""Mel bands of the log-mel front end (Whisper's)."""

FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH
"""Feature frames per second of audio (100)."""

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
"""Sample rates outside this range are rejected as absurd."""

DEFAULT_MAX_DURATION_S = 600.0
"""Default cap on decoded audio length (10 minutes); configurable per call."""

MIN_DURATION_S = 0.05
"""Shorter audio is rejected: there is nothing to analyse."""

AUDIBLE_DBFS = -60.0
"""A clip whose loudest :data:`LEVEL_FRAME` frame is below this level (RMS, dB re full scale) holds
no audible sound: the clip-level predictors refuse it instead of labelling silence (a model has
never seen it and answers with confident nonsense). Live streams and call triage handle silence
themselves and do not apply it."""

LEVEL_FRAME = 512
"""Frame (samples, 32 ms at 16 kHz) over which :data:`AUDIBLE_DBFS` is measured."""
