"""Classic hand-crafted SER features (ZCR, RMS, MFCC, chroma, mel, spectral shape), numpy only.

Every spectral group is computed from **one** STFT per clip; ZCR and RMS come from running
sums over the waveform (``O(n)``, not ``O(n * n_fft / hop)``). Frame-level matrices agree
with librosa for the same parameters (``librosa.feature.zero_crossing_rate``, ``rms``,
``mfcc``, ``chroma_stft``, ``melspectrogram``, ``spectral_centroid``, ``spectral_bandwidth``,
``spectral_rolloff``, ``spectral_flatness``; see ``tests/test_features.py``), at a small
fraction of the cost.

The clip vector is the concatenation, group by group and statistic by statistic, of
per-dimension statistics over frames. :meth:`ClassicFeatures.recipe` reproduces the
ubiquitous hobby-project recipe (librosa at 22.05 kHz; means of MFCC-40, chroma-12 on the
magnitude STFT with per-clip tuning estimation, and power mel-128) value for value.
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
from vocalis.features.spectral import frame, hann, mel_filterbank

GROUPS = ("zcr", "rms", "mfcc", "mfcc_delta", "chroma", "mel", "spectral")
"""Feature groups, in the order they appear in the vector when selected."""

STATS = ("mean", "std", "min", "max")
"""Per-dimension statistics over frames."""

SPECTRAL = ("centroid", "bandwidth", "rolloff", "flatness")
"""Rows of the ``"spectral"`` group (librosa's definitions and defaults)."""

DEFAULT_GROUPS = ("zcr", "rms", "mfcc", "mfcc_delta", "chroma", "mel", "spectral")
RECIPE_GROUPS = ("mfcc", "chroma", "mel")

_ZC_THRESHOLD = 1e-10  # librosa.zero_crossings: |x| <= threshold counts as 0 (positive)
_TINY = float(np.finfo(np.float32).tiny)
_ROLL_PERCENT = 0.85
_FLATNESS_AMIN = 1e-10


def _as_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


@register
@dataclass(frozen=True)
class ClassicFeatures:
    """Per-clip statistics of classic frame-level features, one ``(D,)`` float32 vector.

    Groups (``features``), each ``(rows, frames)`` before statistics:

    * ``"zcr"`` — zero-crossing rate over ``n_fft``-sample frames (1 row; edge-padded as librosa);
    * ``"rms"`` — root mean square over ``n_fft``-sample frames (1 row);
    * ``"mfcc"`` — ``n_mfcc`` DCT-II (ortho) coefficients of the dB mel power spectrogram
      (``power_to_db``, ``top_db=80``, as ``librosa.feature.mfcc``);
    * ``"mfcc_delta"`` — first-order regression deltas of the MFCCs (HTK formula, width 2);
    * ``"chroma"`` — ``n_chroma`` chroma energies, librosa's chroma filterbank on the STFT
      magnitude (``chroma_power=1``) or power (``2``), each frame max-normalised;
      ``tuning`` in fractions of a chroma bin, or ``None`` to estimate it per clip as
      ``librosa.estimate_tuning`` does;
    * ``"mel"`` — ``n_mels`` mel band powers (``mel_scale="power"``, the classic recipe) or
      their dB values (``"db"``, ``power_to_db`` with ``top_db=80``);
    * ``"spectral"`` — spectral centroid, bandwidth, 85 % roll-off (Hz, on the magnitude) and
      flatness (on the power), librosa's defaults.

    ``stats`` (any of ``"mean"``, ``"std"``, ``"min"``, ``"max"``) are taken per row over
    frames; the vector is ``[group1: stat1 rows, stat2 rows, ...; group2: ...]`` and
    :meth:`feature_names` names every dimension.

    The defaults (16 kHz, 32 ms window, 20 ms hop; every group, mel in dB; mean and std:
    452 dims) were picked on RAVDESS with actor-disjoint 6-fold cross-validation
    (standardised features, RBF SVM / logistic regression, unweighted average recall over
    8 classes): the hobby recipe's 180 means score 0.36 / 0.34, these defaults 0.44 / 0.46.
    Adding the std is the big win (+7-9 points); dB mel instead of linear power, deltas and
    the spectral-shape rows add 1-3 points each; min/max add nothing. A 10 ms hop scores the
    same within cross-validation noise (0.46 / 0.46) at twice the cost.
    """

    kind: ClassVar[str] = "classic"
    output: ClassVar[str] = "vector"

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    hop_length: int = 320
    n_mfcc: int = 40
    n_mels: int = 128
    n_chroma: int = 12
    features: tuple[str, ...] = DEFAULT_GROUPS
    stats: tuple[str, ...] = ("mean", "std")
    mel_scale: str = "db"
    chroma_power: float = 1.0
    tuning: float | None = 0.0
    pad_mode: str = "constant"
    fmin: float = 0.0
    fmax: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", _as_tuple(self.features))
        object.__setattr__(self, "stats", _as_tuple(self.stats))
        name = "classic"
        if not isinstance(self.features, tuple) or not self.features:
            raise ConfigError(f"{name} features={self.features!r} must be a non-empty list of {GROUPS}")
        bad = [g for g in self.features if g not in GROUPS]
        if bad or len(set(self.features)) != len(self.features):
            raise ConfigError(f"{name} features={list(self.features)!r} must be distinct names from {GROUPS}")
        bad = [s for s in self.stats if s not in STATS]
        if not self.stats or bad or len(set(self.stats)) != len(self.stats):
            raise ConfigError(f"{name} stats={list(self.stats)!r} must be distinct names from {STATS}")
        if self.n_fft < 16 or self.hop_length < 1:
            raise ConfigError(f"{name} n_fft={self.n_fft}, hop_length={self.hop_length} must be >= 16 and >= 1")
        if not 1 <= self.n_mfcc <= self.n_mels:
            raise ConfigError(f"{name} n_mfcc={self.n_mfcc} must be between 1 and n_mels={self.n_mels}")
        if self.n_chroma < 1:
            raise ConfigError(f"{name} n_chroma={self.n_chroma} must be >= 1")
        if self.mel_scale not in ("power", "db"):
            raise ConfigError(f"{name} mel_scale={self.mel_scale!r} must be 'power' or 'db'")
        if self.chroma_power not in (1.0, 2.0):
            raise ConfigError(f"{name} chroma_power={self.chroma_power!r} must be 1.0 or 2.0")
        if self.pad_mode not in ("constant", "reflect", "edge"):
            raise ConfigError(f"{name} pad_mode={self.pad_mode!r} must be 'constant', 'reflect' or 'edge'")
        if not 1000 <= self.sample_rate <= 768_000:
            raise ConfigError(f"{name} sample_rate={self.sample_rate} must be between 1000 and 768000")

    # -- construction -------------------------------------------------------------------

    @classmethod
    def recipe(cls) -> ClassicFeatures:
        """The classic hobby-project recipe: means of MFCC-40, chroma-12 and mel-128 (180 dims).

        Equivalent to ``librosa.load(path, sr=22050)``, ``S = np.abs(librosa.stft(X))`` and
        ``hstack([mean(mfcc(y=X, sr, n_mfcc=40)), mean(chroma_stft(S=S, sr)),
        mean(melspectrogram(y=X, sr))])``.
        """
        return cls(
            sample_rate=22050, n_fft=2048, hop_length=512, n_mfcc=40, n_mels=128, n_chroma=12,
            features=RECIPE_GROUPS, stats=("mean",), mel_scale="power", chroma_power=1.0,
            tuning=None, pad_mode="constant",
        )

    def get_config(self) -> dict[str, Any]:
        return dataclass_config(self)

    # -- naming -------------------------------------------------------------------------

    def _rows(self, group: str) -> list[str]:
        if group in ("zcr", "rms"):
            return [group]
        if group == "mfcc":
            return [f"mfcc{i}" for i in range(self.n_mfcc)]
        if group == "mfcc_delta":
            return [f"mfcc_delta{i}" for i in range(self.n_mfcc)]
        if group == "chroma":
            if self.n_chroma == 12:
                return [f"chroma_{p}" for p in ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")]
            return [f"chroma{i}" for i in range(self.n_chroma)]
        if group == "mel":
            return [f"mel{i}" for i in range(self.n_mels)]
        return list(SPECTRAL)

    def feature_names(self) -> list[str]:
        """One name per vector dimension, e.g. ``"mfcc3_std"``."""
        return [f"{row}_{s}" for g in self.features for s in self.stats for row in self._rows(g)]

    @property
    def dim(self) -> int:
        """Length of the output vector."""
        return sum(len(self._rows(g)) for g in self.features) * len(self.stats)

    # -- computation --------------------------------------------------------------------

    def frames(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
        """Frame-level matrices ``{group: (rows, n_frames) float32}`` of the selected groups.

        ``"spectral"`` is ``(4, n_frames)``: centroid, bandwidth, roll-off, flatness. These are
        the matrices librosa returns for the same parameters.
        """
        return {k: np.ascontiguousarray(v.T) for k, v in self._frames_tf(audio, sample_rate).items()}

    def _frames_tf(self, audio: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
        """Like :meth:`frames` but ``(n_frames, rows)`` (the cheap layout for statistics)."""
        x = resample(np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, self.sample_rate)
        if x.size == 0:
            x = np.zeros(1, np.float32)
        if not np.isfinite(x).all():
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        groups = set(self.features)
        out: dict[str, np.ndarray] = {}
        n, hop = self.n_fft, self.hop_length
        if "zcr" in groups:
            out["zcr"] = _zcr(x, n, hop)[:, None]
        if "rms" in groups:
            out["rms"] = _rms(x, n, hop, self.pad_mode)[:, None]
        if not groups & {"mfcc", "mfcc_delta", "chroma", "mel", "spectral"}:
            return out

        # One STFT for every spectral group: (n_frames, 1 + n_fft // 2).
        spec = scipy.fft.rfft(frame(x, n, hop, center=True, pad_mode=self.pad_mode) * hann(n), axis=1)
        mag = np.abs(spec)
        power = mag * mag

        if groups & {"mfcc", "mfcc_delta", "mel"}:
            mel = power @ _mel_t(self.sample_rate, n, self.n_mels, self.fmin, self.fmax)  # (T, n_mels)
            need_db = bool(groups & {"mfcc", "mfcc_delta"}) or self.mel_scale == "db"
            mel_db = _db(mel) if need_db else mel
            if groups & {"mfcc", "mfcc_delta"}:
                mfcc = mel_db @ _dct_matrix(self.n_mels, self.n_mfcc).T  # (T, n_mfcc)
                if "mfcc" in groups:
                    out["mfcc"] = mfcc
                if "mfcc_delta" in groups:
                    out["mfcc_delta"] = _delta(mfcc)
            if "mel" in groups:
                out["mel"] = mel_db if self.mel_scale == "db" else mel
        if "chroma" in groups:
            s = mag if self.chroma_power == 1.0 else power
            tuning = _estimate_tuning(s, self.sample_rate, n, self.n_chroma) if self.tuning is None else self.tuning
            raw = s @ chroma_filterbank(self.sample_rate, n, self.n_chroma, float(tuning)).T  # (T, C)
            peak = raw.max(axis=1, keepdims=True)
            out["chroma"] = raw / np.where(peak < _TINY, np.float32(1.0), peak)
        if "spectral" in groups:
            out["spectral"] = _spectral_shape(mag, power, self.sample_rate, n)
        return out

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        mats = self._frames_tf(audio, sample_rate)
        parts: list[np.ndarray] = []
        for g in self.features:
            m = mats[g]
            mean = m.mean(axis=0)
            for s in self.stats:
                if s == "mean":
                    parts.append(mean)
                elif s == "std":
                    parts.append(np.sqrt(np.maximum(np.square(m).mean(axis=0) - mean * mean, 0.0)))
                elif s == "min":
                    parts.append(m.min(axis=0))
                else:
                    parts.append(m.max(axis=0))
        vec = np.concatenate(parts).astype(np.float32, copy=False)
        return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)


# -- helpers ----------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _mel_t(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """Contiguous ``(F, n_mels)`` transpose of :func:`mel_filterbank` (right-multiplies frames)."""
    return np.ascontiguousarray(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).T)


@lru_cache(maxsize=8)
def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II basis ``(n_out, n_in)`` (``scipy.fft.dct(type=2, norm="ortho")`` rows)."""
    k = np.arange(n_out)[:, None]
    j = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * j + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


@lru_cache(maxsize=16)
def chroma_filterbank(sample_rate: int, n_fft: int, n_chroma: int = 12, tuning: float = 0.0) -> np.ndarray:
    """``(n_chroma, 1 + n_fft // 2)`` chroma filters, as ``librosa.filters.chroma`` (its defaults:
    ``ctroct=5``, ``octwidth=2``, column L2 norm, ``base_c=True``)."""
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (a440 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    n_chroma2 = np.round(float(n_chroma) / 2)
    d = np.remainder(d + n_chroma2 + 10 * n_chroma, n_chroma) - n_chroma2
    wts = np.exp(-0.5 * (2 * d / binwidthbins[None, :]) ** 2)
    norms = np.sqrt((wts**2).sum(axis=0, keepdims=True))
    wts = wts / np.where(norms < np.finfo(np.float64).tiny, 1.0, norms)
    wts *= np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2.0) ** 2))[None, :]
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : 1 + n_fft // 2], dtype=np.float32)


def _zcr(x: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
    """``librosa.feature.zero_crossing_rate`` (center, edge padding) via a running sum."""
    pad = frame_length // 2
    y = np.pad(x, (pad, pad), mode="edge")
    neg = np.signbit(np.where(np.abs(y) <= _ZC_THRESHOLD, np.float32(0.0), y))
    cross = np.empty(y.size, dtype=bool)
    cross[0] = False
    np.not_equal(neg[1:], neg[:-1], out=cross[1:])
    c = np.cumsum(cross, dtype=np.int32)  # bool -> int32 directly (int32 input would widen, 10x slower)
    n = 1 + (y.size - frame_length) // hop
    starts = np.arange(n) * hop
    return ((c[starts + frame_length - 1] - c[starts]) / frame_length).astype(np.float32)


def _rms(x: np.ndarray, frame_length: int, hop: int, pad_mode: str) -> np.ndarray:
    """``librosa.feature.rms(y=...)`` (center padding): per-frame mean square, float32 accumulation."""
    fr = frame(x, frame_length, hop, center=True, pad_mode=pad_mode)
    return np.sqrt(np.einsum("ij,ij->i", fr, fr) / np.float32(frame_length)).astype(np.float32)


def _db(s: np.ndarray, top_db: float = 80.0, amin: float = 1e-10) -> np.ndarray:
    """``power_to_db(s, ref=1, amin, top_db)`` in place on a fresh float32 array (``ln`` is
    cheaper than ``log10`` in numpy's float32 kernels)."""
    out = np.maximum(s, np.float32(amin))
    np.log(out, out=out)
    out *= np.float32(10.0 / np.log(10.0))
    np.maximum(out, out.max() - np.float32(top_db), out=out)
    return out


def _delta(m: np.ndarray, width: int = 2) -> np.ndarray:
    """HTK regression deltas along axis 0 of ``(T, D)`` with edge padding."""
    p = np.pad(m, ((width, width), (0, 0)), mode="edge")
    t = m.shape[0]
    num = sum(k * (p[width + k : width + k + t] - p[width - k : width - k + t]) for k in range(1, width + 1))
    return (num / (2 * sum(k * k for k in range(1, width + 1)))).astype(np.float32)


@lru_cache(maxsize=8)
def _freq_powers(sample_rate: int, n_fft: int) -> np.ndarray:
    f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    return np.stack([np.ones_like(f), f, f * f], axis=1).astype(np.float32)  # (F, 3)


def _rolloff_bins(mag: np.ndarray, roll_percent: float = _ROLL_PERCENT, block: int = 16) -> np.ndarray:
    """First bin where the cumulative magnitude reaches ``roll_percent`` of the total, per frame.

    Two-level scan: cumulative sums of 16-bin blocks locate the block, then only that block
    is scanned (16x fewer elements than a full cumulative sum).
    """
    t, n_bins = mag.shape
    nb = -(-n_bins // block)
    padded = np.zeros((t, nb * block), np.float32)
    padded[:, :n_bins] = mag
    blocks = padded.reshape(t, nb, block)
    bcum = np.cumsum(blocks.sum(axis=2, dtype=np.float64), axis=1)  # (T, nb)
    thr = roll_percent * bcum[:, -1]
    b = np.minimum(np.argmax(bcum >= thr[:, None], axis=1), nb - 1)
    rows = np.arange(t)
    before = np.where(b > 0, bcum[rows, np.maximum(b - 1, 0)], 0.0)
    inner = before[:, None] + np.cumsum(blocks[rows, b].astype(np.float64), axis=1)
    j = np.argmax(inner >= thr[:, None], axis=1)
    return np.minimum(b * block + j, n_bins - 1)


def _spectral_shape(mag: np.ndarray, power: np.ndarray, sample_rate: int, n_fft: int) -> np.ndarray:
    """``(T, 4)``: centroid, bandwidth, 85 % roll-off (magnitude) and flatness (power)."""
    moments = (mag @ _freq_powers(sample_rate, n_fft)).astype(np.float64)  # (T, 3): sum, sum f, sum f^2
    m0 = moments[:, 0]
    ok = m0 >= _TINY
    m0 = np.where(ok, m0, 1.0)
    centroid = moments[:, 1] / m0
    # sum p (f - c)^2 with p = mag / m0 (librosa's norm=1 columns) = E[f^2] - c^2
    bandwidth = np.sqrt(np.maximum(moments[:, 2] / m0 - centroid**2 * ok, 0.0))
    rolloff = _rolloff_bins(mag) * (sample_rate / n_fft)
    p = np.maximum(power, np.float32(_FLATNESS_AMIN))
    amean = p.mean(axis=1)
    np.log(p, out=p)
    flatness = np.exp(p.mean(axis=1)) / amean
    return np.stack([centroid, bandwidth, rolloff, flatness], axis=1).astype(np.float32)


def _estimate_tuning(s: np.ndarray, sample_rate: int, n_fft: int, n_chroma: int) -> float:
    """``librosa.estimate_tuning(S=s.T, bins_per_octave=n_chroma)``: piptrack peaks
    (150-4000 Hz, above 0.1 x frame max, parabolic refinement) then the histogram mode of
    their deviation from the equal-tempered grid, resolution 0.01 bin."""
    s = np.abs(s.T)  # (F, T)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    # parabolic interpolation shift per bin (0 at the borders and where |b| >= |a|)
    a = np.zeros_like(s)
    b = np.zeros_like(s)
    a[1:-1] = s[2:] + s[:-2] - 2 * s[1:-1]
    b[1:-1] = (s[2:] - s[:-2]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a)
    avg = np.gradient(s, axis=0) if s.shape[0] > 1 else np.zeros_like(s)
    dskew = 0.5 * avg * shift
    freq_mask = ((freqs >= 150.0) & (freqs < min(4000.0, sample_rate / 2)))[:, None]
    thr = 0.1 * s.max(axis=0, keepdims=True)
    st = s * (s > thr)
    prev = np.concatenate([st[:1], st[:-1]])
    nxt = np.concatenate([st[1:], st[-1:]])
    idx = np.nonzero(freq_mask & (st > prev) & (st >= nxt))
    if idx[0].size == 0:
        return 0.0
    pitches = (idx[0] + shift[idx]) * float(sample_rate) / n_fft
    mags = s[idx] + dskew[idx]
    keep = pitches > 0
    if not keep.any():
        return 0.0
    threshold = np.median(mags[keep])
    freqs_sel = pitches[(mags >= threshold) & keep]
    freqs_sel = freqs_sel[freqs_sel > 0]
    if freqs_sel.size == 0:
        return 0.0
    residual = np.mod(n_chroma * np.log2(freqs_sel / (440.0 / 16)), 1.0)
    residual[residual >= 0.5] -= 1.0
    bins = np.linspace(-0.5, 0.5, 101)
    counts, edges = np.histogram(residual, bins)
    return float(edges[np.argmax(counts)])
