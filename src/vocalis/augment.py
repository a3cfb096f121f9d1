"""Seeded data augmentation: waveform transforms and SpecAugment.

**Augment training folds only.** Augmentation is applied *after* the speaker-independent split,
to the training part of each fold, never to validation or test data:

* an augmented copy of a clip is a near-duplicate of it (same speaker, same sentence, same
  take); augmenting before splitting puts copies of test clips into training and inflates
  every score (leakage);
* validation and test sets must look like the audio the model will meet in use; scoring on
  synthetic noise or pitch-shifted voices measures something else.

:class:`Augmenter` wraps audiomentations (``AddGaussianSNR``, ``TimeStretch``, ``PitchShift``,
``Shift``, ``Gain``). audiomentations draws from Python's global :mod:`random` and numpy's
global ``np.random``; each call here seeds both from the augmenter's own
:class:`numpy.random.Generator` inside a context that saves and restores the global states,
so a given ``seed`` always yields the same outputs, in the same order, and the caller's
global random state is untouched. (The context is guarded by a lock so concurrent threads in
one process do not interleave; separate processes are independent.)

:func:`spec_augment` is the numpy SpecAugment used by the frame models in
:mod:`vocalis.models.torch_nets`.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.errors import AudioError, ConfigError, require

__all__ = ["AugmentConfig", "Augmenter", "spec_augment"]

_GLOBAL_RANDOM_LOCK = threading.Lock()


def _check_range(name: str, value: tuple[float, float], low: float | None = None) -> None:
    if len(value) != 2 or not all(np.isfinite(v) for v in value):
        raise ConfigError(f"augment {name}={value!r} must be a (min, max) pair of finite numbers")
    if value[0] > value[1]:
        raise ConfigError(f"augment {name}={value!r} must have min <= max")
    if low is not None and value[0] <= low:
        raise ConfigError(f"augment {name}={value!r} must be > {low}")


@dataclass(frozen=True)
class AugmentConfig:
    """Waveform augmentation settings (each transform fires independently with probability ``p``).

    * ``noise_snr_db`` — additive white Gaussian noise at an SNR drawn from this range (dB);
    * ``time_stretch`` — tempo factor range (> 1 is faster); the duration changes accordingly;
    * ``pitch_shift_semitones`` — pitch shift range in semitones, duration unchanged;
    * ``time_shift_fraction`` — shift by up to this fraction of the length, either way,
      filling with silence;
    * ``gain_db`` — gain range in dB (the result is scaled down if it would exceed full scale);
    * ``p`` — probability of each transform;
    * ``copies`` — augmented copies per training clip made by :meth:`Augmenter.augment_many`.

    >>> AugmentConfig.from_dict(AugmentConfig(copies=2).to_dict()) == AugmentConfig(copies=2)
    True
    """

    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    time_stretch: tuple[float, float] = (0.9, 1.1)
    pitch_shift_semitones: tuple[float, float] = (-2.0, 2.0)
    time_shift_fraction: float = 0.1
    gain_db: tuple[float, float] = (-6.0, 6.0)
    p: float = 0.5
    copies: int = 1

    def __post_init__(self) -> None:
        for f in ("noise_snr_db", "time_stretch", "pitch_shift_semitones", "gain_db"):
            object.__setattr__(self, f, tuple(float(v) for v in getattr(self, f)))
        _check_range("noise_snr_db", self.noise_snr_db)
        _check_range("time_stretch", self.time_stretch, low=0.0)
        if self.time_stretch[0] < 0.1 or self.time_stretch[1] > 10.0:
            raise ConfigError(f"augment time_stretch={self.time_stretch!r} must lie within [0.1, 10]")
        _check_range("pitch_shift_semitones", self.pitch_shift_semitones)
        _check_range("gain_db", self.gain_db)
        if not 0.0 <= self.time_shift_fraction < 1.0:
            raise ConfigError(f"augment time_shift_fraction={self.time_shift_fraction} must be in [0, 1)")
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"augment p={self.p} must be in [0, 1]")
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or self.copies < 0:
            raise ConfigError(f"augment copies={self.copies!r} must be an integer >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (ranges as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"augment keys={unknown} must be among {sorted(known)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


@contextlib.contextmanager
def _seeded_global_random(seed: int) -> Iterator[None]:
    """Seed ``random`` and ``np.random`` for the block, then restore the caller's states."""
    with _GLOBAL_RANDOM_LOCK:
        py_state = random.getstate()
        np_state = np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class Augmenter:
    """Seeded waveform augmenter for **training folds only** (see the module docstring).

    Calls are reproducible given ``seed`` and the order of calls: the n-th call of two
    augmenters built with the same config and seed returns the same array. Typical use, inside
    a cross-validation loop, on the training part of the fold only::

        aug = Augmenter(AugmentConfig(copies=2), seed=fold_seed)
        train_audio, train_labels, train_speakers = aug.augment_many(
            [audio[i] for i in train_idx], labels[train_idx], speakers[train_idx]
        )
    """

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0) -> None:
        self.config = config if config is not None else AugmentConfig()
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._compose: Any = None

    def _pipeline(self) -> Any:
        if self._compose is None:
            am: Any = require("audiomentations", "train")
            c = self.config
            self._compose = am.Compose(
                [
                    am.TimeStretch(
                        min_rate=c.time_stretch[0],
                        max_rate=c.time_stretch[1],
                        leave_length_unchanged=False,
                        p=c.p,
                    ),
                    am.PitchShift(
                        min_semitones=c.pitch_shift_semitones[0],
                        max_semitones=c.pitch_shift_semitones[1],
                        p=c.p,
                    ),
                    am.Shift(
                        min_shift=-c.time_shift_fraction,
                        max_shift=c.time_shift_fraction,
                        shift_unit="fraction",
                        rollover=False,
                        p=c.p,
                    ),
                    am.Gain(min_gain_db=c.gain_db[0], max_gain_db=c.gain_db[1], p=c.p),
                    am.AddGaussianSNR(min_snr_db=c.noise_snr_db[0], max_snr_db=c.noise_snr_db[1], p=c.p),
                ]
            )
        return self._compose

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Return one augmented copy of mono ``audio`` (float32, finite, peak <= 1 unless the input's was).

        The input array is never modified.
        """
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise AudioError(f"audio shape={x.shape} must be a non-empty mono (1-D) signal")
        if not np.all(np.isfinite(x)):
            raise AudioError("audio values must be finite (found NaN or inf)")
        pipeline = self._pipeline()
        call_seed = int(self._rng.integers(0, 2**32 - 1))
        with _seeded_global_random(call_seed):
            y = pipeline(samples=x.copy(), sample_rate=int(sample_rate))
        y = np.nan_to_num(np.asarray(y, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if y.size == 0:  # defensive: a stretch of a tiny clip could come back empty
            y = x.copy()
        peak = float(np.max(np.abs(y)))
        limit = max(1.0, float(np.max(np.abs(x))))
        if peak > limit:
            y = y * (limit / peak)
        return np.ascontiguousarray(y, dtype=np.float32)

    def augment_many(
        self,
        signals: Sequence[np.ndarray],
        labels: Sequence[Any] | np.ndarray,
        groups: Sequence[Any] | np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
        """Return the originals followed by ``config.copies`` augmented copies of each.

        Order: ``signals[0..N-1]``, then copy 1 of each, then copy 2 of each, ...; labels and
        groups (speaker ids) are repeated to stay aligned, so a speaker-disjoint split made
        later on the output stays speaker-disjoint. The original arrays are returned as-is
        (not copied, not modified).
        """
        labels_arr = np.asarray(labels)
        if len(signals) != len(labels_arr):
            raise ConfigError(f"labels={len(labels_arr)} must match signals={len(signals)}")
        groups_arr = None if groups is None else np.asarray(groups)
        if groups_arr is not None and len(groups_arr) != len(signals):
            raise ConfigError(f"groups={len(groups_arr)} must match signals={len(signals)}")
        reps = 1 + self.config.copies
        out: list[np.ndarray] = list(signals)
        for _ in range(self.config.copies):
            out.extend(self(s, sample_rate) for s in signals)
        return (
            out,
            np.tile(labels_arr, reps),
            None if groups_arr is None else np.tile(groups_arr, reps),
        )


def spec_augment(
    frames: np.ndarray,
    rng: np.random.Generator,
    *,
    freq_masks: int = 2,
    freq_width: int = 10,
    time_masks: int = 2,
    time_width: int = 30,
    fill: float | np.ndarray = 0.0,
) -> np.ndarray:
    """SpecAugment (Park et al. 2019) masks on a ``(C, T)`` frame matrix; returns a new array.

    ``freq_masks`` bands of width ``0..freq_width`` and ``time_masks`` spans of width
    ``0..time_width`` are set to ``fill`` — a scalar, or a ``(C,)`` per-band value such as the
    training mean (which becomes 0 after standardisation).

    >>> m = spec_augment(np.ones((8, 20), np.float32), np.random.default_rng(0), fill=0.0)
    >>> m.shape, m.dtype.name, bool(m.min() >= 0)
    ((8, 20), 'float32', True)
    """
    x = np.array(frames, dtype=np.float32, copy=True)
    if x.ndim != 2:
        raise ConfigError(f"frames shape={x.shape} must be (channels, time)")
    n_chan, n_time = x.shape
    fill_arr = np.broadcast_to(np.asarray(fill, dtype=np.float32).reshape(-1, 1), (n_chan, 1))
    for _ in range(freq_masks):
        w = int(rng.integers(0, min(freq_width, n_chan) + 1))
        if w:
            f0 = int(rng.integers(0, n_chan - w + 1))
            x[f0 : f0 + w, :] = fill_arr[f0 : f0 + w]
    for _ in range(time_masks):
        w = int(rng.integers(0, min(time_width, n_time) + 1))
        if w:
            t0 = int(rng.integers(0, n_time - w + 1))
            x[:, t0 : t0 + w] = fill_arr
    return x
