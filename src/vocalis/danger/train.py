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
  dataset's shared "unknown user" hash are grouped by recording day, i.e. the ``YYYYMMDD``
  prefix of the time stamp in the file name (:func:`session_group`: a sitting runs across
  hours, so clips of one day are assumed to come from the same person/phone). Whole groups are
  assigned to the test side at random (seeded) until it holds ~30 % of the clips;
* RAVDESS actors 13-24 and TESS speaker ``YAF`` are test speakers; actors 1-12 and ``OAF``
  train. The held-out speech is also what ``benchmarks/danger.py`` streams to count false
  alerts, so the benchmark never sees a voice the benchmarked model was trained on.

Capture channels: browsers, phones, Bluetooth headsets and telephone PCM remove the top band
(Chromium's fake microphone cuts 7-8 kHz; the 8 kHz telephone band stops at 3.4 kHz). The default
recipe only looks below 4 kHz (:data:`BAND_FEATURES`) and every fit also sees
:data:`AUGMENT_COPIES` copy/copies of every clip through a random channel (:func:`channel_augment`:
low-pass 3.4-7.8 kHz or telephone band, high-pass, EQ tilt, gain); the held-out test side is
never augmented.

Candidates (:data:`CANDIDATES`) reuse :class:`vocalis.training.recipes.Recipe` (feature config
+ scikit-learn head) and the same ONNX export as every other bundle, so the detector is loaded
with :func:`vocalis.bundle.load_bundle` and runs through the same feature code offline and
in streaming. :func:`train_scream_detector` chooses the operating point on the training side (its
validation part, or cross-validation through the streaming policy: :func:`cross_validate`,
:mod:`vocalis.danger.validation`), fits the chosen recipe on the training side, scores the
held-out side at that point, then refits on everything and writes the bundle with those
held-out metrics in its manifest.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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

BAND_FEATURES: dict[str, Any] = {**CHEAP_FEATURES, "features": ["rms", "mfcc", "mfcc_delta"], "fmax": 4000.0}
"""RMS and 20 MFCC (+ deltas) of a 40-band mel spectrum that stops at 4 kHz; mean, std and max (123 dims).

Nothing above 4 kHz reaches the detector, so a browser / phone / Bluetooth path that removes the
top band (Chromium's fake microphone cuts 7-8 kHz) cannot change its input; ZCR and the spectral
shape group are left out because they are computed on the full band (``fmax`` only limits the
mel filterbank). The telephone band (300-3400 Hz) is covered by :func:`channel_augment`.
"""

CUE_FEATURES: dict[str, Any] = {"type": "cues", "sample_rate": SAMPLE_RATE, "n_fft": 512, "hop_length": 320,
                                "fmin": 300.0, "fmax": 4000.0, "f0_min": 100.0, "f0_max": 1600.0, "voicing": 0.45,
                                "high_hz": 400.0, "active_db": 25.0}
"""Scream cues of :class:`vocalis.features.cues.ScreamCues` (20 dims, ~0.3 ms): pitch height, harmonicity,
flatness and loudness dynamics of the 300-4000 Hz band, all relative (gain cannot move them)."""

BAND_CUE_FEATURES: dict[str, Any] = {"type": "concat", "parts": [BAND_FEATURES, CUE_FEATURES]}
""":data:`BAND_FEATURES` + :data:`CUE_FEATURES` (143 dims), nothing above 4 kHz."""

_WHISPER: dict[str, Any] = {"type": "whisper", "model": "tiny.en", "pooling": "mean_std",
                            "compute_type": "int8", "threads": 1}

CANDIDATES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("cheap-logreg", CHEAP_FEATURES, "logreg", {"C": 0.1},
               description="ZCR/RMS/MFCC20+deltas/spectral shape (mean, std, max), logistic regression"),
        Recipe("cheap-svm", CHEAP_FEATURES, "svm", {"C": 3.0},
               description="ZCR/RMS/MFCC20+deltas/spectral shape (mean, std, max), RBF SVM"),
        Recipe("band-svm", BAND_FEATURES, "svm", {"C": 3.0},
               description="RMS/MFCC20+deltas of the 0-4 kHz mel spectrum (mean, std, max), RBF SVM"),
        Recipe("band-cues-svm", BAND_CUE_FEATURES, "svm", {"C": 3.0},
               description="RMS/MFCC20+deltas of the 0-4 kHz mel spectrum (mean, std, max) + scream cues "
                           "(pitch height, harmonicity, flatness, loudness dynamics of 300-4000 Hz), RBF SVM"),
        Recipe("band-cues-svm-c10", BAND_CUE_FEATURES, "svm", {"C": 10.0},
               description="RMS/MFCC20+deltas of the 0-4 kHz mel spectrum (mean, std, max) + scream cues "
                           "(pitch height, harmonicity, flatness, loudness dynamics of 300-4000 Hz), RBF SVM C=10"),
        Recipe("classic-prosody-logreg", {"type": "concat", "parts": [{"type": "classic"}, {"type": "prosody"}]},
               "logreg", {"C": 0.05},
               description="classic statistics (452) + eGeMAPS-like prosody (23), logistic regression"),
        Recipe("whisper-logreg", _WHISPER, "logreg", {"C": 0.05},
               description="Whisper tiny.en encoder embedding (mean+std), logistic regression"),
        Recipe("fusion-logreg", {"type": "concat", "parts": [_WHISPER, CHEAP_FEATURES]}, "logreg", {"C": 0.05},
               description="Whisper tiny.en embedding + cheap features, logistic regression"),
    ]
}
BACKBONE_RECIPE = "backbone-logreg"
BACKBONE_C = 0.05


def backbone_recipe(emotion: Any = None) -> Recipe:
    """A scream head on the emotion model's own embedding (``emotion``: a bundle, a path or ``None``
    = the packaged default model): the same feature config, so streaming computes the embedding
    once per emotion run and both heads read it (:mod:`vocalis.streaming.predictor`).

    Logistic regression (C = 0.05): ``benchmarks/scream_backbone.py`` measured held-out clip F1
    0.973 for it and 0.986 for an RBF SVM on the same vector, whose ONNX graph would carry
    thousands of 3,840-dim support vectors; the logistic head is one 3,840-weight layer.
    """
    from vocalis.bundle.runtime import Bundle, load_bundle

    b = emotion if isinstance(emotion, Bundle) else load_bundle(emotion)
    return Recipe(BACKBONE_RECIPE, dict(b.manifest.features), "logreg", {"C": BACKBONE_C},
                  description=f"scream head on the emotion model's embedding ({b.manifest.name}: "
                              f"{b.manifest.features.get('type')}), logistic regression")


