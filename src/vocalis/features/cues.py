"""Scream cues: pitch height, harmonicity, spectral flatness and loudness dynamics below ``fmax``.

A cheap (~0.3 ms per 2 s window), band-limited complement to MFCC statistics for telling a
scream from loud acted speech: screams are high-pitched (often 400-1500 Hz), long and steady,
either strongly harmonic or rough; shouted speech is lower, choppy and syllabic. Everything is
computed from one STFT restricted to ``fmin``-``fmax`` (default 300-4000 Hz), so a telephone or
browser channel that removes the top band or the bottom 300 Hz leaves the input unchanged, and
every value is relative (no absolute level: gain cannot move it).

Per frame (``n_fft`` Hann window every ``hop_length`` samples):

* band energy (dB) and spectral flatness / centroid of the band power spectrum;
* harmonicity ``h`` = a peak of the normalised autocorrelation (the inverse FFT of the band power
  spectrum, divided by the window's own autocorrelation) at a lag between ``1 / f0_max`` and
  ``1 / f0_min``: the shortest-lag local peak within 85 % of the highest (multiples of the period
  peak nearly as high); its lag gives the pitch ``f0`` of that frame.

Vector (:data:`CUE_NAMES`, 20 dims), over the frames within ``active_db`` dB of the loudest
("active" frames; voiced = active and ``h >= voicing``):

* loudness dynamics: ``energy_range_db`` (p95 - p10 of all frames), ``energy_std_db``,
  ``active_fraction``, ``energy_flux_db`` (mean absolute frame-to-frame change of active frames),
  ``longest_active_s``;
* ``flatness_mean`` / ``flatness_min`` (log10), ``centroid_mean_khz`` / ``centroid_std_khz``;
* ``harmonicity_mean`` / ``harmonicity_p90`` (active frames), ``voiced_fraction``;
* pitch of voiced frames (log2 Hz): ``f0_mean``, ``f0_p90``, ``f0_std``, ``f0_weighted`` (energy
  weighted); ``high_fraction`` (voiced with f0 >= ``high_hz``), ``longest_voiced_s``,
  ``longest_high_s``, ``voiced_flux`` (mean absolute change of log2 f0 between voiced neighbours:
  jitter at frame rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import scipy.fft

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import resample
from vocalis.errors import ConfigError
from vocalis.features.base import dataclass_config, register
from vocalis.features.spectral import frame, hann

CUE_NAMES = (
    "energy_range_db", "energy_std_db", "active_fraction", "energy_flux_db", "longest_active_s",
    "flatness_mean", "flatness_min", "centroid_mean_khz", "centroid_std_khz",
    "harmonicity_mean", "harmonicity_p90", "voiced_fraction",
    "f0_mean", "f0_p90", "f0_std", "f0_weighted", "high_fraction", "longest_voiced_s", "longest_high_s",
    "voiced_flux",
)
"""Names of the output dimensions, in order."""

_EPS = 1e-12
_PEAK_RATIO = 0.85


@lru_cache(maxsize=8)
def _window_acf(n_fft: int, m: int) -> np.ndarray:
    """Autocorrelation of the Hann window at the lags of an ``m``-point inverse FFT (normalised, floored)."""
    w = hann(n_fft).astype(np.float64)
    r = np.correlate(w, w, mode="full")[n_fft - 1 :]
    lags = np.arange(m // 2 + 1) * n_fft / m
    out = np.interp(lags, np.arange(n_fft), r / r[0])
    return np.maximum(out, 1e-3).astype(np.float32)


@lru_cache(maxsize=8)
def _band_bins(sr: int, n_fft: int, fmin: float, fmax: float) -> tuple[int, int]:
    df = sr / n_fft
    return max(1, int(np.ceil(fmin / df))), min(n_fft // 2, int(np.floor(fmax / df)))


@lru_cache(maxsize=8)
def _bin_freqs(sr: int, n_fft: int, klo: int, khi: int) -> np.ndarray:
    return (np.arange(klo, khi + 1) * sr / n_fft).astype(np.float32)


def _pct(x: np.ndarray, q: float) -> float:
    """Nearest-rank ``q`` quantile (cheaper than ``np.percentile`` on ~100 values)."""
    s = np.sort(x)
    return float(s[min(s.size - 1, round(q * (s.size - 1)))])


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    m = np.concatenate(([0], mask.astype(np.int8), [0]))
    d = np.diff(m)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return int((ends - starts).max())


@register
@dataclass(frozen=True)
class ScreamCues:
    """Band-limited pitch / harmonicity / flatness / loudness-dynamics statistics (:data:`CUE_NAMES`)."""

    kind: ClassVar[str] = "cues"
    output: ClassVar[str] = "vector"

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    hop_length: int = 320
    fmin: float = 300.0
    fmax: float = 4000.0
    f0_min: float = 100.0
    f0_max: float = 1600.0
    voicing: float = 0.45
    high_hz: float = 400.0
    active_db: float = 25.0

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate <= 48000:
            raise ConfigError(f"cues sample_rate={self.sample_rate} must be between 8000 and 48000")
        if not 0.0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"cues fmin={self.fmin}, fmax={self.fmax} must satisfy 0 <= fmin < fmax <= sample_rate / 2")
        if not (0 < self.f0_min < self.f0_max and self.sample_rate / self.f0_min < self.n_fft / 2):
            raise ConfigError(f"cues f0_min={self.f0_min}, f0_max={self.f0_max} must satisfy "
                              f"0 < f0_min < f0_max and sample_rate / f0_min < n_fft / 2")
        if self.hop_length < 1 or self.n_fft < 64:
            raise ConfigError(f"cues n_fft={self.n_fft}, hop_length={self.hop_length} must be >= 64 and >= 1")

    def get_config(self) -> dict[str, Any]:
        return dataclass_config(self)

    def feature_names(self) -> list[str]:
        return list(CUE_NAMES)

    @property
    def dim(self) -> int:
        return len(CUE_NAMES)

    def frames(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
        """Frame-level ``energy_db``, ``flatness`` (log10), ``centroid`` (Hz), ``harmonicity``, ``f0`` (Hz)."""
        x = resample(np.asarray(audio, np.float32).reshape(-1), sample_rate, self.sample_rate)
        if x.size == 0:
            x = np.zeros(self.n_fft, np.float32)
        if not np.isfinite(x).all():
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        sr, n = self.sample_rate, self.n_fft
        klo, khi = _band_bins(sr, n, self.fmin, self.fmax)
        fr = frame(x, n, self.hop_length, center=True, pad_mode="constant") * hann(n)
        spec = scipy.fft.rfft(fr, axis=1, overwrite_x=True)[:, : khi + 1]
        ri = np.ascontiguousarray(spec).view(np.float32)
        np.square(ri, out=ri)
        p = np.add(ri[:, 0::2], ri[:, 1::2])  # power, bins 0..khi
        p[:, :klo] = 0.0
        pb = p[:, klo:]
        pb += np.float32(_EPS)
        e = pb.sum(axis=1, dtype=np.float64)
        energy_db = 10.0 * np.log10(e)
        flat = np.log10(pb).mean(axis=1) - np.log10(e / pb.shape[1])
        centroid = (pb @ _bin_freqs(sr, n, klo, khi)) / e
        # autocorrelation of the band-limited frame: inverse FFT of its power spectrum (lags at 2 * fmax_bin rate)
        m = 2 * khi
        acf = scipy.fft.irfft(p, n=m, axis=1)
        rate = sr * m / n
        lo, hi = int(np.floor(rate / self.f0_max)), min(int(np.ceil(rate / self.f0_min)), m // 2)
        r = acf[:, lo : hi + 1] / np.maximum(acf[:, :1], np.float32(_EPS)) / _window_acf(n, m)[lo : hi + 1]
        # the shortest lag whose local peak reaches 85 % of the highest one (a period's multiples peak as high)
        pad = np.full((r.shape[0], 1), -np.inf, r.dtype)
        left, right = np.concatenate([pad, r[:, :-1]], axis=1), np.concatenate([r[:, 1:], pad], axis=1)
        cand = (r >= left) & (r >= right) & (r >= _PEAK_RATIO * r.max(axis=1, keepdims=True))
        k = np.argmax(cand, axis=1)
        harm = np.clip(r[np.arange(r.shape[0]), k], 0.0, 1.0)
        f0 = rate / (k + lo)
        return {"energy_db": energy_db, "flatness": flat, "centroid": centroid, "harmonicity": harm, "f0": f0}

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        fr = self.frames(audio, sample_rate)
        e, harm, f0 = fr["energy_db"], fr["harmonicity"], fr["f0"]
        dt = self.hop_length / self.sample_rate
        active = e >= e.max() - self.active_db
        if e.max() < -90.0:  # digital silence: nothing is active
            active[:] = False
        voiced = active & (harm >= self.voicing)
        lf0 = np.log2(f0)
        ea = e[active]
        v = np.zeros(len(CUE_NAMES), np.float64)
        v[0] = _pct(e, 0.95) - _pct(e, 0.10)
        v[1] = e.std()
        v[2] = active.mean()
        if ea.size > 1:
            v[3] = np.abs(np.diff(ea)).mean()
        v[4] = _longest_run(active) * dt
        if ea.size:
            v[5] = fr["flatness"][active].mean()
            v[6] = fr["flatness"][active].min()
            c = fr["centroid"][active] / 1000.0
            v[7], v[8] = c.mean(), c.std()
            ha = harm[active]
            v[9], v[10] = ha.mean(), _pct(ha, 0.9)
            v[11] = voiced.sum() / active.sum()
        if voiced.any():
            lv = lf0[voiced]
            v[12], v[13], v[14] = lv.mean(), _pct(lv, 0.9), lv.std()
            w = 10.0 ** ((e[voiced] - e.max()) / 10.0)
            v[15] = float((lv * w).sum() / max(w.sum(), _EPS))
            high = voiced & (f0 >= self.high_hz)
            v[16] = high.sum() / max(active.sum(), 1)
            v[17] = _longest_run(voiced) * dt
            v[18] = _longest_run(high) * dt
            pairs = voiced[1:] & voiced[:-1]
            if pairs.any():
                v[19] = np.abs(np.diff(lf0))[pairs].mean()
        else:
            v[12] = v[13] = v[15] = np.log2(self.f0_min)
        out = v.astype(np.float32)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
