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
        buf = self._frame_matrix(audio, sample_rate)
        spans = _layout(self.features, self.stats, self.n_mfcc, self.n_mels, self.n_chroma)[0]
        return {g: np.ascontiguousarray(buf[:, a:b].T) for g, (a, b) in spans.items()}

    def _frame_matrix(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Every selected group side by side in one ``(n_frames, rows)`` float32 matrix.

        Columns follow :func:`_layout`; each group is written in place (``out=``) into its slice,
        so the statistics are a handful of whole-matrix reductions.
        """
        x = resample(np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, self.sample_rate)
        if x.size == 0:
            x = np.zeros(1, np.float32)
        if not np.isfinite(x).all():
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        groups = set(self.features)
        spans, width, _ = _layout(self.features, self.stats, self.n_mfcc, self.n_mels, self.n_chroma)
        n, hop, sr = self.n_fft, self.hop_length, self.sample_rate
        frames = frame(x, n, hop, center=True, pad_mode=self.pad_mode)  # (T, n) strided view
        t = frames.shape[0]
        buf = np.empty((t, width), np.float32)
        if "zcr" in groups:
            buf[:, spans["zcr"][0]] = _zcr(x, n, hop, t)
        if "rms" in groups:
            col = buf[:, spans["rms"][0]]
            np.einsum("ij,ij->i", frames, frames, out=col)
            np.divide(col, np.float32(n), out=col)
            np.sqrt(col, out=col)
        if not groups & {"mfcc", "mfcc_delta", "chroma", "mel", "spectral"}:
            return buf

        # One STFT for every spectral group: (T, 1 + n_fft // 2).
        mag = np.abs(scipy.fft.rfft(frames * hann(n), axis=1, overwrite_x=True))
        need_power = bool(groups & {"mfcc", "mfcc_delta", "mel", "spectral"}) or self.chroma_power != 1.0
        power = np.square(mag) if need_power else mag

        if groups & {"mfcc", "mfcc_delta", "mel"}:
            mel = _span(buf, spans, "mel", t, self.n_mels)
            for g0, g1, lo, hi, w in _mel_plan(sr, n, self.n_mels, self.fmin, self.fmax):
                if hi > lo:
                    np.matmul(power[:, lo:hi], w, out=mel[:, g0:g1])
                else:
                    mel[:, g0:g1] = 0.0
            if groups & {"mfcc", "mfcc_delta"}:
                mel_db = _db(mel, inplace="mel" in groups and self.mel_scale == "db")
                mfcc = _span(buf, spans, "mfcc", t, self.n_mfcc)
                np.matmul(mel_db, _dct_t(self.n_mels, self.n_mfcc), out=mfcc)
                if "mfcc_delta" in groups:
                    _delta(mfcc, buf[:, slice(*spans["mfcc_delta"])])
            if "mel" in groups and self.mel_scale == "db" and not groups & {"mfcc", "mfcc_delta"}:
                _db(mel, inplace=True)

        fuse_chroma = "chroma" in groups and self.chroma_power == 1.0 and self.tuning is not None
        nc = self.n_chroma if fuse_chroma else 0
        prod = None
        if fuse_chroma or "spectral" in groups:
            # chroma filters, spectral moments and roll-off block sums in one product with |S|
            prod = mag @ _mag_matrix(sr, n, self.n_chroma, self.tuning if fuse_chroma else None,
                                     "spectral" in groups)
        if "chroma" in groups:
            if prod is not None and fuse_chroma:
                raw = prod[:, :nc]
            else:
                s = mag if self.chroma_power == 1.0 else power
                tuning = _estimate_tuning(s, sr, n, self.n_chroma) if self.tuning is None else self.tuning
                raw = s @ chroma_filterbank(sr, n, self.n_chroma, float(tuning)).T  # (T, C)
            peak = raw.max(axis=1, keepdims=True)
            np.divide(raw, np.where(peak < _TINY, np.float32(1.0), peak), out=buf[:, slice(*spans["chroma"])])
        if "spectral" in groups:
            assert prod is not None
            _spectral_shape(prod[:, nc:], mag, power, sr, n, buf[:, slice(*spans["spectral"])])
        return buf

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        m = self._frame_matrix(audio, sample_rate)
        perm = _layout(self.features, self.stats, self.n_mfcc, self.n_mels, self.n_chroma)[2]
        mean = m.mean(axis=0)
        rows: list[np.ndarray] = []
        for s in self.stats:
            if s == "mean":
                rows.append(mean)
            elif s == "std":
                d = np.subtract(m, mean)
                np.square(d, out=d)
                rows.append(np.sqrt(d.mean(axis=0)))
            elif s == "min":
                rows.append(m.min(axis=0))
            else:
                rows.append(m.max(axis=0))
        vec = np.concatenate(rows)[perm]
        return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)


# -- helpers ----------------------------------------------------------------------------

_MEL_GROUP = 16  # mel filters per banded matmul: ~8x fewer multiply-adds than the dense product
_ROLL_BLOCK = 16  # bins per roll-off block (see _spectral_shape)


def _rows_of(group: str, n_mfcc: int, n_mels: int, n_chroma: int) -> int:
    return {"zcr": 1, "rms": 1, "mfcc": n_mfcc, "mfcc_delta": n_mfcc, "chroma": n_chroma, "mel": n_mels,
            "spectral": len(SPECTRAL)}[group]


@lru_cache(maxsize=32)
def _layout(features: tuple[str, ...], stats: tuple[str, ...], n_mfcc: int, n_mels: int,
            n_chroma: int) -> tuple[dict[str, tuple[int, int]], int, np.ndarray]:
    """Column span of each group in the frame matrix, its width, and the permutation taking the
    stacked statistics ``(n_stats, width)`` (raveled) to the vector order ``[group: stat: rows]``."""
    spans: dict[str, tuple[int, int]] = {}
    a = 0
    for g in features:
        b = a + _rows_of(g, n_mfcc, n_mels, n_chroma)
        spans[g] = (a, b)
        a = b
    perm = [si * a + c for g in features for si in range(len(stats)) for c in range(*spans[g])]
    return spans, a, np.asarray(perm, dtype=np.intp)


def _span(buf: np.ndarray, spans: dict[str, tuple[int, int]], group: str, t: int, rows: int) -> np.ndarray:
    """The group's column slice of ``buf``, or a scratch ``(t, rows)`` matrix when it is not selected."""
    if group in spans:
        return buf[:, slice(*spans[group])]
    return np.empty((t, rows), np.float32)


@lru_cache(maxsize=16)
def _mel_plan(sample_rate: int, n_fft: int, n_mels: int, fmin: float,
              fmax: float | None) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """Banded mel product: ``(g0, g1, lo, hi, W)`` with ``power[:, lo:hi] @ W == mel[:, g0:g1]``.

    Each triangle spans a few bins, so cutting the filterbank into groups of filters and keeping
    only the bins each group touches skips the zeros of the dense ``(F, n_mels)`` product.
    """
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)  # (n_mels, F)
    plan = []
    for g0 in range(0, n_mels, _MEL_GROUP):
        g1 = min(g0 + _MEL_GROUP, n_mels)
        nz = np.flatnonzero(fb[g0:g1].any(axis=0))
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        plan.append((g0, g1, lo, hi, np.ascontiguousarray(fb[g0:g1, lo:hi].T)))
    return tuple(plan)