DEFAULT_CANDIDATE = "band-svm"
"""The shipped first stage: RMS/MFCC of the 0-4 kHz band, RBF SVM, operating point from the validation part
of the training side (``threshold_rule="validation-split"``: 0.50 for the shipped bundle, whose fits skip
:data:`NOT_TRAINED_ON`; the training-side cross-validation through the policy picks 0.40-0.50).

Band-limited because ``cheap-svm`` (full band, no augmentation) called 87 % of held-out
quiet-background clips a scream once they were low-passed at 7 kHz, ``band-svm`` 13 %.

It is the first stage of the shipped detector (:mod:`vocalis.danger.detector`): ``band-cues-svm-c10``
(:data:`CONFIRM_CANDIDATE`, + :data:`CUE_FEATURES`) scores again the windows where it reaches
:data:`CASCADE_GATE`. Alone, the cue model had the best cross-validated clip F1 within 0.5 false
alerts per hour (0.955 against 0.932, both skipping :data:`NOT_TRAINED_ON`), but its features on
every window of 200 live streams broke their latency goal (p99 316 ms against 250 ms)."""

CONFIRM_CANDIDATE = "band-cues-svm-c10"
"""The second stage of the shipped detector (:mod:`vocalis.danger.detector`): scores again the windows
where :data:`DEFAULT_CANDIDATE` reaches :data:`CASCADE_GATE`; its operating point is the detector's.
C = 10 by the training-side cross-validation (clip F1 0.962 against 0.955 at C = 3 and 0.951 with two
augmented copies, all at 0.41 false alerts per hour)."""
CASCADE_GATE = 0.05
"""P(scream) of the first stage from which the second one decides. Cross-validated on the training side
through the policy (``benchmarks/scream_validation.py``, cascade rows), gates 0.01-0.1 all give the
second stage's own result at every threshold from 0.30 up (the same clips and false alerts; a little
better below) while it runs on 3-6 % of windows; 0.05 leaves a margin on both sides."""

THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(2, 15))
"""Operating points :func:`choose_threshold` and :func:`cross_validate` consider (0.1 to 0.7)."""
MAX_VALIDATION_FPR = 0.01
"""Most windows of validation acted speech / synthetic noise that may reach the threshold (any channel)."""
AUGMENT_COPIES = 1
"""Channel-augmented copies of every clip in each fit (:func:`channel_augment`)."""
LOUD_COPIES = 0
"""Hot-microphone copies of every non-danger clip in each fit (:func:`loud_crops`)."""
CHANNELS = ("original", "lowpass_7k", "telephone")
"""Channels the operating point is validated on (and ``benchmarks/danger.py`` reports)."""
LEVEL_CHANNELS = {"loud_12": -12.0, "loud_6": -6.0}
"""Hot-microphone conditions (:func:`hot_mic`): the whole signal at one gain that brings its active level to
this many dBFS, clipped at full scale. The corpora's acted speech sits near -21 dBFS; a voice a hand's width
from a phone microphone without automatic gain control (the browser client turns it off) reaches -12 and
louder, as the loud calm calls of ``screams/`` do (up to -6)."""

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
    """Split group of a screams clip: the known user, else the recording day in the file name.

    The corpus' "unknown" user is many recordings under one hash; clips of one day share a voice,
    a phone and often a room, and one sitting can run across hours (2019-06-22 17:08-20:24 with
    clips 38 s apart on either side of 20:00), so the day is the group, never the hour.
    """
    if speaker and speaker != "unknown":
        return f"user:{speaker}"
    parts = Path(path).stem.split("-")
    stamp = next((p for p in parts if len(p) == 14 and p.isdigit()), "")
    return f"day:{stamp[:8]}" if stamp else f"file:{Path(path).stem}"


def _test_groups(groups: Sequence[str], strata: Sequence[str], fraction: float, seed: int,
                 tries: int = 200) -> set[str]:
    """Whole groups for the test side, ~``fraction`` of the clips of every stratum.

    Groups are shuffled (seeded) and added until the test side holds ``fraction`` of the clips;
    of ``tries`` shuffles the one whose worst per-stratum fraction is closest to the target wins.
    """
    counts, total_by = Counter(groups), Counter(strata)
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


def channel_augment(x: np.ndarray, rng: np.random.Generator, sr: int = SAMPLE_RATE, *,
                    gain: bool = True) -> np.ndarray:
    """A random capture channel: band limit, high-pass, EQ tilt and gain (training data only).

    * band limit: 25 % an 8 kHz telephone channel (300-3400 Hz, half of them 8-bit mu-law),
      60 % a Butterworth low-pass (order 4-10) at 3.4-7.8 kHz, 15 % full band;
    * 50 %: a high-pass at 50-300 Hz (small phone microphones, wind filters);
    * 70 %: a spectral tilt of -4 to +4 dB per octave around 1 kHz;
    * gain -12 to +6 dB (clipped to [-1, 1]); ``gain=False`` leaves the level alone (the same
      filters for the same ``rng`` state).
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
    if gain:
        y = y * np.float32(10 ** (rng.uniform(-12.0, 6.0) / 20))
    return np.asarray(np.clip(y, -1.0, 1.0), dtype=np.float32)


def hot_mic(x: np.ndarray, active_dbfs: float, reference: np.ndarray | None = None) -> np.ndarray:
    """``x`` at the one gain that brings its active level (95th percentile of 20 ms frame energies,
    :func:`vocalis.features.level.active_level_db`) to ``active_dbfs``, clipped to [-1, 1]: a voice
    close to a microphone without automatic gain control. Digital silence is returned unchanged.
    ``reference``: measure the level on this audio instead (e.g. the speech before an event, so
    that the event keeps its loudness relative to it)."""
    from vocalis.features.level import FLOOR_DB, active_level_db

    x = np.asarray(x, np.float32)
    level = active_level_db(x if reference is None else reference)
    if level <= FLOOR_DB + 0.5:  # digital silence (float rounding aside)
        return x
    return np.clip(x * np.float32(10 ** ((active_dbfs - level) / 20)), -1.0, 1.0).astype(np.float32)


LOUD_COPY_DBFS = (-18.0, -3.0)
"""Active level range (dBFS, uniform) of a :func:`loud_copy`."""


def loud_rng(copy: int, i: int) -> np.random.Generator:
    """The generator of loud copy ``copy`` of clip ``i`` (its index in :func:`scream_dataset`): every fit that
    makes loud copies (:func:`loud_crops`, ``benchmarks/scream_validation.py``) draws the same ones."""
    return np.random.default_rng(SEED + 88_000 + 1000 * copy + i)


def loud_copy(x: np.ndarray, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A non-danger clip as a hot microphone hears it (training data only): :func:`hot_mic` at an
    active level drawn from :data:`LOUD_COPY_DBFS` (clipping the loudest ones), then a random
    capture channel's filters (:func:`channel_augment` without its gain).

    Why: the corpus' screams were recorded close and loud and its non-danger audio quieter, so a
    detector learns "loud = danger" and fires on ordinary speech close to the phone
    (``benchmarks/notes.md``, session 14). Only negatives get these copies: a calm voice at a
    scream's level must still be calm."""
    y = hot_mic(x, float(rng.uniform(*LOUD_COPY_DBFS)))
    return channel_augment(y, rng, sr, gain=False)


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


