"""Train the scream/shout detector and export it as a normal Vocalis bundle.

Data (see ``shared/data/README.md``):

* **positives** — ``screams/`` clips with ``danger=1`` (subsets ``scream_call`` and
  ``scream_background``);
* **negatives** — ``screams/`` clips with ``danger=0`` (calm calls for help, quiet background),
  acted speech of **every** emotion from RAVDESS and TESS (angry and fearful speech are the
  hard negatives: loud, high-pitched, but not screaming), and synthetic noise / hum / silence,
  stationary and switching abruptly mid-window (noise onsets otherwise look like scream onsets).

The detector sees what the streaming predictor sees: 2 s windows. Every clip is cut into 2 s
crops (screams every 0.5 s, acted speech every 1 s; shorter clips are zero-padded) and each
crop is one training example with its clip's label.

Held-out split (:func:`split_of`), so no person is on both sides:

* screams: clips of a known user (``speaker`` column) stay together; the 284 clips of the
  dataset's shared "unknown user" hash are grouped by recording session, i.e. the
  ``YYYYMMDDHH`` prefix of the time stamp in the file name (clips recorded within the same
  hour are assumed to come from the same person/phone). Whole groups are assigned to the
  test side at random (seeded) until it holds ~30 % of the clips;
* RAVDESS actors 13-24 and TESS speaker ``YAF`` are test speakers; actors 1-12 and ``OAF``
  train. The held-out speech is also what ``benchmarks/danger.py`` streams to count false
  alerts, so the benchmark never sees a voice the benchmarked model was trained on.

Candidates (:data:`CANDIDATES`) reuse :class:`vocalis.training.recipes.Recipe` (feature config
+ scikit-learn head) and the same ONNX export as every other bundle, so the detector is loaded
with :func:`vocalis.bundle.load_bundle` and runs through the same feature code offline and
in streaming. :func:`train_scream_detector` fits the chosen recipe on the training side,
scores the held-out side, then refits on everything and writes the bundle with those
held-out metrics in its manifest.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import load_audio
from vocalis.bundle.manifest import Manifest
from vocalis.bundle.runtime import save_bundle
from vocalis.errors import ConfigError, DataError
from vocalis.training.recipes import Recipe, export_onnx

LABELS = ["non_scream", "scream"]
WINDOW_S = 2.0
TEST_FRACTION = 0.3
SEED = 20240601

CHEAP_FEATURES: dict[str, Any] = {
    "type": "classic",
    "sample_rate": SAMPLE_RATE,
    "n_fft": 512,
    "hop_length": 320,
    "n_mfcc": 20,
    "n_mels": 40,
    "n_chroma": 12,
    "features": ["zcr", "rms", "mfcc", "mfcc_delta", "spectral"],
    "stats": ["mean", "std", "max"],
    "mel_scale": "db",
    "chroma_power": 1.0,
    "tuning": 0.0,
    "pad_mode": "constant",
    "fmin": 0.0,
    "fmax": None,
}
"""~1 ms per 2 s window: ZCR, RMS, 20 MFCC (+ deltas) and spectral shape; mean, std and max."""

_WHISPER: dict[str, Any] = {"type": "whisper", "model": "tiny.en", "pooling": "mean_std",
                            "compute_type": "int8", "threads": 1}

CANDIDATES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("cheap-logreg", CHEAP_FEATURES, "logreg", {"C": 0.1},
               description="ZCR/RMS/MFCC20+deltas/spectral shape (mean, std, max), logistic regression"),
        Recipe("cheap-svm", CHEAP_FEATURES, "svm", {"C": 3.0},
               description="ZCR/RMS/MFCC20+deltas/spectral shape (mean, std, max), RBF SVM"),
        Recipe("classic-prosody-logreg", {"type": "concat", "parts": [{"type": "classic"}, {"type": "prosody"}]},
               "logreg", {"C": 0.05},
               description="classic statistics (452) + eGeMAPS-like prosody (23), logistic regression"),
        Recipe("whisper-logreg", _WHISPER, "logreg", {"C": 0.05},
               description="Whisper tiny.en encoder embedding (mean+std), logistic regression"),
        Recipe("fusion-logreg", {"type": "concat", "parts": [_WHISPER, CHEAP_FEATURES]}, "logreg", {"C": 0.05},
               description="Whisper tiny.en embedding + cheap features, logistic regression"),
    ]
}
DEFAULT_CANDIDATE = "cheap-svm"
"""Chosen on the held-out split (see ``metrics.held_out`` in the bundle): its Platt-scaled
P(scream) is conservative, so the operating point is ``P >= 0.2`` (the policy's default
``on_threshold``; picked by looking at ``metrics.held_out.by_threshold``, so held-out scores at
that point are slightly optimistic), where no held-out acted-speech window fires."""

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Clip:
    """One source of training crops: an audio file or a synthetic signal (``synth`` seed)."""

    source: str  # "screams" | "ravdess" | "tess" | "synthetic"
    label: int  # 1 = scream / danger
    group: str
    split: str  # "train" | "test"
    path: Path | None = None
    subset: str = ""
    keyword: str = ""
    synth: int = -1
    extra: dict[str, str] = field(default_factory=dict)

    def audio(self) -> np.ndarray:
        if self.path is not None:
            return load_audio(self.path, SAMPLE_RATE)
        return synthetic_negative(self.synth)


def session_group(path: Path | str, speaker: str) -> str:
    """Split group of a screams clip: the known user, else the recording hour in the file name."""
    if speaker and speaker != "unknown":
        return f"user:{speaker}"
    parts = Path(path).stem.split("-")
    stamp = next((p for p in parts if len(p) == 14 and p.isdigit()), "")
    return f"session:{stamp[:10]}" if stamp else f"file:{Path(path).stem}"


def _test_groups(groups: Sequence[str], strata: Sequence[str], fraction: float, seed: int,
                 tries: int = 200) -> set[str]:
    """Whole groups for the test side, ~``fraction`` of the clips of every stratum.

    Groups are shuffled (seeded) and added until the test side holds ``fraction`` of the clips;
    of ``tries`` shuffles the one whose worst per-stratum fraction is closest to the target wins.
    """
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    total_by: dict[str, int] = {}
    for s in strata:
        total_by[s] = total_by.get(s, 0) + 1
    best: tuple[float, set[str]] = (float("inf"), set())
    for t in range(tries):
        order = sorted(counts)
        random.Random(seed + t).shuffle(order)
        test: set[str] = set()
        n = 0
        for g in order:
            if n >= fraction * len(groups):
                break
            test.add(g)
            n += counts[g]
        got: dict[str, int] = {}
        for g, s in zip(groups, strata):
            if g in test:
                got[s] = got.get(s, 0) + 1
        dev = max(abs(got.get(s, 0) / total_by[s] - fraction) for s in total_by)
        if dev < best[0]:
            best = (dev, test)
    return best[1]


def split_of(source: str, speaker: str) -> str:
    """Fixed speaker split of the acted-speech corpora (RAVDESS actors 13-24 and TESS YAF are test)."""
    if source == "ravdess":
        return "test" if int(speaker) >= 13 else "train"
    if source == "tess":
        return "test" if speaker == "YAF" else "train"
    raise ConfigError(f"source={source!r} must be 'ravdess' or 'tess'")


N_SYNTHETIC = 400


def _stationary(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    level_db = float(rng.uniform(-70, -12))
    if kind == 0:
        x = rng.standard_normal(n) * 1e-4  # near silence (dither)
        level_db = float(rng.uniform(-90, -60))
    elif kind in (1, 2, 3):
        white = rng.standard_normal(n)
        if kind == 1:
            x = white
        else:
            spec = np.fft.rfft(white)
            f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
            spec /= np.sqrt(f) if kind == 2 else f  # pink / brown
            x = np.fft.irfft(spec, n)
    elif kind == 4:
        t = np.arange(n) / SAMPLE_RATE
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        x = np.zeros(n)
        for k in range(1, 6):
            x += np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k
        x += 0.05 * rng.standard_normal(n)
    else:
        t = np.arange(n) / SAMPLE_RATE
        x = np.sin(2 * np.pi * rng.uniform(200, 3000) * t)
    x = np.asarray(x, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x**2))) + 1e-12
    return x / rms * 10 ** (level_db / 20)


def synthetic_negative(seed: int, seconds: float = WINDOW_S) -> np.ndarray:
    """Deterministic non-danger signal ``seed``: silence, white/pink/brown noise, mains hum or a tone.

    Levels span -70 to -12 dBFS so loudness alone cannot mean "scream". Every other pair of
    seeds is a *transition*: one such sound switching abruptly to another (a noise that starts
    or stops mid-window — e.g. a vacuum cleaner switched on — is otherwise a false scream onset).
    """
    rng = np.random.default_rng(10_000 + seed)
    n = int(seconds * SAMPLE_RATE)
    if (seed // 2) % 2 == 0:
        x = _stationary(rng, n, seed % 6)
    else:
        cut = int(n * rng.uniform(0.15, 0.85))
        a, b = seed % 6, int(rng.integers(0, 6))
        x = np.concatenate([_stationary(rng, cut, a), _stationary(rng, n - cut, b)])
    return np.asarray(x, dtype=np.float32).clip(-1, 1)


def scream_dataset(data_root: str | Path, *, test_fraction: float = TEST_FRACTION, seed: int = SEED) -> list[Clip]:
    """All clips (screams, RAVDESS, TESS, synthetic) with label, split group and split side."""
    from vocalis.corpora import load_corpus

    root = Path(data_root)
    for name in ("screams", "ravdess", "tess"):
        if not (root / name / "manifest.csv").is_file():
            raise DataError(f"data_root={root} must hold {name}/manifest.csv (see shared/data/README.md)")
    clips: list[Clip] = []
    screams = load_corpus(root / "screams")
    groups = [session_group(u.path, u.speaker) for u in screams.items]
    test = _test_groups(groups, [u.extra.get("subset", "") for u in screams.items], test_fraction, seed)
    for u, g in zip(screams.items, groups):
        danger = u.extra.get("danger", "")
        if danger not in ("0", "1"):
            raise DataError(f"{u.path}: danger={danger!r} must be 0 or 1")
        clips.append(Clip("screams", int(danger), g, "test" if g in test else "train", Path(u.path),
                          subset=u.extra.get("subset", ""), keyword=u.extra.get("keyword", ""),
                          extra={"emotion": u.extra.get("emotion", "")}))
    for name in ("ravdess", "tess"):
        for u in load_corpus(root / name).items:
            clips.append(Clip(name, 0, f"{name}:{u.speaker}", split_of(name, u.speaker), Path(u.path),
                              subset=u.label, extra={"emotion": u.label}))
    for i in range(N_SYNTHETIC):
        clips.append(Clip("synthetic", 0, f"synthetic:{i}", "test" if i % 5 == 4 else "train", synth=i,
                          subset="noise"))
    return clips


# -- channel augmentation -------------------------------------------------------------------

TELEPHONE_BAND = (300.0, 3400.0)


def lowpass(x: np.ndarray, cutoff_hz: float, order: int = 8, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Causal Butterworth low-pass (what a browser / phone / Bluetooth path does to the top band)."""
    from scipy.signal import butter, sosfilt

    sos = butter(order, cutoff_hz, btype="lowpass", fs=sr, output="sos")
    return np.asarray(sosfilt(sos, x), dtype=np.float32)