@lru_cache(maxsize=8)
def _dct_t(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II basis, transposed ``(n_in, n_out)`` (``scipy.fft.dct(type=2, norm="ortho")``)."""
    k = np.arange(n_out)[None, :]
    j = np.arange(n_in)[:, None]
    basis = np.cos(np.pi * k * (2 * j + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[:, 0] /= np.sqrt(2.0)
    return np.ascontiguousarray(basis, dtype=np.float32)


@lru_cache(maxsize=32)
def _mag_matrix(sample_rate: int, n_fft: int, n_chroma: int, tuning: float | None, spectral: bool) -> np.ndarray:
    """``(F, k)`` right factor for ``|S|``: chroma filters (when ``tuning`` is given), then, for the
    spectral group, ``[1, f, f^2]`` and the cumulative indicators of :data:`_ROLL_BLOCK`-bin blocks."""
    n_bins = 1 + n_fft // 2
    cols = []
    if tuning is not None:
        cols.append(chroma_filterbank(sample_rate, n_fft, n_chroma, float(tuning)).T.astype(np.float64))
    if spectral:
        f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
        cols.append(np.stack([np.ones_like(f), f, f * f], axis=1))
        ends = np.minimum(np.arange(1, -(-n_bins // _ROLL_BLOCK) + 1) * _ROLL_BLOCK, n_bins)
        cols.append((np.arange(n_bins)[:, None] < ends[None, :]).astype(np.float64))
    return np.ascontiguousarray(np.concatenate(cols, axis=1), dtype=np.float32)


_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)
_LOW_BITS = np.array([(0xFF << (8 - r)) & 0xFF for r in range(8)], dtype=np.uint8)  # first r bits of a byte


def _zcr(x: np.ndarray, frame_length: int, hop: int, n_frames: int) -> np.ndarray:
    """``librosa.feature.zero_crossing_rate`` (center, edge padding; ``|x| <= 1e-10`` counts as 0).

    Edge padding adds no crossings, so frame ``t`` counts the sign changes between consecutive
    samples of ``x[t*hop - n//2 : t*hop - n//2 + n]``; the changes are bit-packed once and each
    frame's count is a difference of two prefix popcounts.
    """
    neg = x < -np.float32(_ZC_THRESHOLD)  # signbit after zeroing |x| <= threshold
    bits = np.packbits(neg[1:] != neg[:-1])  # bit j: a crossing between samples j and j + 1
    bits = np.append(bits, np.uint8(0))
    prefix = np.zeros(bits.size + 1, np.int32)  # crossings before byte k
    np.cumsum(_POP8[bits], out=prefix[1:])
    start = np.arange(n_frames) * hop - frame_length // 2
    last = x.size - 1
    ends = np.clip(np.stack([start, start + frame_length - 1]), 0, last)  # crossing index range [lo, hi)
    q, r = ends >> 3, ends & 7
    count = prefix[q] + _POP8[bits[q] & _LOW_BITS[r]]
    return ((count[1] - count[0]) / frame_length).astype(np.float32)


def _db(s: np.ndarray, top_db: float = 80.0, amin: float = 1e-10, *, inplace: bool = False) -> np.ndarray:
    """``power_to_db(s, ref=1, amin, top_db)`` in float32, in place on ``s`` or on a copy (``ln`` is
    cheaper than ``log10`` in numpy's float32 kernels)."""
    out = np.maximum(s, np.float32(amin), out=s if inplace else None)
    np.log(out, out=out)
    out *= np.float32(10.0 / np.log(10.0))
    np.maximum(out, out.max() - np.float32(top_db), out=out)
    return out


def _delta(m: np.ndarray, out: np.ndarray) -> np.ndarray:
    """HTK regression deltas (width 2) along axis 0 of ``(T, D)`` with edge padding, into ``out``."""
    t = m.shape[0]
    p = np.concatenate([m[:1], m[:1], m, m[-1:], m[-1:]])
    np.subtract(p[3 : t + 3], p[1 : t + 1], out=out)
    d2 = np.subtract(p[4:], p[:t])
    d2 *= np.float32(2.0)
    out += d2
    out /= np.float32(10.0)
    return out


def _mean_log(p: np.ndarray) -> np.ndarray:
    """Row means of ``log(p)`` for positive ``(T, F)`` float32 ``p``, with ~F/16 logarithms.

    Products of 16 float32 values in ``[1e-10, 1e18]`` stay finite and normal in float64, so the
    columns are multiplied pairwise four times before taking logs (exact to float64 rounding).
    """
    q = p.astype(np.float64)
    acc = np.zeros(p.shape[0])
    for _ in range(4):
        w = q.shape[1]
        if w < 2:
            break
        if w % 2:
            acc += np.log(q[:, -1])
        h = w // 2
        q = q[:, :h] * q[:, h : 2 * h]
    acc += np.log(q).sum(axis=1)
    if not np.isfinite(acc).all():  # overflow on extreme inputs: plain logs
        acc = np.log(p).sum(axis=1, dtype=np.float64)
    return acc / p.shape[1]


def _spectral_shape(prod: np.ndarray, mag: np.ndarray, power: np.ndarray, sample_rate: int, n_fft: int,
                    out: np.ndarray) -> np.ndarray:
    """``(T, 4)`` into ``out``: centroid, bandwidth, 85 % roll-off (magnitude) and flatness (power).

    ``prod`` is ``|S| @ [1, f, f^2, block indicators]`` (:func:`_mag_matrix`): the moments give
    centroid and bandwidth; the cumulative block sums locate the roll-off block, and only that
    block's :data:`_ROLL_BLOCK` bins are scanned per frame.
    """
    moments = prod[:, :3].astype(np.float64)  # sum |S|, sum f |S|, sum f^2 |S|
    m0 = moments[:, 0]
    ok = m0 >= _TINY
    m0 = np.where(ok, m0, 1.0)
    centroid = moments[:, 1] / m0
    # sum p (f - c)^2 with p = mag / m0 (librosa's norm=1 columns) = E[f^2] - c^2
    out[:, 1] = np.sqrt(np.maximum(moments[:, 2] / m0 - centroid**2 * ok, 0.0))
    out[:, 0] = centroid

    t, n_bins = mag.shape
    bcum = prod[:, 3:]  # (T, n_blocks): sum of |S| over bins < (j + 1) * block
    thr = np.float32(_ROLL_PERCENT) * bcum[:, -1]
    b = np.argmax(bcum >= thr[:, None], axis=1)
    rows = np.arange(t)
    before = np.where(b > 0, bcum[rows, np.maximum(b - 1, 0)], np.float32(0.0))
    idx = np.minimum(b[:, None] * _ROLL_BLOCK + np.arange(_ROLL_BLOCK), n_bins - 1)
    inner = np.cumsum(mag[rows[:, None], idx], axis=1)
    inner += before[:, None]
    hit = inner >= thr[:, None]
    j = np.where(hit.any(axis=1), np.argmax(hit, axis=1), _ROLL_BLOCK - 1)
    out[:, 2] = np.minimum(b * _ROLL_BLOCK + j, n_bins - 1) * (sample_rate / n_fft)

    p = np.maximum(power, np.float32(_FLATNESS_AMIN))
    out[:, 3] = np.exp(_mean_log(p)) / p.mean(axis=1)
    return out


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