def apply_channel(x: np.ndarray, channel: str) -> np.ndarray:
    """``x`` through one of :data:`CHANNELS` (``"original"``: unchanged) or :data:`LEVEL_CHANNELS`."""
    if channel == "original":
        return x
    if channel == "lowpass_7k":
        return lowpass(x, 7000.0, 8)
    if channel == "telephone":
        return telephone(x)
    if channel in LEVEL_CHANNELS:
        return hot_mic(x, LEVEL_CHANNELS[channel])
    raise ConfigError(f"channel={channel!r} must be one of {[*CHANNELS, *LEVEL_CHANNELS]}")


def featurize_clips(clips: Sequence[Clip], recipe: Recipe, *, workers: int = 2,
                    progress: Progress | None = None, channel: str = "original",
                    augment_seed: int | None = None) -> CropFeatures:
    """Crop-level and whole-clip features (threads; each clip decoded once).

    ``channel`` passes every clip through one of :data:`CHANNELS` first; ``augment_seed`` instead
    passes clip ``i`` through a random :func:`channel_augment` channel (seeded ``augment_seed + i``).
    """
    from concurrent.futures import ThreadPoolExecutor

    ex = recipe.extractor()
    index_of = {id(c): i for i, c in enumerate(clips)}

    def one(c: Clip) -> tuple[list[np.ndarray], np.ndarray]:
        x = c.audio()
        if augment_seed is not None:
            x = channel_augment(x, np.random.default_rng(augment_seed + index_of[id(c)]))
        else:
            x = apply_channel(x, channel)
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


def loud_crops(clips: Sequence[Clip], recipe: Recipe, *, copy: int = 0, workers: int = 2,
               progress: Progress | None = None) -> CropFeatures:
    """Crop features of a :func:`loud_copy` of every non-danger clip (drawn from :func:`loud_rng`), for
    fitting only: the danger clips get none (a calm voice at a scream's level must stay calm) and
    ``whole`` is empty."""
    from concurrent.futures import ThreadPoolExecutor

    ex = recipe.extractor()
    todo = [i for i, c in enumerate(clips) if c.label == 0]

    def one(i: int) -> list[np.ndarray]:
        x = loud_copy(clips[i].audio(), loud_rng(copy, i))
        return [np.asarray(ex(w, SAMPLE_RATE), np.float32) for w in crops(x, step_s=_step(clips[i]))]

    rows: list[np.ndarray] = []
    index: list[int] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for k, (i, fs) in enumerate(zip(todo, pool.map(one, todo))):
            rows.extend(fs)
            index.extend([i] * len(fs))
            if progress and (k % 200 == 0 or k == len(todo) - 1):
                progress("loud copies", k + 1, len(todo))
    if not rows:
        raise DataError("no non-danger clip to make loud copies of")
    return CropFeatures(np.stack(rows), np.asarray(index), np.zeros((0, rows[0].shape[0]), np.float32))


def stream_crops(clips: Sequence[Clip], recipe: Recipe, *, split: str = "train", step_s: float = WINDOW_S,
                 seed: int = SEED, workers: int = 2, progress: Progress | None = None) -> CropFeatures:
    """Negatives as streaming sees them: each speaker's acted speech played as one stream, in 2 s windows.

    For every RAVDESS / TESS speaker on the ``split`` side, the speaker's clips are shuffled and
    concatenated with 0-1.5 s pauses (as the non-danger streams of ``benchmarks/danger.py`` and
    :func:`vocalis.danger.validation.fa_audio`) and cut into 2 s windows every ``step_s`` (2 s:
    the windows the emotion model, and the backbone scream head with it, runs on). Such windows
    hold the end of one utterance, a pause and the start of the next, which the per-clip
    :func:`crops` never show: the backbone head fitted on crops alone flagged ~2 % of them.
    Each window's ``clip_index`` is the speaker's first clip: every split here (the held-out test
    side, :func:`validation_split`, the cross-validation folds) keeps a speaker on one side, so
    the fits' clip masks select whole speakers. Use them only to fit (``stream_negatives``): their
    ``whole`` (per-clip features) is empty.
    """
    from concurrent.futures import ThreadPoolExecutor

    groups: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        if c.source in ("ravdess", "tess") and c.label == 0 and c.split == split:
            groups.setdefault(c.group, []).append(i)
    ex = recipe.extractor()

    def one(item: tuple[str, list[int]]) -> tuple[int, list[np.ndarray]]:
        group, idx = item
        rng = random.Random(f"{seed}:{group}")
        order = list(idx)
        rng.shuffle(order)
        parts: list[np.ndarray] = []
        for i in order:
            parts.append(clips[i].audio())
            parts.append(np.zeros(int(rng.uniform(0.0, 1.5) * SAMPLE_RATE), np.float32))
        x = np.concatenate(parts).astype(np.float32)
        return idx[0], [np.asarray(ex(w, SAMPLE_RATE), np.float32) for w in crops(x, step_s=step_s)]

    rows: list[np.ndarray] = []
    index: list[int] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for k, (owner, fs) in enumerate(pool.map(one, sorted(groups.items()))):
            rows.extend(fs)
            index.extend([owner] * len(fs))
            if progress:
                progress("stream features", k + 1, len(groups))
    if not rows:
        raise DataError(f"no RAVDESS / TESS speech on the {split!r} side to make stream windows from")
    return CropFeatures(np.stack(rows), np.asarray(index), np.zeros((0, rows[0].shape[0]), np.float32))


