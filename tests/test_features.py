"""Classic and prosody extractors: agreement with librosa, synthetic-signal sanity, robustness.

Tolerance for librosa agreement: ``max |ours - librosa| <= 1e-4 * max |librosa|`` per matrix
(both run in float32; observed errors are ~1e-6 relative), on the same 16 kHz signal with the
same ``n_fft``, ``hop_length``, centring and padding.
"""

from __future__ import annotations

import numpy as np
import pytest

from vocalis.errors import ConfigError
from vocalis.features.classic import ClassicFeatures, chroma_filterbank
from vocalis.features.prosody import PROSODY_NAMES, ProsodyFeatures

SR = 16_000
RTOL = 1e-4


def _speechlike(seconds: float = 1.5) -> np.ndarray:
    """Seeded harmonic signal with vibrato, an amplitude envelope and noise (exercises every feature)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 30 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 15))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2) + 0.02 * rng.standard_normal(t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.5, harmonics: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))
    return (amp * x).astype(np.float32)


def _close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    err = np.abs(ours.astype(np.float64) - ref).max()
    assert err <= RTOL * max(np.abs(ref).max(), 1e-12), f"max abs err {err:.3g} vs scale {np.abs(ref).max():.3g}"


# -- librosa agreement ---------------------------------------------------------------------


@pytest.mark.parametrize(("n_fft", "hop"), [(512, 160), (400, 160), (1024, 256)])
def test_frames_match_librosa(n_fft: int, hop: int) -> None:
    librosa = pytest.importorskip("librosa")
    x = _speechlike()
    fx = ClassicFeatures(n_fft=n_fft, hop_length=hop, mel_scale="power",
                         features=("zcr", "rms", "mfcc", "chroma", "mel", "spectral"))
    fr = fx.frames(x, SR)
    kw = {"n_fft": n_fft, "hop_length": hop}
    _close(fr["zcr"], librosa.feature.zero_crossing_rate(x, frame_length=n_fft, hop_length=hop))
    _close(fr["rms"], librosa.feature.rms(y=x, frame_length=n_fft, hop_length=hop))
    _close(fr["mel"], librosa.feature.melspectrogram(y=x, sr=SR, n_mels=128, **kw))
    _close(fr["mfcc"], librosa.feature.mfcc(y=x, sr=SR, n_mfcc=40, n_mels=128, **kw))
    mag = np.abs(librosa.stft(x, **kw))
    _close(fr["chroma"], librosa.feature.chroma_stft(S=mag, sr=SR, tuning=0.0, **kw))
    spectral = fr["spectral"]
    _close(spectral[0:1], librosa.feature.spectral_centroid(y=x, sr=SR, **kw))
    _close(spectral[1:2], librosa.feature.spectral_bandwidth(y=x, sr=SR, **kw))
    _close(spectral[2:3], librosa.feature.spectral_rolloff(y=x, sr=SR, **kw))
    _close(spectral[3:4], librosa.feature.spectral_flatness(y=x, **kw))


def test_chroma_power_and_db_mel_match_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    x = _speechlike(1.0)
    fx = ClassicFeatures(features=("chroma", "mel"), chroma_power=2.0, mel_scale="db", hop_length=160)
    fr = fx.frames(x, SR)
    kw = {"n_fft": 512, "hop_length": 160}
    _close(fr["chroma"], librosa.feature.chroma_stft(y=x, sr=SR, tuning=0.0, **kw))
    _close(fr["mel"], librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=SR, **kw)))


def test_chroma_filterbank_matches_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, tuning in [(16000, 512, 0.0), (22050, 2048, 0.27), (16000, 400, -0.31)]:
        _close(chroma_filterbank(sr, n_fft, 12, tuning), librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning))


def test_recipe_reproduces_hobby_project_vector() -> None:
    """``recipe()`` == mean MFCC-40, chroma_stft(S=|stft|) (tuning estimated), mel-128 at 22.05 kHz."""
    librosa = pytest.importorskip("librosa")
    y = librosa.resample(_speechlike(2.0), orig_sr=SR, target_sr=22050, res_type="soxr_hq")
    sr = 22050
    stft = np.abs(librosa.stft(y))
    ref = np.hstack([
        np.mean(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40).T, axis=0),
        np.mean(librosa.feature.chroma_stft(S=stft, sr=sr).T, axis=0),
        np.mean(librosa.feature.melspectrogram(y=y, sr=sr).T, axis=0),
    ])
    fx = ClassicFeatures.recipe()
    ours = fx(y, sr)
    assert ours.shape == (180,) == (fx.dim,)
    _close(ours[:40], ref[:40])
    _close(ours[40:52], ref[40:52])
    _close(ours[52:], ref[52:])


# -- synthetic signals ---------------------------------------------------------------------


def test_tone_chroma_zcr_rms() -> None:
    a = 0.5
    x = _tone(440.0, amp=a)
    fx = ClassicFeatures(features=("zcr", "rms", "chroma"), stats=("mean",))
    names = fx.feature_names()
    v = fx(x, SR)
    chroma = v[2:]
    assert names[2 + int(np.argmax(chroma))] == "chroma_A_mean"
    assert v[0] == pytest.approx(2 * 440 / SR, rel=0.02)
    fr = fx.frames(x, SR)
    # interior frames (centre padding dilutes the edges)
    assert np.median(fr["rms"]) == pytest.approx(a / np.sqrt(2), rel=1e-3)


def test_resamples_input_to_config_rate() -> None:
    librosa = pytest.importorskip("librosa")
    x16 = _speechlike(1.0)
    x48 = librosa.resample(x16, orig_sr=SR, target_sr=48000, res_type="soxr_hq")
    fx = ClassicFeatures()
    a, b = fx(x16, SR), fx(x48, 48000)
    assert a.shape == b.shape
    # The resampler's anti-alias filter removes energy just below 8 kHz, so the top mel bands
    # (and MFCCs, which mix every band) legitimately differ; everything else must agree.
    names = fx.feature_names()
    keep = [i for i, n in enumerate(names) if not n.startswith(("mfcc", "mel12"))]
    assert np.corrcoef(a[keep], b[keep])[0, 1] > 0.999


# -- robustness, config, naming ------------------------------------------------------------


@pytest.mark.parametrize("extractor", [ClassicFeatures(), ClassicFeatures.recipe(), ProsodyFeatures()])
@pytest.mark.parametrize(
    "signal",
    [
        np.zeros(SR, np.float32),  # silence
        np.zeros(800, np.float32),  # 0.05 s of silence
        _tone(200.0, 0.05),  # very short
        np.clip(_tone(200.0, 0.5, amp=20.0), -1, 1),  # hard clipping
        (np.random.default_rng(0).standard_normal(SR) * 0.3).astype(np.float32),  # noise
        np.full(4000, 1.0, np.float32),  # DC at full scale
    ],
    ids=["silence", "short-silence", "short-tone", "clipped", "noise", "dc"],
)
def test_finite_on_hard_inputs(extractor: ClassicFeatures | ProsodyFeatures, signal: np.ndarray) -> None:
    v = extractor(signal, SR)
    assert v.dtype == np.float32
    assert v.shape == (extractor.dim,) == (len(extractor.feature_names()),)
    assert np.isfinite(v).all()


def test_config_round_trip() -> None:
    from vocalis.features.base import from_config

    x = _speechlike(1.0)
    for fx in [ClassicFeatures(), ClassicFeatures.recipe(), ClassicFeatures(stats=("mean", "std", "min", "max")),
               ProsodyFeatures(), ProsodyFeatures(f0_min=70.0, voicing_threshold=0.3)]:
        cfg = fx.get_config()
        try:
            rebuilt = from_config(cfg)
        except ImportError:  # another built-in module of the registry is not importable yet
            rebuilt = type(fx)(**{k: v for k, v in cfg.items() if k != "type"})
        assert rebuilt == fx
        assert rebuilt.get_config() == cfg
        np.testing.assert_array_equal(rebuilt(x, SR), fx(x, SR))


def test_feature_names_and_defaults() -> None:
    fx = ClassicFeatures()
    names = fx.feature_names()
    assert len(names) == len(set(names)) == fx.dim == fx(_speechlike(0.5), SR).size == 364
    assert names[:4] == ["zcr_mean", "zcr_std", "rms_mean", "rms_std"]
    rec = ClassicFeatures.recipe()
    assert rec.feature_names()[0] == "mfcc0_mean" and rec.feature_names()[40] == "chroma_C_mean"
    assert rec.feature_names()[-1] == "mel127_mean"


@pytest.mark.parametrize(
    "kwargs",
    [{"features": ("bogus",)}, {"stats": ("median",)}, {"stats": ()}, {"n_mfcc": 0}, {"n_mfcc": 200},
     {"mel_scale": "ln"}, {"hop_length": 0}, {"pad_mode": "wrap"}, {"features": ("zcr", "zcr")}],
)
def test_classic_rejects_bad_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="must"):
        ClassicFeatures(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"f0_min": 600.0}, {"voicing_threshold": 0.0}, {"pitch_rate": 1000}])
def test_prosody_rejects_bad_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="must"):
        ProsodyFeatures(**kwargs)  # type: ignore[arg-type]


# -- prosody -------------------------------------------------------------------------------


def _named(v: np.ndarray) -> dict[str, float]:
    return dict(zip(PROSODY_NAMES, v.tolist(), strict=True))


def test_prosody_harmonic_tone() -> None:
    p = _named(ProsodyFeatures()(_tone(200.0, 1.0, amp=0.3, harmonics=5), SR))
    assert p["voiced_fraction"] > 0.95
    assert p["f0_mean_hz"] == pytest.approx(200.0, rel=0.03)
    assert 27.5 * 2 ** (p["f0_mean_st"] / 12) == pytest.approx(200.0, rel=0.03)
    assert p["f0_std_st"] < 0.05 and p["f0_range_st"] < 0.05
    assert p["jitter_local"] < 1e-3
    assert p["shimmer_local"] < 1e-3
    assert p["hnr_mean_db"] > 20


def test_prosody_tracks_other_pitches() -> None:
    for f0 in (80.0, 120.0, 320.0):
        p = _named(ProsodyFeatures()(_tone(f0, 0.6, amp=0.3, harmonics=4), SR))
        assert p["f0_mean_hz"] == pytest.approx(f0, rel=0.03)


def test_prosody_white_noise_is_mostly_unvoiced() -> None:
    x = (np.random.default_rng(0).standard_normal(2 * SR) * 0.1).astype(np.float32)
    p = _named(ProsodyFeatures()(x, SR))
    assert p["voiced_fraction"] < 0.1
    assert p["loudness_mean"] > 0


def test_prosody_pitch_track_and_speechlike_signal() -> None:
    fx = ProsodyFeatures()
    x = _speechlike(1.5)
    track = fx.pitch(x, SR)
    assert track["f0"].shape == track["voiced"].shape == (1 + x.size // fx.hop_length,)
    voiced = track["voiced"]
    assert voiced.mean() > 0.8
    assert 105 < np.median(track["f0"][voiced]) < 175
    p = _named(fx(x, SR))
    assert p["f0_range_st"] > 1.0  # vibrato of +-30 Hz around 140 Hz
    assert p["loudness_peaks_per_s"] > 0


def test_vector_is_stats_of_frames() -> None:
    fx = ClassicFeatures(stats=("mean", "std", "min", "max"))
    x = _speechlike(1.0)
    fr = fx.frames(x, SR)
    ref = np.concatenate([
        np.concatenate([fr[g].mean(axis=1), fr[g].std(axis=1), fr[g].min(axis=1), fr[g].max(axis=1)])
        for g in fx.features
    ])
    np.testing.assert_allclose(fx(x, SR), ref, rtol=1e-4, atol=1e-5)


def test_flatness_on_loud_input_matches_librosa() -> None:
    """Amplitudes far above full scale overflow the pairwise products; the plain-log path takes over."""
    librosa = pytest.importorskip("librosa")
    x = _speechlike(0.5) * np.float32(1e6)
    fr = ClassicFeatures(features=("spectral",)).frames(x, SR)
    _close(fr["spectral"][3:4], librosa.feature.spectral_flatness(y=x, n_fft=512, hop_length=320))


def _windows() -> np.ndarray:
    """Six 1 s windows of one speech-like signal at 0.25 s hops, one of them digitally silent and one
    holding a NaN and an Inf (both must give the vector of the window alone)."""
    x = _speechlike(3.0)
    w = np.stack([x[i : i + SR] for i in range(0, x.size - SR + 1, SR // 4)])[:6].copy()
    w[2] = 0.0
    w[4, 100], w[4, 200] = np.nan, np.inf
    return w


@pytest.mark.parametrize("extractor", [
    ClassicFeatures(n_fft=512, hop_length=320, n_mels=40, n_mfcc=20, features=("rms", "mfcc", "mfcc_delta"),
                    stats=("mean", "std", "max"), fmax=4000.0),  # the packaged scream detector's features
    ClassicFeatures(n_fft=512, hop_length=160, features=("mel", "rms", "mfcc"), stats=("mean", "std", "min", "max")),
    ClassicFeatures(n_fft=400, hop_length=160, features=("mel",), mel_scale="power"),
    ClassicFeatures(n_fft=512, hop_length=256, features=("mfcc", "mfcc_delta"), pad_mode="reflect"),
    ClassicFeatures.plus(),  # groups batch() does not batch: computed one by one
])
def test_batch_is_each_window_alone(extractor: ClassicFeatures) -> None:
    w = _windows()
    one = np.stack([extractor(x) for x in w])
    both = extractor.batch(w)
    assert both.shape == one.shape == (len(w), extractor.dim)
    assert both.dtype == np.float32 and np.isfinite(both).all()
    # float32 rounding only (BLAS may block the batched products differently)
    np.testing.assert_allclose(both, one, rtol=1e-4, atol=1e-3 * float(np.abs(one).max()))
    assert np.array_equal(extractor.batch(w[:1]), one[:1])  # one window: the single path


def test_batch_rejects_bad_shapes_and_other_rates_go_one_by_one() -> None:
    ex = ClassicFeatures(features=("rms", "mfcc"))
    with pytest.raises(ConfigError, match=r"audios\.shape"):
        ex.batch(np.zeros(SR, np.float32))
    assert ex.batch(np.zeros((0, SR), np.float32)).shape == (0, ex.dim)
    w = _windows()[:3]
    np.testing.assert_allclose(ex.batch(w, 8000), np.stack([ex(x, 8000) for x in w]), rtol=1e-5, atol=1e-5)
