"""A slow gain in front of the scream detector: a voice is loud *for this microphone*, or it is not.

The scream detector's features carry absolute level (RMS, the 0th MFCC), and its corpus' screams
are loud while its other audio is not: it learned "loud = danger". A phone held close without
automatic gain control (the browser client turns AGC off) hears ordinary speech at -12 or -6
dBFS instead of the ~-21 dBFS the detector was trained on, and false alerts follow
(``benchmarks/notes.md``, session 14). A fast AGC would remove the one cue a scream has over
speech, its loudness; :class:`StreamGain` is slow: its reference is the **median active level of
the voiced windows of the last** ``memory_s`` **seconds** of this stream, so a scream of a few
seconds barely moves it, and it brings that reference down to ``target_dbfs``. The window being
scored is not part of its own reference (the gain is decided by the past only).

Defaults, chosen before any measurement with them: the reference needs ``min_voiced_s`` of voiced
windows before any gain (a fresh stream, and every isolated clip of the benchmarks, is scored as
recorded); it only attenuates (``max_boost_db`` = 0: a quiet microphone keeps the detector's own
behaviour); ``target_dbfs`` = -18 dBFS is the median window level of the training side's calm calls
of the ``screams`` corpus (-17.8; RAVDESS/TESS speech sits lower, -25 to -30), so audio at the
level the detector was trained on passes unchanged.

Measured (``benchmarks/hot_mic.py``, ``benchmarks/sitting_gain.py``; ``benchmarks/notes.md``, session
15), it is **off by default** (``StreamConfig.level_gain = None``): held out, speech at -8.5 dBFS
gives 3.2 instead of 10.0 false alerts per hour with recall kept, but speech at the corpus' own
calm-call level is left alone (1.6 per hour either way), and with the same person's calm voice as
the reference the training side's cross-validated clip F1 falls from 0.962 to 0.924 (0.862 with a
+12 dB boost): how much louder a scream is than the same voice's calm speech varies from ~5 to
~13 dB between recording sittings. Turn it on for microphones that run very hot.

A pure state machine (``push``/``reset``, no I/O), one per stream.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from vocalis.errors import ConfigError


@dataclass(frozen=True)
class GainConfig:
    """How :class:`StreamGain` sets the danger path's gain (see the module docstring)."""

    target_dbfs: float = -18.0
    memory_s: float = 120.0
    min_voiced_s: float = 10.0
    max_cut_db: float = 24.0
    max_boost_db: float = 0.0
    voice_threshold: float = 0.5

    def __post_init__(self) -> None:
        checks = [
            ("target_dbfs", self.target_dbfs, -60.0 <= self.target_dbfs <= 0.0, "must be between -60 and 0 dBFS"),
            ("memory_s", self.memory_s, 5.0 <= self.memory_s <= 3600.0, "must be between 5 and 3600 seconds"),
            ("min_voiced_s", self.min_voiced_s, 0.0 <= self.min_voiced_s <= self.memory_s,
             f"must be between 0 and memory_s={self.memory_s}"),
            ("max_cut_db", self.max_cut_db, 0.0 <= self.max_cut_db <= 60.0, "must be between 0 and 60 dB"),
            ("max_boost_db", self.max_boost_db, 0.0 <= self.max_boost_db <= 60.0, "must be between 0 and 60 dB"),
            ("voice_threshold", self.voice_threshold, 0.0 <= self.voice_threshold <= 1.0, "must be between 0 and 1"),
        ]
        for name, value, ok, rule in checks:
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or not ok:
                raise ConfigError(f"level gain {name}={value!r} {rule}")


class StreamGain:
    """``push(level_db, voice, t_end, hop_s) -> gain_db`` per window, in stream order; ``reset()``.

    ``level_db`` is the window's active level (:func:`vocalis.features.level.active_level_db`),
    ``voice`` its voice-activity probability, ``t_end`` its end in seconds of stream time and
    ``hop_s`` the hop (each voiced window stands for one hop of voiced audio).
    """

    def __init__(self, config: GainConfig | None = None) -> None:
        self.config = config or GainConfig()
        self.reset()

    def reset(self) -> None:
        self._voiced: deque[tuple[float, float]] = deque()  # (t_end, level_db) of voiced windows
        self._sorted: list[float] = []  # their levels, sorted (the median without a sort per window)
        self.last_reference_db: float | None = None  # the reference the last push's gain came from

    @property
    def reference_db(self) -> float | None:
        """The median active level of the remembered voiced windows (``None`` before any)."""
        s, n = self._sorted, len(self._sorted)
        if not n:
            return None
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0

    def wants_level(self, voice: float) -> bool:
        """Whether :meth:`push` uses the level of a window with this ``voice`` (only voiced ones are
        remembered: a caller may skip measuring the others and pass ``nan``)."""
        return voice >= self.config.voice_threshold

    def ready(self, hop_s: float) -> bool:
        """Whether ``min_voiced_s`` of voiced hops are remembered (the reference is trusted)."""
        return bool(self._voiced) and len(self._voiced) * hop_s >= self.config.min_voiced_s - 1e-9

    def trusted_reference_db(self, hop_s: float) -> float | None:
        """:attr:`reference_db` once :meth:`ready`, else ``None``."""
        return self.reference_db if self.ready(hop_s) else None

    def _gain_for(self, ref: float | None) -> float:
        cfg = self.config
        if ref is None:
            return 0.0
        return float(min(max(cfg.target_dbfs - ref, -cfg.max_cut_db), cfg.max_boost_db))

    def gain_db(self, hop_s: float) -> float:
        """The gain the next window gets: 0 until :meth:`ready`."""
        return self._gain_for(self.trusted_reference_db(hop_s))

    def push(self, level_db: float, voice: float, t_end: float, hop_s: float) -> float:
        """The gain (dB) for this window, decided by the windows before it; then remember this one."""
        cfg = self.config
        while self._voiced and self._voiced[0][0] <= t_end - cfg.memory_s:
            _, old = self._voiced.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self.last_reference_db = self.trusted_reference_db(hop_s)
        g = self._gain_for(self.last_reference_db)
        if voice >= cfg.voice_threshold and math.isfinite(level_db):
            self._voiced.append((float(t_end), float(level_db)))
            bisect.insort(self._sorted, float(level_db))
        return g