def _f1(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "tp": tp, "fp": fp, "fn": fn,
            "n": len(y)}


NOT_TRAINED_ON = (("scream_call", "calm"),)
"""(subset, emotion) of ``screams`` clips no fit learns from; they are still scored everywhere.

``danger`` is the corpus' *environment* label. A calm "help" recorded in a "scream" environment (14
clips, 11 of them one sitting) is a positive with the same voice as a calm "help" in a safe environment
(a negative), so fitting on it teaches the detector that a calm voice can be danger. Cross-validated
through the policy on the training side (``benchmarks/scream_validation.py``), leaving them out raised
clip F1 from 0.921 to 0.932 with no false alert."""


def trainable(c: Clip) -> bool:
    """Whether a fit may learn from ``c`` (:data:`NOT_TRAINED_ON`)."""
    return c.source != "screams" or (c.subset, c.extra.get("emotion", "")) not in NOT_TRAINED_ON


def _trainable_mask(clips: Sequence[Clip]) -> np.ndarray:
    return np.array([trainable(c) for c in clips], bool)


def _fit_windows(fit_on: np.ndarray, *parts: CropFeatures | None) -> int:
    """Crops in ``parts`` of the clips where ``fit_on`` is true (what a fit on that mask sees)."""
    return sum(int(fit_on[f.clip_index].sum()) for f in parts if f is not None)


def _fit(recipe: Recipe, seed: int, clips: Sequence[Clip], keep: np.ndarray,
         *parts: CropFeatures | None) -> Any:
    """Fit on the crops of the clips where ``keep`` is true (and :func:`trainable`), from every set in ``parts``."""
    keep = np.asarray(keep, bool) & _trainable_mask(clips)
    y_clip = np.array([c.label for c in clips])
    X = [f.X[keep[f.clip_index]] for f in parts if f is not None]
    y = [y_clip[f.clip_index][keep[f.clip_index]] for f in parts if f is not None]
    est = recipe.estimator(seed=seed)
    est.fit(np.concatenate(X), np.concatenate(y))
    return est


def evaluate_split(clips: Sequence[Clip], feats: CropFeatures, recipe: Recipe, *, seed: int = 0,
                   threshold: float = 0.5, augmented: CropFeatures | None = None) -> tuple[dict[str, Any], Any]:
    """Fit on the training side (plus its ``augmented`` crops), score the test side; returns (metrics, estimator)."""
    y_clip = np.array([c.label for c in clips])
    is_test = np.array([c.split == "test" for c in clips])
    est = _fit(recipe, seed, clips, ~is_test, feats, augmented)
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
    out["n_train_windows"] = _fit_windows(~is_test & _trainable_mask(clips), feats, augmented)
    out["n_test_windows"] = int(crop_test.sum())
    return out, est


def validation_split(clips: Sequence[Clip], fraction: float = 0.25, seed: int = SEED + 1) -> np.ndarray:
    """Validation clips, a part of the **training** side (never the held-out test side).

    Screams: whole training-side groups, ~``fraction`` of every subset (as :func:`_test_groups`);
    RAVDESS: training actors 10-12; synthetic: seeds ``i % 5 == 3``; TESS's only training
    speaker (OAF) stays in the fit.
    """
    train_screams = [c for c in clips if c.split == "train" and c.source == "screams"]
    val_groups = _test_groups([c.group for c in train_screams], [c.subset for c in train_screams], fraction, seed)

    def is_val(c: Clip) -> bool:
        if c.split != "train":
            return False
        if c.source == "screams":
            return c.group in val_groups
        if c.source == "ravdess":
            return c.group.split(":")[1] in ("10", "11", "12")
        return c.source == "synthetic" and c.synth % 5 == 3

    return np.array([is_val(c) for c in clips])


def choose_threshold(clips: Sequence[Clip], scores: dict[str, tuple[np.ndarray, np.ndarray]]
                     ) -> dict[str, Any]:
    """Operating point from validation scores ``{channel: (P(scream) per crop, clip index per crop)}``.

    For every threshold in :data:`THRESHOLDS`: the clip-level F1 on the screams clips (a clip is
    flagged when one of its 2 s windows reaches the threshold, as in streaming), averaged over the
    channels, and the worst window false-positive rate on acted speech and synthetic noise. The
    threshold with the best mean F1 among those with FPR <= :data:`MAX_VALIDATION_FPR` wins
    (ties: the lowest, i.e. the most sensitive).
    """
    table: dict[str, dict[str, Any]] = {}
    for th in THRESHOLDS:
        f1s, fprs = {}, {}
        for ch, (p, ci) in scores.items():
            idx = np.unique(ci)
            p_max = np.zeros(len(clips))
            np.maximum.at(p_max, ci, p)
            scr = np.array([i for i in idx if clips[i].source == "screams"])
            y = np.array([clips[i].label for i in scr])
            f1s[ch] = _f1(y, (p_max[scr] >= th).astype(int))["f1"]
            neg = np.array([clips[i].source in ("ravdess", "tess", "synthetic") for i in ci])
            fprs[ch] = round(float((p[neg] >= th).mean()), 4) if neg.any() else 0.0
        table[f"{th:.2f}"] = {"clip_f1": f1s, "mean_clip_f1": round(float(np.mean(list(f1s.values()))), 4),
                              "max_window_fpr_negatives": max(fprs.values())}
    ok = [k for k, v in table.items() if v["max_window_fpr_negatives"] <= MAX_VALIDATION_FPR] or list(table)
    best = max(ok, key=lambda k: (table[k]["mean_clip_f1"], -float(k)))
    return {"threshold": float(best), "criterion": f"max mean clip F1 over {list(scores)} with window FPR on "
            f"acted speech + synthetic noise <= {MAX_VALIDATION_FPR}", "by_threshold": table}


