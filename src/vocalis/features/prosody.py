"""eGeMAPS-like prosody and voice-quality statistics, vectorised numpy (about 1 ms per second of audio).

The extractor tracks F0 with a vectorised YIN (one FFT cross-correlation per 10 ms frame),
then summarises pitch, voicing, perturbation (jitter, shimmer), harmonicity (HNR), loudness,
spectral balance and rhythm into a fixed, named vector. Values follow the *definitions* of
the eGeMAPS parameter set (Eyben et al., 2016) but are computed more cheaply, so they are
close to, not identical with, openSMILE's; every one is finite on silence, noise and clipping.

Dimensions (see :data:`PROSODY_NAMES`):

* ``voiced_fraction`` — share of frames YIN calls voiced (aperiodicity below
  ``voicing_threshold`` and energy within ``silence_db`` of the loudest frame);
* ``f0_mean_st``, ``f0_std_st``, ``f0_p20_st``, ``f0_p50_st``, ``f0_p80_st``, ``f0_range_st`` —
  F0 of voiced frames in semitones above 27.5 Hz (eGeMAPS' scale); range is p80 - p20;
* ``f0_mean_hz`` — mean F0 of voiced frames in Hz;
* ``jitter_local`` — mean absolute difference of consecutive periods over the mean period,
  using frame-level periods of adjacent voiced frames (a 10 ms-hop proxy of Praat's
  cycle-to-cycle jitter; a steady tone gives ~0);
* ``shimmer_local`` / ``shimmer_db`` — the same for the peak amplitude of adjacent voiced
  frames (relative, and mean absolute dB ratio);
* ``hnr_mean_db``, ``hnr_std_db`` — harmonics-to-noise ratio of voiced frames,
  ``10 log10(r / (1 - r))`` with ``r`` the normalised autocorrelation at the period (capped at
  +-40 dB);
* ``loudness_mean``, ``loudness_std`` — Stevens' power-law loudness proxy
  ``sum_b E_b ** 0.3`` over 26 mel bands, on all non-silent frames;
* ``loudness_peaks_per_s`` — speaking-rate proxy: peaks of the smoothed frame energy (dB)
  that rise >= 3 dB above their +-150 ms surroundings and lie within 30 dB of the loudest
  frame, per second;
* ``alpha_ratio_db`` — energy 50-1000 Hz over 1-5 kHz (dB), mean over voiced frames;
* ``hammarberg_db`` — strongest peak 0-2 kHz over strongest peak 2-5 kHz (dB), voiced mean;
* ``slope_0_500``, ``slope_500_1500`` — least-squares slope of the dB power spectrum in the
  band (dB per kHz), voiced mean;
* ``voiced_segments_per_s``, ``mean_voiced_segment_s``, ``mean_unvoiced_segment_s`` — rhythm.

Statistics that need voiced frames are 0 when there are none (``voiced_fraction`` says so);
the spectral-balance means then fall back to all non-silent frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import scipy.fft
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import resample
from vocalis.errors import ConfigError
from vocalis.features.base import dataclass_config, register
from vocalis.features.spectral import frame, hann, mel_filterbank

PROSODY_NAMES = (
    "voiced_fraction",
    "f0_mean_st", "f0_std_st", "f0_p20_st", "f0_p50_st", "f0_p80_st", "f0_range_st", "f0_mean_hz",
    "jitter_local", "shimmer_local", "shimmer_db",
    "hnr_mean_db", "hnr_std_db",
    "loudness_mean", "loudness_std", "loudness_peaks_per_s",
    "alpha_ratio_db", "hammarberg_db", "slope_0_500", "slope_500_1500",
    "voiced_segments_per_s", "mean_voiced_segment_s", "mean_unvoiced_segment_s",
)
"""Names of the output dimensions, in order."""

_EPS = 1e-12
_SPEC_FFT = 512
_HNR_CAP = 0.9999  # r / (1 - r) <= 1e4 -> HNR <= 40 dB


@register
@dataclass(frozen=True)
class ProsodyFeatures:
    """eGeMAPS-like prosody / voice-quality vector of :data:`PROSODY_NAMES` (23 dims)."""

    kind: ClassVar[str] = "prosody"
    output: ClassVar[str] = "vector"

    sample_rate: int = SAMPLE_RATE
    hop_length: int = 160
    f0_min: float = 50.0
    f0_max: float = 500.0
    voicing_threshold: float = 0.25
    silence_db: float = 50.0
    pitch_rate: int = 8000

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate <= 768_000:
            raise ConfigError(f"prosody sample_rate={self.sample_rate} must be between 8000 and 768000")
        if self.hop_length < 1:
            raise ConfigError(f"prosody hop_length={self.hop_length} must be >= 1")
        if not 20.0 <= self.f0_min < self.f0_max <= self.sample_rate / 4:
            raise ConfigError(
                f"prosody f0_min={self.f0_min}, f0_max={self.f0_max} must satisfy "
                f"20 <= f0_min < f0_max <= sample_rate / 4"
            )
        if not 4 * self.f0_max <= self.pitch_rate <= self.sample_rate:
            raise ConfigError(
                f"prosody pitch_rate={self.pitch_rate} must be between 4 * f0_max and sample_rate"
            )
        if not 0.0 < self.voicing_threshold < 1.0:
            raise ConfigError(f"prosody voicing_threshold={self.voicing_threshold} must be in (0, 1)")
        if self.silence_db <= 0:
            raise ConfigError(f"prosody silence_db={self.silence_db} must be > 0")

    def get_config(self) -> dict[str, Any]:
        return dataclass_config(self)

    def feature_names(self) -> list[str]:
        """One name per vector dimension."""
        return list(PROSODY_NAMES)

    @property
    def dim(self) -> int:
        return len(PROSODY_NAMES)

    # -- frame level --------------------------------------------------------------------

    def pitch(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
        """Frame-level YIN track: ``f0`` (Hz, 0 when unvoiced), ``voiced`` (bool), ``hnr_db``,
        ``aperiodicity`` (min cumulative-mean-normalised difference), ``peak`` (frame peak
        amplitude) and ``energy`` (frame mean square), one value per ``hop_length`` frame.

        YIN runs on the signal resampled to ``pitch_rate``; its window is one period of
        ``f0_min`` and each frame spans the window plus the largest lag.
        """
        x = self._prepare(audio, sample_rate)
        return self._pitch(x)

    def _prepare(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        x = resample(np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, self.sample_rate)
        if x.size == 0:
            x = np.zeros(1, np.float32)
        if not np.isfinite(x).all():
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        return x

    def _pitch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        # YIN runs at pitch_rate (8 kHz by default: 4x fewer lag x frame products than 16 kHz)
        n_frames = 1 + x.size // self.hop_length
        sr = self.pitch_rate
        hop = max(1, round(self.hop_length * sr / self.sample_rate))
        x = resample(x, self.sample_rate, sr)
        tau_min = max(2, int(np.floor(sr / self.f0_max)))
        tau_max = int(np.ceil(sr / self.f0_min))
        w = tau_max  # integration window: one period of f0_min
        length = w + tau_max + 1  # frame: window plus the largest lag
        nfft = scipy.fft.next_fast_len(length + w, real=True)

        xp = np.pad(x, (length // 2, length // 2))
        if xp.size < (n_frames - 1) * hop + length:
            xp = np.pad(xp, (0, (n_frames - 1) * hop + length - xp.size))
        frames = frame(xp, length, hop, center=False)[:n_frames]  # (T, L)

        # r(tau) = sum_{j<W} x_j x_{j+tau}: cross-correlation of the window with the frame
        spec_full = scipy.fft.rfft(frames, nfft, axis=1)
        spec_win = scipy.fft.rfft(frames[:, :w], nfft, axis=1)
        r = scipy.fft.irfft(spec_full * np.conj(spec_win), nfft, axis=1)[:, : tau_max + 1]

        # e(tau) = sum_{j=tau}^{tau+W-1} x_j^2 from a running sum over the padded signal
        c = np.concatenate(([0.0], np.cumsum(np.square(xp, dtype=np.float64))))
        starts = np.arange(n_frames)[:, None] * hop + np.arange(tau_max + 1)[None, :]
        e = (c[starts + w] - c[starts]).astype(np.float32)
        e = np.maximum(e, 0.0)
        e0 = e[:, :1]
        d = np.maximum(e0 + e - 2.0 * r, 0.0)  # YIN difference function

        # cumulative mean normalised difference d'(tau) = d(tau) * tau / sum_{k<=tau} d(k)
        cum = np.cumsum(d[:, 1:], axis=1)
        taus = np.arange(1, tau_max + 1, dtype=np.float32)
        cmnd = np.ones_like(d)
        cmnd[:, 1:] = np.where(cum > _EPS, d[:, 1:] * taus / np.maximum(cum, _EPS), 1.0)

        band = cmnd[:, tau_min : tau_max + 1]
        # first local minimum below the threshold (== YIN's "first dip, then descend")
        left = cmnd[:, tau_min - 1 : tau_max]
        right = np.concatenate([cmnd[:, tau_min + 1 :], np.full((n_frames, 1), np.inf, np.float32)], axis=1)
        cand = (band < self.voicing_threshold) & (band <= left) & (band <= right)
        has = cand.any(axis=1)
        idx = np.where(has, np.argmax(cand, axis=1), np.argmin(band, axis=1))
        tau = idx + tau_min
        rows = np.arange(n_frames)
        aper = band[rows, idx]

        # parabolic refinement of the period on d'
        y0 = cmnd[rows, tau - 1]
        y1 = cmnd[rows, tau]
        y2 = cmnd[rows, np.minimum(tau + 1, tau_max)]
        den = y0 + y2 - 2.0 * y1
        shift = np.where(np.abs(den) > _EPS, 0.5 * (y0 - y2) / np.where(np.abs(den) > _EPS, den, 1.0), 0.0)
        period = tau + np.clip(shift, -1.0, 1.0)

        energy = e0[:, 0] / w
        gate = energy.max() * 10.0 ** (-self.silence_db / 10.0)
        voiced = has & (energy > max(gate, 1e-10))
        f0 = np.where(voiced, sr / period, 0.0)

        r_tau = r[rows, tau]
        rho = r_tau / np.sqrt(np.maximum(e0[:, 0] * e[rows, tau], _EPS))
        rho = np.clip(rho, 1.0 - _HNR_CAP, _HNR_CAP)
        hnr = 10.0 * np.log10(rho / (1.0 - rho))
        peak = np.abs(frames[:, :w]).max(axis=1)
        return {
            "f0": f0.astype(np.float32),
            "voiced": voiced,
            "hnr_db": hnr.astype(np.float32),
            "aperiodicity": aper.astype(np.float32),
            "peak": peak.astype(np.float32),
            "energy": energy.astype(np.float32),
        }

    # -- clip level ---------------------------------------------------------------------

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        x = self._prepare(audio, sample_rate)
        sr, hop = self.sample_rate, self.hop_length
        p = self._pitch(x)
        voiced = p["voiced"]
        n = voiced.size
        out = dict.fromkeys(PROSODY_NAMES, 0.0)
        out["voiced_fraction"] = float(voiced.mean()) if n else 0.0

        if voiced.any():
            f0 = p["f0"][voiced].astype(np.float64)
            st = 12.0 * np.log2(f0 / 27.5)
            p20, p50, p80 = np.percentile(st, [20, 50, 80])
            out.update(f0_mean_st=st.mean(), f0_std_st=st.std(), f0_p20_st=p20, f0_p50_st=p50,
                       f0_p80_st=p80, f0_range_st=p80 - p20, f0_mean_hz=f0.mean())
            hnr = p["hnr_db"][voiced].astype(np.float64)
            out.update(hnr_mean_db=hnr.mean(), hnr_std_db=hnr.std())
            pairs = voiced[1:] & voiced[:-1]
            if pairs.any():
                per = 1.0 / np.maximum(p["f0"].astype(np.float64), _EPS)
                out["jitter_local"] = np.abs(np.diff(per))[pairs].mean() / per[voiced].mean()
                amp = p["peak"].astype(np.float64)
                out["shimmer_local"] = np.abs(np.diff(amp))[pairs].mean() / max(amp[voiced].mean(), _EPS)
                la = 20.0 * np.log10(np.maximum(amp, 1e-8))
                out["shimmer_db"] = np.abs(np.diff(la))[pairs].mean()

        # rhythm from the voicing mask
        dur = x.size / sr
        edges = np.diff(np.concatenate(([0], voiced.astype(np.int8), [0])))
        v_len = (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)) * hop / sr
        u_edges = np.diff(np.concatenate(([0], (~voiced).astype(np.int8), [0])))
        u_len = (np.flatnonzero(u_edges == -1) - np.flatnonzero(u_edges == 1)) * hop / sr
        out["voiced_segments_per_s"] = v_len.size / max(dur, _EPS)
        out["mean_voiced_segment_s"] = float(v_len.mean()) if v_len.size else 0.0
        out["mean_unvoiced_segment_s"] = float(u_len.mean()) if u_len.size else 0.0

        # spectral balance and loudness from one power spectrogram
        power = np.abs(scipy.fft.rfft(frame(x, _SPEC_FFT, hop, center=True, pad_mode="constant")
                                      * hann(_SPEC_FFT), axis=1)) ** 2  # (T, F)
        m = min(power.shape[0], n)
        power, v = power[:m], voiced[:m]
        frame_db = 10.0 * np.log10(power.sum(axis=1) + _EPS)
        active = frame_db > frame_db.max() - self.silence_db
        if frame_db.max() <= 10.0 * np.log10(_EPS) + 1.0:
            active[:] = False
        loud = (power @ _mel_t(sr)) ** 0.3
        loud = loud.sum(axis=1)
        if active.any():
            out["loudness_mean"] = float(loud[active].mean())
            out["loudness_std"] = float(loud[active].std())
            sel = v if v.any() else active
            bal = self._balance(power[sel])
            for k, val in zip(("alpha_ratio_db", "hammarberg_db", "slope_0_500", "slope_500_1500"),
                              bal, strict=True):
                out[k] = val
            out["loudness_peaks_per_s"] = _peak_rate(frame_db, hop / sr) / max(dur, _EPS)
        vec = np.array([out[k] for k in PROSODY_NAMES], dtype=np.float64)
        return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def _balance(self, power: np.ndarray) -> tuple[float, float, float, float]:
        """Mean alpha ratio, Hammarberg index and the two spectral slopes over frames."""
        f = np.fft.rfftfreq(_SPEC_FFT, 1.0 / self.sample_rate)
        lo = power[:, (f >= 50) & (f < 1000)].sum(axis=1)
        hi = power[:, (f >= 1000) & (f < 5000)].sum(axis=1)
        alpha = 10.0 * np.log10((lo + _EPS) / (hi + _EPS))
        pk_lo = power[:, f < 2000].max(axis=1)
        pk_hi = power[:, (f >= 2000) & (f < 5000)].max(axis=1)
        hamm = 10.0 * np.log10((pk_lo + _EPS) / (pk_hi + _EPS))
        w = _slope_weights(self.sample_rate)  # (F_low, 2)
        db = 10.0 * np.log10(power[:, : w.shape[0]] + _EPS)
        slopes = db @ w
        return float(alpha.mean()), float(hamm.mean()), float(slopes[:, 0].mean()), float(slopes[:, 1].mean())


@lru_cache(maxsize=4)
def _mel_t(sample_rate: int) -> np.ndarray:
    return np.ascontiguousarray(mel_filterbank(sample_rate, _SPEC_FFT, 26).T)


@lru_cache(maxsize=4)
def _slope_weights(sample_rate: int) -> np.ndarray:
    """``(F_low, 2)`` least-squares slope weights (dB per kHz) for 0-500 Hz and 500-1500 Hz."""
    f = np.fft.rfftfreq(_SPEC_FFT, 1.0 / sample_rate)
    f_low = int(np.searchsorted(f, 1500.0, side="right"))
    w = np.zeros((f_low, 2))
    for j, (a, b) in enumerate(((0.0, 500.0), (500.0, 1500.0))):
        sel = (f[:f_low] >= a) & (f[:f_low] <= b)
        fk = f[:f_low][sel] / 1000.0
        dev = fk - fk.mean()
        w[sel, j] = dev / max(float((dev * dev).sum()), _EPS)
    return w


def _peak_rate(frame_db: np.ndarray, frame_s: float) -> float:
    """Number of prominent peaks of the smoothed energy contour (dB)."""
    if frame_db.size < 3:
        return 0.0
    k = max(1, round(0.05 / frame_s))
    sm = uniform_filter1d(frame_db, size=k, mode="nearest")
    near = max(1, round(0.05 / frame_s))
    far = max(1, round(0.15 / frame_s))
    is_max = sm >= maximum_filter1d(sm, size=2 * near + 1, mode="nearest")
    prominent = sm - minimum_filter1d(sm, size=2 * far + 1, mode="nearest") >= 3.0
    loud = sm >= sm.max() - 30.0
    peaks = is_max & prominent & loud
    # plateaus: count only the first frame of a run of equal maxima
    peaks[1:] &= ~peaks[:-1]
    return float(peaks.sum())
