"""Streaming inference: audio chunks in, one scored window per hop out (no I/O).

>>> from vocalis.streaming import StreamConfig
>>> StreamConfig(window_s=2.0, hop_s=0.5).hop_samples
8000
"""

from __future__ import annotations

from vocalis.streaming.predictor import StreamConfig, StreamingPredictor, WindowResult
from vocalis.streaming.ring import RingBuffer

__all__ = ["RingBuffer", "StreamConfig", "StreamingPredictor", "WindowResult"]