def cross_validate(clips: Sequence[Clip], recipe: Recipe, feats: CropFeatures, augmented: CropFeatures | None = None,
                   *, seed: int = 0, workers: int = 2, progress: Progress | None = None,
                   channels: Sequence[str] = CHANNELS, thresholds: Sequence[float] = THRESHOLDS,
                   policy: Any = None) -> dict[str, Any]:
    """Choose the operating point by cross-validation on the **training side**, through the policy.

    :func:`vocalis.danger.validation.cv_folds` cuts the training side into person-disjoint folds;
    each fold's detector (fitted on the other folds plus their ``augmented`` crops) scores the
    streaming windows of the fold's screams clips and of a continuous non-danger stream of its acted
    speech and noise, on every channel in ``channels``. The real DangerPolicy (``policy``, default
    :class:`~vocalis.danger.policy.PolicyConfig`, with ``on_threshold`` = each of ``thresholds``)
    turns them into clip-level danger F1 and false alerts per hour;
    :func:`~vocalis.danger.validation.choose_operating_point` picks the threshold with the best mean
    clip F1 whose worst channel stays within
    :data:`~vocalis.danger.validation.MAX_VALIDATION_FA_PER_H` false alerts per hour.
    """
    from concurrent.futures import ThreadPoolExecutor

    from vocalis.danger.validation import (
        MAX_VALIDATION_FA_PER_H,
        ValidationStream,
        choose_operating_point,
        cv_folds,
        fa_audio,
        operating_point_table,
        stream_windows,
    )

    folds = cv_folds(clips)
    n_folds = int(folds.max()) + 1
    ex = recipe.extractor()
    scr = [i for i, c in enumerate(clips) if folds[i] >= 0 and c.source == "screams"]
    # window features: {channel: [(stream meta, X)]}
    windows: dict[str, list[tuple[dict[str, Any], np.ndarray]]] = {}
    for ch in channels:
        rows: list[tuple[dict[str, Any], np.ndarray]] = []
        if ch == "original":
            sel = np.isin(feats.clip_index, scr)
            X_all, ci_all = feats.X[sel], feats.clip_index[sel]
        else:
            f = featurize_clips([clips[i] for i in scr], recipe, workers=workers, channel=ch)
            X_all, ci_all = f.X, np.asarray(scr)[f.clip_index]
        for i in scr:
            c = clips[i]
            X = X_all[ci_all == i]
            rows.append(({"name": str(c.path), "fold": int(folds[i]), "label": c.label, "subset": c.subset,
                          "seconds": WINDOW_S + 0.5 * (len(X) - 1), "clip": i}, X))

        def fa(fold: int, ch: str = ch) -> tuple[dict[str, Any], np.ndarray]:
            x = apply_channel(fa_audio(clips, folds, fold), ch)
            X = np.stack([np.asarray(ex(w, SAMPLE_RATE), np.float32) for w in stream_windows(x)])
            return {"name": f"non-danger:{fold}", "fold": fold, "label": 0, "subset": "non_danger",
                    "seconds": x.size / SAMPLE_RATE, "clip": -1}, X

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            rows += list(pool.map(fa, range(n_folds)))
        windows[ch] = rows
        if progress:
            progress("validation features", len(windows), len(channels))
    streams: dict[str, list[ValidationStream]] = {ch: [] for ch in channels}
    for k in range(n_folds):
        est = _fit(recipe, seed, clips, (folds >= 0) & (folds != k), feats, augmented)
        for ch in channels:
            for meta, X in windows[ch]:
                if meta["fold"] == k:
                    streams[ch].append(ValidationStream(scores=est.predict_proba(X)[:, 1], **meta))
        if progress:
            progress("validation folds", k + 1, n_folds)
    table = operating_point_table(streams, thresholds, policy)
    threshold = choose_operating_point(table)
    return {
        "threshold": threshold,
        "criterion": f"max mean clip F1 (streaming + DangerPolicy) over {list(channels)} with at most "
                     f"{MAX_VALIDATION_FA_PER_H} false alerts per hour on every channel",
        "method": "cross-validation on the training side (vocalis.danger.validation): "
                  f"{n_folds} person-disjoint folds, "
                  f"{sum(1 for c in clips if c.split == 'train' and c.source == 'screams')} screams clips, "
                  f"{table[f'{threshold:.2f}']['hours'].get(channels[0], 0.0)} h of non-danger audio per channel",
        "by_threshold": table,
    }


BACKBONE_EVERY = 4
"""Streaming runs the emotion model, and the backbone head with it, every 4th hop (``StreamConfig.emotion_every``)."""
HEAD_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def cross_validate_backbone(clips: Sequence[Clip], cheap: Recipe, cheap_feats: CropFeatures,
                            cheap_augmented: CropFeatures | None, head: Recipe, head_feats: CropFeatures,
                            head_augmented: CropFeatures | None, *, seed: int = 0, workers: int = 2,
                            progress: Progress | None = None, channels: Sequence[str] = CHANNELS,
                            head_thresholds: Sequence[float] = HEAD_THRESHOLDS, policy: Any = None
                            ) -> dict[str, Any]:
    """The backbone head's operating point, chosen through the policy *together with* the cheap detector:
    :func:`backbone_validation_streams` then :func:`choose_backbone_threshold`."""
    streams = backbone_validation_streams(clips, cheap, cheap_feats, cheap_augmented, head, head_feats,
                                          head_augmented, seed=seed, workers=workers, progress=progress,
                                          channels=channels)
    out = choose_backbone_threshold(streams, head_thresholds, policy)
    out["method"] += f"; cheap recipe {cheap.name}, head {head.name}"
    return out


def backbone_validation_streams(clips: Sequence[Clip], cheap: Recipe, cheap_feats: CropFeatures,
                                cheap_augmented: CropFeatures | None, head: Recipe, head_feats: CropFeatures,
                                head_augmented: CropFeatures | None, *, seed: int = 0, workers: int = 2,
                                progress: Progress | None = None, channels: Sequence[str] = CHANNELS
                                ) -> dict[str, list[Any]]:
    """Validation streams scored by both heads, ``{channel: [ValidationStream, ...]}``:
    :func:`validation_windows` then :func:`score_validation_windows`."""
    windows = validation_windows(clips, cheap, head, workers=workers, progress=progress, channels=channels)
    return score_validation_windows(clips, windows, cheap, cheap_feats, cheap_augmented, head, head_feats,
                                    head_augmented, seed=seed, progress=progress)


ValidationWindows = dict[str, list[tuple[dict[str, Any], np.ndarray, np.ndarray]]]
"""``{channel: [(stream meta, cheap features per window, head features per BACKBONE_EVERY-th window)]}``."""


