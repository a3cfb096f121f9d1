"""Waveform augmentation (seeded audiomentations) and SpecAugment."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from vocalis.augment import AugmentConfig, Augmenter, spec_augment
from vocalis.errors import AudioError, ConfigError

pytest.importorskip("audiomentations")

SR = 16_000


def _tone(seconds: float = 1.0, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


ALWAYS = AugmentConfig(p=1.0)


def test_same_seed_same_output_different_seed_different() -> None:
    x = _tone()
    a, b, c = Augmenter(ALWAYS, seed=7), Augmenter(ALWAYS, seed=7), Augmenter(ALWAYS, seed=8)
    ya, yb, yc = a(x, SR), b(x, SR), c(x, SR)
    assert np.array_equal(ya, yb)
    assert ya.shape != yc.shape or not np.allclose(ya, yc)
    # the second call differs from the first (the stream advances) but is still reproducible
    assert np.array_equal(a(x, SR), b(x, SR))


def test_output_is_finite_float32_mono_similar_length_and_input_untouched() -> None:
    x = _tone()
    before = x.copy()
    aug = Augmenter(ALWAYS, seed=0)
    for _ in range(5):
        y = aug(x, SR)
        assert y.dtype == np.float32 and y.ndim == 1
        assert np.all(np.isfinite(y))
        assert 0.85 * x.size <= y.size <= 1.15 * x.size  # time stretch in [0.9, 1.1]
        assert np.max(np.abs(y)) <= 1.0
        assert not np.array_equal(y[: x.size], x[: y.size])
    assert np.array_equal(x, before)


def test_p_zero_is_identity_and_silence_stays_finite() -> None:
    x = _tone()
    assert np.array_equal(Augmenter(AugmentConfig(p=0.0), seed=0)(x, SR), x)
    y = Augmenter(ALWAYS, seed=0)(np.zeros(SR, np.float32), SR)
    assert np.all(np.isfinite(y))


def test_global_random_state_is_left_alone() -> None:
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    Augmenter(ALWAYS, seed=0)(_tone(), SR)
    assert np.random.random() == expected_np
    assert random.random() == expected_py


def test_augment_many_returns_originals_plus_aligned_copies() -> None:
    signals = [_tone(0.5, 200 + 50 * i, seed=i) for i in range(4)]
    snapshot = [s.copy() for s in signals]
    labels = np.array(["angry", "sad", "happy", "sad"])
    groups = np.array(["spk1", "spk1", "spk2", "spk3"])
    aug = Augmenter(AugmentConfig(p=1.0, copies=2), seed=3)
    out, out_labels, out_groups = aug.augment_many(signals, labels, groups, sample_rate=SR)
    assert len(out) == len(out_labels) == len(out_groups) == 3 * 4
    for i in range(4):
        assert out[i] is signals[i]
        assert np.array_equal(signals[i], snapshot[i])  # originals unchanged
        for copy in (1, 2):
            j = copy * 4 + i
            assert out_labels[j] == labels[i] and out_groups[j] == groups[i]
            assert out[j].dtype == np.float32 and np.all(np.isfinite(out[j]))
            assert out[j].shape != signals[i].shape or not np.array_equal(out[j], signals[i])
    again, _, _ = Augmenter(AugmentConfig(p=1.0, copies=2), seed=3).augment_many(signals, labels, groups)
    assert all(np.array_equal(a, b) for a, b in zip(out, again, strict=True))


def test_augment_many_copies_zero_and_no_groups() -> None:
    signals = [_tone(0.2)]
    out, labels, groups = Augmenter(AugmentConfig(copies=0)).augment_many(signals, [1])
    assert len(out) == 1 and labels.tolist() == [1] and groups is None
    with pytest.raises(ConfigError):
        Augmenter().augment_many(signals, [1, 2])


def test_config_round_trip_and_validation() -> None:
    cfg = AugmentConfig(noise_snr_db=(5, 20), copies=3)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert AugmentConfig.from_dict(data) == cfg
    assert cfg.noise_snr_db == (5.0, 20.0)
    with pytest.raises(ConfigError, match="noise_snr_db"):
        AugmentConfig(noise_snr_db=(30, 10))
    with pytest.raises(ConfigError, match="p="):
        AugmentConfig(p=1.5)
    with pytest.raises(ConfigError, match="copies"):
        AugmentConfig(copies=-1)
    with pytest.raises(ConfigError, match="time_stretch"):
        AugmentConfig(time_stretch=(0.0, 1.0))
    with pytest.raises(ConfigError, match="keys"):
        AugmentConfig.from_dict({"bogus": 1})


def test_bad_audio_raises() -> None:
    aug = Augmenter()
    with pytest.raises(AudioError):
        aug(np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError):
        aug(np.array([0.0, np.nan], np.float32), SR)
    with pytest.raises(AudioError):
        aug(np.zeros((2, 100), np.float32), SR)


def test_spec_augment_masks_with_fill_and_is_seeded() -> None:
    frames = np.full((40, 120), 5.0, np.float32)
    fill = np.arange(40, dtype=np.float32) - 100.0
    a = spec_augment(frames, np.random.default_rng(0), fill=fill)
    b = spec_augment(frames, np.random.default_rng(0), fill=fill)
    assert np.array_equal(a, b)
    assert np.all(frames == 5.0)  # input untouched
    masked = a != 5.0
    assert masked.any()
    rows, cols = np.nonzero(masked)
    assert np.array_equal(a[rows, cols], fill[rows])  # masked cells hold the band's fill value
    none = spec_augment(frames, np.random.default_rng(0), freq_masks=0, time_masks=0)
    assert np.array_equal(none, frames)