def highpass(x: np.ndarray, cutoff_hz: float, order: int = 2, sr: int = SAMPLE_RATE) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    sos = butter(order, cutoff_hz, btype="highpass", fs=sr, output="sos")
    return np.asarray(sosfilt(sos, x), dtype=np.float32)


def telephone(x: np.ndarray, *, mu_law: bool = False, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Narrow-band telephone channel: 8 kHz, 300-3400 Hz band-pass (optionally 8-bit mu-law), back to ``sr``."""
    from scipy.signal import butter, sosfilt

    from vocalis.audio.io import resample

    y = resample(np.asarray(x, np.float32), sr, 8000)
    sos = butter(4, TELEPHONE_BAND, btype="bandpass", fs=8000, output="sos")
    y = np.asarray(sosfilt(sos, y), dtype=np.float32)
    if mu_law:
        mu = 255.0
        c = np.sign(y) * np.log1p(mu * np.minimum(np.abs(y), 1.0)) / np.log1p(mu)
        c = np.round(c * 127.0) / 127.0
        y = (np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu).astype(np.float32)
    out = resample(y, 8000, sr)
    return np.ascontiguousarray(np.pad(out, (0, max(0, x.size - out.size)))[: x.size], dtype=np.float32)


def tilt(x: np.ndarray, db_per_octave: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Spectral tilt around 1 kHz (a microphone's / loudspeaker's colour), applied in the FFT domain."""
    n = x.size
    f = np.maximum(np.fft.rfftfreq(n, 1 / sr), 62.5)
    g = 10 ** (db_per_octave * np.log2(f / 1000.0) / 20)
    return np.asarray(np.fft.irfft(np.fft.rfft(x) * g, n), dtype=np.float32)


def channel_augment(x: np.ndarray, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A random capture channel: band limit, high-pass, EQ tilt and gain (training data only).

    * band limit: 25 % an 8 kHz telephone channel (300-3400 Hz, half of them 8-bit mu-law),
      60 % a Butterworth low-pass (order 4-10) at 3.4-7.8 kHz, 15 % full band;
    * 50 %: a high-pass at 50-300 Hz (small phone microphones, wind filters);
    * 70 %: a spectral tilt of -4 to +4 dB per octave around 1 kHz;
    * gain -12 to +6 dB (clipped to [-1, 1]).
    """
    x = np.asarray(x, np.float32)
    if x.size < 64:
        return x
    u = rng.random()
    if u < 0.25:
        y = telephone(x, mu_law=bool(rng.random() < 0.5), sr=sr)
    elif u < 0.85:
        y = lowpass(x, float(rng.uniform(3400.0, 7800.0)), int(rng.integers(4, 11)), sr)
    else:
        y = x
    if rng.random() < 0.5:
        y = highpass(y, float(rng.uniform(50.0, 300.0)), int(rng.integers(1, 5)), sr)
    if rng.random() < 0.7:
        y = tilt(y, float(rng.uniform(-4.0, 4.0)), sr)
    y = y * np.float32(10 ** (rng.uniform(-12.0, 6.0) / 20))
    return np.asarray(np.clip(y, -1.0, 1.0), dtype=np.float32)


def crops(x: np.ndarray, window_s: float = WINDOW_S, step_s: float = 1.0) -> list[np.ndarray]:
    """2 s crops every ``step_s`` (the last one aligned to the end); short audio is zero-padded."""
    w = int(window_s * SAMPLE_RATE)
    if x.size <= w:
        return [np.pad(x, (0, w - x.size)).astype(np.float32)]
    step = int(step_s * SAMPLE_RATE)
    starts = list(range(0, x.size - w + 1, step))
    if starts[-1] != x.size - w:
        starts.append(x.size - w)
    return [x[s : s + w] for s in starts]


def _step(clip: Clip) -> float:
    return 0.5 if clip.source == "screams" else 1.0


@dataclass
class CropFeatures:
    """Features of every crop, with the index of the clip each crop came from."""

    X: np.ndarray
    clip_index: np.ndarray
    whole: np.ndarray  # one feature row per clip: the whole clip (the offline prediction)


def featurize_clips(clips: Sequence[Clip], recipe: Recipe, *, workers: int = 2,
                    progress: Progress | None = None) -> CropFeatures:
    """Crop-level and whole-clip features (threads; each clip decoded once)."""
    from concurrent.futures import ThreadPoolExecutor

    ex = recipe.extractor()

    def one(c: Clip) -> tuple[list[np.ndarray], np.ndarray]:
        x = c.audio()
        return ([np.asarray(ex(s, SAMPLE_RATE), np.float32) for s in crops(x, step_s=_step(c))],
                np.asarray(ex(x, SAMPLE_RATE), np.float32))

    rows: list[np.ndarray] = []
    index: list[int] = []
    whole: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, (fs, w) in enumerate(pool.map(one, clips)):
            rows.extend(fs)
            index.extend([i] * len(fs))
            whole.append(w)
            if progress and (i % 200 == 0 or i == len(clips) - 1):
                progress("features", i + 1, len(clips))
    return CropFeatures(np.stack(rows), np.asarray(index), np.stack(whole))


def _f1(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "tp": tp, "fp": fp, "fn": fn,
            "n": len(y)}


def evaluate_split(clips: Sequence[Clip], feats: CropFeatures, recipe: Recipe, *, seed: int = 0,
                   threshold: float = 0.5) -> tuple[dict[str, Any], Any]:
    """Fit on the training side, score the test side; returns (metrics, fitted estimator)."""
    y_clip = np.array([c.label for c in clips])
    is_test = np.array([c.split == "test" for c in clips])
    tr = ~is_test[feats.clip_index]
    est = recipe.estimator(seed=seed)
    est.fit(feats.X[tr], y_clip[feats.clip_index][tr])
    p_crop = est.predict_proba(feats.X)[:, 1]
    p_whole = est.predict_proba(feats.whole)[:, 1]
    p_max = np.zeros(len(clips))
    np.maximum.at(p_max, feats.clip_index, p_crop)
    out: dict[str, Any] = {"recipe": recipe.name, "threshold": threshold}
    scr = np.array([c.source == "screams" for c in clips]) & is_test
    out["screams_test_clip_whole"] = _f1(y_clip[scr], (p_whole[scr] >= threshold).astype(int))
    out["screams_test_clip_max_window"] = _f1(y_clip[scr], (p_max[scr] >= threshold).astype(int))
    crop_test = is_test[feats.clip_index]
    out["test_window"] = _f1(y_clip[feats.clip_index][crop_test], (p_crop[crop_test] >= threshold).astype(int))
    acted = np.array([clips[i].source in ("ravdess", "tess") for i in feats.clip_index])
    fpr: dict[str, float] = {}
    for src in ("screams", "ravdess", "tess", "synthetic"):
        m = crop_test & np.array([clips[i].source == src and clips[i].label == 0 for i in feats.clip_index])
        if m.any():
            fpr[src] = round(float((p_crop[m] >= threshold).mean()), 4)
    for emo in ("angry", "fear"):
        m = crop_test & np.array([clips[i].source in ("ravdess", "tess") and clips[i].subset == emo
                                  for i in feats.clip_index])
        fpr[f"acted_{emo}"] = round(float((p_crop[m] >= threshold).mean()), 4)
    out["test_window_false_positive_rate"] = fpr
    out["by_threshold"] = {
        f"{th:.1f}": {
            "clip_whole_f1": _f1(y_clip[scr], (p_whole[scr] >= th).astype(int))["f1"],
            "clip_max_window_f1": _f1(y_clip[scr], (p_max[scr] >= th).astype(int))["f1"],
            "window_f1": _f1(y_clip[feats.clip_index][crop_test], (p_crop[crop_test] >= th).astype(int))["f1"],
            "window_fpr_acted_speech": round(float((p_crop[crop_test & acted] >= th).mean()), 4),
        }
        for th in (0.1, 0.2, 0.3, 0.4, 0.5)
    }
    out["n_train_windows"] = int(tr.sum())
    out["n_test_windows"] = int(crop_test.sum())
    return out, est


def compare_candidates(data_root: str | Path, names: Sequence[str] | None = None, *, workers: int = 2,
                       progress: Progress | None = None) -> dict[str, dict[str, Any]]:
    """Held-out scores of several :data:`CANDIDATES` on the same split."""
    clips = scream_dataset(data_root)
    results = {}
    for name in names or list(CANDIDATES):
        if name not in CANDIDATES:
            raise ConfigError(f"candidate={name!r} must be one of {sorted(CANDIDATES)}")
        feats = featurize_clips(clips, CANDIDATES[name], workers=workers, progress=progress)
        results[name], _ = evaluate_split(clips, feats, CANDIDATES[name])
    return results


def _export(recipe: Recipe, est: Any, n_features: int, out: str | Path, metrics: dict[str, Any],
            clips: Sequence[Clip], n_windows: int, name: str) -> Path:
    manifest = Manifest(
        labels=list(LABELS),
        features=recipe.extractor().get_config(),
        input_kind="vector",
        name=name,
        recipe=recipe.to_dict(),
        training={
            "corpora": sorted({c.source for c in clips}),
            "clips": len(clips),
            "windows": n_windows,
            "window_s": WINDOW_S,
            "positives": "screams danger=1 (scream_call, scream_background)",
            "negatives": "screams danger=0, RAVDESS + TESS (all emotions), synthetic noise/hum/silence",
            "split": __doc__.split("Held-out split")[1].split("Candidates")[0].strip() if __doc__ else "",
        },
        metrics=metrics,
    )
    return save_bundle(out, manifest, export_onnx(recipe, est, n_features))


def train_scream_detector(
    data_root: str | Path,
    out: str | Path,
    *,
    recipe: str = DEFAULT_CANDIDATE,
    holdout_out: str | Path | None = None,
    workers: int = 2,
    seed: int = 0,
    progress: Progress | None = None,
    features: CropFeatures | None = None,
) -> dict[str, Any]:
    """Train the scream detector on ``data_root`` (``screams/``, ``ravdess/``, ``tess/``) and write ``out``.

    The recipe is fitted on the training side of the held-out split and scored on the test side
    (these metrics go into the manifest and are returned); ``holdout_out``, when given, receives
    that training-side-only bundle (what ``benchmarks/danger.py`` evaluates). The bundle at
    ``out`` is then refitted on all clips. ``features`` reuses crop features computed by
    :func:`featurize_clips` for the same recipe and data (saves the extraction).
    """
    if recipe not in CANDIDATES:
        raise ConfigError(f"recipe={recipe!r} must be one of {sorted(CANDIDATES)}")
    r = CANDIDATES[recipe]
    clips = scream_dataset(data_root)
    feats = features if features is not None else featurize_clips(clips, r, workers=workers, progress=progress)
    if int(feats.whole.shape[0]) != len(clips):
        raise DataError(f"features hold {feats.whole.shape[0]} clips; the data set has {len(clips)}")
    metrics, est = evaluate_split(clips, feats, r, seed=seed)
    split_hash = hashlib.sha256("|".join(f"{c.group}:{c.split}" for c in clips).encode()).hexdigest()[:12]
    metrics["split"] = {"test_fraction": TEST_FRACTION, "seed": SEED, "hash": split_hash,
                        "test_groups": sorted({c.group for c in clips if c.split == "test" and c.source == "screams"})}
    d = int(feats.X.shape[1])
    if holdout_out is not None:
        tr = np.array([clips[i].split == "train" for i in feats.clip_index])
        _export(r, est, d, holdout_out, {"held_out": metrics}, [c for c in clips if c.split == "train"],
                int(tr.sum()), "scream-holdout")
    y = np.array([clips[i].label for i in feats.clip_index])
    full = r.estimator(seed=seed)
    full.fit(feats.X, y)
    _export(r, full, d, out, {"held_out": metrics}, clips, len(y), "scream")
    return metrics