def validation_windows(clips: Sequence[Clip], cheap: Recipe, head: Recipe, *, workers: int = 2,
                       progress: Progress | None = None, channels: Sequence[str] = CHANNELS) -> ValidationWindows:
    """Features of the validation streams of :func:`cross_validate` (training side only): every
    window of each training-side screams clip and of each fold's non-danger stream
    (:func:`~vocalis.danger.validation.fa_audio`) for the ``cheap`` recipe, every
    :data:`BACKBONE_EVERY`-th for the ``head`` recipe (where streaming runs it)."""
    from concurrent.futures import ThreadPoolExecutor

    from vocalis.danger.validation import cv_folds, fa_audio, stream_windows

    folds = cv_folds(clips)
    n_folds = int(folds.max()) + 1
    ex_c, ex_h = cheap.extractor(), head.extractor()
    scr = [i for i, c in enumerate(clips) if folds[i] >= 0 and c.source == "screams"]
    items: list[tuple[dict[str, Any], int, int]] = [  # (meta, clip or -1, fold)
        ({"name": str(clips[i].path), "fold": int(folds[i]), "label": clips[i].label, "subset": clips[i].subset,
          "clip": i}, i, int(folds[i])) for i in scr]
    items += [({"name": f"non-danger:{k}", "fold": k, "label": 0, "subset": "non_danger", "clip": -1}, -1, k)
              for k in range(n_folds)]

    def featurize(item: tuple[dict[str, Any], int, int], ch: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        meta, clip, fold = item
        x = apply_channel(clips[clip].audio() if clip >= 0 else fa_audio(clips, folds, fold), ch)
        ws = stream_windows(x)
        xc = np.stack([np.asarray(ex_c(w, SAMPLE_RATE), np.float32) for w in ws])
        xh = np.stack([np.asarray(ex_h(ws[j], SAMPLE_RATE), np.float32) for j in range(0, len(ws), BACKBONE_EVERY)])
        return {**meta, "seconds": x.size / SAMPLE_RATE if clip < 0 else WINDOW_S + 0.5 * (len(ws) - 1)}, xc, xh

    windows: ValidationWindows = {}
    for ch in channels:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            windows[ch] = list(pool.map(lambda it, ch=ch: featurize(it, ch), items))
        if progress:
            progress("validation features", len(windows), len(channels))
    return windows


def score_validation_windows(clips: Sequence[Clip], windows: ValidationWindows, cheap: Recipe,
                             cheap_feats: CropFeatures, cheap_augmented: CropFeatures | None, head: Recipe,
                             head_feats: CropFeatures, head_augmented: CropFeatures | None, *, seed: int = 0,
                             progress: Progress | None = None) -> dict[str, list[Any]]:
    """For every fold, both recipes fitted on the other folds (crops + augmented parts) score the
    fold's windows; the head's scores are held over the windows after each run
    (:func:`~vocalis.danger.validation.held_backbone`, as streaming does). ``head_augmented`` may
    include :func:`stream_crops` (fitted on, never scored)."""
    from vocalis.danger.validation import ValidationStream, cv_folds, held_backbone

    folds = cv_folds(clips)
    n_folds = int(folds.max()) + 1
    streams: dict[str, list[Any]] = {ch: [] for ch in windows}
    for k in range(n_folds):
        keep = (folds >= 0) & (folds != k)
        est_c = _fit(cheap, seed, clips, keep, cheap_feats, cheap_augmented)
        est_h = _fit(head, seed, clips, keep, head_feats, head_augmented)
        for ch, rows in windows.items():
            for meta, xc, xh in rows:
                if meta["fold"] == k:
                    sc = est_c.predict_proba(xc)[:, 1]
                    bb = held_backbone(est_h.predict_proba(xh)[:, 1], len(sc), BACKBONE_EVERY)
                    streams[ch].append(ValidationStream(scores=sc, backbone=bb, **meta))
        if progress:
            progress("validation folds", k + 1, n_folds)
    return streams


def choose_backbone_threshold(streams: Mapping[str, Sequence[Any]], head_thresholds: Sequence[float] = HEAD_THRESHOLDS,
                              policy: Any = None) -> dict[str, Any]:
    """Operating point of the backbone head on validation streams scored by both heads.

    Per fold (:func:`backbone_validation_streams`, training side only): the cheap recipe scores
    every window and the head every :data:`BACKBONE_EVERY`-th, held over the windows after it
    (:func:`~vocalis.danger.validation.held_backbone`, as streaming does); the real policy
    (``policy``, default :class:`~vocalis.danger.policy.PolicyConfig`: the cheap detector at its
    shipped ``on_threshold``) fuses them with ``w_backbone = on_threshold / t`` for every head
    threshold ``t`` (and without the head: ``"none"``). Allowed: thresholds whose false alerts per
    hour stay, on every channel, within the larger of
    :data:`~vocalis.danger.validation.MAX_VALIDATION_FA_PER_H` and what the cheap detector alone
    causes there (the head may add no false alert); chosen among them: the best mean clip F1, ties
    to fewer false alerts, then the higher threshold, if it beats the cheap detector alone.
    ``threshold`` is ``None`` otherwise (then the head should not be used).
    """
    from dataclasses import replace

    from vocalis.danger.policy import PolicyConfig
    from vocalis.danger.validation import MAX_VALIDATION_FA_PER_H, channel_metrics

    base = policy or PolicyConfig()
    channels = list(streams)
    table: dict[str, dict[str, Any]] = {}
    for t in [None, *head_thresholds]:
        cfg = replace(base, w_backbone=0.0 if t is None else min(1.0, base.on_threshold / float(t)))
        table["none" if t is None else f"{t:.2f}"] = {"w_backbone": round(cfg.w_backbone, 4),
                                                       **channel_metrics(streams, cfg)}
    alone = table["none"]["false_alerts_per_hour"]
    ok = [k for k in table if k != "none" and all(
        v <= max(MAX_VALIDATION_FA_PER_H, alone[ch]) + 1e-9 for ch, v in table[k]["false_alerts_per_hour"].items())]
    best = max(ok, key=lambda k: (table[k]["mean_clip_f1"], -table[k]["max_false_alerts_per_hour"], float(k)),
               default=None)
    if best is not None and table[best]["mean_clip_f1"] <= table["none"]["mean_clip_f1"]:
        best = None  # the head adds nothing the cheap detector does not already give
    some = next(iter(streams.values()))
    return {
        "threshold": None if best is None else float(best),
        "w_backbone": 0.0 if best is None else table[best]["w_backbone"],
        "criterion": f"max mean clip F1 (streaming + DangerPolicy fusing the cheap detector at P >= "
                     f"{base.on_threshold} and the backbone head held over {BACKBONE_EVERY} windows, w_backbone = "
                     f"{base.on_threshold} / threshold) over {channels} with no more false alerts per hour on any "
                     f"channel than the cheap detector alone (or {MAX_VALIDATION_FA_PER_H}); none unless it beats "
                     "the cheap detector alone",
        "method": f"cross-validation on the training side (vocalis.danger.validation): "
                  f"{len({s.fold for s in some})} person-disjoint folds, {sum(1 for s in some if not s.non_danger)} "
                  f"screams clips, {table['none']['hours'].get(channels[0], 0.0)} h of non-danger audio per channel",
        "by_threshold": table,
    }


def train_backbone_scream_head(data_root: str | Path, out: str | Path, *, holdout_out: str | Path | None = None,
                               emotion: Any = None, cheap: str = DEFAULT_CANDIDATE, workers: int = 2, seed: int = 0,
                               progress: Progress | None = None) -> dict[str, Any]:
    """Train the scream head on the emotion model's embedding (``data/scream_backbone.vocalis``).

    :func:`backbone_recipe` on the crops of :func:`scream_dataset` plus one channel-augmented copy
    and the :func:`stream_crops` negatives; its operating point (and so the policy's
    ``w_backbone``) by :func:`cross_validate_backbone` next to the ``cheap`` detector, on the
    training side; then :func:`train_scream_detector` with that point (held-out metrics in the
    manifest, ``holdout_out`` = the training-side-only bundle). Raises :class:`DataError` when the
    cross-validation allows no threshold. About 15 minutes on 2 cores (Whisper features).
    """
    clips = scream_dataset(data_root)
    head = backbone_recipe(emotion)
    c = CANDIDATES[cheap]
    cheap_feats = featurize_clips(clips, c, workers=workers, progress=progress)
    cheap_aug = featurize_clips(clips, c, workers=workers, progress=progress, augment_seed=SEED + 1000)
    head_feats = featurize_clips(clips, head, workers=workers, progress=progress)
    head_aug = featurize_clips(clips, head, workers=workers, progress=progress, augment_seed=SEED + 1000)
    negatives = stream_crops(clips, head, workers=workers, progress=progress)
    both = CropFeatures(np.concatenate([head_aug.X, negatives.X]),
                        np.concatenate([head_aug.clip_index, negatives.clip_index]), head_aug.whole)
    validation = cross_validate_backbone(clips, c, cheap_feats, cheap_aug, head, head_feats, both, seed=seed,
                                         workers=workers, progress=progress)
    if validation["threshold"] is None:
        raise DataError("cross-validation through the policy allows no threshold for the backbone head (at each "
                        "it adds false alerts or does not beat the cheap detector alone): "
                        f"{validation['by_threshold']}")
    return train_scream_detector(data_root, out, recipe=head, holdout_out=holdout_out, workers=workers, seed=seed,
                                 progress=progress, features=head_feats, augmented=head_aug,
                                 stream_negatives=negatives, name="scream-backbone", validation=validation)


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
            clips: Sequence[Clip], n_windows: int, name: str, augment_copies: int = 0, loud_copies: int = 0) -> Path:
    fitted = _trainable_mask(clips)
    manifest = Manifest(
        labels=list(LABELS),
        features=recipe.extractor().get_config(),
        input_kind="vector",
        name=name,
        recipe=recipe.to_dict(),
        training={
            "corpora": sorted({c.source for c in clips}),
            "clips": int(fitted.sum()),
            "not_trained_on": [f"screams {sub}/{emo} ({int((~fitted).sum())} clips)" for sub, emo in NOT_TRAINED_ON],
            "windows": n_windows,
            "window_s": WINDOW_S,
            "positives": "screams danger=1 (scream_call, scream_background)",
            "negatives": "screams danger=0, RAVDESS + TESS (all emotions), synthetic noise/hum/silence",
            "augmentation": f"{augment_copies} channel_augment copy/copies of every clip (band limit 3.4-7.8 kHz "
                            "or 8 kHz telephone 300-3400 Hz, high-pass, EQ tilt, gain)" if augment_copies else "none",
            "loud_copies": f"{loud_copies} hot-microphone copy/copies of every non-danger clip (active level "
                           f"{LOUD_COPY_DBFS[0]:g} to {LOUD_COPY_DBFS[1]:g} dBFS, clipped, then a capture channel's "
                           "filters)" if loud_copies else "none",
            "split": __doc__.split("Held-out split")[1].split("Capture channels")[0].strip() if __doc__ else "",
        },
        metrics=metrics,
    )
    return save_bundle(out, manifest, export_onnx(recipe, est, n_features))


