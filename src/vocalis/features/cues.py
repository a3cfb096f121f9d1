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


def _longest_runs(mask: np.ndarray) -> np.ndarray:
    """Longest run of true values in each row of ``(N, T)`` ``mask``."""
    c = np.cumsum(mask, axis=1)
    since = c - np.maximum.accumulate(np.where(mask, 0, c), axis=1)  # trues since the last false
    return since.max(axis=1) if mask.shape[1] else np.zeros(mask.shape[0], np.int64)


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of each row's masked values (0 where none)."""
    return np.where(mask, x, 0.0).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)


def _masked_pct(x: np.ndarray, mask: np.ndarray, q: float) -> np.ndarray:
    """Nearest-rank ``q`` quantile of each row's masked values (``sorted[round(q * (count - 1))]``; inf where none)."""
    s = np.sort(np.where(mask, x, np.inf), axis=1)
    k = np.round(q * (mask.sum(axis=1) - 1)).clip(0).astype(np.int64)
    return s[np.arange(s.shape[0]), k]


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
        fr = frame(x, self.n_fft, self.hop_length, center=True, pad_mode="constant")
        return {k: v[0] for k, v in self._frame_values(fr[None]).items()}

    @property
    def stft_key(self) -> tuple[int, int, int, str]:
        """What fixes the STFT frames: sample rate, ``n_fft``, hop, padding (Hann, centred, zeros)."""
        return (self.sample_rate, self.n_fft, self.hop_length, "constant")

    def _frame_values(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`frames` of ``(N, T, n_fft)`` raw frames (N windows), each value ``(N, T)``."""
        n = self.n_fft
        n_win, t, _ = frames.shape
        _, khi = _band_bins(self.sample_rate, n, self.fmin, self.fmax)
        fr = frames.reshape(n_win * t, n) * hann(n)
        spec = scipy.fft.rfft(fr, axis=1, overwrite_x=True)[:, : khi + 1]
        ri = np.ascontiguousarray(spec).view(np.float32)
        np.square(ri, out=ri)
        return self._power_values(np.add(ri[:, 0::2], ri[:, 1::2]), n_win, t)

    def batch_from_power(self, power: np.ndarray, n_win: int) -> np.ndarray:
        """:meth:`batch` from the Hann-windowed power spectrum ``(N * T, >= 1 + fmax bin)`` of the same
        frames (:attr:`stft_key`) that another extractor already computed; ``power`` is not changed."""
        _, khi = _band_bins(self.sample_rate, self.n_fft, self.fmin, self.fmax)
        t = power.shape[0] // max(n_win, 1)
        if n_win < 1 or power.shape[0] != n_win * t or power.shape[1] <= khi:
            raise ConfigError(f"power.shape={power.shape} must be (n_win * frames, > {khi}) with n_win={n_win}")
        return self._vectors(self._power_values(np.array(power[:, : khi + 1], np.float32), n_win, t))

    def _power_values(self, p: np.ndarray, n_win: int, t: int) -> dict[str, np.ndarray]:
        """Frame values from the power spectrum ``p`` ``(N * T, 1 + fmax bin)`` (changed in place)."""
        sr, n = self.sample_rate, self.n_fft
        klo, khi = _band_bins(sr, n, self.fmin, self.fmax)
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
        out = {"energy_db": energy_db, "flatness": flat, "centroid": centroid, "harmonicity": harm, "f0": f0}
        return {name: v.reshape(n_win, t) for name, v in out.items()}

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        fr = self.frames(audio, sample_rate)
        return self._vectors({k: v[None] for k, v in fr.items()})[0]

    def batch(self, audios: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """``(N, 20)``: ``self(row)`` for every row of ``audios`` ``(N, samples)`` (windows of one length),
        in whole-batch NumPy calls (one FFT, one inverse FFT and masked statistics for all windows),
        as :meth:`vocalis.features.classic.ClassicFeatures.batch` for a live server's many sessions."""
        a = np.asarray(audios, dtype=np.float32)
        if a.ndim != 2:
            raise ConfigError(f"audios.shape={a.shape} must be (windows, samples)")
        if a.shape[0] == 0:
            return np.zeros((0, len(CUE_NAMES)), np.float32)
        if int(sample_rate) != self.sample_rate or a.shape[1] == 0:
            return np.stack([self(x, sample_rate) for x in a])
        if not np.isfinite(np.einsum("ij,ij->i", a, a)).all():
            a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=-1.0)
        n, hop = self.n_fft, self.hop_length
        n_win, length = a.shape
        pad = n // 2
        xp = np.zeros((n_win, max(length + 2 * pad, n)), np.float32)
        xp[:, pad : pad + length] = a
        t = 1 + (xp.shape[1] - n) // hop
        frames = np.ndarray((n_win, t, n), np.float32, xp, 0, (xp.strides[0], xp.itemsize * hop, xp.itemsize))
        return self._vectors(self._frame_values(frames))

    def _vectors(self, fr: dict[str, np.ndarray]) -> np.ndarray:
        """:data:`CUE_NAMES` of every window from its ``(N, T)`` frame values (masked statistics)."""
        e, harm, f0 = fr["energy_db"], fr["harmonicity"], fr["f0"]
        n_win, t = e.shape
        dt = self.hop_length / self.sample_rate
        emax = e.max(axis=1)
        active = e >= (emax - self.active_db)[:, None]
        active[emax < -90.0] = False  # digital silence: nothing is active
        voiced = active & (harm >= self.voicing)
        lf0 = np.log2(f0)
        n_act = active.sum(axis=1)
        has = n_act > 0
        v = np.zeros((n_win, len(CUE_NAMES)), np.float64)
        es = np.sort(e, axis=1)
        v[:, 0] = es[:, round(0.95 * (t - 1))] - es[:, round(0.10 * (t - 1))]
        v[:, 1] = e.std(axis=1)
        v[:, 2] = n_act / t
        # mean |change| between consecutive active frames (the active frames in order, pauses skipped)
        order = np.argsort(~active, axis=1, kind="stable")
        ea = np.take_along_axis(e, order, axis=1)
        steps = np.arange(t - 1)[None, :] < (n_act - 1)[:, None]
        flux = (np.abs(np.diff(ea, axis=1)) * steps).sum(axis=1)
        v[:, 3] = np.where(n_act > 1, flux / np.maximum(n_act - 1, 1), 0.0)
        v[:, 4] = _longest_runs(active) * dt
        if has.any():
            v[has, 5] = _masked_mean(fr["flatness"], active)[has]
            v[has, 6] = np.where(active, fr["flatness"], np.inf).min(axis=1)[has]
            c = fr["centroid"] / 1000.0
            cm = _masked_mean(c, active)
            v[has, 7] = cm[has]
            v[has, 8] = np.sqrt(_masked_mean(np.square(c - cm[:, None]), active))[has]
            v[has, 9] = _masked_mean(harm, active)[has]
            v[has, 10] = _masked_pct(harm, active, 0.9)[has]
            v[has, 11] = (voiced.sum(axis=1) / np.maximum(n_act, 1))[has]
        n_voi = voiced.sum(axis=1)
        hv = n_voi > 0
        if hv.any():
            lm = _masked_mean(lf0, voiced)
            v[hv, 12] = lm[hv]
            v[hv, 13] = _masked_pct(lf0, voiced, 0.9)[hv]
            v[hv, 14] = np.sqrt(_masked_mean(np.square(lf0 - lm[:, None]), voiced))[hv]
            w = np.where(voiced, 10.0 ** ((e - emax[:, None]) / 10.0), 0.0)
            v[hv, 15] = ((lf0 * w).sum(axis=1) / np.maximum(w.sum(axis=1), _EPS))[hv]
            high = voiced & (f0 >= self.high_hz)
            v[hv, 16] = (high.sum(axis=1) / np.maximum(n_act, 1))[hv]
            v[hv, 17] = (_longest_runs(voiced) * dt)[hv]
            v[hv, 18] = (_longest_runs(high) * dt)[hv]
            pairs = voiced[:, 1:] & voiced[:, :-1]
            n_pairs = pairs.sum(axis=1)
            jit = np.where(pairs, np.abs(np.diff(lf0, axis=1)), 0.0).sum(axis=1)
            ok = hv & (n_pairs > 0)
            v[ok, 19] = (jit / np.maximum(n_pairs, 1))[ok]
        v[~hv, 12] = v[~hv, 13] = v[~hv, 15] = np.log2(self.f0_min)
        out = v.astype(np.float32)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