def _joined(fit_only: CropFeatures | None, more: CropFeatures) -> CropFeatures:
    """``more`` crops appended to the fit-only crops ``fit_only`` (``whole`` stays ``fit_only``'s)."""
    if fit_only is None:
        return more
    return CropFeatures(np.concatenate([fit_only.X, more.X]),
                        np.concatenate([fit_only.clip_index, more.clip_index]), fit_only.whole)


def _validation_split_threshold(clips: Sequence[Clip], r: Recipe, feats: CropFeatures, aug: CropFeatures | None,
                                *, seed: int = 0, workers: int = 2) -> dict[str, Any]:
    """Fit on the training side minus its validation part, score the validation clips on every
    channel (band-limited copies made here), :func:`choose_threshold`."""
    val = validation_split(clips)
    inner = np.array([c.split == "train" for c in clips]) & ~val
    est_val = _fit(r, seed, clips, inner, feats, aug)
    val_clips = [c for c, v in zip(clips, val) if v]
    val_index = np.flatnonzero(val)
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for ch in CHANNELS:
        f = (CropFeatures(feats.X[val[feats.clip_index]], feats.clip_index[val[feats.clip_index]], feats.whole)
             if ch == "original" else featurize_clips(val_clips, r, workers=workers, channel=ch))
        ci = f.clip_index if ch == "original" else val_index[f.clip_index]
        scores[ch] = (est_val.predict_proba(f.X)[:, 1], ci)
    validation = choose_threshold(clips, scores)
    validation["n_clips"] = int(val.sum())
    return validation


def train_scream_detector(
    data_root: str | Path,
    out: str | Path,
    *,
    recipe: str | Recipe = DEFAULT_CANDIDATE,
    holdout_out: str | Path | None = None,
    workers: int = 2,
    seed: int = 0,
    progress: Progress | None = None,
    features: CropFeatures | None = None,
    augment_copies: int = AUGMENT_COPIES,
    threshold_rule: str = "validation-split",
    augmented: CropFeatures | None = None,
    stream_negatives: CropFeatures | None = None,
    name: str = "scream",
    validation: dict[str, Any] | None = None,
    cascade_gate: float | None = None,
    loud_copies: int = LOUD_COPIES,
) -> dict[str, Any]:
    """Train the scream detector on ``data_root`` (``screams/``, ``ravdess/``, ``tess/``) and write ``out``.

    The recipe is fitted on the training side of the held-out split and scored on the test side
    (these metrics go into the manifest and are returned); ``holdout_out``, when given, receives
    that training-side-only bundle (what ``benchmarks/danger.py`` evaluates). The bundle at
    ``out`` is then refitted on all clips. ``features`` reuses crop features computed by
    :func:`featurize_clips` for the same recipe and data (saves the extraction).

    Every fit sees the original crops plus ``augment_copies`` copies of every clip through a
    random capture channel (:func:`channel_augment`); the operating point is chosen on the training
    side only and stored as ``metrics.operating_point`` (its table in ``metrics.validation``); the
    held-out metrics are taken at that threshold. ``threshold_rule``: ``"validation-split"``
    (default; the validation part of the training side, :func:`validation_split`,
    :func:`choose_threshold`: max-window clip F1 with a window false-positive cap) or
    ``"cross-validation"`` (person-disjoint folds of the whole training side through the streaming
    policy, :func:`cross_validate`: clip F1 with at most 0.5 false alerts per hour).

    ``recipe`` is a name in :data:`CANDIDATES` or a :class:`Recipe` (e.g. :func:`backbone_recipe`);
    ``augmented`` reuses the ``augment_copies`` augmented crop features (all copies stacked, made by
    :func:`featurize_clips` with ``augment_seed = SEED + 1000 * (k + 1)``); ``stream_negatives``
    (:func:`stream_crops`) joins every fit like them; ``name`` is the bundle's. ``validation``: an
    operating point already chosen on the training side (``{"threshold": ..., ...}``, e.g. by
    :func:`cross_validate_backbone`), used instead of ``threshold_rule``. ``cascade_gate``: this
    bundle is a second stage (:class:`vocalis.danger.detector.ScreamDetector`); the gate goes into
    its manifest as ``metrics.cascade_gate``. ``loud_copies``: :func:`loud_crops` copies of every
    non-danger clip joined to every fit (:data:`LOUD_COPIES`).
    """
    if isinstance(recipe, str) and recipe not in CANDIDATES:
        raise ConfigError(f"recipe={recipe!r} must be one of {sorted(CANDIDATES)}")
    if threshold_rule not in ("validation-split", "cross-validation"):
        raise ConfigError(f"threshold_rule={threshold_rule!r} must be 'validation-split' or 'cross-validation'")
    r = CANDIDATES[recipe] if isinstance(recipe, str) else recipe
    clips = scream_dataset(data_root)
    feats = features if features is not None else featurize_clips(clips, r, workers=workers, progress=progress)
    if int(feats.whole.shape[0]) != len(clips):
        raise DataError(f"features hold {feats.whole.shape[0]} clips; the data set has {len(clips)}")
    aug = augmented
    if aug is None:
        copies = [featurize_clips(clips, r, workers=workers, progress=progress, augment_seed=SEED + 1000 * (k + 1))
                  for k in range(augment_copies)]
        if copies:
            aug = CropFeatures(np.concatenate([a.X for a in copies]), np.concatenate([a.clip_index for a in copies]),
                               copies[0].whole)
    elif augment_copies < 1 or int(aug.whole.shape[0]) != len(clips):
        raise DataError(f"augmented features hold {aug.whole.shape[0]} clips with augment_copies={augment_copies}; "
                        f"they must be >= 1 copy of the data set's {len(clips)} clips")
    if loud_copies < 0:
        raise ConfigError(f"loud_copies={loud_copies} must be >= 0")
    # fitted on like the augmented crops, never scored
    for k in range(loud_copies):
        aug = _joined(aug, loud_crops(clips, r, copy=k, workers=workers, progress=progress))
    if stream_negatives is not None:
        aug = _joined(aug, stream_negatives)
    # operating point on the training side only; the test side is not looked at
    if validation is not None:
        if not isinstance(validation.get("threshold"), (int, float)):
            raise ConfigError(f"validation={validation!r} must hold a numeric 'threshold'")
    elif threshold_rule == "cross-validation":
        validation = cross_validate(clips, r, feats, aug, seed=seed, workers=workers, progress=progress)
    elif threshold_rule == "validation-split":
        validation = _validation_split_threshold(clips, r, feats, aug, seed=seed, workers=workers)
    else:
        raise AssertionError(threshold_rule)
    threshold = float(validation["threshold"])
    metrics, est = evaluate_split(clips, feats, r, seed=seed, threshold=threshold, augmented=aug)
    split_hash = hashlib.sha256("|".join(f"{c.group}:{c.split}" for c in clips).encode()).hexdigest()[:12]
    metrics["split"] = {"test_fraction": TEST_FRACTION, "seed": SEED, "hash": split_hash,
                        "test_groups": sorted({c.group for c in clips if c.split == "test" and c.source == "screams"})}
    metrics["validation"] = validation
    d = int(feats.X.shape[1])
    extra: dict[str, Any] = {"operating_point": threshold, "validation": validation}
    if cascade_gate is not None:
        if not 0.0 <= float(cascade_gate) < threshold:
            raise ConfigError(f"cascade_gate={cascade_gate} must be in [0, the operating point {threshold})")
        extra["cascade_gate"] = float(cascade_gate)
    if holdout_out is not None:
        _export(r, est, d, holdout_out, {"held_out": metrics, **extra}, [c for c in clips if c.split == "train"],
                int(metrics["n_train_windows"]), f"{name}-holdout", augment_copies, loud_copies)
    everything = np.ones(len(clips), bool)
    full = _fit(r, seed, clips, everything, feats, aug)
    n_all = _fit_windows(_trainable_mask(clips), feats, aug)
    _export(r, full, d, out, {"held_out": metrics, **extra}, clips, n_all, name, augment_copies, loud_copies)
    return metrics
